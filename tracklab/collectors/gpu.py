"""NVIDIA GPUs: utilization (percent), memory (bytes), temperature (°C), power (W), energy (J),
clocks (MHz), throttle reasons, errors, visibility to the run and per-process attribution; the
efficiency fields (GPM, PCIe, NVLink, memory health) come from :mod:`.gpu_efficiency`.

Everything NVML-specific goes through :class:`~tracklab.collectors._nvml.Nvml`; this module never
imports ``pynvml``, so importing it is cheap and tests hand it a fake.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from tracklab.collectors import gpu_efficiency
from tracklab.collectors._nvml import GpuLost, Nvml

log = logging.getLogger(__name__)

_COUNTERS_EVERY_S = 10.0  # error counters (ECC, PCIe replays): two of thirteen NVML calls a
                          # sample, for numbers that matter when they change, not at 0.1 s

@dataclass
class _Energy:
    """Joules consumed since the first reading, from NVML's counter or by integrating power."""

    source: str | None = None  # "counter" | "power-integration", fixed by the first reading
    base_j: float = 0.0  # counter value at the first reading, in joules
    total_j: float = 0.0
    last_w: float | None = None
    last_t: float = 0.0

    def update(self, counter_j: float | None, power_w: float | None, now: float) -> float | None:
        if self.source is None:
            if counter_j is not None:
                self.source, self.base_j = "counter", counter_j
            elif power_w is not None:
                self.source = "power-integration"
        if self.source == "counter":
            if counter_j is None:
                return None
            if counter_j - self.base_j < self.total_j:  # counter restarted (driver reloaded)
                self.base_j = counter_j - self.total_j
            self.total_j = counter_j - self.base_j
            return round(self.total_j, 3)
        if self.source is None or power_w is None:
            self.last_w = None  # a gap: the next interval starts afresh
            return None
        if self.last_w is not None:  # trapezoid over the interval since the last reading
            self.total_j += (self.last_w + power_w) / 2.0 * (now - self.last_t)
        self.last_w, self.last_t = power_w, now
        return round(self.total_j, 3)


@dataclass
class _Gpu:
    """One GPU's static facts (read once) and the state its readings carry between samples."""

    index: int
    handle: Any = None
    name: str | None = None
    uuid: str | None = None
    pci_bus_id: str | None = None
    memory_total: int | None = None
    power_limit: float | None = None  # W
    sm_clock_max: int | None = None  # MHz
    mig_mode: bool | None = None
    mig_uuids: list[str] = field(default_factory=list)
    lost: bool = False
    energy: _Energy = field(default_factory=_Energy)
    samples_since_us: int = 0  # newest process-utilization sample already counted
    counters: tuple[Any, Any] = (None, None)  # ECC uncorrected, PCIe replays, as of counters_at
    counters_at: float = float("-inf")  # monotonic seconds
    efficiency: gpu_efficiency.State | None = None


class GpuCollector:
    """Samples every NVIDIA GPU through NVML.

    Args:
        nvml: an opened :class:`Nvml` (tests pass one over a fake); ``None`` opens the real one
            lazily, once, on the first call that needs it.
    """

    def __init__(self, nvml: Nvml | None = None) -> None:
        self._nvml = nvml
        self._opened = nvml is not None  # Nvml.open() is tried once, even when it finds nothing
        self._gpus: list[_Gpu] | None = None
        self._lock = threading.Lock()
        self._closed = False

    # -- public ---------------------------------------------------------------------------------

    def collect(self, tree_pids: set[int] | None = None) -> list[dict[str, Any]]:
        """One reading of every GPU that is not lost.

        Args:
            tree_pids: pids of the run's process tree; with them each GPU reports how much
                memory and SM time the tree uses (``treeMemory``, ``treeUtilization``).

        Returns:
            One dict per GPU in the ``accelerators`` format of API.md, in base units; a field
            NVML cannot give is ``None``. ``[]`` without a driver.
        """
        gpus = self._devices()
        nvml = self._nvml
        if not gpus or nvml is None:
            return []
        visible = _visible(os.environ.get("CUDA_VISIBLE_DEVICES"), gpus)
        out = []
        for gpu in gpus:
            if not gpu.lost:
                try:
                    out.append(_read(nvml, gpu, tree_pids, visible))
                    continue
                except GpuLost:
                    self._lose(gpu)
            # A lost GPU keeps its place, with null readings: entry i stays GPU i in the store.
            out.append(_lost_entry(gpu))
        return out

    def count(self) -> int:
        """Number of GPUs this collector reports: NVML's count less lost ones; 0 without one."""
        return sum(not g.lost for g in self._devices())

    def info(self) -> list[dict[str, Any]]:
        """Static facts per GPU (``memoryTotal`` in bytes); ``[]`` without a driver."""
        gpus = self._devices()
        nvml = self._nvml
        if not gpus or nvml is None:
            return []
        driver, cuda = nvml.driver_version(), nvml.cuda_version()
        return [{"id": g.index, "name": g.name, "uuid": g.uuid, "pciBusId": g.pci_bus_id,
                 "memoryTotal": g.memory_total, "driverVersion": driver, "cudaVersion": cuda,
                 "migMode": g.mig_mode} for g in gpus if not g.lost]

    def close(self) -> None:
        """Shut NVML down (also an ``Nvml`` passed in); later calls report no GPUs. Idempotent.

        It takes no lock and never waits for a reading in flight, so a hung driver cannot hold
        up the caller's shutdown; such a reading finds NVML closed and returns nulls.
        """
        self._closed = self._opened = True  # never (re)opened after this
        nvml, self._nvml = self._nvml, None
        if nvml is not None:
            for gpu in self._gpus or ():
                if gpu.efficiency is not None and not gpu.lost:
                    try:
                        gpu_efficiency.close(nvml, gpu.efficiency)
                    except GpuLost:
                        pass  # nothing left to free on a GPU that is gone
            nvml.close()

    # -- internals ------------------------------------------------------------------------------

    def _devices(self) -> list[_Gpu]:
        with self._lock:
            if self._closed:
                return []
            if not self._opened:
                self._opened, self._nvml = True, Nvml.open()
            if self._gpus is None:
                self._gpus = [] if self._nvml is None else self._discover(self._nvml)
            return self._gpus

    def _discover(self, nvml: Nvml) -> list[_Gpu]:
        gpus = []
        for index in range(nvml.device_count()):
            gpu = _Gpu(index)
            gpus.append(gpu)
            try:
                gpu.handle = h = nvml.handle(index)
                if h is None:
                    gpu.lost = True  # NVML cannot address it at all; nothing to report
                    continue
                gpu.name, gpu.uuid, gpu.pci_bus_id = nvml.name(h), nvml.uuid(h), nvml.pci_bus_id(h)
                gpu.memory_total = nvml.memory(h)[1]
                gpu.power_limit, gpu.sm_clock_max = nvml.power_limit(h), nvml.sm_clock_max(h)
                gpu.mig_mode = nvml.mig_mode(h)
                mig = nvml.mig_devices(h) if gpu.mig_mode else []
                gpu.mig_uuids = [uuid for uuid, _ in mig]
                gpu.efficiency = gpu_efficiency.discover(nvml, h, mig)
            except GpuLost:
                self._lose(gpu)
        return gpus

    def _lose(self, gpu: _Gpu) -> None:
        gpu.lost = True
        log.warning("tracklab: warning: GPU %d (%s) is lost: NVML reports GPU_IS_LOST (often Xid "
                    "79, fallen off the bus); its readings are null from now on", gpu.index,
                    gpu.uuid or "unknown uuid")


def _lost_entry(gpu: _Gpu) -> dict[str, Any]:
    return {"id": gpu.index, "type": "gpu", "name": gpu.name, "uuid": gpu.uuid,
            "pciBusId": gpu.pci_bus_id, "lost": True, "utilization": None,
            "memory": {"used": None, "total": gpu.memory_total, "percentage": None},
            "temperature": None, "power": None, "fanSpeed": None, **gpu_efficiency.empty()}


def _read(nvml: Nvml, gpu: _Gpu, tree_pids: set[int] | None,
          visible: set[int] | None) -> dict[str, Any]:
    """One GPU's entry of the ``accelerators`` list (see :meth:`GpuCollector.collect`)."""
    h = gpu.handle
    used, total = nvml.memory(h)
    total = total if total is not None else gpu.memory_total
    power = nvml.power(h)
    now = time.monotonic()
    energy = gpu.energy.update(nvml.energy(h), power, now)
    if now - gpu.counters_at >= _COUNTERS_EVERY_S:
        gpu.counters, gpu.counters_at = (nvml.ecc_uncorrected(h), nvml.pcie_replays(h)), now
    util, memory_util = nvml.utilization_rates(h)
    eff = gpu_efficiency.read(nvml, h, gpu.efficiency, now) if gpu.efficiency else {}
    snap: dict[str, Any] = {
        "id": gpu.index,
        "type": "gpu",
        "name": gpu.name,
        "uuid": gpu.uuid,
        "pciBusId": gpu.pci_bus_id,
        "utilization": util,
        "memoryUtilization": memory_util,
        "memory": {
            "used": used,
            "total": total,
            "percentage": round(used / total * 100.0, 2) if used is not None and total else None,
        },
        "temperature": nvml.temperature(h),
        "power": power,
        "powerLimit": gpu.power_limit,
        "fanSpeed": nvml.fan_speed(h),
        "energy": energy,
        "energySource": gpu.energy.source,
        "throttleReasons": nvml.throttle_reasons(h),
        "eccErrors": gpu.counters[0],
        "pcieReplays": gpu.counters[1],
        "visible": None if visible is None else gpu.index in visible,
        **(eff or gpu_efficiency.empty()),
    }
    snap["clocks"] = {"sm": nvml.sm_clock(h), "smMax": gpu.sm_clock_max,
                      **(eff.get("clocks") or {})}
    snap.update(_processes(nvml, gpu, tree_pids))
    return snap


def _processes(nvml: Nvml, gpu: _Gpu, tree_pids: set[int] | None) -> dict[str, Any]:
    """The ``processes``, ``tree*`` and ``attribution`` fields of one GPU's reading."""
    memory = nvml.processes(gpu.handle)
    samples = nvml.process_utilization(gpu.handle, gpu.samples_since_us)
    sm: dict[int, list[float]] = {}
    for pid, ts, util in samples or ():
        sm.setdefault(pid, []).append(util)
        gpu.samples_since_us = max(gpu.samples_since_us, ts)
    pids = sorted(set(memory or ()) | set(sm)) if memory or sm else []
    tree = tree_pids if tree_pids is not None else set()
    procs = [{"pid": pid,
              "memory": (memory or {}).get(pid),
              "utilization": round(sum(sm[pid]) / len(sm[pid]), 2) if pid in sm else None,
              "inTree": pid in tree} for pid in pids]
    result: dict[str, Any] = {"processes": procs, "treeMemory": None,
                              "treeUtilization": None, "attribution": None}
    if tree_pids is None or memory is None:
        return result
    if procs and not tree.intersection(pids) and not _any_pid_here(pids):
        # NVML's pids are in the driver's (host) pid namespace and none exist in ours: we are
        # in a container, and matching them against the tree would be a guess.
        result["attribution"] = "unattributed"
        return result
    mine = [p for p in procs if p["inTree"]]
    known = [p["memory"] for p in mine if p["memory"] is not None]
    result["attribution"] = "pid"
    result["treeMemory"] = sum(known) if known or not mine else None
    if samples is not None:
        result["treeUtilization"] = round(sum((p["utilization"] or 0.0 for p in mine), 0.0), 2)
    return result


def _any_pid_here(pids: list[int]) -> bool:
    """Whether any pid exists in this pid namespace; off Linux we cannot tell, so assume so."""
    if not sys.platform.startswith("linux"):
        return True
    return any(os.path.exists(f"/proc/{pid}") for pid in pids)


def _visible(value: str | None, gpus: list[_Gpu]) -> set[int] | None:
    """NVML indices of the GPUs ``CUDA_VISIBLE_DEVICES`` gives the run; ``None`` when unset.

    Entries are indices, GPU UUIDs or unique UUID prefixes (``GPU-...``), or MIG devices
    (``MIG-<uuid>`` or the older ``MIG-GPU-<uuid>/<gi>/<ci>``), which make their parent GPU
    visible. Like CUDA, the list ends at the first entry that names no GPU. Indices are matched
    against NVML's (PCI bus) order, which is CUDA's own only with ``CUDA_DEVICE_ORDER=PCI_BUS_ID``.
    """
    if value is None:
        return None
    chosen: set[int] = set()
    for entry in value.split(","):
        index = _match(entry.strip(), gpus)
        if index is None:
            break
        chosen.add(index)
    return chosen


def _match(entry: str, gpus: list[_Gpu]) -> int | None:
    if entry.isdigit():
        index = int(entry)
        return index if index < len(gpus) else None
    if entry.startswith("MIG-GPU-"):  # pre-R470 MIG syntax names the parent GPU
        entry = entry[len("MIG-"):].split("/")[0]
    if entry.startswith("GPU-"):
        hits = [g.index for g in gpus if g.uuid and g.uuid.startswith(entry)]
    elif entry.startswith("MIG-"):
        hits = [g.index for g in gpus if any(u.startswith(entry) for u in g.mig_uuids)]
    else:
        return None
    return hits[0] if len(hits) == 1 else None
