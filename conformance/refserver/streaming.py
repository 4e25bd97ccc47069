"""SSE output of the reference server: a stream's chunks as events, framed as bytes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from . import responses
from .hooks import Patches, SsePlan


async def sse(payload: dict[str, Any], patches: Patches) -> AsyncIterator[bytes]:
    """The bytes of one stream, built once the response has started."""
    for piece in pieces(responses.stream_chunks(payload, patches), patches):
        yield piece


def pieces(chunks: list[dict[str, Any]], patches: Patches) -> list[bytes]:
    plan = SsePlan([json.dumps(chunk) for chunk in chunks])
    patches.sse(plan)
    return encode(plan)


def encode(plan: SsePlan) -> list[bytes]:
    """One piece per block: each preamble line, each event (after its comment), the closing events."""
    newline = plan.newline
    end = newline * (2 if plan.blank_line else 1)
    out = [f"{line}{newline}{newline}".encode() for line in plan.preamble]
    for data in plan.events:
        if plan.comment is not None:
            out.append(f"{plan.comment}{newline}{newline}".encode())
        out.append(f"{plan.data_field}{data}{end}".encode())
    out += [f"{plan.data_field}{data}{end}".encode() for data in plan.closing]
    return out
