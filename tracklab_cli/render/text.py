"""Small rich pieces every renderer shares: a status in its colour, a command line, sparklines."""

from __future__ import annotations

import math
import shlex
from typing import Any

from rich.text import Text

from tracklab.read.payloads import ShowData
from tracklab_cli.render.fmt import duration

STATUS_STYLE = {
    "running": "cyan", "finished": "green", "failed": "red", "crashed": "red",
    "killed": "red", "oom-killed": "red", "interrupted": "yellow", "terminated": "yellow",
}


def status_text(status: str) -> Text:
    return Text(status, style=STATUS_STYLE.get(status, ""))


def command_text(command: Any) -> str:
    if isinstance(command, list):
        return shlex.join(str(c) for c in command)
    return str(command or "-")


BLOCKS = "▁▂▃▄▅▆▇█"


def num(v: Any) -> float | None:
    if type(v) not in (int, float, bool):
        return None
    return float(v)


def _fit(values: list[Any], width: int) -> list[Any]:
    """``values`` in at most ``width`` columns: the last value of each group of columns."""
    if len(values) <= width:
        return values
    out = []
    for i in range(width):
        group = values[len(values) * i // width:len(values) * (i + 1) // width]
        known = [v for v in group if v is not None]
        out.append(known[-1] if known else None)
    return out


def sparkline(values: list[Any] | None, width: int = 40, unit: str = "") -> Text:
    """Block characters for a trend: blank where nothing was recorded, a red ``×`` for NaN or
    an infinity. Percentages are drawn on a 0-100 scale, everything else from min to max."""
    if not values:
        return Text("")
    values = _fit(values, width)
    finite = [f for v in values if (f := num(v)) is not None and math.isfinite(f)]
    lo, hi = (min(finite), max(finite)) if finite else (0.0, 0.0)
    if unit == "%":
        lo, hi = min(lo, 0.0), max(hi, 100.0)
    chars = []
    bad = []
    for i, v in enumerate(values):
        f = num(v)
        if v is None or f is None:
            chars.append(" ")
        elif not math.isfinite(f):
            chars.append("×")
            bad.append(i)
        elif hi == lo:  # flat: at the bottom when it is flat at zero
            chars.append(BLOCKS[0 if f == 0 else 3])
        else:
            chars.append(BLOCKS[min(7, int((f - lo) / (hi - lo) * 7 + 0.5))])
    out = Text("".join(chars), style="cyan", no_wrap=True, overflow="crop")
    for i in bad:  # one span per NaN: a plain line stays one span (rich renders it fast)
        out.stylize("red", i, i + 1)
    return out


def spark_width(console_width: int, used: int) -> int:
    """Columns left for a sparkline beside ``used`` columns of table, between 10 and 40."""
    return max(10, min(40, console_width - used))


def trend_title(data: ShowData) -> str:
    w = data.get("trend_window")
    return f"trend ({duration(w['end'] - w['start'])})" if w else "trend"
