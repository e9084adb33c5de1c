"""A fake of the pynvml surface tracklab uses, with named scenarios.

Use it in a subprocess with ``TRACKLAB_NVML_MODULE=tests.fakes TRACKLAB_FAKE_NVML=two_gpus``
(``TRACKLAB_FAKE_NVML_PIDS="1234:500000000,5678:100"`` puts pid:bytes processes on GPU 0), or in
process with ``use_scenario("two_gpus", pids={0: [(pid, nbytes)]})`` and
``Nvml.open(module=fakes)``. Without either, ``nvmlInit`` builds ``one_gpu``.

The error classes and constants are the real ones from pynvml, and errors are raised the way
pynvml raises them (``NVMLError(code)``, which picks the matching subclass), so the code under
test cannot tell the difference. Like NVML, every call before ``nvmlInit`` raises Uninitialized.

Readings are deterministic enough to assert on, and vary a little between calls:

- utilization (percent): ``base_utilization(i) + n % 3`` where n counts the GPU's calls;
- memory used: 40 % of total; temperature: ``40 + 5 * i`` °C; fan: ``30 + i`` percent;
- power: ``100 + 20 * i + n % 5`` W (reported in mW); energy counter (mJ): grows by the current
  power times the time since the previous energy call;
- SM clock ``smMax - 100 * (i % 2)`` MHz; throttle reasons: ``sw_power_cap`` on GPU 1, none else;
- PCIe replays ``i``; uncorrected ECC errors 0; each listed process gets 25 % SM per sample;
- memory-controller busy 30 %; memory clock 1593 MHz (A100) or 2619 MHz (H100), its maximum;
- the efficiency readings (PCIe link and traffic, NVLink, GPM) are in ``tests.fakes_efficiency``.

Scenarios: ``one_gpu``/``two_gpus`` (A100 SXM: NVLink, no GPM), ``eight_gpus`` and ``hopper``
(H100 SXM with GPM), ``ampere`` (an A100 PCIe card: no NVLink, no PCIe byte counters, no GPM),
``pcie_downtrained`` (an H100 whose link runs at Gen3 x8 of Gen5 x16), ``nccl_hang`` (an H100
at 100 % utilization whose SMs are idle: a collective waiting forever), ``nvlink_errors`` (an
H100 whose NVLink CRC counter rises), ``hopper_mig`` (an H100 in MIG mode with two GPU
instances), ``not_supported`` (a GPU answering NOT_SUPPORTED for every optional reading),
``mig``, ``gpu_lost``, ``hang`` and ``no_driver``.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, NoReturn

from pynvml import (
    NVML_CLOCK_GRAPHICS,
    NVML_CLOCK_MEM,
    NVML_CLOCK_SM,
    NVML_DEVICE_MIG_DISABLE,
    NVML_DEVICE_MIG_ENABLE,
    NVML_ERROR_FUNCTION_NOT_FOUND,
    NVML_ERROR_GPU_IS_LOST,
    NVML_ERROR_INVALID_ARGUMENT,
    NVML_ERROR_LIB_RM_VERSION_MISMATCH,
    NVML_ERROR_LIBRARY_NOT_FOUND,
    NVML_ERROR_NO_PERMISSION,
    NVML_ERROR_NOT_FOUND,
    NVML_ERROR_NOT_SUPPORTED,
    NVML_ERROR_UNINITIALIZED,
    NVML_MEMORY_ERROR_TYPE_UNCORRECTED,
    NVML_TEMPERATURE_GPU,
    NVML_VOLATILE_ECC,
    NVMLError,
    NVMLError_DriverNotLoaded,
    NVMLError_FunctionNotFound,
    NVMLError_GpuIsLost,
    NVMLError_GpuNotFound,
    NVMLError_InvalidArgument,
    NVMLError_LibraryNotFound,
    NVMLError_NoPermission,
    NVMLError_NotFound,
    NVMLError_NotSupported,
    NVMLError_Uninitialized,
    nvmlClocksEventReasonNone,
    nvmlClocksEventReasonSwPowerCap,
)

__all__ = [
    "NVML_CLOCK_GRAPHICS",
    "NVML_CLOCK_MEM",
    "NVML_CLOCK_SM",
    "NVML_DEVICE_MIG_DISABLE",
    "NVML_DEVICE_MIG_ENABLE",
    "NVML_ERROR_FUNCTION_NOT_FOUND",
    "NVML_ERROR_LIB_RM_VERSION_MISMATCH",
    "NVML_ERROR_NO_PERMISSION",
    "NVML_MEMORY_ERROR_TYPE_UNCORRECTED",
    "NVML_TEMPERATURE_GPU",
    "NVML_VOLATILE_ECC",
    "SCENARIOS",
    "NVMLError",
    "NVMLError_DriverNotLoaded",
    "NVMLError_FunctionNotFound",
    "NVMLError_GpuIsLost",
    "NVMLError_GpuNotFound",
    "NVMLError_InvalidArgument",
    "NVMLError_LibraryNotFound",
    "NVMLError_NoPermission",
    "NVMLError_NotFound",
    "NVMLError_NotSupported",
    "NVMLError_Uninitialized",
    "base_utilization",
    "calls",
    "reset",
    "use_scenario",
]

ENV_SCENARIO = "TRACKLAB_FAKE_NVML"
ENV_PIDS = "TRACKLAB_FAKE_NVML_PIDS"
GIB = 1024**3
SCENARIOS = ("no_driver", "one_gpu", "two_gpus", "eight_gpus", "not_supported", "gpu_lost",
             "hang", "mig", "hopper", "ampere", "pcie_downtrained", "nccl_hang", "nvlink_errors",
             "hopper_mig")
HOPPER = ("eight_gpus", "hopper", "pcie_downtrained", "nccl_hang", "nvlink_errors", "hopper_mig")
PROCESS_SM = 25  # percent SM each listed process gets in every utilization sample

calls: Counter[str] = Counter()  # how often each NVML function was called, for cache tests


@dataclass
class _Gpu:
    index: int
    name: str
    memory_total: int  # bytes
    power_limit_mw: int
    sm_max: int  # MHz
    processes: list[tuple[int, int]] = field(default_factory=list)  # (pid, bytes)
    mig_uuids: list[str] = field(default_factory=list)
    lost: bool = False
    n: Counter[str] = field(default_factory=Counter)
    energy_mj: float = 5_000_000.0
    energy_at: float = field(default_factory=time.monotonic)
    util: int | None = None  # utilization before the per-call variation; None: base_utilization
    memory_clock: int = 1593  # MHz
    link: tuple[int, int, int, int] = (4, 4, 16, 16)  # PCIe gen now, gen max, width now, max
    nvlinks: int = 12
    pcie_counters: bool = False  # NVML_FI_DEV_PCIE_COUNT_*_BYTES supported
    gpm: dict[str, float] | None = None  # GPM metric id -> value; None: no GPM
    nvlink_errors_step: int = 0  # CRC errors added per error-counter read
    counters: dict[str, float] = field(default_factory=dict)  # the fake's byte/error counters

    @property
    def uuid(self) -> str:
        return f"GPU-{0xA0A0A0A0 + self.index:08x}-fa6e-4b1d-9c2e-{self.index:012x}"


@dataclass
class _State:
    scenario: str
    gpus: list[_Gpu]
    unsupported: frozenset[str] = frozenset()
    lose: int | None = None  # index of the GPU that is lost after its 3rd utilization call
    hang_s: float | None = None  # readings sleep this long (float("inf"): forever)
    inits: int = 0


_lock = threading.Lock()
_chosen: tuple[str, dict[str, Any]] | None = None  # set by use_scenario(); else the environment
_state: _State | None = None


def use_scenario(name: str, *, pids: dict[int, list[tuple[int, int]]] | None = None,
                 hang_s: float | None = None) -> None:
    """Choose the scenario the next ``nvmlInit`` builds, in process; resets all fake state.

    Args:
        name: one of :data:`SCENARIOS`.
        pids: running processes per GPU index, ``{0: [(pid, bytes), ...]}``; default from
            ``$TRACKLAB_FAKE_NVML_PIDS`` (applied to GPU 0).
        hang_s: how long each reading sleeps in ``hang`` (seconds; default forever).
    """
    global _chosen, _state
    if name not in SCENARIOS:
        raise ValueError(f"unknown fake NVML scenario {name!r}; choose from {', '.join(SCENARIOS)}")
    with _lock:
        _chosen, _state = (name, {"pids": pids, "hang_s": hang_s}), None
        calls.clear()


def reset() -> None:
    """Forget any ``use_scenario`` choice and all state: the environment decides again."""
    global _chosen, _state
    with _lock:
        _chosen, _state = None, None
        calls.clear()


def base_utilization(index: int) -> int:
    """GPU ``index``'s utilization before its small per-call variation (percent)."""
    return 50 + 10 * (index % 5)


def _env_pids() -> dict[int, list[tuple[int, int]]]:
    text = os.environ.get(ENV_PIDS, "").strip()
    if not text:
        return {}
    pairs = [item.split(":") for item in text.split(",") if item.strip()]
    return {0: [(int(pid), int(nbytes)) for pid, nbytes in pairs]}


def _build(name: str, pids: dict[int, list[tuple[int, int]]] | None,
           hang_s: float | None) -> _State:
    if name in HOPPER:
        gpus = [_Gpu(i, "NVIDIA H100 80GB HBM3", 80 * GIB, 700_000, 1980, memory_clock=2619,
                     link=(5, 5, 16, 16), nvlinks=18, pcie_counters=True, gpm=dict(TRAINING))
                for i in range(8 if name == "eight_gpus" else 1)]
    elif name == "ampere":
        gpus = [_Gpu(0, "NVIDIA A100-PCIE-40GB", 40 * GIB, 250_000, 1410, nvlinks=0)]
    else:
        n = 1 if name in ("one_gpu", "hang", "mig") else 2
        gpus = [_Gpu(i, "NVIDIA A100-SXM4-40GB", 40 * GIB, 400_000, 1410) for i in range(n)]
    for index, procs in (pids if pids is not None else _env_pids()).items():
        gpus[index].processes = list(procs)
    state = _State(name, gpus)
    if name == "not_supported":
        state.unsupported = frozenset({"nvmlDeviceGetFanSpeed", "nvmlDeviceGetTemperature",
                                       "nvmlDeviceGetTotalEnergyConsumption",
                                       "nvmlDeviceGetProcessUtilization", *OPTIONAL})
    elif name == "mig":
        gpus[0].mig_uuids = ["MIG-5c1e0b2a-7d3f-5e8a-9b4c-1f2e3d4c5b6a"]
        # In MIG mode NVML cannot read whole-GPU or per-process utilization.
        state.unsupported = frozenset({"nvmlDeviceGetUtilizationRates",
                                       "nvmlDeviceGetProcessUtilization"})
    elif name == "pcie_downtrained":
        gpus[0].link, gpus[0].util = (3, 5, 8, 16), 95
    elif name == "nccl_hang":
        gpus[0].util, gpus[0].gpm = 100, dict(NCCL_HANG)
    elif name == "nvlink_errors":
        gpus[0].nvlink_errors_step = 5
    elif name == "hopper_mig":
        gpus[0].mig_uuids = ["MIG-1a2b3c4d-0000-5e8a-9b4c-1f2e3d4c5b6a",
                             "MIG-1a2b3c4d-1111-5e8a-9b4c-1f2e3d4c5b6a"]
        state.unsupported = frozenset({"nvmlDeviceGetUtilizationRates",
                                       "nvmlDeviceGetProcessUtilization"})
    elif name == "gpu_lost":
        state.lose = 1
    elif name == "hang":
        state.hang_s = hang_s if hang_s is not None else float("inf")
    return state


def _fail(code: int) -> NoReturn:
    raise NVMLError(code)  # pynvml's own way: NVMLError.__new__ picks the subclass


def _ready(call: str) -> _State:
    calls[call] += 1
    if _state is None or _state.inits == 0:
        _fail(NVML_ERROR_UNINITIALIZED)
    return _state


def _device(handle: Any, call: str) -> _Gpu:
    """The GPU a reading is for, after the scenario's hang, loss and support rules."""
    state = _ready(call)
    if state.hang_s is not None:
        deadline = time.monotonic() + state.hang_s
        while time.monotonic() < deadline:
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
    gpu: _Gpu = state.gpus[handle.index]
    if gpu.lost:
        _fail(NVML_ERROR_GPU_IS_LOST)
    if call in state.unsupported:
        _fail(NVML_ERROR_NOT_SUPPORTED)
    gpu.n[call] += 1
    return gpu


@dataclass(frozen=True)
class _Handle:
    index: int
    mig: int | None = None  # MIG device slot, for handles of MIG devices


# -- init and system --------------------------------------------------------------------------


def nvmlInit() -> None:
    global _state
    calls["nvmlInit"] += 1
    with _lock:
        if _state is None or _state.inits == 0:
            name, opts = _chosen or (os.environ.get(ENV_SCENARIO) or "one_gpu", {})
            if name not in SCENARIOS:
                raise ValueError(f"{ENV_SCENARIO}={name!r} is not one of {', '.join(SCENARIOS)}")
            if name == "no_driver":
                _fail(NVML_ERROR_LIBRARY_NOT_FOUND)
            _state = _build(name, opts.get("pids"), opts.get("hang_s"))
        _state.inits += 1


def nvmlShutdown() -> None:
    state = _ready("nvmlShutdown")
    state.inits -= 1


def nvmlSystemGetDriverVersion() -> str:
    _ready("nvmlSystemGetDriverVersion")
    return "550.54.15"


def nvmlSystemGetCudaDriverVersion() -> int:
    _ready("nvmlSystemGetCudaDriverVersion")
    return 12040


def nvmlDeviceGetCount() -> int:
    return len(_ready("nvmlDeviceGetCount").gpus)


def nvmlDeviceGetHandleByIndex(index: int) -> _Handle:
    state = _ready("nvmlDeviceGetHandleByIndex")
    if not 0 <= index < len(state.gpus):
        _fail(NVML_ERROR_INVALID_ARGUMENT)
    if state.gpus[index].lost:
        _fail(NVML_ERROR_GPU_IS_LOST)
    return _Handle(index)


# -- static device facts ----------------------------------------------------------------------


def nvmlDeviceGetName(handle: _Handle) -> str:
    return _device(handle, "nvmlDeviceGetName").name


def nvmlDeviceGetUUID(handle: _Handle) -> str:
    gpu = _device(handle, "nvmlDeviceGetUUID")
    return gpu.uuid if handle.mig is None else gpu.mig_uuids[handle.mig]


def nvmlDeviceGetPciInfo(handle: _Handle) -> SimpleNamespace:
    gpu = _device(handle, "nvmlDeviceGetPciInfo")
    bus = 0x17 + 0x10 * gpu.index
    bus_id = f"00000000:{bus:02X}:00.0".encode()  # the real struct field is bytes
    return SimpleNamespace(busId=bus_id, busIdLegacy=bus_id, domain=0, bus=bus, device=0)


def nvmlDeviceGetEnforcedPowerLimit(handle: _Handle) -> int:
    return _device(handle, "nvmlDeviceGetEnforcedPowerLimit").power_limit_mw


def nvmlDeviceGetMaxClockInfo(handle: _Handle, clock: int) -> int:
    gpu = _device(handle, "nvmlDeviceGetMaxClockInfo")
    return gpu.memory_clock if clock == NVML_CLOCK_MEM else gpu.sm_max


def nvmlDeviceGetMigMode(handle: _Handle) -> list[int]:
    gpu = _device(handle, "nvmlDeviceGetMigMode")
    mode = NVML_DEVICE_MIG_ENABLE if gpu.mig_uuids else NVML_DEVICE_MIG_DISABLE
    return [mode, mode]


def nvmlDeviceGetMaxMigDeviceCount(handle: _Handle) -> int:
    gpu = _device(handle, "nvmlDeviceGetMaxMigDeviceCount")
    return 7 if gpu.mig_uuids else 0


def nvmlDeviceGetMigDeviceHandleByIndex(handle: _Handle, index: int) -> _Handle:
    gpu = _device(handle, "nvmlDeviceGetMigDeviceHandleByIndex")
    if index >= len(gpu.mig_uuids):
        _fail(NVML_ERROR_NOT_FOUND)  # an empty MIG slot
    return _Handle(gpu.index, index)


# -- readings ---------------------------------------------------------------------------------


def nvmlDeviceGetMemoryInfo(handle: _Handle) -> SimpleNamespace:
    gpu = _device(handle, "nvmlDeviceGetMemoryInfo")
    used = gpu.memory_total * 4 // 10
    return SimpleNamespace(total=gpu.memory_total, used=used, free=gpu.memory_total - used)


def nvmlDeviceGetUtilizationRates(handle: _Handle) -> SimpleNamespace:
    gpu = _device(handle, "nvmlDeviceGetUtilizationRates")
    n = gpu.n["nvmlDeviceGetUtilizationRates"]
    if _state is not None and _state.lose == gpu.index and n >= 3:
        gpu.lost = True  # this answer is the last one: every later call raises GPU_IS_LOST
    base = base_utilization(gpu.index) if gpu.util is None else gpu.util
    return SimpleNamespace(gpu=min(100, base + n % 3), memory=30)


def nvmlDeviceGetTemperature(handle: _Handle, sensor: int) -> int:
    return 40 + 5 * _device(handle, "nvmlDeviceGetTemperature").index


def _power_mw(gpu: _Gpu) -> int:
    return (100 + 20 * gpu.index + gpu.n["nvmlDeviceGetPowerUsage"] % 5) * 1000


def nvmlDeviceGetPowerUsage(handle: _Handle) -> int:
    return _power_mw(_device(handle, "nvmlDeviceGetPowerUsage"))


def nvmlDeviceGetTotalEnergyConsumption(handle: _Handle) -> int:
    gpu = _device(handle, "nvmlDeviceGetTotalEnergyConsumption")
    now = time.monotonic()
    gpu.energy_mj += _power_mw(gpu) * (now - gpu.energy_at)  # mW x s = mJ
    gpu.energy_at = now
    return int(gpu.energy_mj)


def nvmlDeviceGetFanSpeed(handle: _Handle) -> int:
    return 30 + _device(handle, "nvmlDeviceGetFanSpeed").index


def nvmlDeviceGetClockInfo(handle: _Handle, clock: int) -> int:
    gpu = _device(handle, "nvmlDeviceGetClockInfo")
    return gpu.memory_clock if clock == NVML_CLOCK_MEM else gpu.sm_max - 100 * (gpu.index % 2)


def nvmlDeviceGetCurrentClocksEventReasons(handle: _Handle) -> int:
    gpu = _device(handle, "nvmlDeviceGetCurrentClocksEventReasons")
    return int(nvmlClocksEventReasonSwPowerCap if gpu.index == 1 else nvmlClocksEventReasonNone)


nvmlDeviceGetCurrentClocksThrottleReasons = nvmlDeviceGetCurrentClocksEventReasons


def nvmlDeviceGetTotalEccErrors(handle: _Handle, error_type: int, counter_type: int) -> int:
    _device(handle, "nvmlDeviceGetTotalEccErrors")
    return 0


def nvmlDeviceGetPcieReplayCounter(handle: _Handle) -> int:
    return _device(handle, "nvmlDeviceGetPcieReplayCounter").index


def nvmlDeviceGetComputeRunningProcesses(handle: _Handle) -> list[SimpleNamespace]:
    gpu = _device(handle, "nvmlDeviceGetComputeRunningProcesses")
    return [SimpleNamespace(pid=pid, usedGpuMemory=nbytes, gpuInstanceId=0xFFFFFFFF,
                            computeInstanceId=0xFFFFFFFF) for pid, nbytes in gpu.processes]


def nvmlDeviceGetGraphicsRunningProcesses(handle: _Handle) -> list[SimpleNamespace]:
    _device(handle, "nvmlDeviceGetGraphicsRunningProcesses")
    return []


def nvmlDeviceGetProcessUtilization(handle: _Handle, since_us: int) -> list[SimpleNamespace]:
    gpu = _device(handle, "nvmlDeviceGetProcessUtilization")
    now_us = time.time_ns() // 1000
    if not gpu.processes or now_us <= since_us:
        _fail(NVML_ERROR_NOT_FOUND)  # NVML's answer when no sample is newer than since_us
    return [SimpleNamespace(pid=pid, timeStamp=now_us, smUtil=PROCESS_SM, memUtil=10, encUtil=0,
                            decUtil=0) for pid, _ in gpu.processes]


# The efficiency readings, in their own module; imported last, as they use the helpers above.
from tests.fakes_efficiency import *  # noqa: E402, F403
from tests.fakes_efficiency import (  # noqa: E402
    NCCL_HANG,
    OPTIONAL,
    TRAINING,
)
