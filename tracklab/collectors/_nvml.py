"""The NVML seam: the only module that imports ``pynvml`` (the ``nvidia-ml-py`` package).

:class:`Nvml` owns ``nvmlInit``/``nvmlShutdown`` and turns NVML's exceptions into plain values:
a reading NVML cannot give is ``None``, and a GPU that fell off the bus raises :class:`GpuLost`
so the collector can report it once and skip it. Readings are returned in base units (bytes,
watts, joules, °C, MHz, percent 0-100), never NVML's milli-units.

The module is imported lazily, by name: ``$TRACKLAB_NVML_MODULE`` (tests point it at
``tests.fakes``) or ``pynvml``. Importing the real one costs tens of milliseconds, so on Linux a
machine without an NVIDIA driver never pays for it.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from types import ModuleType
from typing import Any

from tracklab.collectors._nvml_efficiency import Efficiency

log = logging.getLogger(__name__)

ENV_MODULE = "TRACKLAB_NVML_MODULE"

# Any of these exists when a driver is loaded (/dev/dxg: WSL2's GPU paravirtualisation).
_DRIVER_PATHS = ("/dev/nvidiactl", "/proc/driver/nvidia", "/dev/dxg")

# nvmlInit errors that only mean "no usable NVIDIA GPU here": a normal case, logged at DEBUG.
_ABSENT = ("NVMLError_LibraryNotFound", "NVMLError_DriverNotLoaded", "NVMLError_GpuNotFound",
           "NVMLError_NotFound", "NVMLError_FunctionNotFound")

# Reading errors that are a property of the GPU or the sandbox, not worth even a DEBUG line.
_QUIET = ("NVMLError_NotSupported", "NVMLError_NoPermission")

# Getters whose arguments after the handle choose what is read (a clock, a sensor, a counter):
# "not supported" is a property of that choice, not of the getter (a GPU may give the SM clock
# and not the memory clock). How many of those arguments there are:
_SELECTORS = {"nvmlDeviceGetClockInfo": 1, "nvmlDeviceGetMaxClockInfo": 1,
              "nvmlDeviceGetTemperature": 1, "nvmlDeviceGetPcieThroughput": 1,
              "nvmlDeviceGetRetiredPages": 1, "nvmlGpmMigSampleGet": 1,
              "nvmlDeviceGetTotalEccErrors": 2}

# nvml.h's clock event ("throttle") reason bits; the values are part of NVML's ABI.
THROTTLE_REASONS = (
    (0x001, "idle"),
    (0x002, "applications_clocks"),
    (0x004, "sw_power_cap"),
    (0x008, "hw_slowdown"),
    (0x010, "sync_boost"),
    (0x020, "sw_thermal"),
    (0x040, "hw_thermal"),
    (0x080, "hw_power_brake"),
    (0x100, "display_clocks"),
)


class GpuLost(Exception):
    """NVML answered ``NVML_ERROR_GPU_IS_LOST``: the GPU stopped answering (often Xid 79).

    Attributes:
        call: the NVML function that reported it.
    """

    def __init__(self, call: str) -> None:
        self.call = call
        super().__init__(f"GPU is lost (reported by {call})")


def driver_present() -> bool:
    """Whether an NVIDIA driver may be loaded; only Linux can tell cheaply, others say True."""
    if not sys.platform.startswith("linux"):
        return True
    return any(os.path.exists(p) for p in _DRIVER_PATHS)


def _import() -> ModuleType | None:
    name = os.environ.get(ENV_MODULE)
    if not name and not driver_present():
        log.debug("no NVIDIA driver (none of %s exist); GPU metrics are off", ", ".join(_DRIVER_PATHS))
        return None
    try:
        return importlib.import_module(name or "pynvml")
    except ImportError as e:
        log.debug("cannot import %s (%s); GPU metrics are off", name or "pynvml", e)
        return None


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):  # older nvidia-ml-py, and struct fields, hand back bytes
        return value.decode("utf-8", "replace")
    return value if value is None else str(value)


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def _key(getter: str, args: tuple[Any, ...]) -> tuple[Any, ...]:
    return (id(args[0]), *args[1:1 + _SELECTORS.get(getter, 0)])


def _errors(lib: ModuleType, names: tuple[str, ...]) -> tuple[type[BaseException], ...]:
    return tuple(getattr(lib, n) for n in names if hasattr(lib, n))


class Nvml(Efficiency):
    """An initialised NVML library. Build it with :meth:`open`; call :meth:`close` when done.

    Every reading takes a device handle from :meth:`handle` and returns ``None`` when NVML
    cannot give the value (not supported, no permission, any other ``NVMLError``).

    Raises:
        GpuLost: from any per-device method, when NVML reports the GPU as lost.
    """

    def __init__(self, lib: ModuleType) -> None:
        self.lib = lib
        self._open = True
        self._quiet = _errors(lib, _QUIET)
        self._missing: set[str] = set()  # getters the driver lacks: not called again
        # (getter, device) pairs the device does not support (a fan on a passively cooled GPU):
        # a capability, so not asked again; each refusal costs an NVML call and an exception
        # by getter, then (handle id, selector args): handles live as long as NVML is open
        self._unsupported: dict[str, set[tuple[Any, ...]]] = {}
        self._not_supported: type[Exception] | tuple[()] = getattr(
            lib, "NVMLError_NotSupported", ())
        self._logged: set[str] = set()

    @classmethod
    def open(cls, module: ModuleType | None = None) -> Nvml | None:
        """Import (unless ``module`` is given) and initialise NVML.

        Args:
            module: a pynvml-like module to use instead of importing one by name.

        Returns:
            The initialised seam, or ``None`` when this machine has no usable NVIDIA driver
            (logged at DEBUG; a driver that is present but broken is logged once at WARNING).
        """
        lib = module if module is not None else _import()
        if lib is None:
            return None
        try:
            lib.nvmlInit()
        except lib.NVMLError as e:
            if isinstance(e, _errors(lib, _ABSENT)):
                log.debug("NVML unavailable (%s); GPU metrics are off", e)
            else:  # a driver is there but NVML refuses (version mismatch, permissions)
                log.warning("tracklab: warning: NVML failed to initialise (%s: %s); GPU metrics "
                            "are off",
                            type(e).__name__, e)
            return None
        return cls(lib)

    def close(self) -> None:
        """Shut NVML down; calling it again does nothing."""
        if not self._open:
            return
        self._open = False
        try:
            self.lib.nvmlShutdown()
        except self.lib.NVMLError as e:
            log.debug("nvmlShutdown failed: %s", e)

    def read(self, getter: str, *args: Any, not_found: Any = None) -> Any:
        """Call ``pynvml.<getter>(*args)`` and return what it returns.

        Args:
            getter: the pynvml function's name.
            not_found: returned when NVML answers ``NVML_ERROR_NOT_FOUND`` ("nothing to list").

        Returns:
            The raw value, or ``None`` on any other ``NVMLError`` or when pynvml or the driver
            lacks the function.

        Raises:
            GpuLost: NVML reports the device as lost.
        """
        lib = self.lib
        fn = getattr(lib, getter, None)
        if fn is None or not self._open or getter in self._missing:
            return None
        refused = self._unsupported.get(getter)
        if refused is not None and args and _key(getter, args) in refused:
            return None
        try:
            return fn(*args)
        except lib.NVMLError_GpuIsLost as e:
            raise GpuLost(getter) from e
        except lib.NVMLError_NotFound:
            return not_found
        except lib.NVMLError as e:
            if isinstance(e, lib.NVMLError_FunctionNotFound):
                self._missing.add(getter)
            elif isinstance(e, self._not_supported) and args:
                self._unsupported.setdefault(getter, set()).add(_key(getter, args))
            if not isinstance(e, self._quiet) and getter not in self._logged:
                self._logged.add(getter)
                log.debug("%s failed: %s: %s; its value is null", getter, type(e).__name__, e)
            return None

    # -- system ---------------------------------------------------------------------------------

    def device_count(self) -> int:
        """Number of GPUs NVML sees (0 when it cannot say)."""
        try:
            return int(self.read("nvmlDeviceGetCount") or 0)
        except GpuLost:
            return 0

    def driver_version(self) -> str | None:
        """The kernel driver version, e.g. ``"550.54.15"``."""
        return _text(self.read("nvmlSystemGetDriverVersion"))

    def cuda_version(self) -> str | None:
        """The newest CUDA version the driver supports, e.g. ``"12.4"``."""
        v = self.read("nvmlSystemGetCudaDriverVersion")
        return None if v is None else f"{v // 1000}.{v % 1000 // 10}"

    # -- static, per device ---------------------------------------------------------------------

    def handle(self, index: int) -> Any:
        """The device handle for NVML index ``index``, or ``None``."""
        return self.read("nvmlDeviceGetHandleByIndex", index)

    def name(self, handle: Any) -> str | None:
        return _text(self.read("nvmlDeviceGetName", handle))

    def uuid(self, handle: Any) -> str | None:
        """``"GPU-..."`` for a GPU, ``"MIG-..."`` for a MIG device handle."""
        return _text(self.read("nvmlDeviceGetUUID", handle))

    def pci_bus_id(self, handle: Any) -> str | None:
        """PCI address such as ``"00000000:3B:00.0"``."""
        info = self.read("nvmlDeviceGetPciInfo", handle)
        return None if info is None else _text(info.busId)

    def power_limit(self, handle: Any) -> float | None:
        """Enforced power limit in watts (W)."""
        mw = self.read("nvmlDeviceGetEnforcedPowerLimit", handle)
        return None if mw is None else mw / 1000.0

    def sm_clock_max(self, handle: Any) -> int | None:
        """Highest SM clock in megahertz (MHz)."""
        return _int(self.read("nvmlDeviceGetMaxClockInfo", handle, self.lib.NVML_CLOCK_SM))

    def mig_mode(self, handle: Any) -> bool | None:
        """Whether MIG mode is on now; ``None`` on GPUs without MIG."""
        modes = self.read("nvmlDeviceGetMigMode", handle)
        return None if modes is None else bool(modes[0] == self.lib.NVML_DEVICE_MIG_ENABLE)

    def mig_uuids(self, handle: Any) -> list[str]:
        """UUIDs (``"MIG-..."``) of the MIG devices carved out of this GPU."""
        return [uuid for uuid, _ in self.mig_devices(handle)]

    def mig_devices(self, handle: Any) -> list[tuple[str, Any]]:
        """``(uuid, handle)`` of each MIG device carved out of this GPU."""
        found = []
        for i in range(self.read("nvmlDeviceGetMaxMigDeviceCount", handle) or 0):
            mig = self.read("nvmlDeviceGetMigDeviceHandleByIndex", handle, i)
            uuid = None if mig is None else self.uuid(mig)
            if uuid:
                found.append((uuid, mig))
        return found

    # -- readings -------------------------------------------------------------------------------

    def memory(self, handle: Any) -> tuple[int | None, int | None]:
        """``(used, total)`` device memory in bytes."""
        info = self.read("nvmlDeviceGetMemoryInfo", handle)
        return (None, None) if info is None else (int(info.used), int(info.total))

    def utilization(self, handle: Any) -> float | None:
        """Percent (0-100) of the last sample period in which a kernel ran."""
        return self.utilization_rates(handle)[0]

    def utilization_rates(self, handle: Any) -> tuple[float | None, float | None]:
        """``(gpu, memory)``: percent (0-100) of the last sample period in which a kernel ran,
        and in which device memory was read or written (the memory controller was busy)."""
        rates = self.read("nvmlDeviceGetUtilizationRates", handle)
        return (None, None) if rates is None else (float(rates.gpu), float(rates.memory))

    def temperature(self, handle: Any) -> float | None:
        """Core temperature in degrees Celsius (°C)."""
        t = self.read("nvmlDeviceGetTemperature", handle, self.lib.NVML_TEMPERATURE_GPU)
        return None if t is None else float(t)

    def power(self, handle: Any) -> float | None:
        """Board power draw in watts (W)."""
        mw = self.read("nvmlDeviceGetPowerUsage", handle)
        return None if mw is None else mw / 1000.0

    def energy(self, handle: Any) -> float | None:
        """Energy counter in joules (J) since the driver was loaded (Volta and newer)."""
        mj = self.read("nvmlDeviceGetTotalEnergyConsumption", handle)
        return None if mj is None else mj / 1000.0

    def fan_speed(self, handle: Any) -> float | None:
        """Fan speed as a percent (0-100) of its maximum."""
        f = self.read("nvmlDeviceGetFanSpeed", handle)
        return None if f is None else float(f)

    def sm_clock(self, handle: Any) -> int | None:
        """Current SM clock in megahertz (MHz)."""
        return _int(self.read("nvmlDeviceGetClockInfo", handle, self.lib.NVML_CLOCK_SM))

    def throttle_reasons(self, handle: Any) -> list[str] | None:
        """Why clocks are held down now, e.g. ``["sw_power_cap"]``; ``[]`` when nothing is."""
        # The "event" name replaced "throttle" in driver 535; older drivers lack the new function.
        for getter in ("nvmlDeviceGetCurrentClocksEventReasons",
                       "nvmlDeviceGetCurrentClocksThrottleReasons"):
            mask = self.read(getter, handle)
            if mask is None and (getter in self._missing or not hasattr(self.lib, getter)):
                continue
            if not mask:
                return None if mask is None else []
            return [name for bit, name in THROTTLE_REASONS if mask & bit]
        return None

    def ecc_uncorrected(self, handle: Any) -> int | None:
        """Uncorrected ECC errors since the driver was loaded (volatile count)."""
        lib = self.lib
        return _int(self.read("nvmlDeviceGetTotalEccErrors", handle,
                              lib.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, lib.NVML_VOLATILE_ECC))

    def pcie_replays(self, handle: Any) -> int | None:
        """PCIe replay counter (link retransmissions)."""
        return _int(self.read("nvmlDeviceGetPcieReplayCounter", handle))

    def processes(self, handle: Any) -> dict[int, int | None] | None:
        """Compute and graphics processes on the GPU: ``{pid: bytes of device memory}``.

        Memory is ``None`` where NVML cannot tell (Windows WDDM). The pids are in the pid
        namespace of the driver, which inside a container is the host's. ``None`` when NVML
        lists neither kind.
        """
        found: dict[int, int | None] | None = None
        for getter in ("nvmlDeviceGetComputeRunningProcesses",
                       "nvmlDeviceGetGraphicsRunningProcesses"):
            procs = self.read(getter, handle)
            if procs is None:
                continue
            found = found if found is not None else {}
            for p in procs:
                mem = p.usedGpuMemory
                old = found.get(p.pid)
                found[p.pid] = mem if old is None else max(old, mem or 0)
        return found

    def process_utilization(self, handle: Any, since_us: int) -> list[tuple[int, int, float]] | None:
        """Per-process SM samples newer than ``since_us``: ``[(pid, timestamp µs, percent)]``.

        Args:
            since_us: CPU timestamp in microseconds; 0 asks for every buffered sample.

        Returns:
            The samples (``[]`` when there are none), or ``None`` when unsupported.
        """
        samples = self.read("nvmlDeviceGetProcessUtilization", handle, since_us, not_found=[])
        if samples is None:
            return None
        return [(int(s.pid), int(s.timeStamp), float(s.smUtil)) for s in samples]
