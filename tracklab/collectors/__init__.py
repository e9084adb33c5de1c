"""Collectors: one module per source, each returning plain data in base units.

A collector is constructed once (priming any rate or percentage state) and then ``collect()``-ed
on every sample. A value the machine cannot give is ``None``; a collector never raises for a
missing reading. :class:`SystemCollectors` composes them into the snapshot format of API.md §4.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

log = logging.getLogger("tracklab.collectors")

GPU_DEADLINE_S = 2.0  # an NVML call that takes longer is treated as hung (GPU off the bus)
# A hung NVML call is the driver's, not one collector's: once any reading here has hung, every
# collector of the process leaves the GPUs out at once, and the warning is given once.
_nvml_hung = threading.Event()
_hung_lock = threading.Lock()


class SystemCollectors:
    """Builds full snapshots (or one family of them) from every collector.

    Args:
        node_id: the ``nodeId`` written into every snapshot.
        disk_path: the folder whose filesystem ``disk.usage`` describes (the store's).
        root_pid: the launched process whose tree the ``process`` section describes; ``None``
            describes the calling process itself.
        nvml: an NVML seam for the GPU collector (tests pass a fake); ``None`` opens the real one
            lazily on the first GPU reading.
        guard_gpu: run each GPU reading on a helper thread and give it GPU_DEADLINE_S. With
            False, readings run in the calling thread, which must then be watched: a caller
            polls :meth:`gpu_hung` and carries on sampling in another thread when it says so
            (the wrapper does, from its main loop; the hand-off to a helper thread cost
            ~0.1 ms of every sample).
    """

    # in the order they are read: the process tree's pids go to the GPU reading (which GPU
    # memory is the run's), the GPUs' energy to the energy section
    FAMILIES = ("cpu", "memory", "disk", "network", "process", "accelerators", "container",
                "energy")

    def __init__(self, node_id: str, disk_path: str = ".", root_pid: int | None = None,
                 nvml: Any = None, families: tuple[str, ...] | None = None,
                 guard_gpu: bool = True) -> None:
        self.node_id = node_id
        self.families = families or self.FAMILIES
        self._disk_path = disk_path
        self._root_pid = root_pid
        self._nvml = nvml
        self._made: dict[str, Any] = {}
        self._failed: set[str] = set()
        self._gpu_guard: _Deadline | None = None
        self._gpu_hung = False
        self._guard_gpu = guard_gpu
        self._gpu_busy_since: float | None = None  # monotonic; an unguarded reading in flight

    def _collector(self, family: str) -> Any:
        c = self._made.get(family)
        if c is None:
            if family == "cpu":
                from tracklab.collectors.cpu import CpuCollector
                c = CpuCollector()
            elif family == "memory":
                from tracklab.collectors.memory import MemoryCollector
                c = MemoryCollector()
            elif family == "disk":
                from tracklab.collectors.disk import DiskCollector
                c = DiskCollector(self._disk_path)
            elif family == "network":
                from tracklab.collectors.network import NetworkCollector
                c = NetworkCollector()
            elif family == "accelerators":
                from tracklab.collectors.gpu import GpuCollector
                c = GpuCollector(self._nvml)
            elif family == "process":
                from tracklab.collectors.process import ProcessTreeCollector
                c = ProcessTreeCollector(self._root_pid)
            elif family == "container":
                from tracklab.collectors.container import ContainerCollector
                c = ContainerCollector(self._root_pid)
            elif family == "energy":
                from tracklab.collectors.energy import EnergyCollector
                c = EnergyCollector()
            else:
                raise ValueError(f"unknown family {family!r}")
            self._made[family] = c
        return c

    def prime(self) -> None:
        """Construct every collector now, so the first real sample has rates to report."""
        for family in self.families:
            try:
                self._collector(family)
            except Exception:
                log.debug("collector %s could not start", family, exc_info=True)

    def gpu(self) -> Any:
        return self._collector("accelerators")

    def snapshot(self, families: tuple[str, ...] | None = None) -> dict[str, Any]:
        snap: dict[str, Any] = {"nodeId": self.node_id, "timestamp": int(time.time() * 1000)}
        tree_pids: set[int] | None = None
        for family in sorted(families or self.families, key=lambda f: _ORDER.get(f, len(_ORDER))):
            try:
                if family == "accelerators":
                    snap[family] = self._accelerators(tree_pids)
                elif family == "energy":
                    snap[family] = self._collector(family).collect(snap.get("accelerators"))
                else:
                    snap[family] = self._collector(family).collect()
                    if family == "process" and snap[family]:
                        tree_pids = set(snap[family].get("pids") or ())
            except Exception:
                if family not in self._failed:
                    self._failed.add(family)
                    log.warning("tracklab: warning: collector %s failed; its values are null", family, exc_info=True)
                snap[family] = [] if family == "accelerators" else None
        return snap

    def _accelerators(self, tree_pids: set[int] | None) -> list[dict[str, Any]]:
        """GPU readings, given at most GPU_DEADLINE_S: a hung driver costs one late sample and
        then the GPU section stays empty, instead of freezing every other metric."""
        if self._gpu_hung or _nvml_hung.is_set():
            return []
        gpu = self._collector("accelerators")
        if self._nvml is None and not _nvml_possible():
            return gpu.collect(tree_pids)  # type: ignore[no-any-return]  # no driver: instant
        if not self._guard_gpu:
            self._gpu_busy_since = time.monotonic()
            try:
                return gpu.collect(tree_pids)  # type: ignore[no-any-return]
            finally:
                self._gpu_busy_since = None
        if self._gpu_guard is None:
            self._gpu_guard = _Deadline("tracklab-nvml")
        ok, value = self._gpu_guard.call(lambda: gpu.collect(tree_pids), GPU_DEADLINE_S)
        if ok:
            return value  # type: ignore[no-any-return]
        self._declare_hung()
        return []

    def gpu_info(self) -> list[dict[str, Any]] | None:
        """The GPUs' static facts (:meth:`GpuCollector.info`), given GPU_DEADLINE_S like a
        reading: ``None`` when NVML did not answer in time, or had hung before."""
        if self._gpu_hung or _nvml_hung.is_set():
            return None
        gpu = self._collector("accelerators")
        if self._nvml is None and not _nvml_possible():
            return gpu.info()  # type: ignore[no-any-return]  # no driver: instant
        if not self._guard_gpu:
            # the sampling thread's watch (gpu_hung) reports a hang; this caller only stops waiting
            return gpu_info_within(gpu, GPU_DEADLINE_S)
        if self._gpu_guard is None:
            self._gpu_guard = _Deadline("tracklab-nvml")
        ok, value = self._gpu_guard.call(gpu.info, GPU_DEADLINE_S)
        if ok:
            return value  # type: ignore[no-any-return]
        self._declare_hung()
        return None

    def gpu_hung(self) -> bool:
        """For unguarded readings (``guard_gpu=False``): True, once, when a GPU reading has been
        in NVML for longer than GPU_DEADLINE_S. GPU readings are then off for good, and the
        thread in that reading is lost: the caller goes on sampling in a new one."""
        since = self._gpu_busy_since
        if self._gpu_hung or since is None or time.monotonic() - since <= GPU_DEADLINE_S:
            return False
        self._declare_hung()
        return True

    def _declare_hung(self) -> None:
        self._gpu_hung = True
        with _hung_lock:
            first = not _nvml_hung.is_set()
            _nvml_hung.set()
        if first:
            log.warning("tracklab: warning: NVML did not answer within %.0f s; GPU metrics are "
                        "off for the rest of this run", GPU_DEADLINE_S)

    def close(self) -> None:
        if self._gpu_hung:
            self._made.pop("accelerators", None)  # its driver call is stuck; don't wait on it
        for c in self._made.values():
            close = getattr(c, "close", None)
            if close:
                close()


_ORDER = {f: i for i, f in enumerate(SystemCollectors.FAMILIES)}


def _nvml_possible() -> bool:
    from tracklab.collectors._nvml import ENV_MODULE, driver_present

    return bool(os.environ.get(ENV_MODULE)) or driver_present()


def gpu_info_within(gpu: Any, timeout: float) -> list[dict[str, Any]] | None:
    """``gpu.info()`` on a helper thread, waited for at most ``timeout`` s: ``None`` when NVML
    did not answer in time (the thread stays behind in the driver; it is a daemon)."""
    box: list[Any] = []

    def call() -> None:
        try:
            box.append((True, gpu.info()))
        except Exception as exc:  # noqa: BLE001 - handed back to the caller, who re-raises
            box.append((False, exc))

    worker = threading.Thread(target=call, name="tracklab-nvml-info", daemon=True)
    worker.start()
    worker.join(timeout)
    if not box:
        return None
    ok, value = box[0]
    if not ok:
        raise value
    return value  # type: ignore[no-any-return]


class _Deadline:
    """Runs calls on one daemon worker thread and waits at most a deadline for each.

    The hand-off is two plain locks used as semaphores (not Events, whose Condition allocates a
    lock per wait): it runs on every sample, so its cost is part of the sampler's.
    """

    def __init__(self, name: str) -> None:
        self._lock = threading.Lock()  # one call at a time
        self._go = threading.Lock()
        self._done = threading.Lock()
        self._go.acquire()
        self._done.acquire()
        self._job: Any = None
        self._result: tuple[bool, Any] = (False, None)
        self._stuck = False
        threading.Thread(target=self._loop, name=name, daemon=True).start()

    def _loop(self) -> None:
        while True:
            self._go.acquire()
            try:
                self._result = (True, self._job())
            except Exception as exc:  # noqa: BLE001 - handed back to the caller, who re-raises
                self._result = (False, exc)
            self._done.release()

    def call(self, fn: Any, timeout: float) -> tuple[bool, Any]:
        with self._lock:
            if self._stuck:
                return False, None
            self._job = fn
            self._go.release()
            if not self._done.acquire(True, timeout):
                self._stuck = True  # the worker never came back: no later call may queue on it
                return False, None
            ok, value = self._result
            if not ok and isinstance(value, Exception):
                raise value
            return ok, value
