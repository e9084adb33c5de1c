"""One run across many nodes: per-node rows, a fleet summary, the stragglers, and clock offsets.

Every node of a multi-node run writes its own shard; :func:`fleet_summary` reads each node's
running statistics (never its samples or points, so the cost does not grow with the run) and
returns plain data for ``tracklab show``:

- ``nodes``: one row per node (duration, status, CPU / memory / GPU figures, training progress);
- ``summary``: min / mean / max over nodes of the headline figures, naming the nodes at each end;
- ``slowest_node`` and ``slowest_gpu``: the stragglers, with the criterion that picked them.

Clock skew. Each node's wrapper measures, at start, how far the shared store's clock (the time
the store's file system stamps on a file it just wrote) is ahead of its own, and records it as
the run row's ``clock_offset`` (seconds). Readers add it to that node's metric and sample times
when they merge the shards of a run that spans nodes, so shards written by hosts with skewed
clocks line up on the store's clock. The limits: the measurement is only as good as the file
system's time stamps (NFS servers stamp writes with their own clock, which is what this needs; a
file system that takes the writer's time, or one with one-second stamps, yields an offset of about
zero or none), it is taken once per node at start (drift during a run is not followed), and
durations and rates are computed on each node's own clock, so they never need it.
"""

from __future__ import annotations

import os
import time
from typing import Any

from tracklab.sampling.stats import Stats, merge_stored, peaks

# (key, label, unit) of the figures summarized over nodes; units as in figures.SYSTEM_ROWS,
# plus "s" for durations.
FLEET_FIGURES: list[tuple[str, str, str]] = [
    ("duration", "duration", "s"),
    ("start_delay", "start after the first node", "s"),
    ("cpu_mean", "CPU mean", "%"),
    ("cpu_peak", "CPU peak", "%"),
    ("memory_peak", "memory peak", "%"),
    ("memory_used_peak", "memory used peak", "B"),
    ("process_rss_peak", "process tree RSS peak", "B"),
    ("gpu_util_mean", "GPU utilization mean", "%"),
    ("gpu_memory_peak", "GPU memory used peak", "B"),
    ("last_step", "last training step", ""),
    ("steps_per_s", "training steps per second", "1/s"),
]

# Offsets the measurement cannot tell from zero: the kernel stamps files with a clock that is
# up to one tick (1-10 ms) behind time.time().
_NOISE_S = 0.02


# -- clock offset (writer side) --------------------------------------------------------------------

def measure_clock_offset(store_dir: str, probes: int = 3) -> float | None:
    """Seconds the store's clock is ahead of this host's (negative: behind), or ``None``.

    Writes, closes and removes a small file in ``store_dir`` and compares the modification time
    the file system gave it with ``time.time()`` read around the write; of ``probes`` tries, the
    one with the shortest round trip counts (as NTP does). An offset within that round trip's
    uncertainty reads as ``0.0``. ``None`` when the folder is not writable, every try took over
    2 s, or the file system keeps whole seconds only and the offset is below a second.
    Costs ``probes`` small writes (well under a millisecond each on a local disk).
    """
    best: tuple[float, float, int] | None = None  # (window, midpoint, mtime_ns)
    for _ in range(max(1, probes)):
        probe = _probe(store_dir)
        if probe is None:
            return None
        if best is None or probe[0] < best[0]:
            best = probe
    assert best is not None  # the loop ran at least once and returned on a failed probe
    window, mid, mtime_ns = best
    if window > 2.0:
        return None
    offset = mtime_ns / 1e9 - mid
    if mtime_ns % 1_000_000_000 == 0:  # whole-second stamps: only large offsets are visible
        if abs(offset) < 1.5:
            return None
        offset += 0.5
    return round(offset, 3) if abs(offset) > window / 2 + _NOISE_S else 0.0


def _probe(store_dir: str) -> tuple[float, float, int] | None:
    """One write: ``(seconds it took, its midpoint on our clock, the file's mtime in ns)``."""
    path = os.path.join(store_dir, f".clock-{os.getpid()}-{time.monotonic_ns()}")
    try:
        before = time.time()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, b"tracklab clock probe\n")
        finally:  # close() sends the write to a network file system (close-to-open)
            os.close(fd)
        after = time.time()
        try:
            mtime_ns = os.stat(path).st_mtime_ns
        finally:
            os.unlink(path)
    except OSError:
        return None
    return after - before, (before + after) / 2, mtime_ns


def time_offsets(parts: list[tuple[Any, dict[str, Any]]]) -> list[float]:
    """Per part (node) of a run, the seconds to add to its times: zero for a one-node run."""
    if len(parts) < 2:
        return [0.0] * len(parts)
    return [float(row.get("clock_offset") or 0.0) for _, row in parts]


# -- fleet summary (reader side) -------------------------------------------------------------------

def fleet_summary(view: Any) -> dict[str, Any] | None:
    """Per-node rows, a min/mean/max summary over nodes and the stragglers; ``None`` when the run
    has a single node. ``view`` is a :class:`tracklab.read.runs.RunView`.

    Figures a node lacks (no GPU, no training metrics) are ``None`` and left out of the summary.
    """
    parts = view.parts
    if len(parts) < 2:
        return None
    offsets = time_offsets(parts)
    nodes = [_node_row(shard, row, off) for (shard, row), off in zip(parts, offsets)]
    first = min(n["started_at"] for n in nodes)
    for n in nodes:
        n["start_delay"] = n["started_at"] - first
    nodes.sort(key=lambda n: _natural(n["node"]))
    return {
        "nodes": nodes,
        "summary": _summary(nodes),
        "slowest_node": _slowest_node(nodes),
        "slowest_gpu": _slowest_gpu(nodes),
        "clock_offsets": any(n["clock_offset"] for n in nodes),
    }


def _node_row(shard: Any, row: dict[str, Any], offset: float) -> dict[str, Any]:

    from tracklab.read.liveness import resolve_status

    status = resolve_status(row)
    start = row["started_at"]
    if row.get("ended_at") and status != "running":
        end = row["ended_at"]
    elif status == "running":
        end = time.time()  # the reader's now, as RunView.info takes it
    else:
        end = row.get("heartbeat_at")
    # the statistics fold, merged over the node's sampling processes
    stats: Stats = {}
    samples = 0
    for _pid, count, stats_json in shard.sample_stats(row["num"]):
        samples += count
        merge_stored([stats_json], stats)
    head = peaks(stats)  # the headline figures, as ls and show give them

    def mean(path: str) -> float | None:
        s = stats.get(path)
        return s[2] / s[3] if s and s[3] else None

    def peak(path: str) -> float | None:
        s = stats.get(path)
        return s[1] if s else None

    gpu_ids = sorted({int(p.split(".")[1]) for p in stats if p.startswith("accelerators.")})
    gpus = [{"id": g,
             "utilization_mean": mean(f"accelerators.{g}.utilization"),
             "utilization_peak": peak(f"accelerators.{g}.utilization"),
             "memory_peak": peak(f"accelerators.{g}.memory.used"),
             "temperature_peak": peak(f"accelerators.{g}.temperature"),
             "power_mean": mean(f"accelerators.{g}.power")} for g in gpu_ids]
    utils = [g["utilization_mean"] for g in gpus if g["utilization_mean"] is not None]

    procs = shard.procs(row["num"])
    last_step: int | None = None
    last_time: float | None = None
    values = 0
    for _proc, _key, count, _nans, _lo, _hi, _sum, _last, step, t in shard.metric_stats(row["num"]):
        values += count or 0
        if step is not None and (last_step is None or step > last_step):
            last_step = step
        if t is not None and (last_time is None or t > last_time):
            last_time = t
    elapsed = (last_time - start) if last_time is not None else None
    rate = (last_step / elapsed if last_step and elapsed and elapsed > 0 else None)
    return {
        "node": row["node"], "host": row["host"], "status": status,
        "started_at": start + offset, "ended_at": (end + offset) if end else None,
        "duration": (end - start) if end else None, "clock_offset": row.get("clock_offset"),
        "samples": samples,
        "cpu_mean": mean("cpu.overall"), "cpu_peak": head["cpu_peak"],
        "memory_mean": mean("memory.usage"), "memory_peak": peak("memory.usage"),
        "memory_used_peak": head["memory_used_peak"],
        "process_cpu_mean": mean("process.cpu"), "process_rss_peak": head["process_rss_peak"],
        "gpus": gpus,
        "gpu_util_mean": sum(utils) / len(utils) if utils else None,
        "gpu_memory_peak": head["gpu_memory_peak"],
        "gpu_memory_peak_of": head["gpu_memory_peak_of"],
        "ranks": sorted({r for _pid, r, _lr in procs.values() if r is not None}),
        "processes": len(procs), "values": values,
        "last_step": last_step, "steps_per_s": rate,
    }


def _summary(nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for key, label, unit in FLEET_FIGURES:
        have = [(n[key], n["node"]) for n in nodes if n.get(key) is not None]
        if not have:
            continue
        lo = min(have, key=lambda vn: vn[0])
        hi = max(have, key=lambda vn: vn[0])
        out.append({"key": key, "label": label, "unit": unit, "nodes": len(have),
                    "min": lo[0], "min_node": lo[1],
                    "mean": sum(v for v, _ in have) / len(have),
                    "max": hi[0], "max_node": hi[1]})
    return out


def _behind(value: float, values: list[float]) -> float | None:
    """How far ``value`` is below the mean of ``values``, in percent of that mean."""
    m = sum(values) / len(values)
    return (m - value) / m * 100 if m else None


def _slowest_node(nodes: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The straggler: fewest training steps per second; without training metrics, the longest
    duration; without either, the lowest mean GPU utilization."""
    rated = [n for n in nodes if n["steps_per_s"] is not None]
    if len(rated) >= 2:
        n = min(rated, key=lambda n: n["steps_per_s"])
        return {"node": n["node"], "by": "fewest training steps per second",
                "key": "steps_per_s", "value": n["steps_per_s"], "unit": "1/s",
                "behind_mean_pct": _behind(n["steps_per_s"], [r["steps_per_s"] for r in rated])}
    timed = [n for n in nodes if n["duration"] is not None]
    if len(timed) >= 2:
        n = max(timed, key=lambda n: n["duration"])
        mean = sum(t["duration"] for t in timed) / len(timed)
        return {"node": n["node"], "by": "longest duration", "key": "duration",
                "value": n["duration"], "unit": "s",
                "behind_mean_pct": (n["duration"] - mean) / mean * 100 if mean else None}
    busy = [n for n in nodes if n["gpu_util_mean"] is not None]
    if len(busy) >= 2:
        n = min(busy, key=lambda n: n["gpu_util_mean"])
        return {"node": n["node"], "by": "lowest mean GPU utilization", "key": "gpu_util_mean",
                "value": n["gpu_util_mean"], "unit": "%",
                "behind_mean_pct": _behind(n["gpu_util_mean"],
                                           [b["gpu_util_mean"] for b in busy])}
    return None


def _slowest_gpu(nodes: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The GPU with the lowest mean utilization over the run (starved or throttled), when the
    run has at least two GPUs, with its temperature and power beside it."""
    gpus = [(n["node"], g) for n in nodes for g in n["gpus"] if g["utilization_mean"] is not None]
    if len(gpus) < 2:
        return None
    node, g = min(gpus, key=lambda ng: ng[1]["utilization_mean"])
    return {"node": node, "gpu": g["id"], "by": "lowest mean utilization",
            "value": g["utilization_mean"], "unit": "%",
            "behind_mean_pct": _behind(g["utilization_mean"],
                                       [x["utilization_mean"] for _, x in gpus]),
            "temperature_peak": g["temperature_peak"], "power_mean": g["power_mean"]}


def _natural(name: str) -> list[Any]:
    """Sort key that puts node2 before node10."""
    import re

    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", str(name))]
