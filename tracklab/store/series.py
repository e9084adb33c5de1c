"""Index seeks that pick a few rows out of a long run, for trends, charts and live views.

A day of 1 s samples is 86,400 rows and a long training run logs millions of points; a view that
draws 40 or 600 columns must not read them all. Samples are found by seeking the ``(run, time)``
index once per wanted time; points, which have no time index, by seeking the ``(run)`` index on
rowid (points are appended in time order, so rowid order is time order per writer).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from tracklab.store.shard import Shard

# A bin's search for a key gives up after this many rows: a key logged more rarely than that
# (a final score, an evaluation every 10,000 steps) may be missing from some bins, which the
# trend shows as a held value; the key's last value comes from its running statistics anyway.
MAX_SCAN_ROWS = 2000


def sample_span(shard: Shard, run: int) -> tuple[float, float] | None:
    """Times (s since the epoch) of the run's first and last sample, or ``None`` without any."""
    c = shard.conn
    first = c.execute("SELECT time FROM samples WHERE run = ? ORDER BY time LIMIT 1",
                      (run,)).fetchone()
    if first is None:
        return None
    last = c.execute("SELECT time FROM samples WHERE run = ? ORDER BY time DESC LIMIT 1",
                     (run,)).fetchone()
    return float(first[0]), float(last[0])


def samples_at(shard: Shard, run: int, times: Iterable[float]) -> list[tuple[float, str, bytes]]:
    """For each wanted time, the first sample at or after it, plus the run's last sample.

    Returns ``(time, paths_json, data)`` rows, oldest first, each row once (one index seek per
    wanted time; several times inside one gap find the same sample).
    """
    c = shard.conn
    seek = ("SELECT s.num, s.time, l.paths, s.data FROM samples s "
            "JOIN layouts l ON l.num = s.layout WHERE s.run = ? AND s.time >= ? "
            "ORDER BY s.time LIMIT 1")
    found: dict[int, tuple[float, str, bytes]] = {}
    for t in times:
        row = c.execute(seek, (run, t)).fetchone()
        if row is not None:
            found[row[0]] = (row[1], row[2], row[3])
    last = last_sample(shard, run)
    if last is not None:
        found[-1] = last
    return sorted(set(found.values()), key=lambda r: r[0])


def last_sample(shard: Shard, run: int) -> tuple[float, str, bytes] | None:
    """The run's newest sample as ``(time, paths_json, data)``, or ``None``."""
    row = shard.conn.execute(
        "SELECT s.time, l.paths, s.data FROM samples s JOIN layouts l ON l.num = s.layout "
        "WHERE s.run = ? ORDER BY s.time DESC LIMIT 1", (run,),
    ).fetchone()
    return None if row is None else (row[0], row[1], row[2])


def point_span(shard: Shard, run: int) -> tuple[int, int] | None:
    """The rowids of the run's first and last point, or ``None`` without any."""
    c = shard.conn
    first = c.execute("SELECT rowid FROM points WHERE run = ? ORDER BY rowid LIMIT 1",
                      (run,)).fetchone()
    if first is None:
        return None
    last = c.execute("SELECT rowid FROM points WHERE run = ? ORDER BY rowid DESC LIMIT 1",
                     (run,)).fetchone()
    return int(first[0]), int(last[0])


def keysets(shard: Shard) -> dict[int, list[str]]:
    """Every key set of the shard (all runs): ``{num: [key, ...]}``. The table is small."""
    return {num: json.loads(keys) for num, keys in shard.conn.execute(
        "SELECT num, keys FROM keysets")}


def points_in_bins(shard: Shard, run: int, bounds: list[tuple[int, int]],
                   keyset_nums: Iterable[int]) -> list[tuple[Any, ...]]:
    """The first point of each rowid bin ``[lo, hi)`` whose key set is one of ``keyset_nums``.

    Returns ``(rowid, step, time, keyset, fmt, vals)`` rows in rowid order. Each bin's search
    stops after :data:`MAX_SCAN_ROWS` rows, so the cost is bounded whatever the keys' rarity.
    """
    nums = sorted({int(k) for k in keyset_nums})
    if not nums:
        return []
    marks = ", ".join("?" for _ in nums)
    sql = (f"SELECT rowid, step, time, keyset, fmt, vals FROM ("
           f"SELECT rowid, step, time, keyset, fmt, vals FROM points "
           f"WHERE run = ? AND rowid >= ? AND rowid < ? ORDER BY rowid LIMIT {MAX_SCAN_ROWS}"
           f") WHERE keyset IN ({marks}) LIMIT 1")
    out = []
    c = shard.conn
    for lo, hi in bounds:
        row = c.execute(sql, (run, lo, hi, *nums)).fetchone()
        if row is not None:
            out.append(tuple(row))
    return out

