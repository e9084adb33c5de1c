"""Values as text with their units, shared by the CLI's tables and the HTML report.

Storage keeps base units (bytes, seconds, joules, percent); only display converts them.
"""

from __future__ import annotations

import math
import re
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


# Characters a terminal acts on rather than shows: C0 controls (ESC starts every escape
# sequence, BEL ends an OSC title), DEL, C1 controls (U+009B is a one-byte CSI on some
# terminals), and the bidirectional and line-separator marks that reorder what is shown.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")
_SGR = re.compile(r"\x1b\[[0-9;:]*m")  # colours and bold: no text, no cursor movement


def _escape(m: re.Match[str]) -> str:
    c = ord(m.group())
    return {9: "\\t", 10: "\\n", 13: "\\r"}.get(c) or (
        f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}")


def visible(text: Any, colours: bool = False) -> str:
    """``text`` made safe for a terminal: every control character and escape sequence shown as
    text (``\\x1b``, ``\\n``, ``\\u202e``), none interpreted. ``colours=True`` first drops SGR
    colour codes (a console line's colours, which carry no text) instead of showing them."""
    s = text if isinstance(text, str) else str(text)
    if colours:
        s = _SGR.sub("", s)
    return _UNSAFE.sub(_escape, s)


def visible_data(value: Any) -> Any:
    """``value`` (dicts, lists, strings: a run's data as the library returns it) with every
    string and key passed through :func:`visible`; numbers and the rest unchanged."""
    if isinstance(value, str):
        return visible(value)
    if isinstance(value, dict):
        return {visible(k) if isinstance(k, str) else k: visible_data(v)
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [visible_data(v) for v in value]
    return value
