"""The data behind ``tracklab show``: one plain dict per run, built from running statistics.

Display names and units live here (data), formatting lives in the CLI's renderer.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, TypeVar, cast

from .context import context_summary
from .errors import StoreError, TracklabWarning
from .fleet import fleet_summary
from .runs import RunView

T = TypeVar("T")

# (path, label, unit): unit is "%", "B", "B/s", "1/s", "°C", "W", "J", "MHz" or "" (a count)
SYSTEM_ROWS: list[tuple[str, str, str]] = [
    ("cpu.overall", "CPU (all cores)", "%"),
    ("cpu.loadAverage.0", "load average (1 min)", ""),
    ("memory.usage", "memory", "%"),
    ("memory.used", "memory used", "B"),
    ("memory.swap.used", "swap used", "B"),
    ("disk.usage", "disk (store's filesystem)", "%"),
    ("disk.ioRead", "disk read", "B/s"),
    ("disk.ioWrite", "disk write", "B/s"),
    ("disk.iops", "disk IOPS", "1/s"),
    ("network.bytesIn", "network in", "B/s"),
    ("network.bytesOut", "network out", "B/s"),
    ("network.connections", "connections", ""),
    ("process.cpu", "process tree CPU (of one core)", "%"),
    ("process.rss", "process tree RSS", "B"),
    ("process.uss", "process tree USS", "B"),
    ("process.count", "process tree processes", ""),
    ("process.threads", "process tree threads", ""),
    ("process.readBytes", "process tree read", "B/s"),
    ("process.writeBytes", "process tree write", "B/s"),
    ("process.openFiles", "process tree open files", ""),
    # issue 6: the cgroup's own figures; its percentages are against its limits (see show)
    ("container.memoryWorkingSet", "container memory (working set)", "B"),
    ("container.memoryPercent", "container memory (of its limit)", "%"),
    ("container.cpuPercent", "container CPU (of its quota)", "%"),
    ("container.cpuThrottled", "container CPU throttled (periods)", "%"),
    ("cpu.frequency", "CPU frequency (mean of cores)", "MHz"),
    ("energy.cpu", "CPU package energy (RAPL)", "J"),
    ("energy.gpu", "GPU energy (the run's GPUs)", "J"),
]

GPU_ROWS: list[tuple[str, str, str]] = [
    ("utilization", "utilization", "%"),
    ("memory.used", "memory used", "B"),
    ("memory.percentage", "memory", "%"),
    ("treeMemory", "memory used by the run", "B"),
    ("treeUtilization", "SM use by the run", "%"),
    ("temperature", "temperature", "°C"),
    ("power", "power", "W"),
    ("fanSpeed", "fan", "%"),
    ("clocks.sm", "SM clock", "MHz"),
    ("energy", "energy", "J"),
]


def summarize(view: RunView) -> dict[str, Any]:
    """Everything ``show`` prints, as data: info, system rows, per-GPU rows, training metrics.

    A shard damaged in the middle (the run's row readable, some of its tables not) gives what
    can be read: each part that cannot be is left out, named in ``unreadable``, and one
    TracklabWarning says which file and why."""
    info = view.info
    part = _Parts()
    stats = part.read("system metrics", view.system_summary, {})
    system = [dict(path=p, label=label, unit=unit, **stats[p])
              for p, label, unit in SYSTEM_ROWS if p in stats]
    system += [dict(path=p, label=p, unit="", **s) for p, s in stats.items()
               if p.startswith("custom.")]
    gpu_ids = sorted({int(p.split(".")[1]) for p in stats if p.startswith("accelerators.")})
    gpus = []
    for g in gpu_ids:
        rows = [dict(path=f"accelerators.{g}.{p}", label=label, unit=unit,
                     **stats[f"accelerators.{g}.{p}"])
                for p, label, unit in GPU_ROWS if f"accelerators.{g}.{p}" in stats]
        gpus.append({"id": g, "rows": rows})
    names = {g.get("id"): g.get("name") for g in (info.get("system") or {}).get("gpus", [])}
    for gpu in gpus:
        gpu["name"] = names.get(gpu["id"])
    from .diagnose import diagnose
    from .diagnose_data import MAX_SAMPLES, read_samples, resources
    from .views import attach_trends  # sparklines: about 40 index seeks, whatever the run's size

    # issue 6: findings from the statistics and at most MAX_SAMPLES evenly spaced samples
    sampled = part.read("samples", lambda: read_samples(view, MAX_SAMPLES), [])
    peaks = (info.get("summary") or {}).get("peaks") or {}
    data = {
        "diagnosis": diagnose(info, stats, sampled),
        "resources": resources(info, stats, sampled),
        "energy": peaks.get("energy"),  # None until the run has ended
        "info": info,
        "samples": part.read("samples", view.sample_count, 0),
        "system": system,
        "gpus": gpus,
        "metrics": part.read("training metrics", view.metric_summary, {}),
        # a run across nodes: per-node rows, min/mean/max over nodes, stragglers (else None)
        "fleet": part.read("nodes", lambda: fleet_summary(view), None),
        # issue 8: summary values (metric lasts + run.summary), last lines if it ended badly
        **part.read("output", lambda: context_summary(view, info), {}),
    }
    data = part.read("trends", lambda: attach_trends(view, data), data)
    data["unreadable"] = part.missing
    part.warn()
    return data


class _Parts:
    """The parts of a run that could not be read, and the first error that said why."""

    def __init__(self) -> None:
        self.missing: list[str] = []
        self.error: StoreError | None = None

    def read(self, what: str, read: Callable[[], T], default: Any) -> T:
        try:
            return read()
        except StoreError as exc:
            if what not in self.missing:
                self.missing.append(what)
            self.error = self.error or exc
            return cast(T, default)

    def warn(self) -> None:
        if self.error is not None:
            warnings.warn(f"tracklab: warning: {self.error}; shown without its "
                          f"{', '.join(self.missing)}", TracklabWarning, stacklevel=3)
