"""CPU: overall and per-core usage (percent), frequency (MHz), temperature (°C), load, counts."""

from __future__ import annotations

import os
import time
from typing import Any

import psutil

_MIN_WINDOW_S = 0.05
_TEMP_EVERY_S = 10.0  # hwmon scans cost milliseconds; temperatures change slowly


class CpuCollector:
    def __init__(self) -> None:
        # Usage comes from our own cpu_times() deltas: psutil.cpu_percent() keeps its previous
        # reading per thread, so priming in one thread and sampling in another (the sampler
        # thread) made every first sample a zero-length window that read 0 %.
        self._last = _cpu_times()
        self._primed_at = time.monotonic()
        self._temps: list[float | None] = []
        self._temps_at = -_TEMP_EVERY_S
        self._has_sensors = hasattr(psutil, "sensors_temperatures")

    def collect(self) -> dict[str, Any]:
        if self._primed_at:
            # A reading right after priming measures a few microseconds of noise: give the
            # very first sample a short real window instead (paid once, in the sampler thread).
            wait = _MIN_WINDOW_S - (time.monotonic() - self._primed_at)
            if wait > 0:
                time.sleep(wait)
            self._primed_at = 0.0
        now = _cpu_times()
        per = [_percent(a, b) for a, b in zip(self._last, now)] if now and self._last else []
        self._last = now or self._last
        freqs, freq_max = _freqs(len(per))
        temps = self._temperatures(len(per))
        procs, threads = process_and_thread_counts()
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
            "loadAverage": load_average(),
            "processes": procs,
            "threads": threads,
        }

    def _temperatures(self, n: int) -> list[float | None]:
        now = time.monotonic()
        if now - self._temps_at >= _TEMP_EVERY_S:
            self._temps_at = now
            self._temps = _read_temperatures(n) if self._has_sensors else []
        return self._temps if len(self._temps) == n else [None] * n


def _cpu_times() -> list[Any]:
    try:
        return list(psutil.cpu_times(percpu=True))
    except (OSError, RuntimeError):
        return []


def _percent(a: Any, b: Any) -> float:
    """Busy share of one core between two cpu_times() readings, as psutil computes it."""
    total = _total(b) - _total(a)
    if total <= 0:
        return 0.0
    busy = total - (b.idle - a.idle) - (getattr(b, "iowait", 0) - getattr(a, "iowait", 0))
    return round(min(100.0, max(0.0, busy / total * 100.0)), 1)


def _total(t: Any) -> float:
    # Linux counts guest time inside user/nice already (psutil and htop subtract it too).
    return float(sum(t)) - getattr(t, "guest", 0) - getattr(t, "guest_nice", 0)


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


def process_and_thread_counts() -> tuple[int | None, int | None]:
    """System-wide process and thread counts, without visiting every process."""
    try:
        with open("/proc/loadavg") as f:
            threads = int(f.read().split()[3].split("/")[1])  # kernel scheduling entities
        procs = sum(1 for name in os.listdir("/proc") if name.isdigit())
        return procs, threads
    except (OSError, IndexError, ValueError):
        try:
            return len(psutil.pids()), None
        except OSError:
            return None, None


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
