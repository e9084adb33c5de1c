"""A run's channel: the one way this process writes system samples into a run.

Every monitor of a run (the background :class:`~tracklab.sdk.system_monitor.RunSystemMonitor`, the
per-family monitors of :mod:`tracklab.sdk.monitors`, their context managers) writes through the
run's :class:`RunChannel`, so there is one :class:`~tracklab.sampling.recorder.SampleRecorder` per run:
the store keeps the running statistics of samples per (run, process), and two recorders would
overwrite each other's. The channel also owns the collectors behind on-demand readings, and it
creates a run id that no run has yet on its first write.
"""

from __future__ import annotations

import copy
import logging
import os
import threading
import time
from typing import Any

from tracklab import _env
from tracklab.collectors import SystemCollectors
from tracklab.sampling.recorder import SampleRecorder

log = logging.getLogger("tracklab.sdk.samples")

# On-demand readings of rate families (disk and network bytes/s, CPU percent) need a window:
# the first one waits for it, and readings younger than this are reused rather than retaken.
FRESH_S = 0.1
_RATE_FAMILIES = frozenset({"cpu", "disk", "network", "process"})

_Key = tuple[str, str, str]  # (store dir, node, run id)
_channels: dict[_Key, RunChannel] = {}
# One recorder per (shard, run) for the life of the process: its running statistics must outlive
# a channel that cleanup_run_monitor() closed while a late writer still holds it.
_recorders: dict[tuple[str, int], SampleRecorder] = {}
_lock = threading.RLock()


class RunTarget:
    """Where a monitor writes: the run's shard and row, created on first use."""

    def __init__(self, run_id: str, project: str | None, node_id: str | None,
                 store_dir: str | None = None, run: Any = None) -> None:
        self.run_id = run_id
        self.project = project
        self.node = _env.node_id(node_id)
        self.dir = _env.store_dir(store_dir if store_dir else getattr(run, "dir", None))
        self.run = run
        self.created = False
        self._resolved: tuple[str, int] | None = None
        self._lock = threading.Lock()

    def resolve(self) -> tuple[str, int]:
        """``(shard_path, run_num)``. Raises StoreError when the store is unusable."""
        with self._lock:
            if self._resolved is None:
                from tracklab import store
                from tracklab.store.codec import dumps_exact

                run = self.run
                if run is not None and run._shard_path and run._run_num is not None \
                        and run.node == self.node:
                    self._resolved = (run._shard_path, run._run_num)
                else:
                    shard = store.open_shard(self.dir, self.node)
                    try:
                        num = shard.run_num(self.run_id)
                        if num is None:
                            now = time.time()
                            num = shard.insert_run({
                                "id": self.run_id, "name": self.run_id,
                                "project": self.project or "default", "status": "running",
                                "started_at": now, "heartbeat_at": now, "owner": "sdk",
                                "pid": os.getpid(), "host": _env.hostname(), "node": self.node,
                                "cwd": os.getcwd(), "command": dumps_exact([]),
                            })
                            self.created = True
                            log.debug("created run %s in %s (first write)", self.run_id, shard.path)
                        self._resolved = (shard.path, num)
                    finally:
                        shard.close()
            return self._resolved


class RunChannel:
    """The one way into a run's samples from this process, plus collectors for on-demand reads.

    Args:
        target: where the samples go.
    """

    def __init__(self, target: RunTarget) -> None:
        self.target = target
        self.node_id = target.node
        self.closed = False
        self._recorder: SampleRecorder | None = None
        self._collectors: SystemCollectors | None = None
        self._primed_at = 0.0
        self._cache: dict[str, tuple[float, Any]] = {}
        self._lock = threading.Lock()  # on-demand readings, one at a time: collectors keep state
        self._rec_lock = threading.Lock()
        self._store_warned = False

    # -- writing ------------------------------------------------------------------------------

    def record(self, snap: dict[str, Any], stats_now: bool = True) -> bool:
        """Write one snapshot (complete or partial) into the run. ``stats_now`` stores the running
        statistics with it, as a reading the user asked for should; periodic sampling passes
        False (they are then stored every few seconds, and by :meth:`flush_stats`).

        Returns False when nothing was written: the store refused, or ``TRACKLAB_MODE=disabled``.
        """
        if _env.disabled():
            return False
        rec = self._ensure_recorder()
        if rec is None:
            return False
        rec(snap, stats_now)
        return True

    def sample(self, snap: dict[str, Any]) -> None:
        """The periodic samplers' sink: :meth:`record` without storing statistics each time."""
        self.record(snap, stats_now=False)

    def flush_stats(self) -> None:
        """Store the running statistics if samples came since they were last stored."""
        with self._rec_lock:
            rec = self._recorder
        if rec is not None:
            rec.flush_stats()

    def _ensure_recorder(self) -> SampleRecorder | None:
        with self._rec_lock:
            if self._recorder is None:
                from tracklab.errors import StoreError

                try:
                    path, num = self.target.resolve()
                except StoreError as exc:
                    if not self._store_warned:
                        self._store_warned = True
                        log.warning("tracklab: warning: %s; system samples of run %s are not "
                                    "stored", exc, self.target.run_id)
                    return None
                with _lock:
                    rec = _recorders.get((path, num))
                    if rec is None:
                        rec = _recorders[(path, num)] = SampleRecorder(
                            path, num, heartbeat=self.target.created)
                self._recorder = rec
            return self._recorder

    def store_peaks(self) -> None:
        """Merge the peaks of this process's samples into the run's summary (``peaks``)."""
        with self._rec_lock:
            rec = self._recorder
        if rec is None or not rec.count or self.target._resolved is None:
            return
        from tracklab import store
        from tracklab.errors import StoreError
        from tracklab.sampling.stats import peaks
        from tracklab.store.edits import merge_summary

        path, num = self.target._resolved
        try:
            shard = store.Shard(path, timeout=store.FINAL_TIMEOUT_S)
            try:
                merge_summary(shard, num, {"peaks": peaks(rec.stats, rec.last_energy)})
            finally:
                shard.close()
        except StoreError as exc:
            log.warning("tracklab: warning: could not record the peaks of run %s (%s)",
                        self.target.run_id, exc)

    # -- on-demand readings ---------------------------------------------------------------------

    def read(self, families: tuple[str, ...]) -> dict[str, Any]:
        """A snapshot of ``families`` (API.md §4 format), read now or at most FRESH_S ago.

        The first reading of a rate family waits until FRESH_S after the collectors were made,
        so that it measures a real window rather than microseconds. Returns a copy.
        """
        with self._lock:
            collectors = self._ensure_collectors()
            now = time.monotonic()
            stale = tuple(f for f in families
                          if f not in self._cache or now - self._cache[f][0] >= FRESH_S)
            if stale:
                wait = FRESH_S - (now - self._primed_at)
                if wait > 0 and _RATE_FAMILIES.intersection(stale):
                    time.sleep(wait)
                t0 = time.perf_counter()
                fresh = collectors.snapshot(stale)
                taken = time.monotonic()
                for f in stale:
                    self._cache[f] = (taken, fresh[f])
                log.debug("reading of %s for run %s taken in %.2f ms", ",".join(stale),
                          self.target.run_id, (time.perf_counter() - t0) * 1e3)
            snap: dict[str, Any] = {"nodeId": self.node_id, "timestamp": int(time.time() * 1000)}
            for f in families:
                snap[f] = copy.deepcopy(self._cache[f][1])
            return snap

    def gpu_info(self) -> list[dict[str, Any]] | None:
        """The GPUs' static facts, given GPU_DEADLINE_S: ``None`` when NVML did not answer."""
        with self._lock:
            collectors = self._ensure_collectors()
        return collectors.gpu_info()

    def _ensure_collectors(self) -> SystemCollectors:
        if self._collectors is None:
            self._collectors = SystemCollectors(self.node_id, disk_path=self.target.dir)
            self._collectors.prime()
            self._primed_at = time.monotonic()
        return self._collectors

    # -- the end ----------------------------------------------------------------------------------

    def close(self) -> None:
        """Release the connection and collectors; a run this channel created is marked finished.

        A closed channel still works (it reopens what it needs), so a late writer loses nothing.
        """
        self.closed = True
        with self._rec_lock:
            rec = self._recorder
        if rec is not None:
            rec.close()  # the connection only: a later write reopens it, statistics intact
        with self._lock:
            collectors, self._collectors = self._collectors, None
            self._cache.clear()
        if collectors is not None:
            collectors.close()
        target = self.target
        if target.created and target._resolved:
            from tracklab import store
            from tracklab.errors import StoreError

            path, num = target._resolved
            try:
                shard = store.Shard(path)
                try:
                    shard.update_run(num, status="finished", exit_code=0, ended_at=time.time())
                finally:
                    shard.close()
            except StoreError as exc:
                log.warning("tracklab: warning: could not record the end of run %s (%s)",
                            target.run_id, exc)
            target.created = False


def channel_for(run_id: str, project: str | None = None, node_id: str | None = None,
                run: Any = None) -> RunChannel:
    """The channel of ``run_id`` on this node (``run``: the SDK run with that id, if any)."""
    if run is None:
        run = sdk_run(run_id)
    node = _env.node_id(node_id)
    key = (_env.store_dir(getattr(run, "dir", None)), node, run_id)
    with _lock:
        chan = _channels.get(key)
        if chan is None:
            project = project if project is not None else getattr(run, "project", None)
            chan = _channels[key] = RunChannel(RunTarget(run_id, project, node, run=run))
            _register_exit()
        return chan


def sdk_run(run_id: str) -> Any:
    """The current :func:`tracklab.init` run when its id is ``run_id``, else ``None``."""
    from tracklab.sdk import current

    cur = current.run
    return cur if cur is not None and cur.id == run_id else None


def run_id_of(run: Any) -> str:
    """A run id from a string or anything with an ``id`` (a :class:`~tracklab.Run`)."""
    value = getattr(run, "id", run)
    if not isinstance(value, str) or not value:
        raise TypeError(f"run_id must be a run id (a non-empty string) or a Run, not {run!r}")
    return value


def close_channels(run_id: str, keep: bool = False) -> int:
    """Close and forget every channel of ``run_id`` (all nodes and stores); returns how many.

    ``keep`` leaves them all open (a monitor of the run is still registered).
    """
    if keep:
        return 0
    with _lock:
        chans = [_channels.pop(k) for k in list(_channels) if k[2] == run_id]
    for chan in chans:
        chan.close()
    return len(chans)


def close_all() -> None:
    """Close every channel and recorder (at interpreter exit, and between tests)."""
    with _lock:
        chans = list(_channels.values())
        _channels.clear()
        recs = list(_recorders.values())
        _recorders.clear()
    for chan in chans:
        chan.close()
    for rec in recs:
        rec.close()


_exit_registered = False


def _register_exit() -> None:
    global _exit_registered
    if not _exit_registered:
        _exit_registered = True
        import atexit

        atexit.register(close_all)
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_forget_after_fork)


def _forget_after_fork() -> None:
    """In a forked child, the parent's channels are the parent's: closing them at the child's
    exit would end a run the parent still samples, and a lock a sampling thread held at the
    fork stays held in the child forever."""
    global _lock
    _lock = threading.RLock()
    _channels.clear()
    _recorders.clear()
