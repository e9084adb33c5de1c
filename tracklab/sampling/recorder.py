"""Writes snapshots into a run's shard, keeping running per-path statistics beside them.

The statistics (min, max, sum, count, last of every numeric path) make ``show`` and ``ls`` cost
the same for a one-minute run and a one-week run: readers never scan the samples for a summary.
They are kept in memory on every sample and stored every ``STATS_EVERY_S`` and at ``close()``
(their JSON is some 15 KB for a full sample: storing it every sample was a third of the
sampler's cost); the sample count is stored with every sample. A wrapper killed outright thus
leaves statistics up to ``STATS_EVERY_S`` older than its last sample, which readers of a live
or crashed run show; every sample itself is stored.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from typing import Any

from tracklab.errors import StoreError
from tracklab.sampling.stats import fold
from tracklab.store import Shard
from tracklab.store.codec import dumps_exact, encode_sample, flatten

log = logging.getLogger("tracklab.sampling.recorder")

STATS_EVERY_S = 2.0
FOLD_ROWS = 50  # samples held before folding into the statistics (~8 KB each, full with 8 GPUs)
HEARTBEAT_EVERY_S = 1.0  # readers call a run crashed after 30 s without one; a crashed run ends at it


class SampleRecorder:
    """A sampler sink. Opens its own connection lazily, in the sampling thread."""

    def __init__(self, shard_path: str, run_num: int, heartbeat: bool = True) -> None:
        self.shard_path = shard_path
        self.run_num = run_num
        self.heartbeat = heartbeat
        self._stats: dict[str, list[Any]] = {}
        # samples not yet folded into the statistics: rows of values under one list of paths,
        # folded a column at a time (builtins over a column, not Python over every value)
        self._rows: list[list[Any]] = []
        self._row_paths: tuple[str, ...] = ()
        self.count = 0
        self.dropped = 0
        self.last_energy: dict[str, Any] | None = None  # the newest ``energy`` section
        self._pid = os.getpid()
        self._shard: Shard | None = None
        self._warned = False
        self._lock = threading.Lock()
        self._stats_at: float | None = None  # monotonic time the statistics were last stored
        self._stats_dirty = False
        self._beat_at = -HEARTBEAT_EVERY_S

    def __call__(self, snap: dict[str, Any], stats_now: bool = False) -> None:
        t = snap["timestamp"] / 1000.0
        body = {k: v for k, v in snap.items() if k not in ("nodeId", "timestamp")}
        paths, values = flatten(body)
        if body.get("energy") is not None:
            self.last_energy = body["energy"]  # its source names are text: not in the stats
        key = tuple(paths)
        with self._lock:
            if key != self._row_paths:
                self._fold()
                self._row_paths = key
            self._rows.append(values)
            if len(self._rows) >= FOLD_ROWS:
                self._fold()
            self.count += 1
            try:
                if self._shard is None:
                    self._shard = Shard(self.shard_path)
                layout = self._shard.layout(key)
                now = time.monotonic()
                due = (stats_now or self._stats_at is None
                       or now - self._stats_at >= STATS_EVERY_S)
                beat = self.heartbeat and now - self._beat_at >= HEARTBEAT_EVERY_S
                if due:
                    self._fold()
                self._shard.write_sample(
                    self.run_num, t, layout, encode_sample(values), self._pid, self.count,
                    dumps_exact(self._stats) if due else None, beat,
                )
                if beat:
                    self._beat_at = now
                if due:
                    self._stats_at = now
                self._stats_dirty = not due
                log.debug("sample written to %s (%d values)", self.shard_path, len(values))
            except (StoreError, OSError, _sqlite_error()) as exc:
                self.dropped += 1
                self._warn(exc)

    @property
    def stats(self) -> dict[str, list[Any]]:
        """``{path: [min, max, sum, count, last]}`` over every numeric reading so far (NaN and
        non-numbers left out)."""
        with self._lock:
            self._fold()
            return self._stats

    def _update(self, paths: list[str], values: list[Any]) -> None:
        """Fold one row of values in now (outside the sampling path)."""
        with self._lock:
            self._fold()
            self._fold_rows(paths, [values])

    def _fold(self) -> None:
        if self._rows:
            rows, self._rows = self._rows, []
            self._fold_rows(self._row_paths, rows)

    def _fold_rows(self, paths: Sequence[str], rows: list[list[Any]]) -> None:
        stats = self._stats
        for p, col in zip(paths, zip(*rows)):
            kinds = set(map(type, col))
            if kinds <= _NUMBERS:
                lo, hi, total = min(col), max(col), sum(col)
                if total == total:  # no NaN in the column (nor inf - inf): the fast way holds
                    fold(stats, p, lo, hi, total, len(col), col[-1])
                    continue
            elif not kinds & _NUMBERS:
                continue  # text, None, bools
            for v in col:
                tv = type(v)
                if (tv is float or tv is int) and v == v:
                    fold(stats, p, v, v, v, 1, v)

    def close(self) -> None:
        """Store the statistics if samples came since they were last stored, and release the
        connection (a later sample reopens it)."""
        with self._lock:
            if self._shard is None:
                return
            try:
                self._store_stats()
            finally:
                self._shard.close()
                self._shard = None

    def flush_stats(self) -> None:
        """Store the statistics now if samples came since they were last stored."""
        with self._lock:
            self._store_stats()

    def _store_stats(self) -> None:
        if not self._stats_dirty or self._shard is None:
            return
        self._fold()
        try:
            self._shard.write_sample_stats(self.run_num, self._pid, self.count,
                                           dumps_exact(self._stats))
            self._stats_dirty = False
            self._stats_at = time.monotonic()
        except (StoreError, OSError, _sqlite_error()) as exc:
            self._warn(exc)

    def _warn(self, exc: Exception) -> None:
        if not self._warned:  # once: a full disk fails every write after the first
            self._warned = True
            from tracklab.store import space

            if space.is_full(exc):  # one line for every writer of this process
                if space.first_report():
                    log.warning(space.full_message(exc))
                return
            log.warning("tracklab: warning: cannot write system samples (%s); the run goes on "
                        "without them", exc)


_NUMBERS = frozenset((int, float))


def _sqlite_error() -> type[Exception]:
    import sqlite3

    return sqlite3.Error


