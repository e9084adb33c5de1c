"""Writes snapshots into a run's shard, keeping running per-path statistics beside them.

The statistics (min, max, sum, count, last of every numeric path) make ``show`` and ``ls`` cost
the same for a one-minute run and a one-week run: readers never scan the samples for a summary.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from .errors import StoreError
from .store import Shard
from .store.codec import dumps_exact, encode_sample, flatten

log = logging.getLogger("tracklab.recorder")


class SampleRecorder:
    """A sampler sink. Opens its own connection lazily, in the sampling thread."""

    def __init__(self, shard_path: str, run_num: int, heartbeat: bool = True) -> None:
        self.shard_path = shard_path
        self.run_num = run_num
        self.heartbeat = heartbeat
        self.stats: dict[str, list[Any]] = {}
        self.count = 0
        self.dropped = 0
        self._pid = os.getpid()
        self._shard: Shard | None = None
        self._warned = False
        self._lock = threading.Lock()

    def __call__(self, snap: dict[str, Any]) -> None:
        t = snap["timestamp"] / 1000.0
        body = {k: v for k, v in snap.items() if k not in ("nodeId", "timestamp")}
        paths, values = flatten(body)
        with self._lock:
            self._update(paths, values)
            self.count += 1
            try:
                if self._shard is None:
                    self._shard = Shard(self.shard_path)
                layout = self._shard.layout(tuple(paths))
                self._shard.write_sample(
                    self.run_num, t, layout, encode_sample(values), self._pid, self.count,
                    dumps_exact(self.stats), self.heartbeat,
                )
                log.debug("sample written to %s (%d values)", self.shard_path, len(values))
            except (StoreError, OSError, _sqlite_error()) as exc:
                self.dropped += 1
                if not self._warned:
                    self._warned = True
                    log.warning("tracklab: warning: cannot write system samples (%s); the run goes on "
                                "without them", exc)

    def _update(self, paths: list[str], values: list[Any]) -> None:
        stats = self.stats
        for p, v in zip(paths, values):
            if type(v) not in (int, float) or v != v:
                continue
            s = stats.get(p)
            if s is None:
                stats[p] = [v, v, v, 1, v]
            else:
                if v < s[0]:
                    s[0] = v
                if v > s[1]:
                    s[1] = v
                s[2] += v
                s[3] += 1
                s[4] = v

    def close(self) -> None:
        with self._lock:
            if self._shard is not None:
                self._shard.close()
                self._shard = None


def _sqlite_error() -> type[Exception]:
    import sqlite3

    return sqlite3.Error


def peaks(stats: dict[str, list[Any]]) -> dict[str, Any]:
    """The headline figures of a run from sample statistics (kept in the run record)."""

    def get(path: str, i: int) -> Any:
        s = stats.get(path)
        return s[i] if s else None

    def mean(path: str) -> Any:
        s = stats.get(path)
        return round(s[2] / s[3], 2) if s and s[3] else None

    out: dict[str, Any] = {
        "cpu_peak": get("cpu.overall", 1), "cpu_mean": mean("cpu.overall"),
        "memory_peak": get("memory.usage", 1), "memory_used_peak": get("memory.used", 1),
        "process_rss_peak": get("process.rss", 1), "process_cpu_peak": get("process.cpu", 1),
        "process_count_peak": get("process.count", 1),
        "swap_used_peak": get("memory.swap.used", 1),
    }
    gpus = sorted({p.split(".")[1] for p in stats if p.startswith("accelerators.")}, key=int)
    out["gpus"] = [
        {"id": int(g), "utilization_peak": get(f"accelerators.{g}.utilization", 1),
         "utilization_mean": mean(f"accelerators.{g}.utilization"),
         "memory_peak": get(f"accelerators.{g}.memory.used", 1),
         "tree_memory_peak": get(f"accelerators.{g}.treeMemory", 1),
         "energy": get(f"accelerators.{g}.energy", 4)}
        for g in gpus
    ]
    return out
