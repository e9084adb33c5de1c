"""Energy: CPU package energy from RAPL (joules), power integrated over time, kWh and CO2.

RAPL counters live in ``/sys/class/powercap/intel-rapl:<N>/energy_uj`` (AMD Zen exposes the same
files). Since CVE-2020-8694 they are usually readable by root only, so a missing reading is the
normal case and reads as ``None``.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable
from typing import Any

_PACKAGE = re.compile(r"intel-rapl:\d+")  # intel-rapl:0:0 and the like are parts of a package
J_PER_KWH = 3.6e6


class RaplReader:
    """Joules the CPU packages used since construction.

    Args:
        root: where the powercap class is (``/sys/class/powercap``); tests pass a recorded tree.

    Each package's counter counts microjoules up to ``max_energy_range_uj`` and then starts again
    from 0: :meth:`read` must be called at least once per wrap (minutes at full power; the
    sampler calls it every few seconds) to count each wrap once.
    """

    def __init__(self, root: str = "/sys/class/powercap") -> None:
        self.root = root
        self._domains: list[str] = []  # folders of the readable package domains
        self._range: list[int | None] = []  # microjoules at which each counter wraps
        self._last: list[int] = []  # microjoules at the last read
        self._total_uj = 0
        try:
            names = sorted(os.listdir(root))
        except OSError:
            names = []
        for name in names:
            if not _PACKAGE.fullmatch(name):
                continue
            folder = os.path.join(root, name)
            energy = _read_int(os.path.join(folder, "energy_uj"))
            if energy is None:
                continue  # unreadable (root only) or not a counter
            self._domains.append(folder)
            self._range.append(_read_int(os.path.join(folder, "max_energy_range_uj")))
            self._last.append(energy)

    @property
    def available(self) -> bool:
        """Whether any package counter could be read at construction."""
        return bool(self._domains)

    @property
    def packages(self) -> list[str]:
        """The package domains read, by their ``name`` file (``package-0``) or folder name."""
        out = []
        for folder in self._domains:
            try:
                with open(os.path.join(folder, "name")) as f:
                    out.append(f.read().strip())
            except OSError:
                out.append(os.path.basename(folder))
        return out

    def read(self) -> float | None:
        """Joules used by all packages since construction.

        Returns:
            ``None`` when no package is readable, or when one of them fails this time (its
            counter is then read against the same baseline next time).
        """
        if not self._domains:
            return None
        now: list[int] = []
        for folder in self._domains:
            value = _read_int(os.path.join(folder, "energy_uj"))
            if value is None:
                return None
            now.append(value)
        for i, value in enumerate(now):
            last, wrap = self._last[i], self._range[i]
            if value >= last:
                self._total_uj += value - last
            else:
                # wrapped: what was left below the top, then the new count (without the range,
                # the new count alone is a lower bound)
                self._total_uj += (wrap - last if wrap and wrap > last else 0) + value
            self._last[i] = value
        return self._total_uj / 1e6


class EnergyCollector:
    """The ``energy`` section of a snapshot: joules since the sampler started, per source.

    Args:
        rapl_root: where the powercap class is (tests pass a recorded tree).

    Both sources count the whole device, not only the run: RAPL measures the CPU packages
    (every process on them), a GPU's counter the whole GPU. Only the GPUs given to the run
    count (``visible`` not ``False``, i.e. all of them when ``CUDA_VISIBLE_DEVICES`` is unset).
    """

    def __init__(self, rapl_root: str = "/sys/class/powercap") -> None:
        self._rapl = RaplReader(rapl_root)
        self._gpus: dict[int, tuple[float, str | None]] = {}  # id -> (joules, source), latest

    def collect(self, accelerators: list[dict[str, Any]] | None) -> dict[str, Any]:
        """One reading.

        Args:
            accelerators: the same snapshot's ``accelerators`` list (each GPU's ``energy`` in
                joules since the GPU collector's first reading, and its ``energySource``).

        Returns:
            ``cpu`` (joules of all CPU packages; ``None`` when RAPL is absent or root-only),
            ``cpuSource`` (``"rapl"``, or ``None`` when ``cpu`` is), ``gpu`` (joules of the
            run's GPUs together; a lost GPU counts what it used until it was lost; ``None``
            without GPUs, or while one of them has never given an energy reading) and
            ``gpuSource`` (``"counter"``, ``"power-integration"`` (an estimate from power
            samples), both joined by ``+`` when GPUs differ, or ``None``). Nothing is estimated
            for a source that cannot be read.
        """
        cpu = self._rapl.read() if self._rapl.available else None
        gpu: float | None = None
        sources: set[str] = set()
        missing = False
        for entry in accelerators or ():
            if entry.get("visible") is False:
                continue
            gid = entry.get("id")
            joules = entry.get("energy")
            if joules is not None and isinstance(gid, int):
                self._gpus[gid] = (joules, entry.get("energySource"))
            got = self._gpus.get(gid) if isinstance(gid, int) else None
            if got is None:
                missing = True
                continue
            gpu = (gpu or 0.0) + got[0]
            if got[1]:
                sources.add(got[1])
        if missing:
            gpu = None
        return {"cpu": None if cpu is None else round(cpu, 3),
                "cpuSource": None if cpu is None else "rapl",
                "gpu": None if gpu is None else round(gpu, 3),
                "gpuSource": "+".join(sorted(sources)) if gpu is not None and sources else None}


def integrate_power(series: Iterable[tuple[float, float | None]]) -> float | None:
    """Joules from power samples, by the trapezoidal rule.

    Args:
        series: ``(time in seconds, power in watts)`` in time order; power ``None`` (or NaN) is a
            gap, and intervals that touch a gap are left out rather than guessed.

    Returns:
        Joules, or ``None`` when no interval has a power reading at both ends (fewer than two
        usable samples in a row).
    """
    total = 0.0
    intervals = 0
    prev_t: float | None = None
    prev_w: float | None = None
    for t, watts in series:
        w = watts if watts is not None and math.isfinite(watts) else None
        if prev_t is not None and prev_w is not None and w is not None and t > prev_t:
            total += (prev_w + w) / 2.0 * (t - prev_t)
            intervals += 1
        prev_t, prev_w = t, w
    return total if intervals else None


def joules_to_kwh(joules: float | None) -> float | None:
    """Kilowatt-hours from joules (1 kWh = 3.6 MJ); ``None`` stays ``None``."""
    return None if joules is None else joules / J_PER_KWH


def co2_grams(kwh: float | None, g_per_kwh: float) -> float | None:
    """Grams of CO2-equivalent for ``kwh`` at a grid intensity of ``g_per_kwh`` (gCO2e/kWh).

    Grid intensity varies from about 20 (hydro, nuclear) to about 800 (coal) g/kWh; take the
    figure for the machine's region and year. ``None`` energy stays ``None``.
    """
    return None if kwh is None else kwh * g_per_kwh


def _read_int(path: str) -> int | None:
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):  # PermissionError: energy_uj is root-only on most systems
        return None
