"""Plain-text formatting for the CLI (shared by the fast path and the rich renderer); numbers
with units come from the library's ``tracklab.textfmt``, which the HTML report uses too."""

from __future__ import annotations

import time
from typing import Any

from tracklab.textfmt import duration, number, size

__all__ = ["duration", "end_line", "number", "size", "when"]


def when(ts: float | None, short: bool = False) -> str:
    """Local time; ``short`` drops the year and seconds (for tables)."""
    if ts is None:
        return "-"
    try:
        return time.strftime("%m-%d %H:%M" if short else "%Y-%m-%d %H:%M:%S", time.localtime(ts))
    except (OverflowError, OSError, ValueError):  # no date this platform can show
        return str(ts)


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
