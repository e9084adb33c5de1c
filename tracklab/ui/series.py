"""Chart series at about the chart's pixel width, each bucket's minimum, maximum and last value
kept, so a spike logged once in a million points is drawn.

Training keys: a range holding few points is read whole (its rows found by binary search on the
points' ``(run)`` index, time and step growing with the rowid); a longer one is read from the
writer's rollups (:mod:`tracklab.store.rollups`) at the coarsest level that still gives a few
rows per pixel, descending from the coarsest so each level reads only the buckets of the range.
Runs written before rollups existed fall back to one point per pixel by index seeks.

System paths: the samples of the range when there are a few per pixel, else one sample per
half pixel by seeks on the ``(run, time)`` index (samples are seconds apart, so that is at most
a few hundred thousand rows' worth of detail left out on a week-long run).
"""

from __future__ import annotations

import bisect
import json
import math
import sqlite3
from collections.abc import Iterable
from itertools import pairwise
from typing import Any

from tracklab.read.fleet import time_offsets
from tracklab.read.runs import RunView
from tracklab.store import Shard
from tracklab.store import series as seeks
from tracklab.store.codec import decode_sample, decode_values
from tracklab.store.rollups import LEVELS

PER_PIXEL = 4  # rollup rows read per pixel at most
# a range with fewer points than this per pixel is read whole: below it, even the finest rollups
# (64 points a row) would give fewer rows than pixels
RAW_PER_PIXEL = 16
RAW_ROWS = 200_000  # a whole-range read stops here: a rare key among many others uses rollups

# A bucket: (x_first, x_last, min, max, last, x_min, x_max, first), values finite floats or None.
Bucket = tuple[float, float, float | None, float | None, float | None, float, float, float | None]


def _num(v: Any) -> float | None:
    if type(v) not in (int, float, bool):
        return None
    try:
        f = float(v)
    except OverflowError:
        return None
    return f if math.isfinite(f) else None


class Columns:
    """Points folded straight into ``width`` columns of ``[lo, hi]`` as they are read (the
    minimum, maximum and last of each, at their own x), so a range read whole costs one small
    step per point and no object per point."""

    def __init__(self, lo: float, hi: float, width: int) -> None:
        self.lo, self.width = lo, width
        self.scale = width / ((hi - lo) or 1.0)
        self.cols: dict[int, list[Any]] = {}

    def add(self, x: float, v: float) -> None:
        i = int((x - self.lo) * self.scale)
        i = 0 if i < 0 else (self.width - 1 if i >= self.width else i)
        c = self.cols.get(i)
        if c is None:
            self.cols[i] = [x, x, v, v, v, x, x, v]
            return
        if v < c[2]:
            c[2], c[5] = v, x
        elif v > c[3]:
            c[3], c[6] = v, x
        c[1], c[4] = x, v

    def buckets(self) -> list[Bucket]:
        return [tuple(c) for c in self.cols.values()]


def downsample(buckets: Iterable[Bucket], lo: float, hi: float, width: int) -> dict[str, Any]:
    """Merge buckets into ``width`` pixel columns of ``[lo, hi]`` and return ``{x, y}``: per
    column its minimum, maximum and last value, each at its own x, in x order."""
    cols: dict[int, list[Any]] = {}
    span = (hi - lo) or 1.0
    for b in sorted(buckets, key=lambda b: b[1]):
        i = min(width - 1, max(0, int((b[1] - lo) / span * width)))
        c = cols.get(i)
        if c is None:
            cols[i] = list(b)
            continue
        if b[2] is not None and (c[2] is None or b[2] < c[2]):
            c[2], c[5] = b[2], b[5]
        if b[3] is not None and (c[3] is None or b[3] > c[3]):
            c[3], c[6] = b[3], b[6]
        c[1], c[4] = b[1], b[4]
    pts: dict[float, float] = {}
    prev: float | None = None
    if cols:  # the line starts where the data does
        x_first, first = cols[min(cols)][0], cols[min(cols)][7]
        if first is not None:
            pts[x_first] = prev = first
    for i in sorted(cols):
        _, x_last, mn, mx, last, x_mn, x_mx, _ = cols[i]
        # the line from the previous column's last value to this one's already spans part of
        # the column's range: only an excursion beyond it needs its own point
        ends = [v for v in (prev, last) if v is not None]
        if mn is not None and (not ends or mn < min(ends)):
            pts[x_mn] = mn
        if mx is not None and (not ends or mx > max(ends)):
            pts[x_mx] = mx
        if last is not None:
            pts[x_last] = last
            prev = last
    xs = sorted(pts)
    # a chart needs no 17 digits: 7 significant ones (a float32's) and x to the millisecond
    # or the step halve the payload, and the hover shows 4
    return {"x": [int(x) if x.is_integer() else round(x, 3) for x in xs],
            "y": [float(f"{pts[x]:.7g}") for x in xs]}


def _first_at(shard: Shard, run: int, col: str, value: float, lo: int, hi: int) -> int:
    """The first rowid in ``[lo, hi]`` whose ``col`` is at least ``value`` (hi + 1 if none),
    by binary search: about 20 index seeks for a million rows."""
    sql = f"SELECT rowid, {col} FROM points WHERE run = ? AND rowid >= ? ORDER BY rowid LIMIT 1"
    a, b = lo, hi + 1
    c = shard.conn
    while a < b:
        mid = (a + b) // 2
        row = c.execute(sql, (run, mid)).fetchone()
        if row is None or row[0] > hi or row[1] >= value:
            b = mid
        else:
            a = row[0] + 1
    return a


def _raw(shard: Shard, run: int, keys: list[str], col: str, a: int, b: int, off: float,
         keysets: dict[int, list[str]], lo: float | None, hi: float | None,
         width: int) -> dict[str, list[Bucket]]:
    """The points of rowids ``[a, b]`` for each of ``keys``, read in one pass and folded into
    ``width`` columns of ``[lo, hi]`` (the range's own first and last x where unset)."""
    picks: dict[int, list[tuple[int, str]]] = {}
    for num, ks in keysets.items():
        got = [(i, k) for i, k in enumerate(ks) if k in keys]
        if got:
            picks[num] = got
    if not picks:
        return {k: [] for k in keys}
    c = shard.conn
    ends = [c.execute(f"SELECT step, time FROM points WHERE run = ? AND rowid {op} ? "
                      f"ORDER BY rowid {order} LIMIT 1", (run, r)).fetchone()
            for op, order, r in ((">=", "", a), ("<=", "DESC", b))]
    if ends[0] is None or ends[1] is None:
        return {k: [] for k in keys}
    first, last = ((float(e[0]) if col == "step" else e[1] + off) for e in ends)
    acc = {k: Columns(first if lo is None else lo, last if hi is None else hi, width)
           for k in keys}
    marks = ", ".join("?" for _ in picks)
    for step, t, ks, fmt, blob in c.execute(
            f"SELECT step, time, keyset, fmt, vals FROM points WHERE run = ? AND rowid >= ? "
            f"AND rowid <= ? AND keyset IN ({marks}) ORDER BY rowid", (run, a, b, *picks)):
        values = decode_values(fmt, blob)
        x = float(step) if col == "step" else t + off
        for i, k in picks[ks]:
            v = values[i]
            if type(v) is not float:
                v = _num(v)
                if v is None:
                    continue
            elif v != v or v in _INF:
                continue
            acc[k].add(x, v)
    return {k: a_.buckets() for k, a_ in acc.items()}


_INF = (math.inf, -math.inf)


def _rollups(shard: Shard, run: int, key: str, col: str, lo: float, hi: float, off: float,
             want: int) -> list[Bucket] | None:
    """The rollup buckets of ``[lo, hi]`` at the coarsest level giving about ``want`` of them;
    None where the shard has none for the key (written before rollups)."""
    c = shard.conn
    first, last = f"first_{col}", f"last_{col}"
    try:
        procs = [p for (p,) in c.execute(
            "SELECT DISTINCT proc FROM metric_rollups WHERE run = ? AND key = ? AND level = ?",
            (run, key, LEVELS[-1]))]
    except sqlite3.OperationalError:
        return None
    if not procs:
        return None
    sql = (f"SELECT bucket, n, min, max, last, {first}, {last}, first FROM metric_rollups "
           f"WHERE run = ? AND key = ? AND level = ? AND proc = ? AND bucket >= ? AND bucket < ? "
           f"AND {last} >= ? AND {first} <= ? ORDER BY bucket")
    out: list[Bucket] = []
    for proc in procs:
        o_lo, o_hi = 0, 1 << 62  # the ordinals still in play, narrowed level by level
        sizes = list(reversed(LEVELS))
        for li, size in enumerate(sizes):
            rows = c.execute(sql, (run, key, size, proc, o_lo // size, -(-o_hi // size),
                                   lo, hi)).fetchall()
            if not rows:
                break
            o_lo, o_hi = rows[0][0] * size, (rows[-1][0] + 1) * size
            finer = sizes[li + 1] if li + 1 < len(sizes) else None
            if finer is None or len(rows) * (size // finer) > want:
                for _b, _n, mn, mx, la, fx, lx, fv in rows:
                    fx, lx = fx + off, lx + off
                    third = (lx - fx) / 3
                    out.append((fx, lx, mn, mx, la, fx + third, fx + 2 * third, fv))
                break
    return out


def metric_series(view: RunView, keys: list[str], axis: str, lo: float | None,
                  hi: float | None, width: int) -> dict[str, dict[str, Any]]:
    """``{key: {x, y}}`` of training keys over ``[lo, hi]`` (the whole run when unset) on
    ``axis`` (``step`` or ``time``, epoch seconds), about ``width`` columns of min, max and
    last. Keys read whole share one pass over the rows."""
    col = "step" if axis == "step" else "time"
    summary = view.metric_summary()
    keys = [k for k in keys if k in summary]
    buckets: dict[str, list[Bucket]] = {k: [] for k in keys}
    for (shard, row), off in zip(view._parts, time_offsets(view._parts)):
        num = row["num"]
        sp = seeks.point_span(shard, num)
        if sp is None:
            continue
        shift = off if col == "time" else 0.0
        a, b = sp
        if lo is not None:
            a = _first_at(shard, num, col, lo - shift, sp[0], sp[1])
        if hi is not None:
            b = _first_at(shard, num, col, math.nextafter(hi - shift, math.inf), a, sp[1]) - 1
        if b < a:
            continue
        share = (b - a + 1) / (sp[1] - sp[0] + 1)
        whole = [k for k in keys
                 if summary[k]["count"] * share <= RAW_PER_PIXEL * width and b - a < RAW_ROWS]
        if whole:
            for k, got in _raw(shard, num, whole, col, a, b, off, seeks.keysets(shard),
                               lo, hi, width).items():
                buckets[k].extend(got)
        for k in keys:
            if k in whole:
                continue
            rolled = _rollups(shard, num, k, col, -math.inf if lo is None else lo - shift,
                              math.inf if hi is None else hi - shift, shift, PER_PIXEL * width)
            if rolled is None:  # no rollups: one point per column, by index seeks
                rolled = _sampled(shard, num, k, col, a, b, off, width)
            buckets[k].extend(rolled)
    out: dict[str, dict[str, Any]] = {}
    for k, bs in buckets.items():
        if not bs:
            out[k] = {"x": [], "y": []}
            continue
        out[k] = downsample(bs, lo if lo is not None else min(bk[0] for bk in bs),
                            hi if hi is not None else max(bk[1] for bk in bs), width)
    return out


def _sampled(shard: Shard, run: int, key: str, col: str, a: int, b: int, off: float,
             width: int) -> list[Bucket]:
    sets = seeks.keysets(shard)
    nums = [n for n, ks in sets.items() if key in ks]
    edges = sorted({a + (b + 1 - a) * i // width for i in range(width)} | {b + 1})
    out: list[Bucket] = []
    for _, step, t, ks, fmt, blob in seeks.points_in_bins(shard, run, list(pairwise(edges)),
                                                           nums):
        v = _num(decode_values(fmt, blob)[sets[ks].index(key)])
        x = float(step) if col == "step" else t + off
        out.append((x, x, v, v, v, x, x, v))
    return out


# -- system samples --------------------------------------------------------------------------------

def step_clock(view: RunView) -> list[tuple[float, float]]:
    """``(time, step)`` pairs of the run's most logged key, to put samples on the step axis."""
    summary = view.metric_summary()
    if not summary:
        return []
    from tracklab.read.trends import metric_points

    key = max(summary, key=lambda k: summary[k]["count"])
    return sorted((t, float(step)) for t, step, _ in metric_points(view, [key], 400)[key]
                  if step is not None)


def _to_step(clock: list[tuple[float, float]], times: list[float]) -> list[float | None]:
    ts = [t for t, _ in clock]
    out: list[float | None] = []
    for t in times:
        i = bisect.bisect_left(ts, t)
        if i == 0 or i == len(ts):
            out.append(None if not ts or t < ts[0] or t > ts[-1] else clock[min(i, len(ts) - 1)][1])
            continue
        (t0, s0), (t1, s1) = clock[i - 1], clock[i]
        out.append(s0 + (s1 - s0) * (t - t0) / ((t1 - t0) or 1.0))
    return out


def system_series(view: RunView, paths: list[str], axis: str, lo: float | None,
                  hi: float | None, width: int,
                  clock: list[tuple[float, float]] | None = None) -> dict[str, dict[str, Any]]:
    """``{path: {x, y}}`` of system paths of the run's primary node (the one with most
    samples), each sample read and decoded once for all the paths."""
    from tracklab.read.trends import _primary

    empty: dict[str, dict[str, Any]] = {p: {"x": [], "y": []} for p in paths}
    part = _primary(view)
    if part is None:
        return empty
    shard, row = part
    off = dict(zip((r["node"] for _, r in view._parts), time_offsets(view._parts))).get(
        row["node"], 0.0)
    sp = seeks.sample_span(shard, row["num"])
    if sp is None:
        return empty
    t_lo, t_hi = sp
    if axis == "step":
        if not clock:
            return empty
        steps = [s for _, s in clock]
        if lo is not None:
            t_lo = max(t_lo, clock[max(0, bisect.bisect_left(steps, lo) - 1)][0] - off)
        if hi is not None:
            t_hi = min(t_hi, clock[min(len(clock) - 1, bisect.bisect_right(steps, hi))][0] - off)
    else:
        t_lo = t_lo if lo is None else max(t_lo, lo - off)
        t_hi = t_hi if hi is None else min(t_hi, hi - off)
    if t_hi < t_lo:
        return empty
    total = max(1, shard.sample_count(row["num"]))
    est = total * (t_hi - t_lo) / max(1e-9, sp[1] - sp[0])
    if est <= PER_PIXEL * width:
        rows: list[tuple[float, str, bytes]] = shard.conn.execute(
            "SELECT s.time, l.paths, s.data FROM samples s JOIN layouts l ON l.num = s.layout "
            "WHERE s.run = ? AND s.time >= ? AND s.time <= ? ORDER BY s.time",
            (row["num"], t_lo, t_hi)).fetchall()
    else:
        n = 2 * width
        rows = [r for r in seeks.samples_at(shard, row["num"],
                                            (t_lo + (t_hi - t_lo) * i / n for i in range(n)))
                if t_lo <= r[0] <= t_hi]
    picks: dict[str, list[tuple[int, str]]] = {}
    times: list[float] = []
    values: dict[str, list[float | None]] = {p: [] for p in paths}
    for t, paths_json, blob in rows:
        pick = picks.get(paths_json)
        if pick is None:
            have = json.loads(paths_json)
            pick = picks[paths_json] = [(have.index(p), p) for p in paths if p in have]
        decoded = decode_sample(blob)
        times.append(t + off)
        for p in paths:
            values[p].append(None)
        for i, p in pick:
            values[p][-1] = _num(decoded[i])
    xs: list[float | None] = list(times) if axis == "time" else _to_step(clock or [], times)
    known = [x for x in xs if x is not None]
    if not known:
        return empty
    a = lo if lo is not None else known[0]
    b = hi if hi is not None else known[-1]
    out: dict[str, dict[str, Any]] = {}
    for p in paths:
        acc = Columns(a, b, width)
        for x, v in zip(xs, values[p]):
            if x is not None and v is not None:
                acc.add(x, v)
        out[p] = downsample(acc.buckets(), a, b, width)
    return out
