"""The background writer behind ``log()``: the training thread only appends to a byte queue.

Every ``FLUSH_EVERY_S`` (or sooner when the queue is long, or on ``flush()``) the writer drains
the queue (:mod:`tracklab.sdk.pointqueue`) a segment at a time, validates key names once per distinct
key set, keeps per-key running statistics and writes the rows in transactions of about ``CHUNK``.
Store failures warn once and drop: they never reach the training loop.
"""

from __future__ import annotations

import logging
import math
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from itertools import chain, groupby
from operator import itemgetter
from typing import Any

from tracklab.errors import StoreError
from tracklab.sdk.pointqueue import HEADER, PointQueue, Segment, layouts
from tracklab.store import Shard
from tracklab.store.codec import decode_values, dumps_exact, encode_values
from tracklab.store.rollups import Rollups

log = logging.getLogger("tracklab.sdk.writer")

FLUSH_EVERY_S = 1.0
MAX_KEY_LENGTH = 256
MAX_KEYS_PER_RUN = 10_000
# A writer that cannot keep up for this long (a hung disk) costs points, not the machine's memory.
MAX_QUEUED_BYTES = 100 * 1024 * 1024  # ~1,300,000 calls of 8 floats
CHUNK = 4_096  # calls per transaction (their packed segments are what the writer holds)
# The writer's connection only appends: a few pages are hot. SQLite's default cache (2 MB) would
# be a fifth of the memory budget of a process that logs flat out.
PAGE_CACHE_KIB = 256

# Rows for write_points(): key set, format, how many rows, and their step, time, vals, step, ...
Batch = tuple[int, "str | None", int, Iterable[Any]]


class PointWriter:
    def __init__(self, connect: Callable[[], Shard], run_num: int, proc_num: int,
                 heartbeat: bool = False, shard_path: str | None = None) -> None:
        self.shard_path = shard_path
        self.queue = PointQueue(MAX_QUEUED_BYTES)
        self.run_num = run_num
        self.proc_num = proc_num
        self.written = 0
        self.dropped = 0
        self._connect = connect
        self._heartbeat = heartbeat
        self._wake = threading.Event()
        self._stopping = False
        self._acks: list[threading.Event] = []
        self._keysets: dict[tuple[Any, ...], tuple[int, list[int] | None] | None] = {}
        self._keys_seen: set[str] = set()
        self._stats: dict[str, list[Any]] = {}
        self._rollups = Rollups(run_num, proc_num)
        self._warned: set[str] = set()
        self._thread = threading.Thread(target=self._loop, name="tracklab-writer", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        # Set once, not on every call past the threshold: each set() takes the event's lock,
        # which the waking writer needs too, and a training thread hammering it starves it.
        if not self._wake.is_set():
            self._wake.set()

    def flush(self, timeout: float = 5.0) -> bool:
        """Write everything queued so far. False if that took longer than ``timeout``."""
        if not self._thread.is_alive():
            return not self.queue.nbytes
        ack = threading.Event()
        self._acks.append(ack)
        self._wake.set()
        return ack.wait(timeout)

    def close(self, timeout: float = 2.0) -> bool:
        """Write what is queued and stop. Waits as long as the writer makes progress, but gives
        up after ``timeout`` seconds without any (a hung disk): bounded, and nothing is lost
        while the store is merely slow."""
        self._stopping = True
        self._wake.set()
        last = self._progress()
        idle_since = time.monotonic()
        hard_stop = idle_since + max(60.0, timeout)
        while self._thread.is_alive():
            self._thread.join(0.1)
            now = self._progress()
            if now != last:
                last, idle_since = now, time.monotonic()
            elif time.monotonic() - idle_since > timeout or time.monotonic() > hard_stop:
                log.warning("tracklab: warning: the store did not respond within %.1f s; metrics not yet "
                            "written are dropped", timeout)
                return False
        return True

    def _progress(self) -> tuple[Any, ...]:
        """Changes while this writer, or any other writer of the shard, gets data to disk: a
        store busy with other ranks' commits is slow, not hung, so it is waited for."""
        wal: Any = None
        if self.shard_path:
            try:
                st = os.stat(self.shard_path + "-wal")
                wal = (st.st_size, st.st_mtime_ns)
            except OSError:
                pass
        return (self.written, self.dropped, self.queue.nbytes, wal)

    # -- the thread -------------------------------------------------------------------------------

    def _loop(self) -> None:
        shard: Shard | None = None
        try:
            shard = self._connect()
        except (StoreError, sqlite3.Error, OSError) as exc:
            self._warn_once("store", f"tracklab: warning: cannot open the run store ({exc}); metrics are "
                            "dropped, training goes on")
        while True:
            self._wake.wait(FLUSH_EVERY_S)
            self._wake.clear()
            acks, self._acks = self._acks, []
            try:
                self._drain(shard)
            except Exception:
                self._warn_once("bug", "tracklab: warning: the metric writer failed; some "
                                "metrics are lost (please report this)")
                log.debug("writer failure", exc_info=True)
            for ack in acks:
                ack.set()
            if self._stopping:
                self._drain(shard)
                break
        if shard is not None:
            shard.close()

    def _drain(self, shard: Shard | None) -> None:
        take = self.queue.take
        while True:
            # Segments of about CHUNK calls: they stay packed (80 B a call of 8 floats) until
            # write_points() pulls their rows, a statement's worth at a time.
            segs: list[Segment] = []
            calls = 0
            while calls < CHUNK and (seg := take()) is not None:
                segs.append(seg)
                calls += len(seg[3]) // seg[2]
            if not segs:
                break
            if shard is None:
                self.dropped += calls
                continue
            touched: set[str] = set()
            batches: list[Batch] = []
            for seg in segs:
                for b in self._batches(shard, seg, touched):
                    if batches and batches[-1][:2] == b[:2]:  # same key set and format
                        num, fmt, n, flat = batches[-1]
                        batches[-1] = (num, fmt, n + b[2], chain(flat, b[3]))  # fuller inserts
                    else:
                        batches.append(b)
                time.sleep(0)  # let the training thread in: no log() call waits on a long fold
            if batches:
                self._write(shard, batches, touched)
        if self._heartbeat and shard is not None:
            try:
                shard.update_run(self.run_num, heartbeat_at=time.time())
            except (sqlite3.Error, StoreError):
                pass

    def _write(self, shard: Shard, batches: list[Batch], touched: set[str]) -> None:
        n = sum(b[2] for b in batches)
        stats = [self._stat_row(k) for k in touched]
        run, proc = self.run_num, self.proc_num
        try:
            shard.write_points([(run, proc, num, fmt, flat) for num, fmt, _, flat in batches],
                               stats, (time.time(), self.run_num) if self._heartbeat else None,
                               self._rollups.take())
            self.written += n
        except (sqlite3.Error, StoreError, OSError) as exc:
            self.dropped += n
            self._warn_write(exc, "them, training goes on")

    def _batches(self, shard: Shard, seg: Segment, touched: set[str]) -> list[Batch]:
        """Fold a segment's values into the per-key statistics, and return its rows.

        A segment's calls share their keys and layout, so statistics are computed a column at a
        time with C-level builtins, for all-float calls straight from the packed doubles; and
        rows come out of the packed records as the insert pulls them.
        """
        keys, fmt, size, records = seg
        if keys in self._keysets:
            ks = self._keysets[keys]
        else:
            ks = self._keysets[keys] = self._keyset(shard, keys)
        if ks is None:
            return []
        num, keep = ks
        whole, values = layouts(fmt, size)
        last_step, last_time = HEADER.unpack_from(records, len(records) - size)
        if fmt is None and keep is None:  # the usual case: no Python object per call
            width = size // 8  # doubles per record: the header's two, then the values
            doubles = memoryview(records).cast("d")
            cols: Sequence[Sequence[Any]] = [doubles[j::width] for j in range(2, width)]
            steps: Sequence[Any] = memoryview(records).cast("q")[0::width]
            times: Sequence[Any] = doubles[1::width]
        else:
            if values is None:  # packed as JSON (an int beyond 64 bits)
                calls = [(step, t, *decode_values(fmt, blob))
                         for step, t, blob in whole.iter_unpack(records)]
            else:
                calls = list(values.iter_unpack(records))
            if keep is not None:  # some names were refused: only the others' values stay
                keys = tuple(keys[k] for k in keep)
                calls = [(c[0], c[1], *(c[2 + k] for k in keep)) for c in calls]
            columns = list(zip(*calls))
            steps, times, cols = columns[0], columns[1], columns[2:]
        for key, col in zip(keys, cols):
            touched.add(key)
            s = self._stats.get(key)
            self._rollups.fold(key, s[0] if s else 0, col, steps, times)
            self._fold(key, col, last_step, last_time)
        if keep is None:
            return [(num, fmt, len(records) // size,
                     chain.from_iterable(whole.iter_unpack(records)))]
        # packed anew, and the format may differ between calls: (step, time, fmt, vals) each
        packed = [(c[0], c[1], *encode_values(c[2:])) for c in calls]
        batches: list[Batch] = []
        for f, group in groupby(packed, key=itemgetter(2)):
            rows = [(step, t, blob) for step, t, _f, blob in group]
            batches.append((num, f, len(rows), chain.from_iterable(rows)))
        return batches

    def _fold(self, key: str, col: Sequence[Any], last_step: int, last_time: float) -> None:
        s = self._stats.get(key)
        if s is None:
            s = self._stats[key] = [0, 0, None, None, 0.0, None, None, None]
        s[0] += len(col)
        s[5], s[6], s[7] = col[-1], last_step, last_time
        try:
            total = float(sum(col))
        except OverflowError:
            total = math.nan
        if total != total:  # NaNs present (or inf - inf, or ints beyond float): the slow way
            clean = [_as_float(v) for v in col]
            nums = [v for v in clean if v == v]
            s[1] += len(clean) - len(nums)
            if not nums:
                return
            lo, hi, total = min(nums), max(nums), sum(nums)
        else:
            lo, hi = _as_float(min(col)), _as_float(max(col))
        if s[2] is None or lo < s[2]:
            s[2] = lo
        if s[3] is None or hi > s[3]:
            s[3] = hi
        s[4] += total

    def _stat_row(self, key: str) -> tuple[Any, ...]:
        c, nans, lo, hi, total, last, last_step, last_time = self._stats[key]
        return (self.run_num, self.proc_num, key, c, nans, lo, hi,
                total if math.isfinite(total) else None, dumps_exact(last), last_step, last_time)

    def _keyset(self, shard: Shard, keys: tuple[Any, ...]) -> tuple[int, list[int] | None] | None:
        keep = []
        for i, k in enumerate(keys):
            if not isinstance(k, str) or not k:
                self._warn_once(f"name:{k!r}", f"tracklab: warning: metric name {k!r} is not a non-empty "
                                "string; value dropped")
            elif len(k) > MAX_KEY_LENGTH:
                self._warn_once(f"long:{k[:40]}", f"tracklab: warning: metric name {k[:40]!r}... is "
                                f"longer than {MAX_KEY_LENGTH} characters; value dropped")
            elif k not in self._keys_seen and len(self._keys_seen) >= MAX_KEYS_PER_RUN:
                self._warn_once("too-many", f"tracklab: warning: more than {MAX_KEYS_PER_RUN} distinct "
                                f"metric names in this run; new names such as {k!r} are dropped")
            else:
                self._keys_seen.add(k)
                keep.append(i)
        if not keep:
            return None
        kept = tuple(keys[i] for i in keep)
        try:
            num = shard.keyset(kept)
        except (sqlite3.Error, StoreError) as exc:
            self._warn_write(exc, "them")
            return None
        return num, (None if len(keep) == len(keys) else keep)

    def _warn_write(self, exc: Exception, rest: str) -> None:
        from tracklab.store import space

        if space.is_full(exc):  # said once per process, and by the wrapper for its child
            if "write" not in self._warned and not space.under_wrapper() and \
                    space.first_report():
                log.warning(space.full_message(exc))
            self._warned.add("write")
            return
        self._warn_once("write", f"tracklab: warning: writing metrics failed ({exc}); dropping "
                        + rest)

    def _warn_once(self, what: str, message: str) -> None:
        if what not in self._warned:
            self._warned.add(what)
            # logging, not warnings: this runs in the writer thread, where a warning filter set
            # to "error" would kill the thread. Unconfigured logging still prints WARNING.
            log.warning(message)


def _as_float(v: Any) -> float:
    try:
        return float(v)
    except OverflowError:
        return math.inf if v > 0 else -math.inf
