"""The run system monitor of the user's document: one background sampler per (run, project).

``get_run_system_monitor(run_id)`` returns the same object for the same run and project. A run id
that no run has yet (the document's ``"my-run"``) is created in the store on first write.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from . import _env
from .collectors import SystemCollectors
from .recorder import SampleRecorder
from .sampler import Sampler

log = logging.getLogger("tracklab.monitoring")

DEFAULT_INTERVAL = 10.0
_monitors: dict[tuple[str, str | None], RunSystemMonitor] = {}
_registry_lock = threading.Lock()


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
                from . import store
                from .store.codec import dumps_exact

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
                        self._resolved = (shard.path, num)
                    finally:
                        shard.close()
            return self._resolved


class RunSystemMonitor:
    """Samples system metrics for one run in a background thread.

    Args:
        run_id: the run to write into (created on first write if it does not exist).
        project: the run's project (part of the monitor's identity).
        collect_interval: seconds between samples while started.
        node_id: the ``nodeId`` of every snapshot, default ``$TRACKLAB_NODE_ID`` or the host name.
    """

    def __init__(self, run_id: str, project: str | None = None,
                 collect_interval: float = DEFAULT_INTERVAL, node_id: str | None = None,
                 _run: Any = None) -> None:
        self.run_id = run_id
        self.project = project
        self.collect_interval = float(collect_interval)
        self.target = RunTarget(run_id, project, node_id, run=_run)
        self.node_id = self.target.node
        self.custom: dict[str, float] = {}
        self._callbacks: list[Callable[[dict[str, Any]], None]] = []
        self._recorder: SampleRecorder | None = None
        self._custom_writer: Any = None
        self._custom_step = 0
        self.collectors = SystemCollectors(self.node_id, disk_path=self.target.dir)
        self.sampler = Sampler(self.collectors, self.collect_interval, [self._sink],
                               name=f"tracklab-monitor-{run_id}")

    # -- the sink ---------------------------------------------------------------------------------

    def _sink(self, snap: dict[str, Any]) -> None:
        if self.custom:
            snap["custom"] = dict(self.custom)
        rec = self._ensure_recorder()
        if rec is not None:
            rec(snap)
        for fn in list(self._callbacks):
            try:
                fn(snap)
            except Exception:  # noqa: BLE001 - a user's callback must not stop sampling
                if not getattr(fn, "_tracklab_warned", False):
                    try:
                        fn._tracklab_warned = True  # type: ignore[attr-defined]
                    except AttributeError:
                        pass
                    log.warning("callback %r raised; sampling and other callbacks go on",
                                getattr(fn, "__name__", fn), exc_info=True)

    def _ensure_recorder(self) -> SampleRecorder | None:
        if self._recorder is None:
            from .errors import StoreError

            try:
                path, num = self.target.resolve()
            except StoreError as exc:
                log.warning("tracklab: %s; system samples are not stored", exc)
                return None
            self._recorder = SampleRecorder(path, num, heartbeat=self.target.created)
        return self._recorder

    # -- the document's API ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start background sampling (idempotent): one sample now, then every interval."""
        self.sampler.start()
        log.debug("monitor for run %s started (every %.1f s)", self.run_id, self.collect_interval)

    def stop(self, timeout: float = 2.0) -> None:
        """Stop sampling (idempotent), taking one last sample; returns within ``timeout``."""
        if self.sampler._thread is not None:
            self.sampler.stop(timeout=timeout)
        if self._custom_writer is not None:
            self._custom_writer.close(timeout)
            self._custom_writer = None

    def add_callback(self, fn: Callable[[dict[str, Any]], None]) -> None:
        """Call ``fn(snapshot)`` with every sample this monitor takes."""
        self._callbacks.append(fn)

    def log_custom_metric(self, name: str, value: float) -> None:
        """Store a custom metric (e.g. ``custom.temperature``) with the run's samples."""
        from .sdk import _PLAIN, _to_number

        num = value if type(value) in _PLAIN else _to_number(value)
        if num is None or not isinstance(name, str) or not name:
            import warnings

            from .errors import TracklabWarning

            warnings.warn(f"tracklab: custom metric {name!r} = {value!r} is not a number; "
                          "dropped", TracklabWarning, stacklevel=2)
            return
        self.custom[name] = num
        writer = self._writer()
        if writer is not None:
            writer.queue.append((self._custom_step, time.time(), (name,), (num,)))
            self._custom_step += 1

    def _writer(self) -> Any:
        if self._custom_writer is None:
            from . import store
            from .errors import StoreError
            from .writer import PointWriter

            try:
                path, num = self.target.resolve()
                shard = store.Shard(path)
                try:
                    rank, local_rank = _env.rank_env()
                    proc = shard.add_proc(num, os.getpid(), rank, local_rank, _env.hostname(),
                                          time.time())
                finally:
                    shard.close()
            except StoreError as exc:
                log.warning("tracklab: %s; custom metrics are not stored", exc)
                return None
            self._custom_writer = PointWriter(lambda: store.Shard(path), num, proc)
            _register_exit()
        return self._custom_writer

    def flush(self, timeout: float = 5.0) -> None:
        if self._custom_writer is not None:
            self._custom_writer.flush(timeout)

    def get_current_metrics(self) -> dict[str, Any]:
        """The latest snapshot (API.md §4 format), taking one now if none exists yet."""
        snap = self.sampler.latest
        if snap is None:
            snap = self.sampler.take()
        return snap

    def get_system_info(self) -> dict[str, Any]:
        """Static facts: platform, cpu_model, gpu_info, memory_total (bytes), counts, versions."""
        from .context import system_info

        return system_info(self.target.dir, gpus=self.collectors.gpu().info())

    def _finish(self) -> None:
        self.stop()
        rec, self._recorder = self._recorder, None
        if rec is not None:
            rec.close()
        self.collectors.close()
        if self.target.created and self.target._resolved:
            from . import store
            from .errors import StoreError

            path, num = self.target._resolved
            try:
                shard = store.Shard(path)
                try:
                    shard.update_run(num, status="finished", exit_code=0, ended_at=time.time())
                finally:
                    shard.close()
            except StoreError as exc:
                log.warning("tracklab: could not record the end of run %s (%s)", self.run_id, exc)


def get_run_system_monitor(run_id: str, project: str | None = None,
                           collect_interval: float = DEFAULT_INTERVAL,
                           node_id: str | None = None, _run: Any = None) -> RunSystemMonitor:
    """The monitor of ``(run_id, project)``, created on the first call and reused after."""
    if _run is None:
        from .sdk import current_run

        cur = current_run()
        if cur is not None and cur.id == run_id:
            _run = cur
    key = (run_id, project)
    with _registry_lock:
        mon = _monitors.get(key)
        if mon is None:
            mon = _monitors[key] = RunSystemMonitor(run_id, project, collect_interval, node_id,
                                                     _run=_run)
            _register_exit()
        return mon


def cleanup_run_monitor(run_id: str, project: str | None = None) -> None:
    """Stop and forget every monitor of ``run_id`` (all projects when ``project`` is None
    matches none stored under a project, so both spellings are tried). Safe to call twice."""
    with _registry_lock:
        keys = [k for k in _monitors if k[0] == run_id and (project is None or k[1] == project)]
        if project is not None and not keys:
            keys = [k for k in _monitors if k[0] == run_id]
        mons = [_monitors.pop(k) for k in keys]
    for mon in mons:
        mon._finish()


_exit_registered = False


def _register_exit() -> None:
    global _exit_registered
    if not _exit_registered:
        _exit_registered = True
        import atexit

        atexit.register(_at_exit)


def _at_exit() -> None:
    with _registry_lock:
        mons = list(_monitors.values())
        _monitors.clear()
    for mon in mons:
        mon._finish()
