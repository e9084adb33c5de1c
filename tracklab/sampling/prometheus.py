"""Prometheus exposition: the latest system sample and training metrics of a run, at ``/metrics``.

A cluster already runs Prometheus; tracklab hands it every node's figures instead of inventing a
fleet monitor. :class:`PrometheusExporter` is a sampler sink (a callable taking a snapshot) with its
own ``CollectorRegistry`` and HTTP server (``prometheus_client.start_http_server``). On each scrape
it renders the latest snapshot it was given; every series carries the labels ``run_id``, ``node``
and ``project`` (GPU series add ``gpu``; training series add ``key`` and ``rank``).

Training metrics are logged by the child's processes, which the wrapper does not see, so at each
sample the exporter reads the last value of every key from the run's shard on this node (the
``metric_stats`` rows the writers keep: one small query, whatever the length of the run). They are
as fresh as the latest sample plus the writers' one-second flush.

``prometheus_client`` is an optional extra: ``pip install 'tracklab[prometheus]'``. Units are base
units except the percentages (0-100), which keep the snapshot's unit.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

log = logging.getLogger("tracklab.sampling.prometheus")

ENV_PORT = "TRACKLAB_PROMETHEUS_PORT"
ENV_ADDR = "TRACKLAB_PROMETHEUS_ADDR"
DEFAULT_ADDR = "0.0.0.0"
MISSING = ("Prometheus export needs prometheus_client: pip install 'tracklab[prometheus]' "
           "(or pip install prometheus-client)")

# (metric name, help, path in the snapshot, scale)
SYSTEM_GAUGES: list[tuple[str, str, tuple[Any, ...], float]] = [
    ("tracklab_cpu_usage_percent", "CPU utilization of the node, all cores (0-100).",
     ("cpu", "overall"), 1.0),
    ("tracklab_cpu_load1", "Load average over 1 minute.", ("cpu", "loadAverage", 0), 1.0),
    ("tracklab_memory_usage_percent", "Memory in use on the node (0-100).",
     ("memory", "usage"), 1.0),
    ("tracklab_memory_used_bytes", "Memory in use on the node.", ("memory", "used"), 1.0),
    ("tracklab_memory_total_bytes", "Memory of the node.", ("memory", "total"), 1.0),
    ("tracklab_swap_used_bytes", "Swap in use on the node.", ("memory", "swap", "used"), 1.0),
    ("tracklab_disk_usage_percent", "Usage of the store's file system (0-100).",
     ("disk", "usage"), 1.0),
    ("tracklab_disk_read_bytes_per_second", "Disk reads over the last interval.",
     ("disk", "ioRead"), 1.0),
    ("tracklab_disk_write_bytes_per_second", "Disk writes over the last interval.",
     ("disk", "ioWrite"), 1.0),
    ("tracklab_network_receive_bytes_per_second", "Network bytes in over the last interval.",
     ("network", "bytesIn"), 1.0),
    ("tracklab_network_transmit_bytes_per_second", "Network bytes out over the last interval.",
     ("network", "bytesOut"), 1.0),
    ("tracklab_process_cpu_percent",
     "CPU of the watched process tree, percent of one core (can exceed 100).",
     ("process", "cpu"), 1.0),
    ("tracklab_process_rss_bytes", "Resident memory of the watched process tree.",
     ("process", "rss"), 1.0),
    ("tracklab_process_count", "Processes in the watched process tree.", ("process", "count"),
     1.0),
    ("tracklab_process_threads", "Threads in the watched process tree.",
     ("process", "threads"), 1.0),
]

GPU_GAUGES: list[tuple[str, str, tuple[Any, ...], float]] = [
    ("tracklab_gpu_utilization_percent", "GPU utilization (0-100).", ("utilization",), 1.0),
    ("tracklab_gpu_memory_used_bytes", "GPU memory in use.", ("memory", "used"), 1.0),
    ("tracklab_gpu_memory_total_bytes", "GPU memory.", ("memory", "total"), 1.0),
    ("tracklab_gpu_memory_usage_percent", "GPU memory in use (0-100).",
     ("memory", "percentage"), 1.0),
    ("tracklab_gpu_process_memory_bytes", "GPU memory used by the watched process tree.",
     ("treeMemory",), 1.0),
    ("tracklab_gpu_temperature_celsius", "GPU temperature.", ("temperature",), 1.0),
    ("tracklab_gpu_power_watts", "GPU power draw.", ("power",), 1.0),
    ("tracklab_gpu_power_limit_watts", "GPU power limit.", ("powerLimit",), 1.0),
    ("tracklab_gpu_fan_speed_percent", "GPU fan speed (0-100).", ("fanSpeed",), 1.0),
    ("tracklab_gpu_sm_clock_hertz", "GPU SM clock.", ("clocks", "sm"), 1e6),
    ("tracklab_gpu_energy_joules", "GPU energy used since the run started.", ("energy",), 1.0),
    ("tracklab_gpu_memory_clock_hertz", "GPU memory clock.", ("clocks", "memory"), 1e6),
    ("tracklab_gpu_memory_controller_busy_percent",
     "Time the GPU's memory was read or written (0-100; NVML utilization.memory).",
     ("memoryUtilization",), 1.0),
    ("tracklab_gpu_memory_temperature_celsius", "GPU memory (HBM) temperature.",
     ("memoryTemperature",), 1.0),
    ("tracklab_gpu_pstate", "GPU performance state (0 is the fastest).", ("pstate",), 1.0),
    ("tracklab_gpu_sm_active_percent", "SMs busy (0-100; GPM, Hopper and newer).",
     ("gpm", "smActive"), 1.0),
    ("tracklab_gpu_sm_occupancy_percent", "Warps resident of the SMs' maximum (0-100; GPM).",
     ("gpm", "smOccupancy"), 1.0),
    ("tracklab_gpu_tensor_active_percent", "Tensor pipes busy (0-100; GPM).",
     ("gpm", "tensorActive"), 1.0),
    ("tracklab_gpu_dram_active_percent", "DRAM bandwidth used, of peak (0-100; GPM).",
     ("gpm", "dramActive"), 1.0),
    ("tracklab_gpu_fp16_active_percent", "FP16 pipe busy (0-100; GPM).",
     ("gpm", "fp16Active"), 1.0),
    ("tracklab_gpu_fp32_active_percent", "FP32 pipe busy (0-100; GPM).",
     ("gpm", "fp32Active"), 1.0),
    ("tracklab_gpu_fp64_active_percent", "FP64 pipe busy (0-100; GPM).",
     ("gpm", "fp64Active"), 1.0),
    ("tracklab_gpu_pcie_transmit_bytes_per_second", "PCIe traffic out of the GPU.",
     ("pcie", "txBytes"), 1.0),
    ("tracklab_gpu_pcie_receive_bytes_per_second", "PCIe traffic into the GPU.",
     ("pcie", "rxBytes"), 1.0),
    ("tracklab_gpu_pcie_link_generation", "PCIe link generation now.", ("pcie", "gen"), 1.0),
    ("tracklab_gpu_pcie_link_generation_max", "Highest PCIe generation of the GPU and slot.",
     ("pcie", "genMax"), 1.0),
    ("tracklab_gpu_pcie_link_width", "PCIe lanes now.", ("pcie", "width"), 1.0),
    ("tracklab_gpu_pcie_link_width_max", "Most PCIe lanes of the GPU and slot.",
     ("pcie", "widthMax"), 1.0),
    ("tracklab_gpu_nvlink_transmit_bytes_per_second", "NVLink traffic out, all links.",
     ("nvlink", "txBytes"), 1.0),
    ("tracklab_gpu_nvlink_receive_bytes_per_second", "NVLink traffic in, all links.",
     ("nvlink", "rxBytes"), 1.0),
    ("tracklab_gpu_nvlink_crc_errors", "NVLink CRC errors since the driver loaded.",
     ("nvlink", "crcErrors"), 1.0),
    ("tracklab_gpu_nvlink_replay_errors", "NVLink replay errors since the driver loaded.",
     ("nvlink", "replayErrors"), 1.0),
    ("tracklab_gpu_nvlink_recovery_errors", "NVLink recovery errors since the driver loaded.",
     ("nvlink", "recoveryErrors"), 1.0),
    ("tracklab_gpu_encoder_utilization_percent", "Video encoder busy (0-100).",
     ("encoderUtilization",), 1.0),
    ("tracklab_gpu_decoder_utilization_percent", "Video decoder busy (0-100).",
     ("decoderUtilization",), 1.0),
    ("tracklab_gpu_remapped_rows_uncorrectable", "Memory rows remapped for uncorrectable "
     "errors.", ("remappedRows", "uncorrectable"), 1.0),
    ("tracklab_gpu_retired_pages", "Memory pages retired for ECC errors.", ("retiredPages",),
     1.0),
]

# per InfiniBand/RoCE port, labelled device and port
IB_GAUGES: list[tuple[str, str, str]] = [
    ("tracklab_infiniband_transmit_bytes_per_second", "RDMA data sent by the port.", "txBytes"),
    ("tracklab_infiniband_receive_bytes_per_second", "RDMA data received by the port.",
     "rxBytes"),
    ("tracklab_infiniband_transmit_wait_per_second",
     "Ticks per second the port had data to send but no credit (congestion).", "txWait"),
    ("tracklab_infiniband_link_downed", "Times the port's link went down since the driver "
     "loaded.", "linkDowned"),
    ("tracklab_infiniband_symbol_errors", "Symbol errors on the port's link since the driver "
     "loaded.", "symbolErrors"),
]

BASE_LABELS = ["run_id", "node", "project"]


def available() -> bool:
    """True when ``prometheus_client`` can be imported."""
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        return False
    return True


def _number(v: Any) -> float | None:
    if isinstance(v, (int, float)):  # bools too: a flag reads as 0 or 1
        return float(v)
    return None


def _get(d: Any, path: tuple[Any, ...]) -> Any:
    for p in path:
        if isinstance(d, dict):
            d = d.get(p)
        elif isinstance(d, list) and isinstance(p, int) and -len(d) <= p < len(d):
            d = d[p]
        else:
            return None
    return d


def _infiniband(snap: dict[str, Any], base: list[str]) -> Any:
    from prometheus_client.core import GaugeMetricFamily

    ports = [p for p in (_get(snap, ("network", "infiniband")) or []) if isinstance(p, dict)]
    for name, doc, key in IB_GAUGES:
        g = GaugeMetricFamily(name, doc, labels=[*BASE_LABELS, "device", "port"])
        for p in ports:
            v = _number(p.get(key))
            if v is not None:
                g.add_metric([*base, str(p.get("device") or ""), str(p.get("port"))], v)
        if g.samples:
            yield g


class PrometheusExporter:
    """Serves a run's latest sample and training metrics at ``http://ADDR:PORT/metrics``.

    Args:
        run_id, node, project: the values of the labels every series carries.
        port: TCP port; 0 takes a free one (:attr:`port` says which).
        addr: address to bind, ``0.0.0.0`` (every interface) by default.
        store: where the run's training metrics are, ``(shard_path, run_num)``, or a callable
            returning that (or ``None`` while unknown), or ``None`` for system figures only.

    Raises:
        ImportError: ``prometheus_client`` is not installed (message: :data:`MISSING`).
        OSError: the port cannot be bound (in use, no permission).
    """

    _server: WSGIServer | None  # None once closed

    def __init__(self, run_id: str, node: str, project: str | None, port: int,
                 addr: str = DEFAULT_ADDR,
                 store: tuple[str, int] | Callable[[], tuple[str, int] | None] | None = None
                 ) -> None:
        try:
            from prometheus_client import CollectorRegistry, start_http_server
        except ImportError:
            raise ImportError(MISSING) from None
        self.labels = [run_id, node, project or "default"]
        self._store = store
        self._shard: Any = None
        self._store_warned = False
        self._snap: dict[str, Any] | None = None
        self._training: tuple[list[tuple[str, str, float]], list[tuple[str, float]]] = ([], [])
        self._lock = threading.Lock()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)
        self._server, self._thread = start_http_server(port, addr=addr, registry=self.registry)
        self.addr = addr
        self.port: int = self._server.server_address[1]
        log.debug("serving Prometheus metrics at http://%s:%d/metrics", addr, self.port)

    # -- the sink (sampler thread) ----------------------------------------------------------------

    def __call__(self, snap: dict[str, Any]) -> None:
        training = self._read_training()
        with self._lock:
            self._snap = snap
            if training is not None:
                self._training = training

    def _read_training(self) -> tuple[list[tuple[str, str, float]],
                                      list[tuple[str, float]]] | None:
        """``([(key, rank, value)], [(rank, last_step)])`` from the store, ``None`` if unknown."""
        if self._store is None:
            return None
        import sqlite3

        from tracklab.errors import StoreError
        from tracklab.store import Shard
        from tracklab.store.codec import loads_exact

        try:
            where = self._store() if callable(self._store) else self._store
            if where is None:
                return None
            path, num = where
            if self._shard is None:
                self._shard = Shard(path, create=False, readonly=True)
            procs = self._shard.procs(num)
            rows = self._shard.metric_stats(num)
        except (StoreError, sqlite3.Error, OSError) as exc:
            if self._shard is not None:
                self._shard.close()
                self._shard = None
            if not self._store_warned:  # tried again at the next sample
                self._store_warned = True
                log.warning("tracklab: Prometheus export cannot read training metrics (%s)", exc)
            return None
        latest: dict[tuple[str, str], tuple[float, float]] = {}
        steps: dict[str, float] = {}
        for proc, key, _count, _nans, _lo, _hi, _sum, last, last_step, last_time in rows:
            rank = procs.get(proc, (None, None, None))[1]
            r = "" if rank is None else str(rank)
            value = _number(loads_exact(last))
            t = last_time or 0.0
            if value is not None:
                have = latest.get((key, r))
                if have is None or t >= have[0]:
                    latest[(key, r)] = (t, value)
            if last_step is not None and last_step > steps.get(r, -1):
                steps[r] = float(last_step)
        return ([(k, r, v) for (k, r), (_t, v) in sorted(latest.items())], sorted(steps.items()))

    # -- the collector (HTTP thread) ----------------------------------------------------------------

    def collect(self) -> Any:
        from prometheus_client.core import GaugeMetricFamily

        with self._lock:
            snap, (metrics, steps) = self._snap, self._training
        base = self.labels
        if snap is not None:
            g = GaugeMetricFamily("tracklab_sample_timestamp_seconds",
                                  "When the latest sample was taken (Unix time).",
                                  labels=BASE_LABELS)
            g.add_metric(base, snap.get("timestamp", 0) / 1000.0)
            yield g
            for name, doc, path, scale in SYSTEM_GAUGES:
                v = _number(_get(snap, path))
                if v is not None:
                    g = GaugeMetricFamily(name, doc, labels=BASE_LABELS)
                    g.add_metric(base, v * scale)
                    yield g
            gpus = [a for a in snap.get("accelerators") or [] if isinstance(a, dict)]
            if gpus:
                info = GaugeMetricFamily("tracklab_gpu_info", "A GPU of the node (value 1).",
                                         labels=[*BASE_LABELS, "gpu", "name", "uuid"])
                for a in gpus:
                    info.add_metric([*base, str(a.get("id")), str(a.get("name") or ""),
                                     str(a.get("uuid") or "")], 1.0)
                yield info
                for name, doc, path, scale in GPU_GAUGES:
                    g = GaugeMetricFamily(name, doc, labels=[*BASE_LABELS, "gpu"])
                    for a in gpus:
                        v = _number(_get(a, path))
                        if v is not None:
                            g.add_metric([*base, str(a.get("id"))], v * scale)
                    if g.samples:
                        yield g
            yield from _infiniband(snap, base)
        if metrics:
            g = GaugeMetricFamily("tracklab_metric",
                                  "Last logged value of a training metric, per rank.",
                                  labels=[*BASE_LABELS, "key", "rank"])
            for key, rank, v in metrics:
                g.add_metric([*base, key, rank], v)
            yield g
        if steps:
            g = GaugeMetricFamily("tracklab_training_step",
                                  "Highest training step logged, per rank.",
                                  labels=[*BASE_LABELS, "rank"])
            for rank, step in steps:
                g.add_metric([*base, rank], step)
            yield g

    def describe(self) -> list[Any]:
        return []  # unchecked collector: the series depend on the samples

    # -- life ---------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.addr in ("0.0.0.0", "", "::") else self.addr
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        """Stop serving and release the port (idempotent)."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
            self._thread.join(2.0)
        if self._shard is not None:
            self._shard.close()
            self._shard = None


def from_env(run_id: str, node: str, project: str | None,
             store: tuple[str, int] | Callable[[], tuple[str, int] | None] | None = None
             ) -> PrometheusExporter | None:
    """An exporter on ``$TRACKLAB_PROMETHEUS_PORT`` (and ``$TRACKLAB_PROMETHEUS_ADDR``), for the
    SDK's standalone sampler. ``None`` when the variable is unset; a bad value, a missing
    ``prometheus_client`` or a busy port warn once and return ``None``: training goes on."""
    raw = os.environ.get(ENV_PORT, "").strip()
    if not raw:
        return None
    import warnings

    from tracklab.errors import TracklabWarning

    try:
        port = int(raw)
        if not 0 <= port <= 65535:
            raise ValueError(raw)
    except ValueError:
        warnings.warn(f"tracklab: {ENV_PORT}={raw!r} is not a port number; not serving "
                      "Prometheus metrics", TracklabWarning, stacklevel=2)
        return None
    addr = os.environ.get(ENV_ADDR, "").strip() or DEFAULT_ADDR
    try:
        return PrometheusExporter(run_id, node, project, port, addr, store=store)
    except ImportError:
        warnings.warn(f"tracklab: {MISSING}; not serving Prometheus metrics", TracklabWarning,
                      stacklevel=2)
    except OSError as exc:
        warnings.warn(f"tracklab: cannot serve Prometheus metrics on {addr}:{port} "
                      f"({exc.strerror or exc}); training goes on without it", TracklabWarning,
                      stacklevel=2)
    return None


def start_for_wrapper(run_id: str, node: str, port: int, addr: str | None, project: str | None,
                      store: tuple[str, int] | None = None,
                      warn: Callable[[str], None] | None = None) -> PrometheusExporter | None:
    """The exporter of ``tracklab run --prometheus-port``; ``None`` (after ``warn``) when it
    cannot serve: the watched command goes on either way."""
    try:
        return PrometheusExporter(run_id, node, project, port, addr or DEFAULT_ADDR, store=store)
    except ImportError:
        msg = MISSING
    except OSError as exc:
        msg = f"cannot serve Prometheus metrics on {addr}:{port} ({exc.strerror or exc})"
    if warn is not None:
        warn(f"{msg}; running without the Prometheus endpoint")
    return None
