"""NVML readings that say how well a GPU is used, beyond "a kernel ran": clocks, P-state, media
engines, the PCIe link, NVLink and memory health counters (field values), and on Hopper and
newer the GPM metrics (SM activity, occupancy, tensor pipes, DRAM bandwidth, FP pipes).

A mixin of :class:`~tracklab.collectors._nvml.Nvml`: it calls NVML only through ``self.read``
and reads pynvml's constants off ``self.lib``, so the seam stays the one place NVML is called
and tests hand it the fake. Constants are looked up with ``getattr``: an older nvidia-ml-py
lacks the newer ones, and a reading it cannot name is simply ``None``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

MIB = 2**20

# nvmlDeviceGetFieldValues ids, by pynvml name. Read every sample: NVLink data counters (KiB
# since the driver loaded), PCIe byte counters (newer GPUs), memory temperature (HBM parts).
FAST_FIELDS = ("NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX", "NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX",
               "NVML_FI_DEV_PCIE_COUNT_TX_BYTES", "NVML_FI_DEV_PCIE_COUNT_RX_BYTES",
               "NVML_FI_DEV_MEMORY_TEMP")
# Error counters that matter when they change: read with the other slow counters.
NVLINK_ERROR_FIELDS = (("crc", "NVML_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL"),
                       ("crc", "NVML_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL"),
                       ("replay", "NVML_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL"),
                       ("recovery", "NVML_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL"))

# GPM metric ids by the name tracklab stores them under (percent 0-100 unless said).
GPM_METRICS = (("smActive", "NVML_GPM_METRIC_SM_UTIL"),
               ("smOccupancy", "NVML_GPM_METRIC_SM_OCCUPANCY"),
               ("tensorActive", "NVML_GPM_METRIC_ANY_TENSOR_UTIL"),
               ("dramActive", "NVML_GPM_METRIC_DRAM_BW_UTIL"),
               ("fp16Active", "NVML_GPM_METRIC_FP16_UTIL"),
               ("fp32Active", "NVML_GPM_METRIC_FP32_UTIL"),
               ("fp64Active", "NVML_GPM_METRIC_FP64_UTIL"),
               ("pcieTx", "NVML_GPM_METRIC_PCIE_TX_PER_SEC"),  # MiB/s
               ("pcieRx", "NVML_GPM_METRIC_PCIE_RX_PER_SEC"),
               ("nvlinkTx", "NVML_GPM_METRIC_NVLINK_TOTAL_TX_PER_SEC"),
               ("nvlinkRx", "NVML_GPM_METRIC_NVLINK_TOTAL_RX_PER_SEC"))
GPM_PERCENTS = tuple(name for name, _ in GPM_METRICS[:7])
GPM_MIN_WINDOW_S = 0.1  # NVML computes GPM metrics over two samples at least this far apart

_SUCCESS = 0
_NOT_SUPPORTED = 3  # NVML_ERROR_NOT_SUPPORTED, as a field value's or GPM metric's nvmlReturn
_PSTATE_UNKNOWN = 32


def _field_number(v: Any) -> float | int | None:
    """The value of one ``nvmlFieldValue_t`` by its ``valueType``; ``None`` unless it succeeded."""
    if v.nvmlReturn != _SUCCESS:
        return None
    kind = v.valueType
    u = v.value
    if kind == 0:
        return float(u.dVal)
    return int((u.uiVal, u.ulVal, u.ullVal, u.sllVal, u.siVal, u.usVal)[kind - 1]) \
        if 1 <= kind <= 6 else None


@dataclass
class GpmState:
    """Two GPM sample buffers of one GPU (or one MIG GPU instance) and the last metrics."""

    gpu_instance: int | None = None  # a MIG GPU instance id; None for the whole GPU
    samples: list[Any] = field(default_factory=list)
    prev: Any = None  # the sample the next window starts at
    prev_t: float = 0.0  # monotonic seconds it was taken
    request: Any = None  # the reused nvmlGpmMetricsGet_t (a 19 KB ctypes struct)
    ids: list[int] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    values: dict[str, float | None] | None = None


class Efficiency:
    """Readings mixed into :class:`~tracklab.collectors._nvml.Nvml` (see the module doc)."""

    lib: ModuleType

    def read(self, getter: str, *args: Any, not_found: Any = None) -> Any:
        raise NotImplementedError  # Nvml's

    def _const(self, name: str) -> Any:
        return getattr(self.lib, name, None)

    # -- clocks, P-state, media engines --------------------------------------------------------

    def clock(self, handle: Any, which: str, maximum: bool = False) -> int | None:
        """A clock in megahertz (MHz): ``which`` is ``"graphics"``, ``"sm"`` or ``"memory"``."""
        kind = self._const({"graphics": "NVML_CLOCK_GRAPHICS", "sm": "NVML_CLOCK_SM",
                            "memory": "NVML_CLOCK_MEM"}[which])
        if kind is None:
            return None
        v = self.read("nvmlDeviceGetMaxClockInfo" if maximum else "nvmlDeviceGetClockInfo",
                      handle, kind)
        return None if v is None else int(v)

    def pstate(self, handle: Any) -> int | None:
        """Performance state, 0 (P0, fastest) to 15; ``None`` when unknown."""
        v = self.read("nvmlDeviceGetPerformanceState", handle)
        return None if v is None or v == _PSTATE_UNKNOWN else int(v)

    def media_utilization(self, handle: Any) -> tuple[float | None, float | None]:
        """``(encoder, decoder)`` utilization, percent (0-100) of NVML's sampling period."""
        enc = self.read("nvmlDeviceGetEncoderUtilization", handle)
        dec = self.read("nvmlDeviceGetDecoderUtilization", handle)
        return (None if enc is None else float(enc[0]), None if dec is None else float(dec[0]))

    # -- PCIe ----------------------------------------------------------------------------------

    def pcie_link(self, handle: Any, maximum: bool = False) -> tuple[int | None, int | None]:
        """``(generation, lanes)`` of the PCIe link now, or the most this GPU and slot allow.

        The link drops to a lower generation when the GPU idles (power saving): "now" below
        the maximum only means a down-trained link under load.
        """
        kind = "Max" if maximum else "Curr"
        gen = self.read(f"nvmlDeviceGet{kind}PcieLinkGeneration", handle)
        width = self.read(f"nvmlDeviceGet{kind}PcieLinkWidth", handle)
        return (None if gen is None else int(gen), None if width is None else int(width))

    def pcie_throughput(self, handle: Any) -> tuple[float | None, float | None]:
        """``(tx, rx)`` in bytes per second (B/s), which NVML samples over 20 ms *per call*:
        blocking, so callers read it seldom and prefer counters (field values, GPM)."""
        out: list[float | None] = []
        for name in ("NVML_PCIE_UTIL_TX_BYTES", "NVML_PCIE_UTIL_RX_BYTES"):
            counter = self._const(name)
            kb = None if counter is None else self.read("nvmlDeviceGetPcieThroughput", handle,
                                                        counter)
            out.append(None if kb is None else float(kb) * 1024.0)  # KB/s
        return out[0], out[1]

    # -- field values (NVLink, PCIe counters, memory temperature) --------------------------------

    def field_ids(self, names: tuple[str, ...]) -> list[int | None]:
        """pynvml's ids for ``names`` (``None`` for one this nvidia-ml-py does not name)."""
        return [self._const(n) for n in names]

    def field_values(self, handle: Any, ids: list[int]) -> tuple[list[Any], set[int]] | None:
        """One ``nvmlDeviceGetFieldValues`` call: the values in order of ``ids`` (``None``
        where a value failed) and the ids the device answered NOT_SUPPORTED for (a capability:
        the caller stops asking). ``None`` when the call as a whole failed."""
        if not ids:
            return [], set()
        raw = self.read("nvmlDeviceGetFieldValues", handle, ids)
        if raw is None:
            return None
        values = []
        unsupported = set()
        for fid, v in zip(ids, raw):
            values.append(_field_number(v))
            if v.nvmlReturn == _NOT_SUPPORTED:
                unsupported.add(fid)
        return values, unsupported

    def nvlink_count(self, handle: Any) -> int | None:
        """Number of NVLinks the GPU has; ``None`` when NVML cannot say (no NVLink, or PCIe)."""
        fid = self._const("NVML_FI_DEV_NVLINK_LINK_COUNT")
        got = None if fid is None else self.field_values(handle, [fid])
        return None if not got or got[0][0] is None else int(got[0][0])

    # -- memory health ---------------------------------------------------------------------------

    def retired_pages(self, handle: Any) -> int | None:
        """Device memory pages retired for ECC errors (single- and double-bit), pre-Ampere."""
        total = None
        for name in ("NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS",
                     "NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR"):
            cause = self._const(name)
            pages = None if cause is None else self.read("nvmlDeviceGetRetiredPages", handle,
                                                         cause)
            if pages is not None:
                total = (total or 0) + len(pages)
        return total

    def remapped_rows(self, handle: Any) -> dict[str, Any] | None:
        """Row remapping (Ampere and newer): ``{correctable, uncorrectable}`` rows remapped,
        ``pending`` (a reset is needed to apply one), ``failed`` (a remap failed: replace)."""
        rows = self.read("nvmlDeviceGetRemappedRows", handle)
        if rows is None:
            return None
        corr, unc, pending, failed = rows
        return {"correctable": int(corr), "uncorrectable": int(unc), "pending": bool(pending),
                "failed": bool(failed)}

    # -- GPM (Hopper and newer) -------------------------------------------------------------------

    def gpm_supported(self, handle: Any) -> bool:
        support = self.read("nvmlGpmQueryDeviceSupport", handle)
        return bool(support is not None and support.isSupportedDevice)

    def gpu_instance_id(self, mig_handle: Any) -> int | None:
        """The GPU instance a MIG device handle belongs to (what GPM's MIG samples take)."""
        v = self.read("nvmlDeviceGetGpuInstanceId", mig_handle)
        return None if v is None else int(v)

    def gpm_open(self, gpu_instance: int | None = None) -> GpmState | None:
        """Two sample buffers and a metrics request; ``None`` when NVML cannot give them."""
        lib = self.lib
        make = getattr(lib, "c_nvmlGpmMetricsGet_t", None)
        pairs = [(name, self._const(c)) for name, c in GPM_METRICS]
        pairs = [(name, i) for name, i in pairs if i is not None]
        if make is None or not pairs:
            return None
        samples = [self.read("nvmlGpmSampleAlloc") for _ in range(2)]
        if any(s is None for s in samples):
            for s in samples:
                if s is not None:
                    self.read("nvmlGpmSampleFree", s)
            return None
        request = make()
        request.version = self._const("NVML_GPM_METRICS_GET_VERSION") or 1
        request.numMetrics = len(pairs)
        for i, (_, mid) in enumerate(pairs):
            request.metrics[i].metricId = mid
        return GpmState(gpu_instance, samples, request=request,
                        ids=[i for _, i in pairs], names=[n for n, _ in pairs])

    def gpm_sample(self, handle: Any, state: GpmState, into: Any) -> bool:
        """Take a GPM sample of the GPU (or of ``state``'s MIG GPU instance) into ``into``."""
        if state.gpu_instance is None:
            return self.read("nvmlGpmSampleGet", handle, into) is not None
        return self.read("nvmlGpmMigSampleGet", handle, state.gpu_instance, into) is not None

    def gpm_metrics(self, state: GpmState, first: Any, second: Any
                    ) -> dict[str, float | None] | None:
        """The metrics between two samples: percents, and PCIe/NVLink rates in B/s (keys
        ending ``Tx``/``Rx``). NVML reads each ``metricId`` and writes its result beside it."""
        req = state.request
        req.sample1, req.sample2 = first, second
        if self.read("nvmlGpmMetricsGet", req) is None:
            return None
        out: dict[str, float | None] = {}
        metrics = req.metrics
        for i, name in enumerate(state.names):
            m = metrics[i]
            v = m.value
            if m.nvmlReturn != _SUCCESS or v != v:  # NaN: a window without cycles to divide by
                out[name] = None
            elif name[-1] == "x":  # pcieTx, nvlinkRx...: MiB/s
                out[name] = round(v * MIB, 1)
            else:
                out[name] = round(v, 2)
        return out

    def gpm_close(self, state: GpmState) -> None:
        for s in state.samples:
            self.read("nvmlGpmSampleFree", s)
        state.samples = []
