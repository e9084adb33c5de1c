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

from .errors import StoreError
from .store import Shard
from .store.codec import dumps_exact, encode_sample, flatten

log = logging.getLogger("tracklab.recorder")

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
                    _merge(stats, p, lo, hi, total, len(col), col[-1])
                    continue
            elif not kinds & _NUMBERS:
                continue  # text, None, bools
            for v in col:
                tv = type(v)
                if (tv is float or tv is int) and v == v:
                    _merge(stats, p, v, v, v, 1, v)

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
            from .store import space

            if space.is_full(exc):  # one line for every writer of this process
                if space.first_report():
                    log.warning(space.full_message(exc))
                return
            log.warning("tracklab: warning: cannot write system samples (%s); the run goes on "
                        "without them", exc)


_NUMBERS = frozenset((int, float))


def _merge(stats: dict[str, list[Any]], path: str, lo: Any, hi: Any, total: Any, n: int,
           last: Any) -> None:
    s = stats.get(path)
    if s is None:
        stats[path] = [lo, hi, total, n, last]
        return
    if lo < s[0]:
        s[0] = lo
    if hi > s[1]:
        s[1] = hi
    s[2] += total
    s[3] += n
    s[4] = last


def _sqlite_error() -> type[Exception]:
    import sqlite3

    return sqlite3.Error


def peaks(stats: dict[str, list[Any]], last_energy: dict[str, Any] | None = None,
          carbon_intensity: float | None = None) -> dict[str, Any]:
    """The headline figures of a run from sample statistics (kept in the run record, so that
    ``ls`` shows them without reading samples).

    Args:
        stats: ``SampleRecorder.stats``: ``{path: [min, max, sum, count, last]}``.
        last_energy: the run's newest ``energy`` section (names the sources).
        carbon_intensity: grid intensity in gCO2e/kWh; adds ``energy.co2_g``.

    Returns:
        Peaks and means of the process tree, host, container and each GPU (bytes, percent),
        ``gpu_memory_peak`` (bytes, the highest of any GPU), ``gpu_utilization_mean`` (over the
        GPUs that report it) and ``energy`` (see :func:`energy_totals`).
    """

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
        "process_cpu_mean": mean("process.cpu"), "process_uss_peak": get("process.uss", 1),
        # the container's cgroup (None without one, or without a limit for the percentages)
        "container_memory_limit": get("container.memoryLimit", 1),
        "container_memory_peak": get("container.memoryWorkingSet", 1),
        "container_memory_percent_peak": get("container.memoryPercent", 1),
        "container_cpu_quota": get("container.cpuQuota", 0),
        "container_cpu_percent_mean": mean("container.cpuPercent"),
        "container_cpu_throttled_mean": mean("container.cpuThrottled"),
        "oom_kills": (get("container.oomKills", 1) - get("container.oomKills", 0)
                      if stats.get("container.oomKills") else None),
    }
    gpus = sorted({p.split(".")[1] for p in stats if p.startswith("accelerators.")}, key=int)
    out["gpus"] = [
        {"id": int(g), "utilization_peak": get(f"accelerators.{g}.utilization", 1),
         "utilization_mean": mean(f"accelerators.{g}.utilization"),
         "memory_peak": get(f"accelerators.{g}.memory.used", 1),
         "tree_memory_peak": get(f"accelerators.{g}.treeMemory", 1),
         "memory_percent_peak": get(f"accelerators.{g}.memory.percentage", 1),
         "energy": get(f"accelerators.{g}.energy", 4)}
        for g in gpus
    ]
    # the run's own GPU memory when it could be attributed to its processes, else whole GPUs'
    trees = [g["tree_memory_peak"] for g in out["gpus"] if g["tree_memory_peak"] is not None]
    mems = trees or [g["memory_peak"] for g in out["gpus"] if g["memory_peak"] is not None]
    out["gpu_memory_peak"] = max(mems) if mems else None
    out["gpu_memory_peak_of"] = ("run" if trees else "gpu") if mems else None
    utils = [g["utilization_mean"] for g in out["gpus"] if g["utilization_mean"] is not None]
    out["gpu_utilization_mean"] = round(sum(utils) / len(utils), 2) if utils else None
    out["energy"] = energy_totals(get("energy.cpu", 1), get("energy.gpu", 1), last_energy,
                                  bool(gpus), carbon_intensity)
    return out


def energy_totals(cpu_j: float | None, gpu_j: float | None, last: dict[str, Any] | None,
                  has_gpus: bool, carbon_intensity: float | None = None) -> dict[str, Any]:
    """A run's energy: ``cpu_j`` and ``gpu_j`` (joules, ``None`` when unreadable), their sources,
    ``total_j`` and ``total_kwh`` over the readable ones, ``missing`` (the sources that could not
    be read, so a total that leaves one out says so), and with ``carbon_intensity`` (gCO2e/kWh)
    ``co2_g``. Nothing is estimated for a missing source."""
    from .collectors.energy import co2_grams, joules_to_kwh

    last = last or {}
    missing = ([] if cpu_j is not None else ["cpu"]) + (
        ["gpu"] if has_gpus and gpu_j is None else [])
    known = [j for j in (cpu_j, gpu_j) if j is not None]
    total = round(sum(known), 3) if known else None
    kwh = joules_to_kwh(total)
    return {"cpu_j": cpu_j, "cpu_source": last.get("cpuSource") or ("rapl" if cpu_j is not None
                                                                    else None),
            "gpu_j": gpu_j, "gpu_source": last.get("gpuSource") if gpu_j is not None else None,
            "total_j": total, "total_kwh": None if kwh is None else round(kwh, 9),
            "missing": missing, "carbon_intensity": carbon_intensity,
            "co2_g": None if carbon_intensity is None or kwh is None
            else round(co2_grams(kwh, carbon_intensity) or 0.0, 6)}
