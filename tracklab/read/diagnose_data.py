"""What a diagnosis reads: the run's resources, a few samples evenly spaced in time, and the
statistics of samples given without a stored run. The rules themselves are in
:mod:`tracklab.read.diagnose`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

MAX_SAMPLES = 100  # samples a diagnosis reads, evenly spaced in time, whatever the run's length

Stats = dict[str, dict[str, Any]]


def resources(info: Mapping[str, Any], system_summary: dict[str, dict[str, Any]],
              samples: list[dict[str, Any]]) -> dict[str, Any]:
    """What the run was given, and the base of its percentages.

    Returns:
        ``memory_base`` (``"container"`` when a memory limit was seen, else ``"host"``),
        ``memory_limit`` and ``memory_total`` (bytes), ``cpu_base``, ``cpu_quota`` (cores),
        ``cpu_count`` (the host's logical CPUs), ``cuda_visible_devices`` (as recorded, ``None``
        when unset), ``gpus_given`` (NVML indices the run could use by it, ``None`` when it was
        unset or no GPU was sampled) and ``gpus`` (every GPU sampled).
    """
    system = info.get("system") or {}
    limit = stat_of(system_summary, "container.memoryLimit", "max")
    quota = stat_of(system_summary, "container.cpuQuota", "min")
    last = next((s for s in reversed(samples) if s.get("accelerators")), None)
    gpus = gpus_of(last)
    cvd = system.get("cuda_visible_devices")
    given = None
    if gpus and any(g.get("visible") is not None for g in gpus):
        given = [g["id"] for g in gpus if g.get("visible")]
    return {"memory_base": "container" if limit else "host", "memory_limit": limit,
            "memory_total": system.get("memory_total") or stat_of(system_summary, "memory.total",
                                                                 "last"),
            "cpu_base": "container" if quota else "host", "cpu_quota": quota,
            "cpu_count": system.get("cpu_count"), "cuda_visible_devices": cvd,
            "gpus_given": given, "gpus": [g.get("id") for g in gpus]}


def read_samples(view: Any, n: int = MAX_SAMPLES) -> list[dict[str, Any]]:
    """About ``n`` snapshots of the run, evenly spaced in time, oldest first, the last included.

    Reads the node with the most samples (a run across nodes is diagnosed on that node): every
    sample when it has at most ``n``, else one index seek per wanted time. Only what the rules
    read is rebuilt (``process.cpu`` and each GPU's id, uuid, lost, utilization, visible,
    treeMemory, attribution, throttleReasons, memoryUtilization and the parts of ``gpm`` and
    ``pcie`` in :data:`_GPU_PARTS`): rebuilding whole snapshots of eight GPUs cost ten times
    more than the reads.
    """
    from tracklab.store import series
    from tracklab.store.codec import decode_sample

    best: tuple[int, Any, dict[str, Any]] | None = None
    for shard, row in view.parts:
        count = shard.sample_count(row["num"])
        if count and (best is None or count > best[0]):
            best = (count, shard, row)
    if best is None:
        return []
    count, shard, row = best
    if count <= n:
        rows: Iterable[tuple[Any, ...]] = list(shard.samples(row["num"]))
    else:
        sp = series.sample_span(shard, row["num"])
        if sp is None:
            return []
        a, b = sp
        rows = series.samples_at(shard, row["num"], (a + (b - a) * i / n for i in range(n)))
    pickers: dict[str, list[tuple[int, int | None, str]]] = {}
    out = []
    for t, paths_json, blob in rows:
        pick = pickers.get(paths_json)
        if pick is None:
            pick = pickers[paths_json] = _picker(json.loads(paths_json))
        if not pick:
            continue  # a custom-metric row: nothing a rule reads
        values = decode_sample(blob)
        snap: dict[str, Any] = {"nodeId": row["node"], "timestamp": round(t * 1000)}
        gpus: dict[int, dict[str, Any]] = {}
        for i, gid, field in pick:
            if gid is None:
                snap["process"] = {"cpu": values[i]}
            elif field == "throttleReasons":
                gpus.setdefault(gid, {"id": gid}).setdefault(field, []).append(values[i])
            elif field == "throttleReasons[]":
                gpus.setdefault(gid, {"id": gid})["throttleReasons"] = []
            elif "." in field:
                part, _, sub = field.partition(".")
                gpus.setdefault(gid, {"id": gid}).setdefault(part, {})[sub] = values[i]
            else:
                gpus.setdefault(gid, {"id": gid})[field] = values[i]
        if gpus:
            snap["accelerators"] = [gpus[g] for g in sorted(gpus)]
        out.append(snap)
    return out


_GPU_FIELDS = {"id", "uuid", "lost", "utilization", "visible", "treeMemory", "attribution",
               "memoryUtilization"}
_GPU_PARTS = {"gpm": {"smActive", "tensorActive", "dramActive", "fp16Active", "fp32Active"},
              "pcie": {"gen", "genMax", "width", "widthMax"}}


def _picker(paths: list[str]) -> list[tuple[int, int | None, str]]:
    """``(value index, GPU index or None, field)`` of the paths :func:`read_samples` keeps."""
    out: list[tuple[int, int | None, str]] = []
    for i, p in enumerate(paths):
        if p == "process.cpu":
            out.append((i, None, "cpu"))
        elif p.startswith("accelerators."):
            parts = p.split(".")
            if not parts[1].isdigit() or len(parts) < 3:
                continue
            field = parts[2]
            whole = len(parts) == 3 and (field in _GPU_FIELDS or field == "throttleReasons[]")
            if whole or (len(parts) == 4 and field == "throttleReasons"):
                out.append((i, int(parts[1]), field))
            elif len(parts) == 4 and parts[3] in _GPU_PARTS.get(field, ()):
                out.append((i, int(parts[1]), f"{field}.{parts[3]}"))
    return out


def summarize_samples(samples: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``{path: {min, max, mean, last, count}}`` of the numeric values of ``samples``, as
    ``RunView.system_summary()`` gives for a stored run (for runs given as samples only)."""
    from tracklab.sampling.stats import fold, summary
    from tracklab.store.codec import flatten

    acc: dict[str, list[Any]] = {}
    for snap in samples:
        paths, values = flatten({k: v for k, v in snap.items() if k not in ("nodeId", "timestamp")})
        for p, v in zip(paths, values):
            if type(v) not in (int, float) or v != v:
                continue
            fold(acc, p, v, v, v, 1, v)
    return summary(acc)


def stat_of(stats: Stats, path: str, field: str) -> Any:
    """``stats[path][field]``, or None when the path was never sampled."""
    s = stats.get(path)
    return None if s is None else s.get(field)


def gpus_of(snap: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The GPUs of a snapshot that carry an integer id."""
    acc = (snap or {}).get("accelerators")
    return [g for g in acc if isinstance(g, dict) and isinstance(g.get("id"), int)] \
        if isinstance(acc, list) else []
