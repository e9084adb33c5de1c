"""Plain-text formatting of values with units (shared by the fast path and the rich renderer)."""

from __future__ import annotations

import math
import time
from typing import Any


def number(v: Any, unit: str = "") -> str:
    if v is None:
        return "-"
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
    if unit == "%":
        return text + "%"
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


def when(ts: float | None, short: bool = False) -> str:
    """Local time; ``short`` drops the year and seconds (for tables)."""
    if ts is None:
        return "-"
    return time.strftime("%m-%d %H:%M" if short else "%Y-%m-%d %H:%M:%S", time.localtime(ts))


def end_line(result: Any) -> str:
    """The one-line summary ``tracklab run`` prints when the child ends."""
    p = result.peaks or {}
    parts = [f"tracklab: run {result.run_id} {result.status} after {duration(result.duration)}, "
             f"exit {result.exit_code}"]
    if p.get("cpu_peak") is not None:
        parts.append(f"peak CPU {number(p['cpu_peak'], '%')}")
    if p.get("memory_peak") is not None:
        parts.append(f"peak memory {number(p['memory_peak'], '%')}")
    if p.get("process_rss_peak") is not None:
        parts.append(f"peak RSS {size(p['process_rss_peak'])}")
    gpus = p.get("gpus") or []
    if gpus:
        parts.append("peak GPU " + ", ".join(
            f"{g['id']}: {number(g.get('utilization_peak'), '%')}" for g in gpus))
    elif result.store:
        parts.append("no GPU")
    parts.append(f"{result.samples} samples")
    return " · ".join(parts)
