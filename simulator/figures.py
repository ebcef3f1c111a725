"""How figures are written for people: the report, the live view and the terminal lines.

Figures come from `RunStats.figures()` in base units (seconds, shares, per second); `None` means
not measured yet, and an infinite latency means requests went unanswered (they count as
infinitely slow in the percentiles).
"""

from __future__ import annotations

import math
from typing import Literal

MISSING = "–"
UNANSWERED = "∞ (unanswered requests)"
"""An infinite latency percentile, spelt out where there is room (report, terminal)."""

Kind = Literal["ms", "%", ""]


def ms(v: float | None, inf: str = UNANSWERED) -> str:
    """Seconds as milliseconds, `1.2 ms`."""
    if v is None:
        return MISSING
    return inf if math.isinf(v) else f"{v * 1000:.1f} ms"


def percent(v: float | None) -> str:
    """A share as a percentage, `4.20 %`."""
    return MISSING if v is None else f"{v * 100:.2f} %"


def rate(v: float) -> str:
    """Events per second, whole."""
    return f"{v:.0f}"


def figure(v: float | None, kind: Kind = "") -> str:
    """`v` as `kind` says: `ms`, `%`, or a plain number to four significant digits."""
    if v is None:
        return MISSING
    if isinstance(v, float) and math.isinf(v):
        return UNANSWERED
    if kind == "ms":
        return ms(v)
    if kind == "%":
        return percent(v)
    return f"{v:.4g}"
