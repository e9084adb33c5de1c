"""Per-key rollups: the minimum, maximum and last value of every run of ``LEVELS[i]`` points of a
training key, kept by the writer beside the points, so a chart of a million-point run reads a
thousand rows and still shows a spike logged once.

A key's points are numbered in logging order per writer (its ordinal, which the key's running
count gives); bucket ``b`` of level ``size`` holds ordinals ``b*size`` to ``(b+1)*size - 1``.
The writer replaces the bucket it is filling on every flush, so rollups are as fresh as points.
Non-finite values (NaN, infinities) are left out of the minimum and maximum; a bucket of only
those has null extremes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

LEVELS = (64, 1024, 16384, 262144)

# (run, proc, key, level, bucket, n, min, max, last, first_step, last_step, first_time,
#  last_time, first)
Row = tuple[Any, ...]
INSERT = ("INSERT OR REPLACE INTO metric_rollups (run, proc, key, level, bucket, n, min, max, "
          "last, first_step, last_step, first_time, last_time, first) "
          "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")


def _float(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError, OverflowError):
        return None
    return f if math.isfinite(f) else None


def _extremes(part: Sequence[Any]) -> tuple[float | None, float | None]:
    try:
        total = float(sum(part))
    except (TypeError, OverflowError):
        total = math.nan
    if math.isfinite(total):
        return _float(min(part)), _float(max(part))
    nums = [f for v in part if (f := _float(v)) is not None]
    return (min(nums), max(nums)) if nums else (None, None)


class Rollups:
    """One writer's open buckets, per key and level, and the rows a flush must write."""

    def __init__(self, run: int, proc: int) -> None:
        self.run, self.proc = run, proc
        # key -> per level: [bucket, n, min, max, last, first_step, last_step, first_time,
        # last_time, first]
        self._open: dict[str, list[list[Any]]] = {}
        self._done: list[Row] = []  # buckets completed since the last take()
        self._touched: set[str] = set()  # keys whose open buckets changed

    def fold(self, key: str, ordinal: int, col: Sequence[Any], steps: Sequence[Any],
             times: Sequence[Any]) -> None:
        """Add ``col`` (values of consecutive calls, the first of them the key's ``ordinal``-th
        point), logged at ``steps`` and ``times``.

        The values are scanned once, a finest-level bucket's slice at a time; every coarser
        bucket boundary is also a finest one, so each slice's summary folds into all levels."""
        levels = self._open.get(key)
        if levels is None:
            levels = self._open[key] = [[-1, 0, None, None, None, 0, 0, 0.0, 0.0, None]
                                        for _ in LEVELS]
        n = len(col)
        finest = LEVELS[0]
        i = 0
        while i < n:
            j = min(n, ((ordinal + i) // finest + 1) * finest - ordinal)
            lo, hi = _extremes(col[i:j])
            first, last = _float(col[i]), _float(col[j - 1])
            s0, s1, t0, t1 = int(steps[i]), int(steps[j - 1]), float(times[i]), float(times[j - 1])
            for size, b in zip(LEVELS, levels):
                bucket = (ordinal + i) // size
                if b[0] != bucket:
                    if b[0] >= 0 and key in self._touched:
                        self._done.append((self.run, self.proc, key, size, *b))
                    b[:] = [bucket, 0, None, None, None, s0, 0, t0, 0.0, first]
                b[1] += j - i
                if lo is not None and (b[2] is None or lo < b[2]):
                    b[2] = lo
                if hi is not None and (b[3] is None or hi > b[3]):
                    b[3] = hi
                b[4], b[6], b[8] = last, s1, t1
            self._touched.add(key)
            i = j

    def take(self) -> list[Row]:
        """The rows changed since the last call (completed buckets and the open ones)."""
        rows = self._done
        for key in self._touched:
            rows.extend((self.run, self.proc, key, size, *b)
                        for size, b in zip(LEVELS, self._open[key]) if b[0] >= 0)
        self._done, self._touched = [], set()
        return rows
