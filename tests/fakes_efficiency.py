"""The fake NVML's efficiency readings: PCIe link and traffic, field values (NVLink counters,
memory temperature), P-state, media engines, memory health, and GPM. Part of ``tests.fakes``
(import that module, not this one), split off to keep each file short.

Readings, per GPU of the scenario (see ``tests.fakes``):

- PCIe link: ``gpu.link`` (gen now, gen max, width now, width max); PCIe traffic: 2 GB/s out and
  4 GB/s in, as byte counters (field values, H100) or as ``nvmlDeviceGetPcieThroughput``;
- NVLink (``gpu.nvlinks`` links; none on a PCIe card): 10 GB/s out and in, as KiB counters; CRC
  errors grow by ``gpu.nvlink_errors_step`` per error-counter read; memory temperature 60 °C;
- P-state 0, encoder 0 %, decoder 5 %; no retired pages (NOT_SUPPORTED after Volta), no
  remapped rows;
- GPM on Hopper: the metrics of ``gpu.gpm`` (TRAINING unless the scenario says), the same for
  each MIG GPU instance but SM activity halved; NOT_SUPPORTED for metrics it does not list.
"""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

from pynvml import (
    NVML_ERROR_INVALID_ARGUMENT,
    NVML_ERROR_NOT_SUPPORTED,
    NVML_FI_DEV_MEMORY_TEMP,
    NVML_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL,
    NVML_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL,
    NVML_FI_DEV_NVLINK_LINK_COUNT,
    NVML_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL,
    NVML_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL,
    NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX,
    NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX,
    NVML_FI_DEV_PCIE_COUNT_RX_BYTES,
    NVML_FI_DEV_PCIE_COUNT_TX_BYTES,
    NVML_GPM_METRIC_ANY_TENSOR_UTIL,
    NVML_GPM_METRIC_DRAM_BW_UTIL,
    NVML_GPM_METRIC_FP16_UTIL,
    NVML_GPM_METRIC_FP32_UTIL,
    NVML_GPM_METRIC_FP64_UTIL,
    NVML_GPM_METRIC_NVLINK_TOTAL_RX_PER_SEC,
    NVML_GPM_METRIC_NVLINK_TOTAL_TX_PER_SEC,
    NVML_GPM_METRIC_PCIE_RX_PER_SEC,
    NVML_GPM_METRIC_PCIE_TX_PER_SEC,
    NVML_GPM_METRIC_SM_OCCUPANCY,
    NVML_GPM_METRIC_SM_UTIL,
    NVML_GPM_METRICS_GET_VERSION,
    NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR,
    NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS,
    NVML_PCIE_UTIL_RX_BYTES,
    NVML_PCIE_UTIL_TX_BYTES,
    NVML_SUCCESS,
    NVML_VALUE_TYPE_UNSIGNED_LONG_LONG,
)

from tests.fakes import _device, _fail, _Gpu, _Handle, _ready

__all__ = [
    "NVLINK_BPS",
    "NVML_FI_DEV_MEMORY_TEMP",
    "NVML_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL",
    "NVML_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL",
    "NVML_FI_DEV_NVLINK_LINK_COUNT",
    "NVML_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL",
    "NVML_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL",
    "NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX",
    "NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX",
    "NVML_FI_DEV_PCIE_COUNT_RX_BYTES",
    "NVML_FI_DEV_PCIE_COUNT_TX_BYTES",
    "NVML_GPM_METRICS_GET_VERSION",
    "NVML_GPM_METRIC_ANY_TENSOR_UTIL",
    "NVML_GPM_METRIC_DRAM_BW_UTIL",
    "NVML_GPM_METRIC_FP16_UTIL",
    "NVML_GPM_METRIC_FP32_UTIL",
    "NVML_GPM_METRIC_FP64_UTIL",
    "NVML_GPM_METRIC_NVLINK_TOTAL_RX_PER_SEC",
    "NVML_GPM_METRIC_NVLINK_TOTAL_TX_PER_SEC",
    "NVML_GPM_METRIC_PCIE_RX_PER_SEC",
    "NVML_GPM_METRIC_PCIE_TX_PER_SEC",
    "NVML_GPM_METRIC_SM_OCCUPANCY",
    "NVML_GPM_METRIC_SM_UTIL",
    "NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR",
    "NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS",
    "NVML_PCIE_UTIL_RX_BYTES",
    "NVML_PCIE_UTIL_TX_BYTES",
    "PCIE_RX",
    "PCIE_TX",
    "c_nvmlGpmMetricsGet_t",
    "nvmlDeviceGetCurrPcieLinkGeneration",
    "nvmlDeviceGetCurrPcieLinkWidth",
    "nvmlDeviceGetDecoderUtilization",
    "nvmlDeviceGetEncoderUtilization",
    "nvmlDeviceGetFieldValues",
    "nvmlDeviceGetGpuInstanceId",
    "nvmlDeviceGetMaxPcieLinkGeneration",
    "nvmlDeviceGetMaxPcieLinkWidth",
    "nvmlDeviceGetPcieThroughput",
    "nvmlDeviceGetPerformanceState",
    "nvmlDeviceGetRemappedRows",
    "nvmlDeviceGetRetiredPages",
    "nvmlGpmMetricsGet",
    "nvmlGpmMigSampleGet",
    "nvmlGpmQueryDeviceSupport",
    "nvmlGpmSampleAlloc",
    "nvmlGpmSampleFree",
    "nvmlGpmSampleGet",
]

PCIE_TX, PCIE_RX = 2e9, 4e9  # bytes per second
NVLINK_BPS = 10e9
MIB = 2**20

# GPM profiles, metric id -> value (percent; PCIe and NVLink in MiB/s as NVML gives them)
TRAINING = {NVML_GPM_METRIC_SM_UTIL: 72.0, NVML_GPM_METRIC_SM_OCCUPANCY: 41.0,
            NVML_GPM_METRIC_ANY_TENSOR_UTIL: 38.0, NVML_GPM_METRIC_DRAM_BW_UTIL: 35.0,
            NVML_GPM_METRIC_FP16_UTIL: 6.0, NVML_GPM_METRIC_FP32_UTIL: 12.0,
            NVML_GPM_METRIC_FP64_UTIL: 0.0, NVML_GPM_METRIC_PCIE_TX_PER_SEC: PCIE_TX / MIB,
            NVML_GPM_METRIC_PCIE_RX_PER_SEC: PCIE_RX / MIB,
            NVML_GPM_METRIC_NVLINK_TOTAL_TX_PER_SEC: NVLINK_BPS / MIB,
            NVML_GPM_METRIC_NVLINK_TOTAL_RX_PER_SEC: NVLINK_BPS / MIB}
# a rank spinning in an NCCL collective: "utilization" 100 %, SMs all but idle
NCCL_HANG = {**TRAINING, NVML_GPM_METRIC_SM_UTIL: 3.0, NVML_GPM_METRIC_SM_OCCUPANCY: 1.0,
             NVML_GPM_METRIC_ANY_TENSOR_UTIL: 0.0, NVML_GPM_METRIC_DRAM_BW_UTIL: 0.5,
             NVML_GPM_METRIC_FP16_UTIL: 0.0, NVML_GPM_METRIC_FP32_UTIL: 0.1,
             NVML_GPM_METRIC_PCIE_TX_PER_SEC: 0.0, NVML_GPM_METRIC_PCIE_RX_PER_SEC: 0.0,
             NVML_GPM_METRIC_NVLINK_TOTAL_TX_PER_SEC: 0.0,
             NVML_GPM_METRIC_NVLINK_TOTAL_RX_PER_SEC: 0.0}

# every optional reading of this module, for the not_supported scenario
OPTIONAL = frozenset(n for n in __all__ if n.startswith("nvml") and n != "nvmlGpmSampleAlloc"
                     and n != "nvmlGpmSampleFree")


def _counter(gpu: _Gpu, name: str, per_s: float) -> int:
    """A counter growing at ``per_s`` since the GPU's first read of it."""
    now = time.monotonic()
    start = gpu.counters.setdefault(name + "@", now)
    return int((now - start) * per_s) + 1_000_000


# -- PCIe -------------------------------------------------------------------------------------


def nvmlDeviceGetCurrPcieLinkGeneration(handle: _Handle) -> int:
    return _device(handle, "nvmlDeviceGetCurrPcieLinkGeneration").link[0]


def nvmlDeviceGetMaxPcieLinkGeneration(handle: _Handle) -> int:
    return _device(handle, "nvmlDeviceGetMaxPcieLinkGeneration").link[1]


def nvmlDeviceGetCurrPcieLinkWidth(handle: _Handle) -> int:
    return _device(handle, "nvmlDeviceGetCurrPcieLinkWidth").link[2]


def nvmlDeviceGetMaxPcieLinkWidth(handle: _Handle) -> int:
    return _device(handle, "nvmlDeviceGetMaxPcieLinkWidth").link[3]


def nvmlDeviceGetPcieThroughput(handle: _Handle, counter: int) -> int:
    _device(handle, "nvmlDeviceGetPcieThroughput")
    return int((PCIE_TX if counter == NVML_PCIE_UTIL_TX_BYTES else PCIE_RX) / 1024)  # KB/s


# -- field values -------------------------------------------------------------------------------


def _field(gpu: _Gpu, fid: int) -> tuple[int, int, float | int]:
    """``(nvmlReturn, valueType, value)`` of one field id on ``gpu``."""
    ull = NVML_VALUE_TYPE_UNSIGNED_LONG_LONG
    missing = (NVML_ERROR_NOT_SUPPORTED, ull, 0)
    if fid == NVML_FI_DEV_MEMORY_TEMP:
        return NVML_SUCCESS, ull, 60
    if fid == NVML_FI_DEV_NVLINK_LINK_COUNT:
        return (NVML_SUCCESS, ull, gpu.nvlinks) if gpu.nvlinks else missing
    if fid in (NVML_FI_DEV_PCIE_COUNT_TX_BYTES, NVML_FI_DEV_PCIE_COUNT_RX_BYTES):
        if not gpu.pcie_counters:
            return missing
        tx = fid == NVML_FI_DEV_PCIE_COUNT_TX_BYTES
        return NVML_SUCCESS, ull, _counter(gpu, str(fid), PCIE_TX if tx else PCIE_RX)
    if not gpu.nvlinks:
        return missing
    if fid in (NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX, NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX):
        return NVML_SUCCESS, ull, _counter(gpu, str(fid), NVLINK_BPS / 1024)  # KiB
    if fid == NVML_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL:
        gpu.counters["crc"] = gpu.counters.get("crc", 0) + gpu.nvlink_errors_step
        return NVML_SUCCESS, ull, int(gpu.counters["crc"])
    if fid in (NVML_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL,
               NVML_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL,
               NVML_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL):
        return NVML_SUCCESS, ull, 0
    return missing


def nvmlDeviceGetFieldValues(handle: _Handle, field_ids: list[Any]) -> list[SimpleNamespace]:
    gpu = _device(handle, "nvmlDeviceGetFieldValues")
    out = []
    for fid in field_ids:
        fid, scope = fid if isinstance(fid, tuple) else (fid, 0)
        ret, kind, value = _field(gpu, fid)
        number = SimpleNamespace(dVal=float(value), uiVal=int(value), ulVal=int(value),
                                 ullVal=int(value), sllVal=int(value), siVal=int(value),
                                 usVal=int(value))
        out.append(SimpleNamespace(fieldId=fid, scopeId=scope, timestamp=time.time_ns() // 1000,
                                   latencyUsec=0, valueType=kind, nvmlReturn=ret, value=number))
    return out


# -- P-state, media engines, memory health ------------------------------------------------------


def nvmlDeviceGetPerformanceState(handle: _Handle) -> int:
    _device(handle, "nvmlDeviceGetPerformanceState")
    return 0


def nvmlDeviceGetEncoderUtilization(handle: _Handle) -> list[int]:
    _device(handle, "nvmlDeviceGetEncoderUtilization")
    return [0, 167_000]


def nvmlDeviceGetDecoderUtilization(handle: _Handle) -> list[int]:
    _device(handle, "nvmlDeviceGetDecoderUtilization")
    return [5, 167_000]


def nvmlDeviceGetRetiredPages(handle: _Handle, cause: int) -> list[int]:
    _device(handle, "nvmlDeviceGetRetiredPages")
    assert cause in (NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS,
                     NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR)
    _fail(NVML_ERROR_NOT_SUPPORTED)  # Ampere and newer remap rows instead


def nvmlDeviceGetRemappedRows(handle: _Handle) -> tuple[int, int, int, int]:
    _device(handle, "nvmlDeviceGetRemappedRows")
    return (0, 0, 0, 0)


def nvmlDeviceGetGpuInstanceId(handle: _Handle) -> int:
    _device(handle, "nvmlDeviceGetGpuInstanceId")
    if handle.mig is None:
        _fail(NVML_ERROR_INVALID_ARGUMENT)  # only a MIG device handle has one
    return handle.mig + 1


# -- GPM ------------------------------------------------------------------------------------------


class c_nvmlGpmMetricsGet_t:
    """pynvml's request struct, as plain attributes (the seam fills and reads the same names)."""

    def __init__(self) -> None:
        self.version = 0
        self.numMetrics = 0
        self.sample1: Any = None
        self.sample2: Any = None
        self.metrics = [SimpleNamespace(metricId=0, nvmlReturn=0, value=0.0) for _ in range(16)]


def nvmlGpmQueryDeviceSupport(handle: _Handle) -> SimpleNamespace:
    gpu = _device(handle, "nvmlGpmQueryDeviceSupport")
    return SimpleNamespace(version=1, isSupportedDevice=int(gpu.gpm is not None))


def nvmlGpmSampleAlloc() -> SimpleNamespace:
    _ready("nvmlGpmSampleAlloc")
    return SimpleNamespace(index=None, gi=None, t=None, freed=False)


def nvmlGpmSampleFree(sample: SimpleNamespace) -> None:
    _ready("nvmlGpmSampleFree")
    sample.freed = True


def _take(handle: _Handle, call: str, gi: int | None, sample: SimpleNamespace
          ) -> SimpleNamespace:
    gpu = _device(handle, call)
    if gpu.gpm is None or sample.freed:
        _fail(NVML_ERROR_NOT_SUPPORTED if gpu.gpm is None else NVML_ERROR_INVALID_ARGUMENT)
    sample.index, sample.gi, sample.t = gpu.index, gi, time.monotonic()
    return sample


def nvmlGpmSampleGet(handle: _Handle, sample: SimpleNamespace) -> SimpleNamespace:
    return _take(handle, "nvmlGpmSampleGet", None, sample)


def nvmlGpmMigSampleGet(handle: _Handle, gi: int, sample: SimpleNamespace) -> SimpleNamespace:
    gpu = _device(handle, "nvmlGpmMigSampleGet")
    if not 1 <= gi <= len(gpu.mig_uuids):
        _fail(NVML_ERROR_INVALID_ARGUMENT)
    return _take(handle, "nvmlGpmMigSampleGet", gi, sample)


def nvmlGpmMetricsGet(req: c_nvmlGpmMetricsGet_t) -> c_nvmlGpmMetricsGet_t:
    state = _ready("nvmlGpmMetricsGet")
    a, b = req.sample1, req.sample2
    if (req.version != NVML_GPM_METRICS_GET_VERSION or a is None or b is None or a.t is None
            or b.t is None or (a.index, a.gi) != (b.index, b.gi) or b.t <= a.t):
        _fail(NVML_ERROR_INVALID_ARGUMENT)
    gpu: _Gpu = state.gpus[a.index]
    for m in req.metrics[:req.numMetrics]:
        value = (gpu.gpm or {}).get(m.metricId)
        if value is not None and a.gi is not None and m.metricId == NVML_GPM_METRIC_SM_UTIL:
            value /= 2
        m.nvmlReturn = NVML_SUCCESS if value is not None else NVML_ERROR_NOT_SUPPORTED
        m.value = value if value is not None else 0.0
    return req

