"""Compact, exact encodings for metric values and system snapshots.

Training points are stored one row per ``log()`` call: the keys live once in a ``keysets`` row and
the values are packed little-endian. All-float rows (the common case) are plain doubles and need no
format string; rows with ints or bools carry a struct format (``q`` int64, ``?`` bool, ``d``
double); a row holding an int beyond 64 bits falls back to JSON text, which Python reads back
exactly. Doubles keep NaN and infinities bit for bit, unlike SQLite's REAL (NaN becomes NULL).

System snapshots are flattened to ``(paths, values)``; the paths live once in a ``layouts`` row
and the values are compact JSON compressed with zlib, which keeps a full sample well under 1 KB.
"""

from __future__ import annotations

import json
import struct
import zlib
from typing import Any

_DOUBLES: dict[int, struct.Struct] = {}
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
JSON_FORMAT = "J"


def _doubles(n: int) -> struct.Struct:
    s = _DOUBLES.get(n)
    if s is None:
        s = _DOUBLES[n] = struct.Struct(f"<{n}d")
    return s


def encode_values(values: tuple[Any, ...]) -> tuple[str | None, bytes]:
    """Pack one row of already-validated numbers (float, int, bool). Returns ``(fmt, blob)``."""
    fmt = []
    plain = True
    for v in values:
        t = type(v)
        if t is float:
            fmt.append("d")
        elif t is bool:
            fmt.append("?")
            plain = False
        elif _INT64_MIN <= v <= _INT64_MAX:
            fmt.append("q")
            plain = False
        else:
            return JSON_FORMAT, json.dumps(values).encode()
    if plain:
        return None, _doubles(len(values)).pack(*values)
    f = "".join(fmt)
    return f, struct.pack("<" + f, *values)


def decode_values(fmt: str | None, blob: bytes) -> tuple[Any, ...]:
    if fmt is None:
        return _doubles(len(blob) // 8).unpack(blob)
    if fmt == JSON_FORMAT:
        return tuple(json.loads(blob))
    return struct.unpack("<" + fmt, blob)


_COMPACT = json.JSONEncoder(separators=(",", ":"))  # json.dumps builds one per call otherwise


def dumps_exact(value: Any) -> str:
    """JSON that keeps NaN and infinities (Python's json reads ``NaN``/``Infinity`` back)."""
    return _COMPACT.encode(value)


def loads_exact(text: str | bytes | None) -> Any:
    return None if text is None else json.loads(text)


def flatten(tree: Any, prefix: str = "") -> tuple[list[str], list[Any]]:
    """Flatten nested dicts and lists into dotted paths (list items by index).

    Runs on every sample, so leaves are handled inline (no call per value) and types are
    compared exactly rather than with isinstance.
    """
    paths: list[str] = []
    values: list[Any] = []
    add_path, add_value = paths.append, values.append

    def walk(node: Any, path: str) -> None:
        if type(node) is dict:
            if not node:
                add_path(path + "{}")
                add_value(None)
                return
            items: Any = node.items()
        elif type(node) is list:
            if not node:
                add_path(path + "[]")
                add_value(None)
                return
            items = enumerate(node)
        else:
            add_path(path)
            add_value(node)
            return
        pre = path + "." if path else ""
        for k, v in items:
            name = pre + (k if type(k) is str else str(k))
            tv = type(v)
            if tv is dict or tv is list:
                walk(v, name)
            else:
                add_path(name)
                add_value(v)

    walk(tree, prefix)
    return paths, values


def unflatten(paths: list[str], values: list[Any]) -> dict[str, Any]:
    """Inverse of :func:`flatten`: numeric path parts become list indices."""
    root: dict[str, Any] = {}
    for path, value in zip(paths, values):
        if path.endswith("{}") or path.endswith("[]"):
            _set(root, path[:-2].split("."), {} if path.endswith("{}") else [])
        else:
            _set(root, path.split("."), value)
    return root


def _set(root: Any, parts: list[str], value: Any) -> None:
    node = root
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        nxt_is_index = not last and parts[i + 1].isdigit()
        if isinstance(node, list):
            idx = int(part)
            while len(node) <= idx:
                node.append(None)
            if last:
                node[idx] = value
            else:
                if node[idx] is None:
                    node[idx] = [] if nxt_is_index else {}
                node = node[idx]
        else:
            if last:
                node[part] = value
            else:
                if part not in node:
                    node[part] = [] if nxt_is_index else {}
                node = node[part]


def encode_sample(values: list[Any]) -> bytes:
    """Values as given: collectors round their readings to their sources' resolution, and custom
    metrics (``log_custom_metric``) keep every digit."""
    return zlib.compress(dumps_exact(values).encode(), 6)


def decode_sample(blob: bytes) -> list[Any]:
    values: list[Any] = json.loads(zlib.decompress(blob))
    return values
