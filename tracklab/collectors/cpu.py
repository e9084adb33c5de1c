"""CPU: overall and per-core usage (percent), frequency (MHz), temperature (°C), load, counts.

Usage and load are read on every sample (two kept-open /proc files, see ``_procfs``); frequency
and the system-wide process count every ``_SLOW_EVERY_S`` (each costs as much as the rest of
the collector together, and grows with cores and processes), temperatures every 10 s.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import psutil

from tracklab.collectors._procfs import ProcFiles, read_once

_MIN_WINDOW_S = 0.05
_TEMP_EVERY_S = 10.0  # hwmon scans cost milliseconds; temperatures change slowly
_SLOW_EVERY_S = 2.0  # frequencies (a sysfs file per core) and the process count (a /proc listing)


class CpuCollector:
    def __init__(self) -> None:
        # Usage comes from our own cpu_times() deltas: psutil.cpu_percent() keeps its previous
        # reading per thread, so priming in one thread and sampling in another (the sampler
        # thread) made every first sample a zero-length window that read 0 %.
        self._files = ProcFiles()
        self._last = self._ticks()
        self._primed_at = time.monotonic()
        self._temps: list[float | None] = []
        self._temps_at = -_TEMP_EVERY_S
        self._has_sensors = hasattr(psutil, "sensors_temperatures")
        self._slow_at = -_SLOW_EVERY_S
        self._freqs: tuple[list[float | None], float | None] = ([], None)
        self._procs: int | None = None

    def collect(self) -> dict[str, Any]:
        if self._primed_at:
            # A reading right after priming measures a few microseconds of noise: give the
            # very first sample a short real window instead (paid once, in the sampler thread).
            wait = _MIN_WINDOW_S - (time.monotonic() - self._primed_at)
            if wait > 0:
                time.sleep(wait)
            self._primed_at = 0.0
        now = self._ticks()
        per = [_percent(a, b) for a, b in zip(self._last, now)] if now and self._last else []
        self._last = now or self._last
        t = time.monotonic()
        if t - self._slow_at >= _SLOW_EVERY_S or len(self._freqs[0]) != len(per):
            self._slow_at = t
            self._freqs = _freqs(len(per))
            self._procs = process_count()
        freqs, freq_max = self._freqs
        temps = self._temperatures(len(per))
        load, threads = load_and_threads(self._files.read)
        return {
            "overall": round(sum(per) / len(per), 2) if per else None,
            "cores": [
                {"id": i, "usage": u, "frequency": freqs[i], "temperature": temps[i]}
                for i, u in enumerate(per)
            ],
            # MHz; the mean over cores against the fastest core's maximum (None when unknown,
            # as in most VMs): a CPU held below its maximum is thermally or power limited
            "frequency": _mean(freqs),
            "frequencyMax": freq_max,
            "loadAverage": load,
            "processes": self._procs,
            "threads": threads,
        }

    def _ticks(self) -> list[tuple[float, float]]:
        """``(busy, total)`` clock ticks of each core since boot, from /proc/stat."""
        data = self._files.read("/proc/stat")
        if data is None:
            return _psutil_ticks()
        out: list[tuple[float, float]] = []
        for line in data.splitlines():
            if not line.startswith(b"cpu"):
                break  # the cpu lines come first
            if line[3:4] == b" ":
                continue  # the all-cores line
            f = [int(x) for x in line.split()[1:9]]  # user nice system idle iowait irq softirq steal
            total = sum(f)  # guest time is inside user/nice already (psutil and htop agree)
            out.append((total - f[3] - f[4], total))
        return out

    def close(self) -> None:
        self._files.close()

    def _temperatures(self, n: int) -> list[float | None]:
        now = time.monotonic()
        if now - self._temps_at >= _TEMP_EVERY_S:
            self._temps_at = now
            self._temps = _read_temperatures(n) if self._has_sensors else []
        return self._temps if len(self._temps) == n else [None] * n


def _psutil_ticks() -> list[tuple[float, float]]:
    """``(busy, total)`` seconds of each core, where /proc/stat is missing (not Linux)."""
    try:
        times = psutil.cpu_times(percpu=True)
    except (OSError, RuntimeError):
        return []
    out = []
    for t in times:
        total = float(sum(t)) - getattr(t, "guest", 0) - getattr(t, "guest_nice", 0)
        out.append((total - t.idle - getattr(t, "iowait", 0), total))
    return out


def _percent(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Busy share of one core between two ``(busy, total)`` readings, as psutil computes it."""
    total = b[1] - a[1]
    if total <= 0:
        return 0.0
    return round(min(100.0, max(0.0, (b[0] - a[0]) / total * 100.0)), 1)


def load_and_threads(read: Callable[[str], bytes | None] = read_once
                     ) -> tuple[list[float] | None, int | None]:
    """Load averages and the system's thread (kernel scheduling entity) count, one read of
    /proc/loadavg; elsewhere the load from ``os.getloadavg`` and no count."""
    data = read("/proc/loadavg")
    if data is not None:
        try:
            f = data.split()
            return [round(float(x), 2) for x in f[:3]], int(f[3].split(b"/")[1])
        except (IndexError, ValueError):
            pass
    return load_average(), None


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def _freqs(n: int) -> tuple[list[float | None], float | None]:
    """Each core's current frequency and the highest maximum of any core (MHz)."""
    try:
        f = psutil.cpu_freq(percpu=True)
    except (NotImplementedError, OSError, AttributeError):
        return [None] * n, None
    top = max((x.max for x in f), default=0.0) if f else 0.0
    top_mhz = round(top, 1) if top else None  # psutil reports 0.0 when the kernel gives none
    if f and len(f) == n:
        return [round(x.current, 1) if x.current else None for x in f], top_mhz
    if f and len(f) == 1:
        return [round(f[0].current, 1) if f[0].current else None] * n, top_mhz
    return [None] * n, top_mhz


def _mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(sum(known) / len(known), 1) if known else None


def _read_temperatures(n: int) -> list[float | None]:
    try:
        sensors = psutil.sensors_temperatures()
    except (OSError, RuntimeError):
        return []
    cores: dict[int, float] = {}
    package: float | None = None
    for name in ("coretemp", "k10temp", "zenpower", "cpu_thermal", "acpitz"):
        for entry in sensors.get(name, ()):
            label = entry.label or ""
            if label.startswith("Core "):
                try:
                    cores[int(label.split()[1])] = entry.current
                except ValueError:
                    pass
            elif package is None:
                package = entry.current
    if cores and len(cores) >= n:
        return [cores.get(i) for i in range(n)]
    if package is not None:
        return [package] * n  # one sensor for the package: every core reads it
    return []


def process_count() -> int | None:
    """System-wide process count, without visiting every process."""
    try:
        return sum(1 for name in os.listdir("/proc") if name.isdigit())
    except OSError:
        try:
            return len(psutil.pids())
        except OSError:
            return None


def cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or None
