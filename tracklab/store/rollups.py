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
from bisect import bisect_left
from collections.abc import Sequence
from typing import Any

LEVELS = (256, 4096, 65536, 1048576)

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

        The values are scanned once, a finest-level bucket's slice at a time; the coarser levels
        are folded from those slices' extremes (every coarser bucket boundary is also a finest
        one), a coarse bucket at a time, so the writer keeps up with a loop logging flat out."""
        levels = self._open.get(key)
        if levels is None:
            levels = self._open[key] = [[-1, 0, None, None, None, 0, 0, 0.0, 0.0, None]
                                        for _ in LEVELS]
        n = len(col)
        if not n:
            return
        finest = LEVELS[0]
        # the finest slices of this chunk: their start offsets and extremes
        starts: list[int] = []
        lows: list[float | None] = []
        highs: list[float | None] = []
        i = 0
        while i < n:
            j = min(n, ((ordinal + i) // finest + 1) * finest - ordinal)
            lo, hi = _extremes(col[i:j])
            starts.append(i)
            lows.append(lo)
            highs.append(hi)
            i = j
        starts.append(n)
        dirty = key in self._touched  # the open buckets changed since the last take()
        for size, b in zip(LEVELS, levels):
            changed = dirty
            k = 0  # index of the first finest slice of the coarse bucket being folded
            while k < len(lows):
                bucket = (ordinal + starts[k]) // size
                # the slices of this bucket: k .. m-1 (slices start on finest boundaries)
                m = min(len(lows), bisect_left(starts, (bucket + 1) * size - ordinal, k + 1))
                i, j = starts[k], starts[m]
                if b[0] != bucket:
                    if b[0] >= 0 and changed:
                        self._done.append((self.run, self.proc, key, size, *b))
                    b[:] = [bucket, 0, None, None, None, int(steps[i]), 0, float(times[i]), 0.0,
                            _float(col[i])]
                lo_part = [v for v in lows[k:m] if v is not None]
                hi_part = [v for v in highs[k:m] if v is not None]
                if lo_part:
                    lo = min(lo_part)
                    if b[2] is None or lo < b[2]:
                        b[2] = lo
                if hi_part:
                    hi = max(hi_part)
                    if b[3] is None or hi > b[3]:
                        b[3] = hi
                b[1] += j - i
                b[4], b[6], b[8] = _float(col[j - 1]), int(steps[j - 1]), float(times[j - 1])
                changed = True
                k = m
        self._touched.add(key)

    def take(self) -> list[Row]:
        """The rows changed since the last call (completed buckets and the open ones)."""
        rows = self._done
        for key in self._touched:
            rows.extend((self.run, self.proc, key, size, *b)
                        for size, b in zip(LEVELS, self._open[key]) if b[0] >= 0)
        self._done, self._touched = [], set()
        return rows
