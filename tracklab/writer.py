"""The background writer behind ``log()``: the training thread only appends to a deque.

Every ``FLUSH_EVERY_S`` (or sooner when the queue is long, or on ``flush()``) the writer drains
the queue, validates key names once per distinct key set, packs each row, keeps per-key running
statistics and writes it all in one transaction. Store failures warn once and drop: they never
reach the training loop.
"""

from __future__ import annotations

import logging
import math
import os
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Literal

from .errors import StoreError
from .sdk import ITEM_WIDTH
from .store import Shard
from .store.codec import decode_values, dumps_exact, encode_values

log = logging.getLogger("tracklab.writer")

FLUSH_EVERY_S = 1.0
MAX_KEY_LENGTH = 256
MAX_KEYS_PER_RUN = 10_000
CHUNK = 1_000             # rows per transaction: bounds the writer's memory and its GIL holds
SLICE = 250               # calls handled between two yields of the GIL (~0.5 ms of work)


class PointWriter:
    def __init__(self, connect: Callable[[], Shard], run_num: int, proc_num: int,
                 heartbeat: bool = False, shard_path: str | None = None) -> None:
        self.shard_path = shard_path
        # flat: ITEM_WIDTH items per log() call (step, time, keys, fmt, packed values), all
        # of them objects the garbage collector does not track
        self.queue: deque[Any] = deque()
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
        self._warned: set[str] = set()
        self._thread = threading.Thread(target=self._loop, name="tracklab-writer", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def flush(self, timeout: float = 5.0) -> bool:
        """Write everything queued so far. False if that took longer than ``timeout``."""
        if not self._thread.is_alive():
            return not self.queue
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
        return (self.written, self.dropped, len(self.queue), wal)

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
        q = self.queue
        while q:
            n = min(len(q) // ITEM_WIDTH, CHUNK)
            pop = q.popleft
            items = [(pop(), pop(), pop(), pop(), pop()) for _ in range(n)]
            if shard is None:
                self.dropped += n
                continue
            rows, touched = self._rows(shard, items)
            if not rows and not self._heartbeat:
                continue
            stats = [self._stat_row(k) for k in touched]
            try:
                shard.write_points(rows, stats,
                                   (time.time(), self.run_num) if self._heartbeat else None)
                self.written += len(rows)
            except (sqlite3.Error, StoreError, OSError) as exc:
                self.dropped += len(rows)
                self._warn_once("write", f"tracklab: warning: writing metrics failed ({exc}); dropping "
                                "them, training goes on")
        if self._heartbeat and shard is not None and not q:
            try:
                shard.update_run(self.run_num, heartbeat_at=time.time())
            except (sqlite3.Error, StoreError):
                pass

    def _rows(self, shard: Shard, items: list[Any]) -> tuple[list[tuple[Any, ...]], set[str]]:
        """Pack queued calls into rows, and fold their values into the per-key statistics.

        Calls are taken in runs that share a key set (the usual case: the same dict every
        step), so statistics are computed a column at a time with C-level builtins.
        """
        rows: list[tuple[Any, ...]] = []
        touched: set[str] = set()
        run, proc = self.run_num, self.proc_num
        i, n = 0, len(items)
        while i < n:
            keys = items[i][2]
            j = i + 1
            while j < n and j - i < SLICE and items[j][2] == keys:
                j += 1
            group = items[i:j]
            i = j
            ks: tuple[int, list[int] | None] | Literal[False] | None  # False: not looked up yet
            ks = self._keysets.get(keys, False)
            if ks is False:
                ks = self._keysets[keys] = self._keyset(shard, keys)
            if ks is None:
                continue
            num, keep = ks
            vals_list = [decode_values(fmt, blob) for _s, _t, _k, fmt, blob in group]
            if keep is None:
                rows.extend((run, proc, step, t, num, fmt, blob)
                            for step, t, _k, fmt, blob in group)
            else:  # some names were refused: re-pack the values that stay
                keys = tuple(keys[k] for k in keep)
                vals_list = [tuple(v[k] for k in keep) for v in vals_list]
                for (step, t, _k, _f, _b), vals in zip(group, vals_list):
                    fmt, blob = encode_values(vals)
                    rows.append((run, proc, step, t, num, fmt, blob))
            last_step, last_time = group[-1][0], group[-1][1]
            for key, col in zip(keys, zip(*vals_list)):
                touched.add(key)
                self._fold(key, col, last_step, last_time)
            time.sleep(0)  # let the training thread in: no log() call waits on a long slice
        return rows, touched

    def _fold(self, key: str, col: tuple[Any, ...], last_step: int, last_time: float) -> None:
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
            self._warn_once("write", f"tracklab: warning: writing metrics failed ({exc}); dropping them")
            return None
        return num, (None if len(keep) == len(keys) else keep)

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
