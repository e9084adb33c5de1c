"""The one statistics fold: per flattened path ``[min, max, sum, count, last]``, kept by the
recorder as samples arrive, merged by readers over sampling processes and nodes, and the
headline figures of a run (:func:`peaks`) computed from it, for ``ls``, ``show`` and every node
row alike."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

Stats = dict[str, list[Any]]  # path -> [min, max, sum, count, last]


def fold(stats: Stats, path: str, lo: Any, hi: Any, total: Any, n: int, last: Any) -> None:
    """Fold ``n`` values of ``path`` (their min, max, sum and the latest) into ``stats``."""
    s = stats.get(path)
    if s is None:
        stats[path] = [lo, hi, total, n, last]
        return
    if lo < s[0]:
        s[0] = lo
    if hi > s[1]:
        s[1] = hi
    s[2] += total
    s[3] += n
    s[4] = last


def merge_stored(stats_json: Iterable[str], into: Stats | None = None) -> Stats:
    """Statistics as stored (one JSON object per sampling process, oldest first) merged into
    one, ``last`` being the latest process's."""
    merged: Stats = {} if into is None else into
    for text in stats_json:
        for path, (lo, hi, total, n, last) in json.loads(text).items():
            fold(merged, path, lo, hi, total, n, last)
    return merged


def summary(stats: Stats) -> dict[str, dict[str, Any]]:
    """``{path: {min, max, mean, last, count}}``, paths sorted."""
    return {p: {"min": lo, "max": hi, "mean": total / n if n else None, "last": last,
                "count": n} for p, (lo, hi, total, n, last) in sorted(stats.items())}


def peaks(stats: dict[str, list[Any]], last_energy: dict[str, Any] | None = None,
          carbon_intensity: float | None = None) -> dict[str, Any]:
    """The headline figures of a run from sample statistics (kept in the run record, so that
    ``ls`` shows them without reading samples).

    Args:
        stats: ``SampleRecorder.stats``: ``{path: [min, max, sum, count, last]}``.
        last_energy: the run's newest ``energy`` section (names the sources).
        carbon_intensity: grid intensity in gCO2e/kWh; adds ``energy.co2_g``.

    Returns:
        Peaks and means of the process tree, host, container and each GPU (bytes, percent),
        ``gpu_memory_peak`` (bytes, the highest of any GPU), ``gpu_utilization_mean`` (over the
        GPUs that report it) and ``energy`` (see :func:`energy_totals`).
    """

    def get(path: str, i: int) -> Any:
        s = stats.get(path)
        return s[i] if s else None

    def mean(path: str) -> Any:
        s = stats.get(path)
        return round(s[2] / s[3], 2) if s and s[3] else None

    out: dict[str, Any] = {
        "cpu_peak": get("cpu.overall", 1), "cpu_mean": mean("cpu.overall"),
        "memory_peak": get("memory.usage", 1), "memory_used_peak": get("memory.used", 1),
        "process_rss_peak": get("process.rss", 1), "process_cpu_peak": get("process.cpu", 1),
        "process_count_peak": get("process.count", 1),
        "swap_used_peak": get("memory.swap.used", 1),
        "process_cpu_mean": mean("process.cpu"), "process_uss_peak": get("process.uss", 1),
        # the container's cgroup (None without one, or without a limit for the percentages)
        "container_memory_limit": get("container.memoryLimit", 1),
        "container_memory_peak": get("container.memoryWorkingSet", 1),
        "container_memory_percent_peak": get("container.memoryPercent", 1),
        "container_cpu_quota": get("container.cpuQuota", 0),
        "container_cpu_percent_mean": mean("container.cpuPercent"),
        "container_cpu_throttled_mean": mean("container.cpuThrottled"),
        "oom_kills": (get("container.oomKills", 1) - get("container.oomKills", 0)
                      if stats.get("container.oomKills") else None),
    }
    gpus = sorted({p.split(".")[1] for p in stats if p.startswith("accelerators.")}, key=int)
    out["gpus"] = [
        {"id": int(g), "utilization_peak": get(f"accelerators.{g}.utilization", 1),
         "utilization_mean": mean(f"accelerators.{g}.utilization"),
         "memory_peak": get(f"accelerators.{g}.memory.used", 1),
         "tree_memory_peak": get(f"accelerators.{g}.treeMemory", 1),
         "memory_percent_peak": get(f"accelerators.{g}.memory.percentage", 1),
         "energy": get(f"accelerators.{g}.energy", 4)}
        for g in gpus
    ]
    # the run's own GPU memory when it could be attributed to its processes, else whole GPUs'
    trees = [g["tree_memory_peak"] for g in out["gpus"] if g["tree_memory_peak"] is not None]
    mems = trees or [g["memory_peak"] for g in out["gpus"] if g["memory_peak"] is not None]
    out["gpu_memory_peak"] = max(mems) if mems else None
    out["gpu_memory_peak_of"] = ("run" if trees else "gpu") if mems else None
    utils = [g["utilization_mean"] for g in out["gpus"] if g["utilization_mean"] is not None]
    out["gpu_utilization_mean"] = round(sum(utils) / len(utils), 2) if utils else None
    out["energy"] = energy_totals(get("energy.cpu", 1), get("energy.gpu", 1), last_energy,
                                  bool(gpus), carbon_intensity)
    return out


def energy_totals(cpu_j: float | None, gpu_j: float | None, last: dict[str, Any] | None,
                  has_gpus: bool, carbon_intensity: float | None = None) -> dict[str, Any]:
    """A run's energy: ``cpu_j`` and ``gpu_j`` (joules, ``None`` when unreadable), their sources,
    ``total_j`` and ``total_kwh`` over the readable ones, ``missing`` (the sources that could not
    be read, so a total that leaves one out says so), and with ``carbon_intensity`` (gCO2e/kWh)
    ``co2_g``. Nothing is estimated for a missing source."""
    from tracklab.collectors.energy import co2_grams, joules_to_kwh

    last = last or {}
    missing = ([] if cpu_j is not None else ["cpu"]) + (
        ["gpu"] if has_gpus and gpu_j is None else [])
    known = [j for j in (cpu_j, gpu_j) if j is not None]
    total = round(sum(known), 3) if known else None
    kwh = joules_to_kwh(total)
    return {"cpu_j": cpu_j, "cpu_source": last.get("cpuSource") or ("rapl" if cpu_j is not None
                                                                    else None),
            "gpu_j": gpu_j, "gpu_source": last.get("gpuSource") if gpu_j is not None else None,
            "total_j": total, "total_kwh": None if kwh is None else round(kwh, 9),
            "missing": missing, "carbon_intensity": carbon_intensity,
            "co2_g": None if carbon_intensity is None or kwh is None
            else round(co2_grams(kwh, carbon_intensity) or 0.0, 6)}
