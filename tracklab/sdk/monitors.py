"""The per-family monitors of the user's document: ``tracklab.monitor_cpu(run_id)`` and friends.

They are thin views over the collectors and the run's :class:`~tracklab.sdk.samples.RunChannel`:
getters return fresh readings in the units of the snapshot format (percent 0-100, bytes, MHz, °C,
W; rates per second), each ``log_*_metrics()`` writes one sample holding its family into the run,
and the context managers sample in the background with a :class:`~tracklab.sampling.sampler.Sampler`
whose ``stop()`` is immediate. A monitor object holds no state of its own beyond its settings,
so creating one per call is cheap.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from tracklab.sdk.samples import RunChannel, channel_for, run_id_of

log = logging.getLogger("tracklab.sdk.monitors")

T = TypeVar("T", bound=type)
_SUMMARY_FAMILIES = ("cpu", "memory", "disk", "network", "accelerators")


@dataclass
class Span:
    """What a monitoring context recorded: times in seconds since the epoch, ``samples`` taken.

    Filled in when the block ends; ``end`` and ``duration`` are ``None`` while it runs.
    """

    start: float
    end: float | None = None
    duration: float | None = None
    samples: int = 0


@dataclass
class GpuUsage(Span):
    """The GPU usage of one ``monitor_gpu_usage()`` block.

    Attributes:
        gpu_id: the GPU asked for, or ``None`` for all of them.
        gpus: per GPU id: ``name``, ``samples``, ``utilization_mean`` and ``utilization_peak``
            (percent), ``memory_mean`` and ``memory_peak`` (bytes used), ``memory_total``
            (bytes). A figure NVML could not give is ``None``. Empty without a GPU.
    """

    gpu_id: int | None = None
    gpus: dict[int, dict[str, Any]] = field(default_factory=dict)


class _Monitor:
    """Shared plumbing: which run, and the channel that reads and writes for it."""

    def __init__(self, run_id: Any, project: str | None = None,
                 node_id: str | None = None) -> None:
        self.run_id = run_id_of(run_id)
        self.project = project
        self.node_id = node_id

    @property
    def _channel(self) -> RunChannel:
        # Looked up on every call: after cleanup_run_monitor() a new channel takes over.
        return channel_for(self.run_id, self.project, self.node_id)

    def _read(self, family: str) -> Any:
        return self._channel.read((family,))[family]

    def _log(self, families: tuple[str, ...]) -> dict[str, Any]:
        chan = self._channel
        snap = chan.read(families)
        chan.record(snap)
        return snap

    def __repr__(self) -> str:
        return f"<tracklab.{type(self).__name__} run={self.run_id}>"


class CpuMonitor(_Monitor):
    """``tracklab.monitor_cpu(run_id)``: CPU readings of this machine."""

    def get_cpu_usage(self) -> float | None:
        """Usage of all cores together, in percent (0-100)."""
        return self._read("cpu")["overall"]  # type: ignore[no-any-return]

    def get_cpu_load(self) -> list[float] | None:
        """The 1, 5 and 15-minute load averages (runnable tasks); ``None`` where unsupported."""
        return self._read("cpu")["loadAverage"]  # type: ignore[no-any-return]

    def get_core_usage(self) -> list[float]:
        """Usage of each logical core in percent (0-100), by core id."""
        return [c["usage"] for c in self._read("cpu")["cores"]]

    def get_cpu_count(self) -> int:
        """The number of logical cores."""
        import psutil

        return psutil.cpu_count(logical=True) or os.cpu_count() or 1

    def log_cpu_metrics(self) -> dict[str, Any]:
        """Write one sample of the ``cpu`` family into the run; returns that snapshot."""
        return self._log(("cpu",))


class MemoryMonitor(_Monitor):
    """``tracklab.monitor_memory(run_id)``: memory and swap of this machine."""

    def get_memory_info(self) -> dict[str, Any]:
        """The ``memory`` family: ``usage`` (percent), ``used``, ``total``, ``available`` (bytes)
        and ``swap`` (``used``, ``total`` in bytes, ``percentage``)."""
        return self._read("memory")  # type: ignore[no-any-return]

    def get_memory_usage(self) -> float:
        """Memory in use, in percent (0-100)."""
        return self._read("memory")["usage"]  # type: ignore[no-any-return]

    def get_memory_bytes(self) -> dict[str, int]:
        """``used``, ``total`` and ``available`` memory, in bytes."""
        mem = self._read("memory")
        return {"used": mem["used"], "total": mem["total"], "available": mem["available"]}

    def get_swap_info(self) -> dict[str, Any]:
        """``used`` and ``total`` swap in bytes, ``percentage`` in use (``None`` if unknown)."""
        return self._read("memory")["swap"]  # type: ignore[no-any-return]

    def log_memory_metrics(self) -> dict[str, Any]:
        """Write one sample of the ``memory`` family into the run; returns that snapshot."""
        return self._log(("memory",))


class GpuMonitor(_Monitor):
    """``tracklab.monitor_gpu(run_id)``: NVIDIA GPUs through NVML. Without a driver there are
    no GPUs: counts are 0 and lists are empty, never an error.

    Attributes:
        last_usage: the :class:`GpuUsage` of the latest ``monitor_gpu_usage()`` block.
    """

    last_usage: GpuUsage | None = None

    def get_gpu_count(self) -> int:
        """How many GPUs NVML reports (lost ones left out); 0 without a driver, or when NVML
        does not answer within 2 s."""
        return len(self.get_gpu_info())

    def get_gpu_info(self) -> list[dict[str, Any]]:
        """Static facts per GPU: ``id``, ``name``, ``uuid``, ``pciBusId``, ``memoryTotal``
        (bytes), ``driverVersion``, ``cudaVersion``, ``migMode``; ``[]`` without a driver, or
        when NVML does not answer within 2 s."""
        return list(self._channel.gpu_info() or [])

    def get_gpu_utilization(self) -> dict[int, float | None]:
        """Utilization per GPU id, in percent (0-100); ``{}`` without a GPU."""
        return {g["id"]: g["utilization"] for g in self._read("accelerators")}

    def get_gpu_metrics(self) -> list[dict[str, Any]]:
        """One full reading per GPU (the snapshot's ``accelerators`` entries)."""
        return self._read("accelerators")  # type: ignore[no-any-return]

    def log_gpu_metrics(self) -> dict[str, Any]:
        """Write one sample of the ``accelerators`` family into the run; returns that snapshot."""
        return self._log(("accelerators",))

    @contextmanager
    def monitor_gpu_usage(self, gpu_id: int | None = None,
                          interval: float = 1.0) -> Iterator[GpuUsage]:
        """Record GPU usage while the block runs: at entry, every ``interval`` s, and at exit.

        Samples hold every GPU (the store indexes GPUs by position); the summary, yielded and
        kept as :attr:`last_usage`, covers ``gpu_id`` or all GPUs. On a machine without GPUs
        the block runs and nothing is recorded.

        Raises:
            ValueError: ``gpu_id`` names no GPU of this machine (before the block runs), or
                ``interval`` is not positive.
        """
        if gpu_id is not None and (isinstance(gpu_id, bool) or not isinstance(gpu_id, int)):
            raise ValueError(f"gpu_id must be a GPU index (an int) or None, not {gpu_id!r}")
        from tracklab.sampling.sampler import seconds

        seconds(interval)
        ids = [g["id"] for g in self.get_gpu_info()]
        if gpu_id is not None and ids and gpu_id not in ids:
            raise ValueError(f"no GPU {gpu_id} on this machine: its GPUs are "
                             f"{', '.join(map(str, ids))}")
        if not ids:
            log.warning("tracklab: warning: no NVIDIA GPU on this machine: "
                        "monitor_gpu_usage(%s) records nothing",
                        "" if gpu_id is None else f"gpu_id={gpu_id}")
        usage = GpuUsage(start=time.time(), gpu_id=gpu_id)
        self.last_usage = usage
        if not ids:
            try:
                yield usage
            finally:
                _close_span(usage)
            return
        wanted = set(ids if gpu_id is None else [gpu_id])
        acc: dict[int, dict[str, Any]] = {}

        def summarize(snap: dict[str, Any]) -> None:
            usage.samples += 1
            for g in snap.get("accelerators") or ():
                if g["id"] in wanted:
                    _accumulate(acc.setdefault(g["id"], {}), g)

        try:
            with _background(self._channel, ("accelerators",), interval, [summarize]):
                yield usage
        finally:
            _close_span(usage)
            usage.gpus = {i: _gpu_summary(acc[i]) for i in sorted(acc)}


class HardwareMonitor(CpuMonitor, MemoryMonitor, GpuMonitor):
    """``tracklab.monitor_hardware(run_id)``: every family at once, plus the CPU, memory and
    GPU getters of the other monitors."""

    def get_hardware_summary(self) -> dict[str, Any]:
        """A fresh reading of the machine.

        Returns:
            ``cpu`` (with ``overall`` percent), ``memory`` (with ``usage`` percent), ``disk``,
            ``network`` and ``gpu`` (a list with one entry per GPU, empty without one), in the
            snapshot format's units, plus ``nodeId`` and ``timestamp`` (ms since the epoch).
        """
        snap = self._channel.read(_SUMMARY_FAMILIES)
        snap["gpu"] = snap.pop("accelerators") or []
        return snap

    def log_all_metrics(self) -> dict[str, Any]:
        """Write one complete sample (every family) into the run; returns that snapshot."""
        from tracklab.collectors import SystemCollectors

        return self._log(SystemCollectors.FAMILIES)

    @contextmanager
    def monitor_hardware(self, log_interval: float = 30.0) -> Iterator[Span]:
        """Record complete samples while the block runs: at entry, every ``log_interval``
        seconds, and at exit. Sampling stops the moment the block ends, also when it raises
        (the exception propagates unchanged).

        Raises:
            ValueError: ``log_interval`` is not a positive number of seconds.
        """
        from tracklab.sampling.sampler import seconds

        seconds(log_interval, "log_interval")
        span = Span(start=time.time())
        try:
            with _background(self._channel, None, log_interval, [_counter(span)]):
                yield span
        finally:
            _close_span(span)


@contextmanager
def _background(chan: RunChannel, families: tuple[str, ...] | None, interval: float,
                extra_sinks: list[Any]) -> Iterator[None]:
    """Entry sample, a sampler thread every ``interval`` s, exit sample; all into ``chan``.

    The entry and exit samples are taken in the calling thread, so the exit sample's rates
    cover the block's last stretch and the thread is stopped, not waited for.
    """
    from tracklab import _env
    from tracklab.collectors import SystemCollectors
    from tracklab.sampling.sampler import Sampler

    if _env.disabled():  # TRACKLAB_MODE=disabled: the block just runs
        yield
        return
    collectors = SystemCollectors(chan.node_id, disk_path=chan.target.dir, families=families)
    sampler = Sampler(collectors, interval, [chan.sample, *extra_sinks],
                      name=f"tracklab-context-{chan.target.run_id}")
    try:
        collectors.prime()
        sampler.take()
        sampler.start(first=False)
        log.debug("background sampling of run %s every %.1f s started", chan.target.run_id,
                  sampler.interval)
        yield
    finally:
        sampler.stop(final=False)
        try:
            sampler.take()
        finally:
            chan.flush_stats()
            collectors.close()
            log.debug("background sampling of run %s stopped after %d samples",
                      chan.target.run_id, sampler.count)


def _counter(span: Span) -> Any:
    def count(_snap: dict[str, Any]) -> None:
        span.samples += 1
    return count


def _close_span(span: Span) -> None:
    span.end = time.time()
    span.duration = span.end - span.start


def _accumulate(acc: dict[str, Any], gpu: dict[str, Any]) -> None:
    acc["name"] = gpu.get("name")
    acc["n"] = acc.get("n", 0) + 1
    mem = gpu.get("memory") or {}
    if mem.get("total") is not None:
        acc["total"] = mem["total"]
    for key, value in (("util", gpu.get("utilization")), ("mem", mem.get("used"))):
        if value is None:
            continue
        acc[key + "_sum"] = acc.get(key + "_sum", 0) + value
        acc[key + "_n"] = acc.get(key + "_n", 0) + 1
        acc[key + "_peak"] = max(acc.get(key + "_peak", value), value)


def _gpu_summary(acc: dict[str, Any]) -> dict[str, Any]:
    def mean(key: str) -> float | None:
        n = acc.get(key + "_n")
        return round(acc[key + "_sum"] / n, 2) if n else None

    mem_mean = mean("mem")
    return {"name": acc.get("name"), "samples": acc.get("n", 0),
            "utilization_mean": mean("util"), "utilization_peak": acc.get("util_peak"),
            "memory_mean": None if mem_mean is None else round(mem_mean),  # bytes: an int
            "memory_peak": acc.get("mem_peak"),
            "memory_total": acc.get("total")}


def monitor_cpu(run_id: Any) -> CpuMonitor:
    """CPU readings and samples for ``run_id`` (a run id or a Run; created on first write)."""
    return CpuMonitor(run_id)


def monitor_memory(run_id: Any) -> MemoryMonitor:
    """Memory readings and samples for ``run_id`` (a run id or a Run; created on first write)."""
    return MemoryMonitor(run_id)


def monitor_gpu(run_id: Any) -> GpuMonitor:
    """GPU readings and samples for ``run_id`` (a run id or a Run; created on first write)."""
    return GpuMonitor(run_id)


def monitor_hardware(run_id: Any) -> HardwareMonitor:
    """Every family's readings and samples for ``run_id`` (a run id or a Run)."""
    return HardwareMonitor(run_id)


def integrate_with_run(cls: T) -> T:
    """Class decorator: constructing the class starts a run with system monitoring.

    The run's project is the constructor's first positional argument (when it is a string) or
    its ``project`` keyword. The run is ``self.tracklab_run`` (set before the class's own
    ``__init__`` runs); ``finish()`` runs the class's own ``finish`` (if any) and then finishes
    the run, which stops its monitoring. If ``__init__`` raises, the run is finished as failed.

    Raises:
        TypeError: applied to something that is not a class.
    """
    if not isinstance(cls, type):
        raise TypeError(f"@tracklab.integrate_with_run decorates a class, not {cls!r}")
    own_init = cls.__init__  # type: ignore[misc]  # wrapping the class's own __init__ is the point
    own_finish = getattr(cls, "finish", None)

    @functools.wraps(own_init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        from tracklab.sdk.run import init

        project = kwargs.get("project", args[0] if args else None)
        run = init(project=project if isinstance(project, str) else None, system_monitor=True)
        self.tracklab_run = run
        try:
            own_init(self, *args, **kwargs)
        except BaseException:
            run.finish(exit_code=1)
            raise

    def finish(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return own_finish(self, *args, **kwargs) if own_finish is not None else None
        finally:
            run = getattr(self, "tracklab_run", None)
            if run is not None:
                run.finish()

    if own_finish is not None:
        functools.update_wrapper(finish, own_finish)
    else:
        finish.__doc__ = "Finish the run (and stop its system monitoring)."
    cls.__init__ = __init__  # type: ignore[misc]
    cls.finish = finish  # type: ignore[attr-defined]
    return cls
