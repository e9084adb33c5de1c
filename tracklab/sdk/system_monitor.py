"""The run system monitor of the user's document: one background sampler per (run, project).

``get_run_system_monitor(run_id)`` returns the same object for the same run and project. A run id
that no run has yet (the document's ``"my-run"``) is created in the store on first write.

A monitor writes through its run's :class:`~tracklab.sdk.samples.RunChannel`, shared with every
other writer of that run in this process. A monitor that is started and never stopped is stopped
at interpreter exit (its thread is a daemon, so it never holds the exit up) after one last
sample is written.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

from tracklab import _env
from tracklab.collectors import SystemCollectors
from tracklab.sampling.sampler import Sampler
from tracklab.sdk import samples
from tracklab.sdk.samples import RunChannel, RunTarget, channel_for, run_id_of, sdk_run

__all__ = ["DEFAULT_INTERVAL", "RunChannel", "RunSystemMonitor", "RunTarget",
           "cleanup_run_monitor", "get_run_system_monitor"]

log = logging.getLogger("tracklab.sdk.system_monitor")

DEFAULT_INTERVAL = 10.0

Callback = Callable[[dict[str, Any]], None]

_monitors: dict[tuple[str, str | None], RunSystemMonitor] = {}
_registry_lock = threading.RLock()


class RunSystemMonitor:
    """Samples system metrics for one run in a background thread.

    Args:
        run_id: the run to write into (created on first write if it does not exist).
        project: the run's project (part of the monitor's identity).
        collect_interval: seconds between samples while started.
        node_id: the ``nodeId`` of every snapshot, default ``$TRACKLAB_NODE_ID`` or the host name.

    Raises:
        ValueError: ``collect_interval`` is not a positive number of seconds.
    """

    def __init__(self, run_id: str, project: str | None = None,
                 collect_interval: float = DEFAULT_INTERVAL, node_id: str | None = None,
                 _run: Any = None) -> None:
        self.run_id = run_id_of(run_id)
        self.project = project
        from tracklab.sampling.sampler import seconds

        self.collect_interval = seconds(collect_interval, "collect_interval")
        self._node_arg = node_id
        self._run = _run
        chan = self.channel
        self.node_id = chan.node_id
        self.custom: dict[str, Any] = {}
        self._callbacks: list[Callback] = []
        self._failed: list[Callback] = []
        self._cb_lock = threading.Lock()
        self.collectors = SystemCollectors(self.node_id, disk_path=chan.target.dir)
        self.sampler = Sampler(self.collectors, self.collect_interval, [self._sink],
                               name=f"tracklab-monitor-{self.run_id}")
        self._exporter: Any = None

    @property
    def channel(self) -> RunChannel:
        return channel_for(self.run_id, self.project, self._node_arg, run=self._run)

    @property
    def target(self) -> RunTarget:
        return self.channel.target

    @property
    def running(self) -> bool:
        return self.sampler.running

    # -- the sink ---------------------------------------------------------------------------------

    def _sink(self, snap: dict[str, Any]) -> None:
        self.channel.sample(snap)
        if self.custom:
            # Custom readings were stored when they were logged; callbacks and
            # get_current_metrics() see the latest of each beside the snapshot.
            snap["custom"] = dict(self.custom)
        with self._cb_lock:
            callbacks = list(self._callbacks)
        for fn in callbacks:
            try:
                fn(snap)
            except Exception:  # a user's callback must not stop sampling (logged below)
                with self._cb_lock:
                    first = not any(f is fn for f in self._failed)
                    if first:
                        self._failed.append(fn)
                if first:
                    log.warning("tracklab: warning: callback %s raised; it is still called, "
                                "sampling and other callbacks go on (reported once)",
                                _name(fn), exc_info=True)

    # -- the document's API ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start background sampling (idempotent): one sample now, then every interval.

        Under ``TRACKLAB_MODE=disabled`` it does nothing.
        """
        if self.sampler.running:
            return
        if _env.disabled():
            log.debug("TRACKLAB_MODE=disabled: monitor for run %s not started", self.run_id)
            return
        if self._exporter is None and os.environ.get("TRACKLAB_PROMETHEUS_PORT"):
            from tracklab.sampling.prometheus import from_env

            self._exporter = from_env(self.run_id, self.node_id, self.project,
                                      store=self.target.resolve)
            if self._exporter is not None:
                self.sampler.sinks.append(self._exporter)
        with _registry_lock:  # again, after cleanup_run_monitor() forgot it: stopped at exit
            _monitors.setdefault((self.run_id, self.project), self)
        self.sampler.start()
        log.debug("monitor for run %s started (every %.1f s, node %s)", self.run_id,
                  self.collect_interval, self.node_id)

    def stop(self, timeout: float = 2.0) -> None:
        """Stop sampling (idempotent), taking one last sample; returns within ``timeout`` s."""
        if self.sampler._thread is not None:
            self.sampler.stop(timeout=timeout)
            self.channel.flush_stats()
            log.debug("monitor for run %s stopped after %d samples", self.run_id,
                      self.sampler.count)

    def add_callback(self, fn: Callback) -> None:
        """Call ``fn(snapshot)`` with every sample this monitor takes (API.md §4 format).

        A callback that raises is logged once, with its traceback, at WARNING; it keeps being
        called, and neither sampling nor the other callbacks stop.

        Raises:
            TypeError: ``fn`` is not callable.
        """
        if not callable(fn):
            raise TypeError(f"add_callback() takes a function of one snapshot, not {fn!r}")
        with self._cb_lock:
            self._callbacks.append(fn)

    def remove_callback(self, fn: Callback) -> None:
        """Stop calling ``fn``; does nothing if it was not added."""
        with self._cb_lock:
            self._callbacks = [f for f in self._callbacks if f != fn]  # bound methods: ==

    def log_custom_metric(self, name: str, value: float) -> None:
        """Store one reading of a custom system metric with the run's samples, now.

        The document's names look like ``custom.temperature``; a name without the ``custom.``
        prefix gets it, so both spellings land on the sample path ``custom.<rest>``. A value that
        is not a number is dropped with a :class:`~tracklab.TracklabWarning`. Each call is one
        small write (well under a millisecond): meant for readings like temperatures, not
        per-step training values, which belong in :func:`tracklab.log`.
        """
        from tracklab.sdk.values import PLAIN, to_number

        num = value if type(value) in PLAIN else to_number(value)
        key = name[len("custom."):] if isinstance(name, str) and name.startswith("custom.") \
            else name
        if num is None or not isinstance(key, str) or not key.strip("."):
            from tracklab.errors import TracklabWarning

            wrong = "is not a number" if num is None else "has no name (a non-empty string)"
            warnings.warn(f"tracklab: warning: custom metric {name!r} = {value!r} {wrong}; "
                          "dropped", TracklabWarning, stacklevel=2)
            return
        self.custom[key] = num
        self.channel.record({"nodeId": self.node_id, "timestamp": int(time.time() * 1000),
                             "custom": {key: num}})

    def flush(self, timeout: float = 5.0) -> bool:
        """Samples are written as they are taken: nothing is pending. Always True."""
        return True

    def get_current_metrics(self) -> dict[str, Any]:
        """The latest snapshot (API.md §4 format), taking (and storing) one now if none exists."""
        snap = self.sampler.latest
        if snap is None:
            snap = self.sampler.take()
        return snap

    def get_system_info(self) -> dict[str, Any]:
        """Static facts about this machine.

        Returns:
            ``platform``, ``system``, ``hostname``, ``node_id``, ``cpu_model``, ``cpu_count``
            (logical), ``cpu_physical``, ``memory_total`` (bytes), ``python`` (version),
            ``gpu_count``, ``gpu_info`` (GPU names), ``gpus`` (per-GPU facts),
            ``driver_version`` and ``cuda_version`` (``None`` without a driver), and more.
        """
        from tracklab.sampling.machine import system_info

        info = system_info(self.channel.target.dir, self.collectors)
        info["node_id"] = self.node_id
        return info

    def _finish(self) -> None:
        self.stop()
        # the run record keeps this process's peaks, so `ls` shows them; a run under
        # `tracklab run` gets the wrapper's (its whole process tree), not one process's
        if not getattr(self._run, "attached", False) and os.environ.get(
                _env.ENV_RUN_ID) != self.run_id:
            self.channel.store_peaks()
        self.collectors.close()
        # the closed ones have shut NVML down: a monitor used again reads through new ones
        self.collectors = self.sampler.collectors = SystemCollectors(
            self.node_id, disk_path=self.collectors._disk_path)
        if self._exporter is not None:
            self._exporter.close()
            self._exporter = None


def _name(fn: Any) -> str:
    return getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)


def get_run_system_monitor(run_id: str, project: str | None = None,
                           collect_interval: float = DEFAULT_INTERVAL,
                           node_id: str | None = None, _run: Any = None) -> RunSystemMonitor:
    """The monitor of ``(run_id, project)``, created on the first call and reused after.

    ``project`` defaults to the project of the current :func:`tracklab.init` run when
    ``run_id`` is its id, so ``get_run_system_monitor(run.id)`` finds the monitor that
    ``init(system_monitor=True)`` started. ``collect_interval`` and ``node_id`` apply when the
    monitor is created. The monitor is not started: call ``start()``.

    Raises:
        TypeError: ``run_id`` is not a string (or a Run).
        ValueError: ``collect_interval`` is not a positive number.
    """
    run_id = run_id_of(run_id)
    if _run is None:
        _run = sdk_run(run_id)
    if project is None and _run is not None:
        project = _run.project
    key = (run_id, project)
    with _registry_lock:
        mon = _monitors.get(key)
        if mon is None:
            mon = RunSystemMonitor(run_id, project, collect_interval, node_id, _run=_run)
            _monitors[key] = mon
            if _run is not None and getattr(_run, "_monitor", "absent") is None:
                _run._monitor = mon  # the run's finish() stops it
            _register_exit()
            log.debug("monitor for run %s (project %s) created: every %.1f s, node %s",
                      run_id, project, mon.collect_interval, mon.node_id)
        elif float(collect_interval) != mon.collect_interval or (
                node_id is not None and _env.node_id(node_id) != mon.node_id):
            log.debug("monitor for run %s exists (every %.1f s, node %s); the new settings are "
                      "ignored", run_id, mon.collect_interval, mon.node_id)
        return mon


def cleanup_run_monitor(run_id: str, project: str | None = None) -> None:
    """Stop and forget the monitors of ``run_id`` and release what they held.

    With ``project``, the monitor of ``(run_id, project)`` (or, when there is none, every monitor
    of the run); without it, every monitor of the run. A run the monitors created is marked
    finished. Safe to call twice, or for a run that never had a monitor.
    """
    run_id = run_id_of(run_id)
    with _registry_lock:
        keys = [k for k in _monitors if k[0] == run_id and (project is None or k[1] == project)]
        if project is not None and not keys:
            keys = [k for k in _monitors if k[0] == run_id]
        mons = [_monitors.pop(k) for k in keys]
    for mon in mons:
        mon._finish()
    with _registry_lock:
        busy = any(k[0] == run_id for k in _monitors)
    closed = samples.close_channels(run_id, keep=busy)
    if mons or closed:
        log.debug("cleaned up run %s: %d monitor(s), %d channel(s)", run_id, len(mons), closed)


_exit_registered = False


def _register_exit() -> None:
    global _exit_registered
    if not _exit_registered:
        _exit_registered = True
        import atexit

        atexit.register(_at_exit)
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_forget_after_fork)


def _forget_after_fork() -> None:
    """In a forked child, the parent's monitors are the parent's (their threads are not in the
    child, and a lock one held at the fork stays held): the child stops none of them at exit."""
    global _registry_lock
    _registry_lock = threading.RLock()
    _monitors.clear()


def _at_exit() -> None:
    """Stop every monitor (one last sample each) and close every channel."""
    with _registry_lock:
        mons = list(_monitors.values())
        _monitors.clear()
    for mon in mons:
        mon._finish()
    samples.close_all()
