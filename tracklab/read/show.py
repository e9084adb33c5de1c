"""The data behind ``tracklab show``: one plain dict per run, built from running statistics.

Display names and units live here (data), formatting lives in the CLI's renderer.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, TypeVar, cast

from tracklab.errors import StoreError, TracklabWarning
from tracklab.read.console import console_lines
from tracklab.read.figures import GPU_ROWS, IB_ROWS, SYSTEM_ROWS
from tracklab.read.fleet import fleet_summary
from tracklab.read.payloads import GpuTable, RunInfo, ShowData, StatRow
from tracklab.read.runs import RunView

T = TypeVar("T")


def _row(path: str, label: str, unit: str, stat: dict[str, Any]) -> StatRow:
    return {"path": path, "label": label, "unit": unit, "min": stat["min"], "max": stat["max"],
            "mean": stat["mean"], "last": stat["last"], "count": stat["count"]}


def summarize(view: RunView) -> ShowData:
    """Everything ``show`` prints, as data: info, system rows, per-GPU rows, training metrics.

    A shard damaged in the middle (the run's row readable, some of its tables not) gives what
    can be read: each part that cannot be is left out, named in ``unreadable``, and one
    TracklabWarning says which file and why."""
    info = view.info
    part = _Parts()
    stats = part.read("system metrics", view.system_summary, {})
    system = [_row(p, label, unit, stats[p]) for p, label, unit in SYSTEM_ROWS if p in stats]
    ports = sorted({int(p.split(".")[2]) for p in stats if p.startswith("network.infiniband.")
                    and p.split(".")[2].isdigit()})
    system += [_row(f"network.infiniband.{k}.{f}", f"InfiniBand/RoCE port {k} {label}", unit,
                    stats[f"network.infiniband.{k}.{f}"])
               for k in ports for f, label, unit in IB_ROWS
               if f"network.infiniband.{k}.{f}" in stats]
    system += [_row(p, p, "", s) for p, s in stats.items() if p.startswith("custom.")]
    gpu_ids = sorted({int(p.split(".")[1]) for p in stats if p.startswith("accelerators.")})
    names = {g.get("id"): g.get("name") for g in (info.get("system") or {}).get("gpus", [])}
    gpus: list[GpuTable] = []
    for g in gpu_ids:
        rows = [_row(f"accelerators.{g}.{p}", label, unit, stats[f"accelerators.{g}.{p}"])
                for p, label, unit in GPU_ROWS if f"accelerators.{g}.{p}" in stats]
        gpus.append({"id": g, "name": names.get(g), "rows": rows})
    from tracklab.read.diagnose import diagnose
    from tracklab.read.diagnose_data import MAX_SAMPLES, read_samples, resources
    from tracklab.read.trends import (
        attach_trends,  # sparklines: about 40 index seeks, whatever the run's size
    )

    # findings from the statistics and at most MAX_SAMPLES evenly spaced samples
    sampled = part.read("samples", lambda: read_samples(view, MAX_SAMPLES), [])
    context = part.read("output", lambda: context_summary(view, info),
                        {"summary": {}, "last_lines": []})
    peaks = (info.get("summary") or {}).get("peaks") or {}
    data: ShowData = {
        "diagnosis": diagnose(info, stats, sampled),
        "resources": resources(info, stats, sampled),
        "energy": peaks.get("energy"),  # None until the run has ended
        "info": info,
        "samples": part.read("samples", view.sample_count, 0),
        # the headline figures, by the definition the run's record keeps for ls
        "peaks": part.read("samples", view.peaks, {}),
        "system": system,
        "gpus": gpus,
        "metrics": part.read("training metrics", view.metric_summary, {}),
        # a run across nodes: per-node rows, min/mean/max over nodes, stragglers (else None)
        "fleet": part.read("nodes", lambda: fleet_summary(view), None),
        # summary values (metric lasts + run.summary), last lines if it ended badly
        "summary": context["summary"],
        "last_lines": context["last_lines"],
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


LAST_LINES = 20  # lines of output ``show`` prints for a run that ended badly


ENDED_BADLY = frozenset({"failed", "killed", "oom-killed", "crashed", "terminated",
                         "interrupted"})


def context_summary(view: RunView, info: RunInfo) -> dict[str, Any]:
    """For ``show``: ``summary`` (each metric's last value, overridden by ``run.summary``) and
    ``last_lines`` (the last :data:`LAST_LINES` of output when the run did not finish well)."""
    values: dict[str, Any] = {k: s["last"] for k, s in view.metric_summary().items()}
    values.update((info.get("summary") or {}).get("user") or {})
    last = console_lines(view, tail=LAST_LINES) if info.get("status") in ENDED_BADLY else []
    return {"summary": values, "last_lines": last}
