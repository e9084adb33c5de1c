"""The data behind the views of a run: trends, chart panels, live frames and comparisons (the
self-contained HTML report, built on :func:`panels`, is :mod:`tracklab.read.report`; exports are
:mod:`tracklab.read.export`).

Everything reads through :class:`~tracklab.read.runs.RunView` and the index seeks of
:mod:`tracklab.store.series`, so a trend of ``n`` columns reads about ``n`` samples and ``n``
points whether the run lasted a minute or a day (86,400 samples, a million points). Nothing here
writes, so every view works on a run that is still being written.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable
from fnmatch import fnmatchcase
from itertools import pairwise
from typing import Any, cast

from tracklab.read.figures import GPU_ROWS, IB_ROWS, SYSTEM_ROWS
from tracklab.read.payloads import (
    CompareData,
    CompareRow,
    CompareSection,
    LiveFrame,
    RunInfo,
    ShowData,
)
from tracklab.read.runs import RunView, open_run
from tracklab.store import Shard, series
from tracklab.store.codec import decode_sample, decode_values, unflatten

# (title, unit, path patterns): the system panels of plot and report, in this order
SYSTEM_PANELS: list[tuple[str, str, list[str]]] = [
    ("CPU and memory", "%", ["cpu.overall", "memory.usage"]),
    ("process tree CPU (% of one core)", "%", ["process.cpu"]),
    ("memory", "B", ["memory.used", "process.rss", "process.uss"]),
    ("GPU utilization", "%", ["accelerators.*.utilization"]),
    ("GPU memory", "B", ["accelerators.*.memory.used", "accelerators.*.treeMemory"]),
    ("GPU power", "W", ["accelerators.*.power"]),
    ("GPU temperature", "°C", ["accelerators.*.temperature"]),
    ("GPU SM, tensor and DRAM activity (GPM)", "%",
     ["accelerators.*.gpm.smActive", "accelerators.*.gpm.tensorActive",
      "accelerators.*.gpm.dramActive"]),
    ("GPU PCIe and NVLink", "B/s", ["accelerators.*.pcie.txBytes", "accelerators.*.pcie.rxBytes",
                                    "accelerators.*.nvlink.txBytes",
                                    "accelerators.*.nvlink.rxBytes"]),
    ("disk IO", "B/s", ["disk.ioRead", "disk.ioWrite", "process.readBytes", "process.writeBytes"]),
    ("network", "B/s", ["network.bytesIn", "network.bytesOut"]),
    ("InfiniBand / RoCE", "B/s", ["network.infiniband.*.txBytes",
                                  "network.infiniband.*.rxBytes"]),
]
WATCH_PATHS = ["cpu.overall", "memory.usage", "memory.used", "process.cpu", "process.rss",
               "disk.ioRead", "disk.ioWrite", "network.bytesIn", "network.bytesOut"]
WATCH_GPU_PATHS = ["utilization", "memory.used", "power", "temperature", "gpm.smActive"]
WATCH_IB_PATHS = ["txBytes", "rxBytes"]
_LABELS = {p: label for p, label, _ in SYSTEM_ROWS}
_GPU_LABELS = {p: label for p, label, _ in GPU_ROWS}
_IB_LABELS = {p: label for p, label, _ in IB_ROWS}


# -- sampled series --------------------------------------------------------------------------------

def label(path: str) -> str:
    """A reader's name for a system path or training key (``GPU 0 utilization``)."""
    if path.startswith("accelerators."):
        _, gpu, rest = path.split(".", 2)
        return f"GPU {gpu} {_GPU_LABELS.get(rest, rest)}"
    if path.startswith("network.infiniband.") and path.count(".") == 3:
        _, _, port, field = path.split(".")
        return f"InfiniBand/RoCE port {port} {_IB_LABELS.get(field, field)}"
    return _LABELS.get(path, path)


def span(view: RunView, info: RunInfo | None = None) -> tuple[float, float]:
    """The run's time range in epoch seconds: start to end, or to its newest data while it has
    not ended, so that every trend of one view ends at the same instant."""
    record = view.info if info is None else info
    start = float(record["started_at"])
    end = record.get("ended_at")
    if end is None:
        ends = [s[1] for shard, row in view.parts
                if (s := series.sample_span(shard, row["num"])) is not None]
        ends += [m["last_time"] for m in view.metric_summary().values() if m["last_time"]]
        end = max([*ends, record.get("heartbeat_at") or start, start])
    return start, max(float(end), start + 1e-3)


def _primary(view: RunView, node: str | None = None) -> tuple[Shard, dict[str, Any]] | None:
    """The part whose samples a system series shows: ``node``'s, else the one with most."""
    best: tuple[int, Shard, dict[str, Any]] | None = None
    for shard, row in view.parts:
        if node is not None and row["node"] != node:
            continue
        count = shard.sample_count(row["num"])
        if count and (best is None or count > best[0]):
            best = (count, shard, row)
    return None if best is None else (best[1], best[2])


def system_points(view: RunView, paths: Iterable[str] | None = None, n: int = 400,
                  node: str | None = None) -> dict[str, list[tuple[float, float]]]:
    """About ``n`` evenly spaced samples of one node (the one with most samples by default):
    ``{path: [(time, value), ...]}`` for numeric values, oldest first, the last sample included.
    Null readings are left out, so a series may be shorter than another."""
    part = _primary(view, node)
    if part is None:
        return {}
    shard, row = part
    sp = series.sample_span(shard, row["num"])
    if sp is None:
        return {}
    a, b = sp
    rows = series.samples_at(shard, row["num"], (a + (b - a) * i / n for i in range(n)))
    want = None if paths is None else set(paths)
    picks: dict[str, list[tuple[int, str]]] = {}  # per layout: (index, path) of wanted paths
    out: dict[str, list[tuple[float, float]]] = {}
    for t, paths_json, blob in rows:
        pick = picks.get(paths_json)
        if pick is None:
            pick = picks[paths_json] = [(i, p) for i, p in enumerate(json.loads(paths_json))
                                        if want is None or p in want]
        values = decode_sample(blob)
        for i, p in pick:
            v = values[i]
            if type(v) in (int, float):
                out.setdefault(p, []).append((t, v))
    return out


def metric_points(view: RunView, keys: Iterable[str] | None = None,
                  n: int = 400) -> dict[str, list[tuple[float, int | None, Any]]]:
    """About ``n`` evenly spaced points of each training key (by position in the log, which is
    time order per writer) plus its last value: ``{key: [(time, step, value), ...]}``.

    Values are exact (NaN, infinities, ints and bools as logged)."""
    summary = view.metric_summary()
    wanted = [k for k in (summary if keys is None else keys) if k in summary]
    out: dict[str, list[tuple[float, int | None, Any]]] = {k: [] for k in wanted}
    for shard, row in view.parts:
        sp = series.point_span(shard, row["num"])
        if sp is None:
            continue
        lo, hi = sp
        edges = sorted({lo + (hi + 1 - lo) * i // n for i in range(n)} | {hi + 1})
        bounds = list(pairwise(edges))
        sets = series.keysets(shard)
        holders: dict[str, list[int]] = {}
        for num, ks in sets.items():
            for k in ks:
                if k in out:
                    holders.setdefault(k, []).append(num)
        groups: dict[tuple[int, ...], set[str]] = {}
        for k, held_by in holders.items():
            groups.setdefault(tuple(held_by), set()).add(k)
        for nums, group in groups.items():
            for _, step, t, ks, fmt, blob in series.points_in_bins(shard, row["num"], bounds,
                                                                   nums):
                for k, v in zip(sets[ks], decode_values(fmt, blob)):
                    if k in group:
                        out[k].append((t, step, v))
    for k, pts in out.items():
        pts.sort(key=lambda p: p[0])
        s = summary[k]
        if s["last_time"] is not None and (not pts or s["last_time"] > pts[-1][0]):
            pts.append((s["last_time"], s["last_step"], s["last"]))
    return out


def to_grid(points: list[tuple[Any, ...]], start: float, end: float, n: int) -> list[Any]:
    """Place ``(time, ..., value)`` points in ``n`` equal time columns from start to end: each
    column holds the last value that fell in it; empty columns between two points hold the
    previous value; columns before the first or after the last point are ``None``."""
    cols: list[Any] = [None] * n
    filled = [False] * n
    width = (end - start) / n
    if not width > 0:  # no time span (a run whose times are missing or out of order)
        width = float("inf")
    for p in points:
        i = min(n - 1, max(0, int((p[0] - start) / width)))
        cols[i], filled[i] = p[-1], True
    if True in filled:
        first, last = filled.index(True), n - 1 - filled[::-1].index(True)
        for i in range(first + 1, last + 1):
            if not filled[i]:
                cols[i] = cols[i - 1]
    return cols


def trends(view: RunView, paths: list[str], n: int = 40,
           window: tuple[float, float] | None = None) -> dict[str, list[Any]]:
    """A trend of ``n`` columns over the run (or ``window``) for each system path."""
    start, end = window or span(view)
    pts = system_points(view, paths, n)
    return {p: to_grid(pts.get(p, []), start, end, n) for p in paths}


def metric_trends(view: RunView, keys: list[str], n: int = 40,
                  window: tuple[float, float] | None = None) -> dict[str, list[Any]]:
    """A trend of ``n`` columns over the run's time (the same columns as :func:`trends`, so a
    loss and a GPU's utilization line up) for each training key."""
    start, end = window or span(view)
    pts = metric_points(view, keys, n)
    return {k: to_grid(pts.get(k, []), start, end, n) for k in keys}


def attach_trends(view: RunView, data: ShowData, n: int = 40) -> ShowData:
    """Add a ``trend`` (``n`` columns, shared time axis) to every row of a ``summarize`` dict."""
    window = span(view, data["info"])
    rows = [*data["system"], *(r for g in data["gpus"] for r in g["rows"])]
    sys_t = trends(view, [r["path"] for r in rows], n, window)
    for r in rows:
        r["trend"] = sys_t[r["path"]]
    met_t = metric_trends(view, list(data["metrics"]), n, window)
    for k, s in data["metrics"].items():
        s["trend"] = met_t.get(k)
    data["trend_window"] = {"start": window[0], "end": window[1], "columns": n}
    return data


def latest_sample(view: RunView) -> dict[str, Any] | None:
    """The newest snapshot of the primary node (API.md §4 format), or ``None``."""
    part = _primary(view)
    if part is None:
        return None
    got = series.last_sample(part[0], part[1]["num"])
    if not got:
        return None
    t, paths_json, blob = got
    snap: dict[str, Any] = {"nodeId": part[1]["node"], "timestamp": round(t * 1000)}
    snap.update(unflatten(json.loads(paths_json), decode_sample(blob)))
    return snap


def live(view: RunView, n: int = 40, max_keys: int = 30) -> LiveFrame:
    """One frame of ``tracklab watch``: the run record, the newest sample, trends of the
    headline system paths and of the first ``max_keys`` training keys."""
    info = view.info
    window = span(view, info)
    last = latest_sample(view)
    gpus = [g.get("id", i) for i, g in enumerate((last or {}).get("accelerators") or [])]
    paths = WATCH_PATHS + [f"accelerators.{g}.{p}" for g in gpus for p in WATCH_GPU_PATHS]
    ports = range(len(((last or {}).get("network") or {}).get("infiniband") or []))
    paths += [f"network.infiniband.{k}.{p}" for k in ports for p in WATCH_IB_PATHS]
    metrics = view.metric_summary()
    keys = list(metrics)[:max_keys]
    return {"info": info, "now": time.time(), "window": window, "last": last,
            "samples": view.sample_count(), "trends": trends(view, paths, n, window),
            "metrics": metrics, "metric_trends": metric_trends(view, keys, n, window)}


def reopen(view: RunView) -> RunView:
    """The same run read afresh (status, new nodes); closes ``view``."""
    fresh = open_run(view.id, view.store_dir)
    view.close()
    return fresh


# -- chart panels (plot, report) ---------------------------------------------------------------------

def _wanted(key: str, patterns: list[str] | None) -> bool:
    return not patterns or any(
        fnmatchcase(key, p) or fnmatchcase(key, p + "/*") or fnmatchcase(key, p + ".*")
        for p in patterns)


def family(key: str) -> str:
    """A training key's panel: the part before the first ``/`` (``train/loss`` -> ``train``),
    else before the first ``.`` (a nested dict logged: ``val.acc`` -> ``val``)."""
    for sep in "/.":
        if sep in key.strip(sep):
            return key.split(sep, 1)[0] or key
    return key


def _natural(path: str) -> list[Any]:
    return [int(p) if p.isdigit() else p for p in path.split(".")]


def plottable(v: Any) -> float | None:
    """A value as a float for a chart, ``None`` for a gap (NaN, infinities, non-numbers)."""
    if type(v) not in (int, float, bool):
        return None
    try:
        f = float(v)
    except OverflowError:  # an int beyond float range, stored exactly: off the chart too
        return None
    return f if math.isfinite(f) else None


def panels(view: RunView, patterns: list[str] | None = None, step: bool = False,
           n: int = 600, max_panels: int | None = None,
           max_series: int | None = None) -> dict[str, Any]:
    """The charts of a run: one panel per metric family, x in seconds since the start (training
    panels in steps when ``step``). ``patterns`` (globs; ``train`` also matches ``train/*``)
    keep only matching system paths and training keys. ``max_panels`` training panels at most,
    of ``max_series`` keys at most (the first, in logging order); the rest are left out.

    Returns ``{run, name, start, end, panels: [{title, unit, axis, training, series:
    [{key, label, x, y}]}], left_out}``; ``y`` holds floats or ``None`` (a gap), ``left_out``
    the training keys not drawn."""
    info = view.info
    start, end = span(view, info)
    every = [q for _, _, pats in SYSTEM_PANELS for q in pats]
    pts = system_points(view, [p for p in view.system_summary()
                               if any(fnmatchcase(p, q) for q in every)], n)
    out = []
    for title, unit, pats in SYSTEM_PANELS:
        chosen = sorted((p for p in pts if any(fnmatchcase(p, q) for q in pats)
                         and _wanted(p, patterns)),
                        key=lambda p: (next(i for i, q in enumerate(pats) if fnmatchcase(p, q)),
                                       _natural(p)))
        lines = [{"key": p, "label": label(p), "x": [round(t - start, 3) for t, _ in pts[p]],
                  "y": [float(v) for _, v in pts[p]]} for p in chosen]
        if lines:
            out.append({"title": title, "unit": unit, "axis": "time", "training": False,
                        "series": lines})
    families: dict[str, list[str]] = {}
    for k in view.metric_summary():
        if _wanted(k, patterns):
            families.setdefault(family(k), []).append(k)
    drawn = list(families.items())[:max_panels]
    drawn = [(fam, ks[:max_series]) for fam, ks in drawn]
    keys = [k for _, ks in drawn for k in ks]
    left_out = sum(map(len, families.values())) - len(keys)
    mpts = metric_points(view, keys, n)
    for fam, ks in drawn:
        lines = [{"key": k, "label": k,
                  "x": [p[1] if step else round(p[0] - start, 3) for p in mpts[k]],
                  "y": [plottable(p[2]) for p in mpts[k]]} for k in ks]
        out.append({"title": fam, "unit": "", "axis": "step" if step else "time",
                    "training": True, "series": lines})
    return {"run": info["id"], "name": info["name"], "start": start, "end": end,
            "panels": out, "left_out": left_out}


# -- compare ------------------------------------------------------------------------------------

def _differs(values: list[Any], tolerance: float) -> bool:
    nums = [v for v in values if type(v) in (int, float) and math.isfinite(v)]
    if len(nums) == len(values) and nums and tolerance:
        lo, hi = min(nums), max(nums)
        return bool(hi - lo > tolerance * max(abs(lo), abs(hi)))
    return len({json.dumps(v, sort_keys=True, default=str) for v in values}) > 1


def compare(views: list[RunView], tolerance: float = 0.1) -> CompareData:
    """Runs side by side: ``{runs: [{id, name}], sections: [{title, rows: [{label, unit,
    values, marked}]}]}``. A numeric row is marked when its values spread by more than
    ``tolerance`` (10%) of the largest; any other row when its values differ."""
    infos = [v.info for v in views]
    stats = [v.system_summary() for v in views]
    metrics = [v.metric_summary() for v in views]

    def stat(path: str, field: str) -> list[Any]:
        return [(s.get(path) or {}).get(field) for s in stats]

    def row(lbl: str, unit: str, values: list[Any], tol: float = tolerance) -> CompareRow:
        return {"label": lbl, "unit": unit, "values": values, "marked": _differs(values, tol)}

    run_rows = [
        row("status", "", [i["status"] for i in infos]),
        row("exit code", "", [i["exit_code"] for i in infos]),
        row("duration", "s", [i["duration"] for i in infos]),
        row("samples", "", [v.sample_count() for v in views], 0.5),
        row("host", "", [i["host"] for i in infos]),
        row("command", "", [i["command"] for i in infos]),
    ]
    sys_rows = [
        row("peak CPU", "%", stat("cpu.overall", "max")),
        row("mean CPU", "%", stat("cpu.overall", "mean")),
        row("peak memory", "B", stat("memory.used", "max")),
        row("peak process tree RSS", "B", stat("process.rss", "max")),
        row("mean process tree CPU", "%", stat("process.cpu", "mean")),
    ]
    gpus = sorted({int(p.split(".")[1]) for s in stats for p in s
                   if p.startswith("accelerators.")})
    for g in gpus:
        a = f"accelerators.{g}"
        sys_rows += [
            row(f"GPU {g} mean utilization", "%", stat(f"{a}.utilization", "mean")),
            row(f"GPU {g} peak utilization", "%", stat(f"{a}.utilization", "max")),
            row(f"GPU {g} peak memory", "B", stat(f"{a}.memory.used", "max")),
            row(f"GPU {g} mean power", "W", stat(f"{a}.power", "mean")),
            row(f"GPU {g} energy", "J", stat(f"{a}.energy", "last")),
        ]
    sys_rows = [r for r in sys_rows if any(v is not None for v in r["values"])]
    keys = sorted({k for m in metrics for k in m})
    train_rows = [row(k, "", [(m.get(k) or {}).get("last") for m in metrics]) for k in keys]
    configs = [i["config"] for i in infos]
    ckeys = sorted({k for c in configs for k in c})
    config_rows = [row(k, "", [c.get(k) for c in configs], 0) for k in ckeys]
    same = [r for r in config_rows if not r["marked"]]
    sections: list[CompareSection] = [{"title": "run", "rows": run_rows}, {"title": "system", "rows": sys_rows},
                {"title": "training metrics (last value)", "rows": train_rows},
                {"title": "config (differences)", "rows": [r for r in config_rows if r["marked"]],
                 "note": f"{len(same)} identical keys not shown" if same else None}]
    return {"runs": [{"id": i["id"], "name": i["name"], "started_at": i["started_at"]}
                     for i in infos], "sections": sections}


# -- housekeeping -------------------------------------------------------------------------------


SORT_KEYS = {"started": ("started_at", True), "duration": ("duration", True),
             "name": ("name", False), "project": ("project", False), "status": ("status", False),
             "exit": ("exit_code", False)}


def sort_runs(runs: list[RunInfo], by: str = "started",
              reverse: bool = False) -> list[RunInfo]:
    """Runs ordered by ``started`` (newest first), ``duration`` (longest first), ``name``,
    ``project``, ``status`` or ``exit``; ``reverse`` flips it. Missing values go last."""
    field, desc = SORT_KEYS[by]

    def value(r: RunInfo) -> Any:
        return cast("dict[str, Any]", r).get(field)  # the field is chosen at run time

    have = [r for r in runs if value(r) is not None]
    missing = [r for r in runs if value(r) is None]
    have.sort(key=lambda r: v.lower() if isinstance(v := value(r), str) else v,
              reverse=desc != reverse)
    return have + missing
