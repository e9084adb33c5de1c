"""Values as text with their units, shared by the CLI's tables and the HTML report.

Storage keeps base units (bytes, seconds, joules, percent); only display converts them.
"""

from __future__ import annotations

import math
from typing import Any


def number(v: Any, unit: str = "") -> str:
    """``v`` in ``unit`` ("%", "B", "B/s", "J", "s" or any suffix); "-" when missing."""
    if v is None:
        return "-"
    if unit == "s":
        return duration(v)
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if unit in ("B", "B/s"):
        return size(v) + ("/s" if unit == "B/s" else "")
    if unit == "J":
        return f"{v:,.0f} J" if v < 3.6e5 else f"{v / 3.6e6:.3f} kWh"
    if unit == "%":
        return f"{v:.1f}%"
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e15:
        v = int(v)
    if isinstance(v, int):
        text = f"{v:,}"
    elif abs(v) >= 1000:
        text = f"{v:,.0f}"
    elif abs(v) >= 10 or v == 0:
        text = f"{v:.1f}"
    else:
        text = f"{v:.4g}"
    return f"{text} {unit}".strip()


def size(v: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(v) < 1024 or unit == "TiB":
            return f"{v:.0f} {unit}" if unit == "B" else f"{v:.1f} {unit}"
        v /= 1024
    return f"{v:.1f} TiB"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s"
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    d, h = divmod(h, 24)
    if d:
        return f"{d}d {h}h {m}m"
    return f"{h}h {m:02d}m {s:02d}s" if h else f"{m}m {s:02d}s"
