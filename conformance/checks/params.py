"""Parameter bounds (section 1.2): edges accepted, values just outside rejected."""

from __future__ import annotations

from .._context import CheckContext
from .._model import Feature, Level, documented
from ._bounds import probe_range
from ._registry import check


@check(
    "params.temperature.bounds",
    level=Level.MUST,
    feature=Feature.CORE,
    clause=documented("1.2 temperature", "Sampling temperature, between 0 and 2."),
    description="temperature 0 and 2 are accepted; 2.0000001 and -1e-9 are rejected with 4xx and the envelope.",
    accepts=("200 inside", "400/422 outside"),
    requests=8,
)
def temperature_bounds(ctx: CheckContext) -> None:
    probe_range(ctx, "temperature", 0, 2)
