"""Values passed to ``log()`` made storable: the all-float record packer of the fast path, and the
slow path's flattening of nested dicts, conversion of numpy and torch scalars to numbers, and
checking of steps, each bad value dropped with one warning."""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from typing import Any

PLAIN = frozenset((float, int, bool))
FLOATS = frozenset((float,))
STEP_MAX = 2**63 - 1  # steps are stored as SQLite integers
_RECORDS: dict[int, Any] = {}

Warn = Callable[[str, str], None]  # (what, message): warns once per ``what``


def float_record(n: int) -> Any:
    """The packer of an all-float call's queue record, ``pointqueue.HEADER`` and the doubles
    as the store keeps them, in one C call."""
    pack = _RECORDS.get(n)
    if pack is None:
        pack = _RECORDS[n] = struct.Struct(f"<qd{n}d").pack
    return pack


def clean(data: Mapping[str, Any], warn: Warn, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in data.items():
        name = f"{prefix}{k}"
        t = type(v)
        if t in PLAIN:
            out[name] = v
        elif isinstance(v, Mapping):
            out.update(clean(v, warn, f"{name}."))
        elif getattr(t, "_tracklab_media", False) or _media_list(v):
            continue  # wandb.Image-like objects: they said so themselves, once, when made
        else:
            num = to_number(v)
            if num is None:
                warn(f"value:{name}", f"tracklab: {name!r} = {_short(v)} is not a "
                     "number; dropped (the call's other values are kept)")
            else:
                out[name] = num
    return out


def _media_list(v: Any) -> bool:
    """``[wandb.Image(...), ...]``, as wandb scripts log a batch of examples."""
    return (type(v) in (list, tuple) and bool(v)
            and all(getattr(type(x), "_tracklab_media", False) for x in v))


def clean_step(step: Any, fallback: int, warn: Warn) -> int:
    import operator

    try:
        s = operator.index(step)
    except TypeError:
        s = -1
    if 0 <= s <= STEP_MAX:
        return s
    warn("step", f"tracklab: step {_short(step)} is not an integer from 0 to 2**63-1; "
         "using the next step instead")
    return fallback


def to_number(v: Any) -> float | int | bool | None:
    item = getattr(v, "item", None)
    if callable(item):
        try:
            v = item()
        except (ValueError, RuntimeError, TypeError):
            return None
        if type(v) in PLAIN:
            return v  # type: ignore[no-any-return]
    if isinstance(v, (str, bytes, complex)) or v is None:
        return None
    import numbers

    if isinstance(v, numbers.Integral):
        return int(v)
    if isinstance(v, numbers.Real):
        return float(v)
    return None


def _short(v: Any) -> str:
    r = repr(v)
    return r if len(r) <= 40 else r[:37] + "..."
