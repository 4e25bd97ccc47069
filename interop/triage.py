"""Print the raw evidence of every failed check in a results.json: the verdict's Expected/Received
and, for each failure, the request and response bytes it points at (what FINDINGS.md is built from).

    python interop/triage.py reports/interop/llmock/results.json [--id CHECK_ID] [--bytes 600]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def exchange_text(exchange: dict[str, Any], limit: int) -> str:
    request, response = exchange["request"], exchange["response"]
    body = request.get("body") or ""
    lines = [f"    > {request['method']} {request['url']}",
             f"    > body: {body[:limit]}{'…' if len(body) > limit else ''}",
             f"    < HTTP {response['status']}  content-type: {response['headers'].get('content-type', '')}",
             f"    < body ({response['body_bytes']} bytes): {response['body'][:limit]!r}"]
    if exchange.get("error"):
        lines.append(f"    ! error: {exchange['error']}")
    if exchange.get("limit_exceeded"):
        lines.append(f"    ! limit: {exchange['limit_exceeded']}")
    return "\n".join(lines)


def triage(results: dict[str, Any], only: str | None, limit: int) -> str:
    out = [f"# {results['target']['base_url']} model {results['target']['model']}: {results['verdict']}"]
    for check in results["checks"]:
        if check["outcome"] not in ("failed", "error") or (only and check["id"] != only):
            continue
        out.append(f"\n## {check['id']} [{check['level']}] {check['outcome']}: {check['description']}")
        for failure in check["failures"] or [{"expected": "", "received": check["message"], "where": "",
                                               "exchange": None}]:
            out.append(f"  Expected: {failure['expected']}\n  Received: {failure['received']}\n"
                       f"  Where: {failure['where']}")
            index = failure.get("exchange")
            if index is not None and index < len(check["transcripts"]):
                out.append(exchange_text(check["transcripts"][index], limit))
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path)
    parser.add_argument("--id", default=None, help="only this check")
    parser.add_argument("--bytes", type=int, default=600, help="bytes of each body to show")
    args = parser.parse_args(argv)
    sys.stdout.write(triage(json.loads(args.results.read_text(encoding="utf-8")), args.id, args.bytes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
