"""The data behind the views of a run: trends, chart panels, live frames, exports, comparisons,
and the self-contained HTML report.

Everything reads through :class:`~tracklab.runs.RunView` and the index seeks of
:mod:`tracklab.store.series`, so a trend of ``n`` columns reads about ``n`` samples and ``n``
points whether the run lasted a minute or a day (86,400 samples, a million points). Nothing here
writes except :func:`remove_run`, so every view works on a run that is still being written.
"""

from __future__ import annotations

import csv
import heapq
import io
import json
import math
import time
from collections.abc import Iterable, Iterator
from fnmatch import fnmatchcase
from itertools import pairwise
from typing import IO, Any

from .errors import TracklabError
from .runs import RunView, open_run
from .store import Shard, series
from .store.codec import decode_sample, decode_values, unflatten
from .summary import GPU_ROWS, SYSTEM_ROWS

EXPORT_FIELDS = ("run_id", "node", "rank", "time", "step", "key", "value")

# (title, unit, path patterns): the system panels of plot and report, in this order
SYSTEM_PANELS: list[tuple[str, str, list[str]]] = [
    ("CPU and memory", "%", ["cpu.overall", "memory.usage"]),
    ("process tree CPU (% of one core)", "%", ["process.cpu"]),
    ("memory", "B", ["memory.used", "process.rss", "process.uss"]),
    ("GPU utilization", "%", ["accelerators.*.utilization"]),
    ("GPU memory", "B", ["accelerators.*.memory.used", "accelerators.*.treeMemory"]),
    ("GPU power", "W", ["accelerators.*.power"]),
    ("GPU temperature", "°C", ["accelerators.*.temperature"]),
    ("disk IO", "B/s", ["disk.ioRead", "disk.ioWrite", "process.readBytes", "process.writeBytes"]),
    ("network", "B/s", ["network.bytesIn", "network.bytesOut"]),
]
WATCH_PATHS = ["cpu.overall", "memory.usage", "memory.used", "process.cpu", "process.rss",
               "disk.ioRead", "disk.ioWrite", "network.bytesIn", "network.bytesOut"]
WATCH_GPU_PATHS = ["utilization", "memory.used", "power", "temperature"]
_LABELS = {p: label for p, label, _ in SYSTEM_ROWS}
_GPU_LABELS = {p: label for p, label, _ in GPU_ROWS}


class MissingExtra(TracklabError):
    """An optional dependency is missing; ``hint`` is the command that installs it."""

    __module__ = "tracklab"

    def __init__(self, package: str, extra: str) -> None:
        self.package = package
        self.extra = extra
        self.hint = f"pip install 'tracklab[{extra}]'"
        super().__init__(f"{package} is not installed; install it with: {self.hint}")


# -- sampled series --------------------------------------------------------------------------------

def label(path: str) -> str:
    """A reader's name for a system path or training key (``GPU 0 utilization``)."""
    if path.startswith("accelerators."):
        _, gpu, rest = path.split(".", 2)
        return f"GPU {gpu} {_GPU_LABELS.get(rest, rest)}"
    return _LABELS.get(path, path)


def span(view: RunView, info: dict[str, Any] | None = None) -> tuple[float, float]:
    """The run's time range in epoch seconds: start to end, or to its newest data while it has
    not ended, so that every trend of one view ends at the same instant."""
    info = view.info if info is None else info
    start = float(info["started_at"])
    end = info.get("ended_at")
    if end is None:
        ends = [s[1] for shard, row in view._parts
                if (s := series.sample_span(shard, row["num"])) is not None]
        ends += [m["last_time"] for m in view.metric_summary().values() if m["last_time"]]
        end = max([*ends, info.get("heartbeat_at") or start, start])
    return start, max(float(end), start + 1e-3)


def _primary(view: RunView, node: str | None = None) -> tuple[Shard, dict[str, Any]] | None:
    """The part whose samples a system series shows: ``node``'s, else the one with most."""
    best: tuple[int, Shard, dict[str, Any]] | None = None
    for shard, row in view._parts:
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
                  n: int = 400) -> dict[str, list[tuple[float, int, Any]]]:
    """About ``n`` evenly spaced points of each training key (by position in the log, which is
    time order per writer) plus its last value: ``{key: [(time, step, value), ...]}``.

    Values are exact (NaN, infinities, ints and bools as logged)."""
    summary = view.metric_summary()
    wanted = [k for k in (summary if keys is None else keys) if k in summary]
    out: dict[str, list[tuple[float, int, Any]]] = {k: [] for k in wanted}
    for shard, row in view._parts:
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
        for k, nums in holders.items():
            groups.setdefault(tuple(nums), set()).add(k)
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


def attach_trends(view: RunView, data: dict[str, Any], n: int = 40) -> dict[str, Any]:
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
    got = part and series.last_sample(part[0], part[1]["num"])
    if not got:
        return None
    t, paths_json, blob = got
    snap: dict[str, Any] = {"nodeId": part[1]["node"], "timestamp": round(t * 1000)}
    snap.update(unflatten(json.loads(paths_json), decode_sample(blob)))
    return snap


def live(view: RunView, n: int = 40, max_keys: int = 30) -> dict[str, Any]:
    """One frame of ``tracklab watch``: the run record, the newest sample, trends of the
    headline system paths and of the first ``max_keys`` training keys."""
    info = view.info
    window = span(view, info)
    last = latest_sample(view)
    gpus = [g.get("id", i) for i, g in enumerate((last or {}).get("accelerators") or [])]
    paths = WATCH_PATHS + [f"accelerators.{g}.{p}" for g in gpus for p in WATCH_GPU_PATHS]
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
    """A training key's panel: the part before the first ``/`` (``train/loss`` -> ``train``)."""
    return key.split("/", 1)[0] if "/" in key else key


def _natural(path: str) -> list[Any]:
    return [int(p) if p.isdigit() else p for p in path.split(".")]


def plottable(v: Any) -> float | None:
    """A value as a float for a chart, ``None`` for a gap (NaN, infinities, non-numbers)."""
    if type(v) not in (int, float, bool):
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def panels(view: RunView, patterns: list[str] | None = None, step: bool = False,
           n: int = 600) -> dict[str, Any]:
    """The charts of a run: one panel per metric family, x in seconds since the start (training
    panels in steps when ``step``). ``patterns`` (globs; ``train`` also matches ``train/*``)
    keep only matching system paths and training keys.

    Returns ``{run, name, start, end, panels: [{title, unit, axis, training, series:
    [{key, label, x, y}]}]}``; ``y`` holds floats or ``None`` (a gap)."""
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
    keys = [k for k in view.metric_summary() if _wanted(k, patterns)]
    mpts = metric_points(view, keys, n)
    families: dict[str, list[str]] = {}
    for k in keys:
        families.setdefault(family(k), []).append(k)
    for fam, ks in families.items():
        lines = [{"key": k, "label": k,
                  "x": [p[1] if step else round(p[0] - start, 3) for p in mpts[k]],
                  "y": [plottable(p[2]) for p in mpts[k]]} for k in ks]
        out.append({"title": fam, "unit": "", "axis": "step" if step else "time",
                    "training": True, "series": lines})
    return {"run": info["id"], "name": info["name"], "start": start, "end": end,
            "panels": out}


# -- export -----------------------------------------------------------------------------------

def iter_export(view: RunView, what: str = "metrics",
                keys: list[str] | None = None) -> Iterator[dict[str, Any]]:
    """Every training point (``what="metrics"``) or every numeric sample value
    (``"samples"``), flat: ``{run_id, node, rank, time, step, key, value}``; ``step`` and
    ``rank`` are ``None`` for samples. Streams: memory does not grow with the run."""
    if what == "metrics":
        for m in view.iter_metrics(keys):
            yield {"run_id": view.id, "node": m["node"], "rank": m["rank"], "time": m["time"],
                   "step": m["step"], "key": m["key"], "value": m["value"]}
        return
    if what != "samples":
        raise ValueError(f"what must be 'metrics' or 'samples', not {what!r}")
    want = set(keys) if keys else None

    def node_rows(shard: Shard, row: dict[str, Any]) -> Iterator[tuple[float, str, list[Any]]]:
        names: dict[str, list[str]] = {}
        for t, paths_json, blob in shard.samples(row["num"]):
            ps = names.get(paths_json)
            if ps is None:
                ps = names[paths_json] = json.loads(paths_json)
            yield t, row["node"], list(zip(ps, decode_sample(blob)))

    for t, node, pairs in heapq.merge(*(node_rows(s, r) for s, r in view._parts),
                                      key=lambda x: x[0]):
        for p, v in pairs:
            if type(v) in (int, float) and (want is None or p in want) and _measure(p):
                yield {"run_id": view.id, "node": node, "rank": None, "time": t, "step": None,
                       "key": p, "value": v}


def _measure(path: str) -> bool:
    """False for identifiers inside a snapshot (``cpu.cores.0.id``, ``process.pids.3``)."""
    last = path.rsplit(".", 1)[-1]
    return last not in ("id", "pid") and ".pids." not in path and not path.startswith("pids.")


def _text(v: Any) -> Any:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)  # nan, inf, -inf: strict JSON has no such numbers
    return v


def write_export(rows: Iterable[dict[str, Any]], fmt: str, out: IO[bytes]) -> int:
    """Write export rows as ``csv``, ``jsonl`` or ``parquet`` to a binary stream; returns the
    number of rows. Raises MissingExtra when parquet is asked for without pyarrow."""
    count = 0
    if fmt == "parquet":
        return _write_parquet(rows, out)
    if fmt not in ("csv", "jsonl"):
        raise ValueError(f"format must be csv, jsonl or parquet, not {fmt!r}")
    # text is built in memory a batch at a time and written as bytes: no wrapper owns ``out``
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    if fmt == "csv":
        w.writerow(EXPORT_FIELDS)
    for r in rows:
        if fmt == "csv":
            v = r["value"]
            w.writerow((r["run_id"], r["node"], _blank(r["rank"]), repr(r["time"]),
                        _blank(r["step"]), r["key"], repr(v) if type(v) is float else _text(v)))
        else:
            buf.write(json.dumps({k: _text(r[k]) for k in EXPORT_FIELDS}) + "\n")
        count += 1
        if count % 4096 == 0:
            out.write(buf.getvalue().encode())
            buf.seek(0)
            buf.truncate()
    out.write(buf.getvalue().encode())
    return count


def _blank(v: Any) -> Any:
    return "" if v is None else v


def _write_parquet(rows: Iterable[dict[str, Any]], out: IO[bytes]) -> int:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise MissingExtra("pyarrow", "parquet") from None
    schema = pa.schema([("run_id", pa.string()), ("node", pa.string()), ("rank", pa.int64()),
                        ("time", pa.float64()), ("step", pa.int64()), ("key", pa.string()),
                        ("value", pa.float64())])
    count = 0
    with pq.ParquetWriter(out, schema) as writer:
        batch: dict[str, list[Any]] = {f: [] for f in EXPORT_FIELDS}

        def flush() -> None:
            writer.write_table(pa.table(batch, schema=schema))
            for col in batch.values():
                col.clear()

        for r in rows:
            for f in EXPORT_FIELDS:
                batch[f].append(float(r[f]) if f == "value" else r[f])
            count += 1
            if len(batch["key"]) >= 65536:
                flush()
        flush()
    return count


# -- compare ------------------------------------------------------------------------------------

def _differs(values: list[Any], tolerance: float) -> bool:
    nums = [v for v in values if type(v) in (int, float) and math.isfinite(v)]
    if len(nums) == len(values) and nums and tolerance:
        lo, hi = min(nums), max(nums)
        return hi - lo > tolerance * max(abs(lo), abs(hi))
    return len({json.dumps(v, sort_keys=True, default=str) for v in values}) > 1


def compare(views: list[RunView], tolerance: float = 0.1) -> dict[str, Any]:
    """Runs side by side: ``{runs: [{id, name}], sections: [{title, rows: [{label, unit,
    values, marked}]}]}``. A numeric row is marked when its values spread by more than
    ``tolerance`` (10%) of the largest; any other row when its values differ."""
    infos = [v.info for v in views]
    stats = [v.system_summary() for v in views]
    metrics = [v.metric_summary() for v in views]

    def stat(path: str, field: str) -> list[Any]:
        return [(s.get(path) or {}).get(field) for s in stats]

    def row(lbl: str, unit: str, values: list[Any], tol: float = tolerance) -> dict[str, Any]:
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
    sections = [{"title": "run", "rows": run_rows}, {"title": "system", "rows": sys_rows},
                {"title": "training metrics (last value)", "rows": train_rows},
                {"title": "config (differences)", "rows": [r for r in config_rows if r["marked"]],
                 "note": f"{len(same)} identical keys not shown" if same else None}]
    return {"runs": [{"id": i["id"], "name": i["name"], "started_at": i["started_at"]}
                     for i in infos], "sections": sections}


# -- housekeeping -------------------------------------------------------------------------------

def remove_run(view: RunView) -> None:
    """Delete the run from every shard that holds it (points, samples, console, record) and
    close ``view``. Raises StoreError when a shard cannot be written."""
    paths = [(shard.path, row["num"]) for shard, row in view._parts]
    view.close()
    for path, num in paths:
        shard = Shard(path, create=False)
        try:
            shard.delete_run(num)
        finally:
            shard.close()


SORT_KEYS = {"started": ("started_at", True), "duration": ("duration", True),
             "name": ("name", False), "project": ("project", False), "status": ("status", False),
             "exit": ("exit_code", False)}


def sort_runs(runs: list[dict[str, Any]], by: str = "started",
              reverse: bool = False) -> list[dict[str, Any]]:
    """Runs ordered by ``started`` (newest first), ``duration`` (longest first), ``name``,
    ``project``, ``status`` or ``exit``; ``reverse`` flips it. Missing values go last."""
    field, desc = SORT_KEYS[by]
    have = [r for r in runs if r.get(field) is not None]
    missing = [r for r in runs if r.get(field) is None]
    have.sort(key=lambda r: r[field] if not isinstance(r[field], str) else r[field].lower(),
              reverse=desc != reverse)
    return have + missing


# -- the HTML report ----------------------------------------------------------------------------

_COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
           "#17becf", "#7f7f7f", "#bcbd22"]
_W, _H, _L, _R, _T, _B = 760, 180, 72, 14, 10, 24  # chart size and margins, in SVG units


def _fmt(v: Any, unit: str = "") -> str:
    """A value as text with its unit (the report's twin of the CLI's ``fmt.number``)."""
    if v is None:
        return "–"
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v).lower() if isinstance(v, bool) else str(v)
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if unit == "s":
        m, s = divmod(int(v), 60)
        h, m = divmod(m, 60)
        return f"{v:.1f} s" if v < 60 else f"{h}h {m:02d}m {s:02d}s" if h else f"{m}m {s:02d}s"
    if unit in ("B", "B/s"):
        x, u = float(v), "B"
        for u in ("B", "KiB", "MiB", "GiB", "TiB"):
            if abs(x) < 1024 or u == "TiB":
                break
            x /= 1024
        return (f"{x:.0f} B" if u == "B" else f"{x:.1f} {u}") + ("/s" if unit == "B/s" else "")
    if isinstance(v, int):
        text = f"{v:,}"
    else:
        text = f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.1f}" if abs(v) >= 10 or v == 0 \
            else f"{v:.4g}"
    return text + "%" if unit == "%" else f"{text} {unit}".strip()


def _elapsed(s: float) -> str:
    return f"{s:g} s" if s < 120 else f"{s / 60:g} min" if s < 7200 else f"{s / 3600:g} h"


def _ticks(lo: float, hi: float, steps: Iterable[float] | None = None) -> list[float]:
    raw = (hi - lo) / 6 or 1.0
    if steps is None:
        mag = 10 ** math.floor(math.log10(raw))
        steps = [m * mag for m in (1, 2, 2.5, 5, 10)]
    step = next((s for s in steps if s >= raw), raw)
    first = math.ceil(lo / step - 1e-9) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


_TIME_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600,
               43200, 86400, 172800, 604800]


def _chart(panel: dict[str, Any], x0: float, x1: float, n: int) -> str:
    from html import escape

    unit, lines = panel["unit"], panel["series"]
    if panel["axis"] == "step":
        xs = [x for s in lines for x in s["x"]]
        x0, x1 = (min(xs), max(xs)) if xs else (0, 1)
    x1 = x1 if x1 > x0 else x0 + 1
    ys = [y for s in lines for y in s["y"] if y is not None]
    lo, hi = (min(ys), max(ys)) if ys else (0.0, 1.0)
    if unit == "%":
        lo, hi = min(lo, 0.0), max(hi, 100.0)
    elif not panel["training"] and lo >= 0:
        lo = 0.0
    pad = (hi - lo) * 0.05 or abs(hi) * 0.1 or 1.0
    hi += pad
    lo = lo if lo == 0 or unit == "%" else lo - pad
    pw, ph = _W - _L - _R, _H - _T - _B

    def sx(x: float) -> float:
        return _L + (x - x0) / (x1 - x0) * pw

    def sy(y: float) -> float:
        return _T + ph - (y - lo) / (hi - lo) * ph

    out = [f'<svg class="plot" viewBox="0 0 {_W} {_H}" role="img" '
           f'aria-label="{escape(panel["title"])}">']
    scale, shown = 1.0, unit
    if unit in ("B", "B/s"):  # ticks at round numbers of the unit that fits: 2 GiB, not 1.9
        for shown in ("B", "KiB", "MiB", "GiB", "TiB"):
            if max(abs(lo), abs(hi)) < 1024 * scale or shown == "TiB":
                break
            scale *= 1024
        shown += unit[1:]
    for y in (t * scale for t in _ticks(lo / scale, hi / scale)):
        text = f"{round(y / scale, 10):g}" + ("%" if unit == "%" else f" {shown}" if shown
                                               else "")
        out.append(f'<line class="grid" x1="{_L}" x2="{_W - _R}" y1="{sy(y):.1f}" '
                   f'y2="{sy(y):.1f}"/><text class="yl" x="{_L - 6}" y="{sy(y) + 4:.1f}">'
                   f'{escape(text)}</text>')
    timed = panel["axis"] == "time"
    for x in _ticks(x0, x1, _TIME_STEPS if timed else None):
        out.append(f'<line class="grid" x1="{sx(x):.1f}" x2="{sx(x):.1f}" y1="{_T}" '
                   f'y2="{_T + ph}"/><text class="xl" x="{sx(x):.1f}" y="{_H - 6}">'
                   f'{escape(_elapsed(x) if timed else f"{x:g}")}</text>')
    kx, ky = pw / (x1 - x0), ph / (hi - lo)
    bx, by = _L - x0 * kx, _T + ph + lo * ky
    data, legend = [], []
    for i, s in enumerate(lines):
        color = _COLORS[i % len(_COLORS)]
        d, pen = [], "M"
        for x, y in zip(s["x"], s["y"]):
            if y is None:
                pen = "M"
                continue
            d.append("%s%.1f,%.1f" % (pen, bx + x * kx, by - y * ky))  # noqa: UP031 - hot
            pen = "L"
        if len(d) == 1:
            cx, cy = d[0][1:].split(",")
            out.append(f'<circle class="dot" cx="{cx}" cy="{cy}" r="3" fill="{color}"/>')
        elif d:
            out.append(f'<path class="line" stroke="{color}" d="{" ".join(d)}"/>')
        # the hover's data, written by hand: json.dumps of dicts costs twice as much here
        data.append(f'{{"label":{json.dumps(s["label"])},"x":[{_numbers(s["x"], "%.10g")}],'
                    f'"y":[{_numbers(s["y"], "%.6g")}]}}')
        legend.append(f'<span><i style="background:{color}"></i>{escape(s["label"])}</span>')
    out.append(f'<rect class="frame" x="{_L}" y="{_T}" width="{pw}" height="{ph}"/>'
               f'<line class="cursor" x1="0" x2="0" y1="{_T}" y2="{_T + ph}" '
               f'visibility="hidden"/></svg>')
    meta = (f'{{"W":{_W},"l":{_L},"w":{pw},"x0":{x0!r},"x1":{x1!r},"unit":{json.dumps(unit)},'
            f'"axis":"{panel["axis"]}","series":[{",".join(data)}]}}')
    title = panel["title"] + (f" ({unit})" if unit in ("W", "°C") else "")
    return (f'<figure class="chart" data-points="{escape(meta)}">'
            f'<h3>{escape(title)}</h3>{"".join(out)}<div class="legend">{"".join(legend)}</div>'
            f'<figcaption class="tip">&nbsp;</figcaption></figure>')


def _numbers(values: list[Any], form: str) -> str:
    return ",".join("null" if v is None else form % v for v in values)


def _diagnosis(view: RunView) -> list[Any] | None:
    """Findings of ``tracklab.diagnose.diagnose(view)`` when that module exists, else None
    (``summarize`` already carries them where it diagnoses)."""
    try:
        from . import diagnose  # type: ignore[attr-defined]
    except ImportError:
        return None
    fn = getattr(diagnose, "diagnose", None)
    return None if fn is None else list(fn(view))


def _finding(f: Any) -> tuple[str, str, str]:
    def get(*names: str) -> Any:
        for n in names:
            v = f.get(n) if isinstance(f, dict) else getattr(f, n, None)
            if v:
                return v
        return ""

    if isinstance(f, str):
        return "", f, ""
    return (str(get("severity", "level")), str(get("message", "title", "summary") or f),
            str(get("evidence", "detail", "details")))


def _table(head: list[str], rows: list[list[str]]) -> str:
    from html import escape

    th = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def report_html(view: RunView, n: int = 400) -> str:
    """One self-contained HTML page (inline CSS, SVG and script; nothing is fetched): the
    header, the diagnosis when :mod:`tracklab.diagnose` exists, the tables and the charts
    (``n`` points a series). After its script has run, ``<html data-charts-drawn="N">``."""
    from html import escape

    from . import __version__
    from .summary import summarize

    data = summarize(view)
    info = data["info"]
    charts = panels(view, n=n)
    x1 = charts["end"] - charts["start"]
    status = info["status"] + ("" if info["exit_code"] is None else f" · exit {info['exit_code']}")
    command = info["command"]
    kv = [("project", info["project"]), ("status", status),
          ("command", " ".join(map(str, command)) if isinstance(command, list) else command),
          ("host", info["host"]), ("nodes", ", ".join(info["nodes"])),
          ("started", time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info["started_at"]))),
          ("duration", _fmt(info["duration"], "s")), ("samples", f"{data['samples']:,}"),
          ("config", ", ".join(f"{k}={v}" for k, v in info["config"].items())),
          ("tags", ", ".join(info["tags"])), ("notes", info["notes"])]
    parts = [f"<header><h1>{escape(str(info['name']))} <small>{escape(info['id'])}</small></h1>"
             f"<p class=\"status s-{escape(info['status'])}\">{escape(status)}</p>"
             + _table(["", ""], [[k, str(v)] for k, v in kv if v]).replace(
                 "<thead><tr><th></th><th></th></tr></thead>", "") + "</header>"]
    findings = data["diagnosis"] if "diagnosis" in data else _diagnosis(view)
    if findings is not None:
        items = "".join(f"<li><b>{escape(sev)}</b> {escape(msg)}"
                        + (f"<div class=\"ev\">{escape(ev)}</div>" if ev else "") + "</li>"
                        for sev, msg, ev in map(_finding, findings))
        parts.append(f"<section id=\"diagnosis\"><h2>Diagnosis</h2>"
                     f"{f'<ul>{items}</ul>' if items else '<p>nothing to report</p>'}</section>")
    stat_head = ["metric", "min", "mean", "max", "last"]
    tables = []
    if data["system"]:
        tables.append("<h3>System</h3>" + _table(stat_head, [
            [r["label"], *(_fmt(r[c], r["unit"]) for c in stat_head[1:])]
            for r in data["system"]]))
    for g in data["gpus"]:
        tables.append(f"<h3>GPU {g['id']}{' · ' + g['name'] if g.get('name') else ''}</h3>"
                      + _table(stat_head, [[r["label"], *(_fmt(r[c], r["unit"])
                                                          for c in stat_head[1:])]
                                           for r in g["rows"]]))
    if data["metrics"]:
        tables.append("<h3>Training metrics</h3>" + _table(
            ["metric", "last", "min", "mean", "max", "count", "last step"],
            [[k, _fmt(s["last"]), _fmt(s["min"]), _fmt(s["mean"]), _fmt(s["max"]),
              f"{s['count']:,}", str(s["last_step"])] for k, s in data["metrics"].items()]))
    parts.append("<section id=\"tables\"><h2>Summary</h2>"
                 + ("".join(tables) or "<p>nothing recorded yet</p>") + "</section>")
    figs = [_chart(p, 0.0, x1, n) for p in charts["panels"]]
    parts.append("<section id=\"charts\"><h2>Charts</h2><p class=\"note\">x: time since the start"
                 " of the run; hover a chart to read its values.</p>"
                 + ("".join(figs) or "<p>no series to draw</p>") + "</section>")
    made = time.strftime("%Y-%m-%d %H:%M:%S")
    return (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>tracklab · {escape(str(info['name']))} ({escape(info['id'])})</title>"
            f"<style>{_CSS}</style></head><body>{''.join(parts)}"
            f"<footer>tracklab {__version__} · report made {made}</footer>"
            f"<script>{_JS}</script></body></html>\n")


_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px auto;
max-width:820px;padding:0 12px;color:#222;background:#fff}
h1{font-size:22px;margin:0}h1 small{color:#888;font-weight:normal;font-size:14px}
h2{font-size:17px;border-bottom:1px solid #ddd;padding-bottom:3px;margin-top:28px}
h3{font-size:14px;margin:16px 0 4px}
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums}
td,th{padding:2px 8px;border-bottom:1px solid #eee;text-align:right}
td:first-child,th:first-child{text-align:left}header td{text-align:left}
header td:first-child{color:#666;width:90px}
.status{font-weight:600;margin:4px 0 8px}.s-finished{color:#2a7d2a}.s-running{color:#1769aa}
.s-failed,.s-crashed,.s-killed,.s-oom-killed{color:#c62828}
.s-interrupted,.s-terminated{color:#b26a00}
#diagnosis li{margin:4px 0}#diagnosis .ev{color:#555;font-size:13px}
figure{margin:14px 0}svg.plot{width:100%;height:auto;display:block}
.grid{stroke:#eee;stroke-width:1}.frame{fill:none;stroke:#bbb}
.line{fill:none;stroke-width:1.5;stroke-linejoin:round}
.cursor{stroke:#555;stroke-dasharray:3 3}
.yl{font-size:11px;fill:#666;text-anchor:end}.xl{font-size:11px;fill:#666;text-anchor:middle}
.legend{font-size:12px;color:#444}.legend span{margin-right:14px;white-space:nowrap}
.legend i{display:inline-block;width:12px;height:3px;margin-right:4px;vertical-align:middle}
.tip{font-size:12px;color:#333;min-height:1.4em}.note{color:#777;font-size:12px}
footer{margin:32px 0 8px;color:#999;font-size:12px}
"""

_JS = """
(function () {
  function fmt(v, unit) {
    if (v === null || v === undefined) return '-';
    if (unit === 'B' || unit === 'B/s') {
      var u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'], i = 0;
      while (Math.abs(v) >= 1024 && i < 4) { v /= 1024; i++; }
      return (i ? v.toFixed(1) : v.toFixed(0)) + ' ' + u[i] + (unit === 'B/s' ? '/s' : '');
    }
    var a = Math.abs(v);
    var t = a >= 1000 ? Math.round(v).toLocaleString('en') : (a >= 10 || v === 0) ?
      v.toFixed(1) : String(Number(v.toPrecision(4)));
    return unit === '%' ? t + '%' : unit ? t + ' ' + unit : t;
  }
  function clock(s) {
    var h = Math.floor(s / 3600), m = Math.floor(s % 3600 / 60), x = Math.floor(s % 60);
    return (h ? h + ':' + (m < 10 ? '0' : '') : '') + m + ':' + (x < 10 ? '0' : '') + x;
  }
  function nearest(xs, x) {
    var lo = 0, hi = xs.length - 1;
    if (hi < 0) return -1;
    while (hi - lo > 1) { var mid = (lo + hi) >> 1; if (xs[mid] < x) lo = mid; else hi = mid; }
    return Math.abs(xs[lo] - x) <= Math.abs(xs[hi] - x) ? lo : hi;
  }
  var drawn = 0;
  Array.prototype.forEach.call(document.querySelectorAll('figure.chart'), function (fig) {
    var d = JSON.parse(fig.getAttribute('data-points'));
    var svg = fig.querySelector('svg'), cur = svg.querySelector('.cursor');
    var tip = fig.querySelector('.tip');
    if (svg.querySelector('path.line, circle.dot')) drawn++;
    svg.addEventListener('mousemove', function (ev) {
      var r = svg.getBoundingClientRect(), vx = (ev.clientX - r.left) / r.width * d.W;
      if (vx < d.l || vx > d.l + d.w) return;
      var x = d.x0 + (vx - d.l) / d.w * (d.x1 - d.x0);
      cur.setAttribute('x1', vx); cur.setAttribute('x2', vx);
      cur.setAttribute('visibility', 'visible');
      var out = [d.axis === 'step' ? 'step ' + Math.round(x) : 'at ' + clock(x)];
      d.series.forEach(function (s) {
        var i = nearest(s.x, x);
        if (i >= 0) out.push(s.label + ': ' + fmt(s.y[i], d.unit));
      });
      tip.textContent = out.join('   ');
    });
    svg.addEventListener('mouseleave', function () {
      cur.setAttribute('visibility', 'hidden'); tip.innerHTML = '&nbsp;';
    });
  });
  document.documentElement.setAttribute('data-charts-drawn', String(drawn));
})();
"""
