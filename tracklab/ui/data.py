"""The JSON documents behind the dashboard: the runs table, one run's page, and chart series.

Everything reads through :mod:`tracklab.read.runs` (shards merged, never written) and the downsampled
series of :mod:`tracklab.ui.series`, so a request costs about the same on a run of a thousand
points as on one of a million. Warnings the readers raise (a node's unreadable shard) are
collected and returned, for the page's banner, instead of going to stderr.
"""

from __future__ import annotations

import math
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from fnmatch import fnmatchcase
from typing import Any, TypeVar

from tracklab.read.runs import RunView, _group, _open_shards, open_run
from tracklab.ui import series

T = TypeVar("T")

# The system panels under the training charts: (path pattern, title, unit), in this order.
SYSTEM_CHARTS: list[tuple[str, str, str]] = [
    ("cpu.overall", "CPU (all cores)", "%"),
    ("memory.usage", "memory", "%"),
    ("process.cpu", "process tree CPU (of one core)", "%"),
    ("process.rss", "process tree RSS", "B"),
    ("accelerators.*.utilization", "utilization", "%"),
    ("accelerators.*.memory.used", "memory used", "B"),
    ("accelerators.*.power", "power", "W"),
    # what utilization hides, where the GPU gives it (GPM on Hopper and newer)
    ("accelerators.*.gpm.smActive", "SM active (GPM)", "%"),
    ("accelerators.*.gpm.tensorActive", "tensor pipes active (GPM)", "%"),
    ("accelerators.*.gpm.dramActive", "DRAM bandwidth, of peak (GPM)", "%"),
    ("accelerators.*.memoryUtilization", "memory controller busy", "%"),
    ("accelerators.*.pcie.txBytes", "PCIe out", "B/s"),
    ("accelerators.*.pcie.rxBytes", "PCIe in", "B/s"),
    ("accelerators.*.nvlink.txBytes", "NVLink out", "B/s"),
    ("accelerators.*.nvlink.rxBytes", "NVLink in", "B/s"),
    ("disk.ioRead", "disk read", "B/s"),
    ("disk.ioWrite", "disk write", "B/s"),
    ("network.bytesIn", "network in", "B/s"),
    ("network.bytesOut", "network out", "B/s"),
    ("network.infiniband.*.txBytes", "out", "B/s"),
    ("network.infiniband.*.rxBytes", "in", "B/s"),
]

# The readers warn through the warnings module, whose filters are process-wide: requests that
# read the store take turns, so one request's warnings are its own (reads are milliseconds).
_lock = threading.Lock()


@contextmanager
def collected(into: list[str]) -> Iterator[None]:
    """Run a read with the store's warnings appended to ``into`` rather than printed."""
    with _lock, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for w in caught:
        text = str(w.message)
        if text not in into:
            into.append(text)


def read(fn: Callable[[], T], into: list[str]) -> T:
    with collected(into):
        return fn()


def _finite(v: Any) -> Any:
    """A value JSON can carry: NaN and infinities become their names (``JSON.parse`` refuses
    the bare tokens Python writes)."""
    if isinstance(v, float) and not math.isfinite(v):
        return "NaN" if v != v else ("Infinity" if v > 0 else "-Infinity")
    return v


def clean(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    return _finite(obj)


def run_row(view: RunView, info: Mapping[str, Any]) -> dict[str, Any]:
    """One row of the runs table: the record, the headline peaks (the one definition ``ls``
    shows), and every metric's last value."""
    peaks = view.peaks()
    metrics = view.metric_summary()
    row = {k: info.get(k) for k in ("id", "name", "project", "status", "exit_code", "signal",
                                    "started_at", "ended_at", "duration", "tags", "notes",
                                    "host", "nodes")}
    row["config"] = info.get("config") or {}
    row["peak_cpu"] = peaks.get("cpu_peak")
    row["peak_rss"] = peaks.get("process_rss_peak")
    row["peak_gpu_mem"] = peaks.get("gpu_memory_peak")  # the run's own where attributed
    utils = [g["utilization_peak"] for g in peaks.get("gpus") or []
             if g.get("utilization_peak") is not None]
    row["peak_gpu_util"] = max(utils) if utils else None
    row["metrics"] = {k: m["last"] for k, m in metrics.items()}
    row["last_step"] = max((m["last_step"] for m in metrics.values()
                            if m["last_step"] is not None), default=None)
    return row


# Rows of runs that have ended, by run id: (signature of their records, row). An ended run's
# statistics no longer change, so the table polled every second rebuilds only the live rows
# and those whose record changed (a tag or note edited, a node's late end).
_ended: dict[str, tuple[tuple[Any, ...], dict[str, Any]]] = {}
MAX_CACHED = 100_000


def _signature(parts: list[tuple[Any, dict[str, Any]]]) -> tuple[Any, ...] | None:
    if any(r["status"] == "running" for _, r in parts):
        return None
    return tuple((shard.path, r["num"], r["status"], r["ended_at"], r["exit_code"], r["signal"],
                  r["name"], r["project"], r["tags"], r["notes"], r["heartbeat_at"])
                 for shard, r in parts)


def runs_table(store_dir: str) -> list[dict[str, Any]]:
    """Every run of the store, newest first, as :func:`run_row` rows."""
    shards = _open_shards(store_dir)
    try:
        groups = _group([(s, r) for s in shards for r in s.run_rows()])
        out = []
        for run_id, parts in groups.items():
            sig = _signature(parts)
            cached = _ended.get(run_id)
            if sig is not None and cached is not None and cached[0] == sig:
                out.append(cached[1])
                continue
            view = RunView(parts, store_dir)
            row = run_row(view, view.info)
            out.append(row)
            if sig is not None and row["status"] != "running":
                if len(_ended) >= MAX_CACHED:
                    _ended.clear()
                _ended[run_id] = (sig, row)
        out.sort(key=lambda r: -(r["started_at"] or 0))
        return out
    finally:
        for s in shards:
            s.close()


def run_page(store_dir: str, ref: str, console_tail: int = 200) -> dict[str, Any]:
    """One run's page: the ``show`` data (record, diagnosis, GPUs, metrics) and its last lines."""
    from tracklab.read.console import console_lines, not_captured
    from tracklab.read.show import summarize

    view = open_run(ref, store_dir)
    try:
        data: dict[str, Any] = dict(summarize(view))
        data["console"] = [{"time": c["time"], "stream": c["stream"], "line": c["line"]}
                           for c in console_lines(view, tail=console_tail)]
        data["console_note"] = not_captured(view)
        return data
    finally:
        view.close()


def console_text(store_dir: str, ref: str) -> str:
    from tracklab.read.console import console_lines

    view = open_run(ref, store_dir)
    try:
        return "\n".join(c["line"] for c in console_lines(view)) + "\n"
    finally:
        view.close()


def keys_of(store_dir: str, refs: list[str]) -> dict[str, Any]:
    """The training keys and system charts the selected runs have, for the chart grid."""
    keys: dict[str, None] = {}
    system: dict[str, None] = {}
    for ref in refs:
        view = open_run(ref, store_dir)
        try:
            for k in view.metric_summary():
                keys.setdefault(k)
            paths = list(view.system_summary())
        finally:
            view.close()
        for pattern, _, _ in SYSTEM_CHARTS:
            for p in sorted(paths, key=_natural):
                if fnmatchcase(p, pattern):
                    system.setdefault(p)
    order = {pat: i for i, (pat, _, _) in enumerate(SYSTEM_CHARTS)}

    def rank(p: str) -> tuple[int, list[Any]]:
        return (next(i for pat, i in order.items() if fnmatchcase(p, pat)), _natural(p))

    sys_charts = []
    for p in sorted(system, key=rank):
        pat = next(pat for pat, _, _ in SYSTEM_CHARTS if fnmatchcase(p, pat))
        title = next(t for q, t, _ in SYSTEM_CHARTS if q == pat)
        if p.startswith("accelerators."):
            title = f"GPU {p.split('.')[1]} {title}"
        elif p.startswith("network.infiniband."):
            title = f"InfiniBand/RoCE port {p.split('.')[2]} {title}"
        unit = next(u for q, _, u in SYSTEM_CHARTS if q == pat)
        sys_charts.append({"path": p, "title": title, "unit": unit})
    return {"metrics": list(keys), "system": sys_charts}


def _natural(path: str) -> list[Any]:
    return [(0, int(p)) if p.isdigit() else (1, p) for p in path.split(".")]


def chart_series(store_dir: str, refs: list[str], keys: list[str], axis: str,
                 lo: float | None, hi: float | None, width: int,
                 relative: bool = False) -> dict[str, Any]:
    """For each run and each key (a training key, or ``sys:PATH`` for a system path): the
    series downsampled to about ``width`` buckets of ``[lo, hi]`` on ``axis`` (``step`` or
    ``time``), each bucket's minimum, maximum and last value kept. ``relative``: the bounds
    are seconds since each run's start."""
    out: dict[str, Any] = {}
    started = time.perf_counter()
    lo_given, hi_given = lo, hi
    for ref in refs:
        view = open_run(ref, store_dir)
        try:
            info = view.info
            if relative and axis == "time":
                base = float(info["started_at"])
                lo = None if lo_given is None else lo_given + base
                hi = None if hi_given is None else hi_given + base
            per: dict[str, Any] = {}
            steps = None
            sys_paths = [k[4:] for k in keys if k.startswith("sys:")]
            if sys_paths:
                if axis == "step":
                    steps = series.step_clock(view)
                got = series.system_series(view, sys_paths, axis, lo, hi, width, steps)
                per.update({"sys:" + p: v for p, v in got.items()})
            metric_keys = [k for k in keys if not k.startswith("sys:")]
            per.update(series.metric_series(view, metric_keys, axis, lo, hi, width))
            out[info["id"]] = {"status": info["status"], "started_at": info["started_at"],
                               "series": per}
        finally:
            view.close()
    return {"runs": out, "axis": axis, "ms": round((time.perf_counter() - started) * 1000, 1)}
