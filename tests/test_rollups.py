"""The writer's per-key rollups against the plainest definition: every bucket of every level,
computed from the whole list of points, whatever the chunks the writer folded them in."""

from __future__ import annotations

import itertools
import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tracklab.store import rollups
from tracklab.store.rollups import LEVELS, Rollups


def _finite(v: Any) -> float | None:
    f = float(v)
    return f if math.isfinite(f) else None


def expected(values: list[float], levels: tuple[int, ...]) -> dict[tuple[int, int], Any]:
    """Each bucket of each level from the whole list: count, extremes over the finite values,
    last, first/last step and time (the point's number here), first."""
    out = {}
    for size in levels:
        for b in range(0, (len(values) - 1) // size + 1):
            part = list(range(b * size, min(len(values), (b + 1) * size)))
            nums = [f for i in part if (f := _finite(values[i])) is not None]
            out[(size, b)] = (len(part), min(nums) if nums else None,
                              max(nums) if nums else None, _finite(values[part[-1]]),
                              part[0], part[-1], float(part[0]), float(part[-1]),
                              _finite(values[part[0]]))
    return out


def folded(values: list[float], chunks: list[int]) -> dict[tuple[int, int], tuple[Any, ...]]:
    """What the store ends up holding after the writer folded ``values`` in chunks of these
    sizes (cycled) and took the rows after each: rows replaced by (level, bucket), as the
    writer's INSERT OR REPLACE does."""
    r = Rollups(1, 1)
    stored: dict[tuple[int, int], tuple[Any, ...]] = {}
    bounds = [0]
    for size in itertools.cycle(chunks or [len(values)]):
        if bounds[-1] >= len(values):
            break
        bounds.append(min(len(values), bounds[-1] + size))
    for a, b in itertools.pairwise(bounds):
        r.fold("k", a, values[a:b], list(range(a, b)), [float(i) for i in range(a, b)])
        for row in r.take():
            _run, _proc, _key, size, bucket, n, lo, hi, last, s0, s1, t0, t1, first = row
            stored[(size, bucket)] = (n, lo, hi, last, s0, s1, t0, t1, first)
    return stored


values = st.lists(st.one_of(st.floats(-1e6, 1e6), st.sampled_from([math.nan, math.inf])),
                  min_size=1, max_size=600)


@settings(max_examples=60, deadline=None)
@given(values=values, chunks=st.lists(st.integers(1, 300), max_size=6), small=st.booleans())
def test_rollups_equal_their_definition_whatever_the_chunks(
        values: list[float], chunks: list[int], small: bool) -> None:
    saved = rollups.LEVELS
    if small:  # small levels, so that a few hundred points cross many buckets of each
        rollups.LEVELS = (4, 16, 64, 256)
    try:
        assert folded(values, chunks) == expected(values, rollups.LEVELS)
    finally:
        rollups.LEVELS = saved


def test_a_spike_in_a_million_points_is_in_every_level() -> None:
    n = 1_000_000
    col = [1.0] * n
    col[654_321] = 1e9
    r = Rollups(1, 1)
    for a in range(0, n, 4096):  # as a writer's flushes: chunks of consecutive calls
        b = min(n, a + 4096)
        r.fold("loss", a, col[a:b], range(a, b), [float(i) for i in range(a, b)])
    rows = r.take()
    for size in LEVELS:
        hit = [row for row in rows if row[3] == size and row[7] == 1e9]
        assert [row[4] for row in hit] == [654_321 // size], size
