"""Reading runs back: ``open_run``, ``list_runs`` and the summaries ``show`` and ``ls`` render.

Readers merge every node's shard of a run and never write. A run still marked ``running`` whose
wrapper is gone (same host: pid missing or reused; any host: heartbeat stale) reads as ``crashed``.
Summaries come from running statistics kept by the writers, so their cost does not grow with
the run.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator
from typing import Any, cast

from tracklab import _env
from tracklab.errors import AmbiguousRun, RunNotFound, StoreError
from tracklab.read.liveness import resolve_status
from tracklab.read.payloads import MetricSummary, RunInfo
from tracklab.sampling.stats import Stats, merge_stored, peaks, summary
from tracklab.store import Shard, shard_paths
from tracklab.store.codec import decode_sample, decode_values, loads_exact, unflatten

STATUS_ORDER = ("running", "crashed", "oom-killed", "killed", "failed", "terminated",
                "interrupted", "finished")


def _json(text: str | None, kind: type | tuple[type, ...], default: Any) -> Any:
    """A JSON column as the type readers expect; ``default`` for NULL, invalid JSON (a file
    someone else wrote) or the wrong type."""
    try:
        value = loads_exact(text)
    except ValueError:
        return default
    if not isinstance(value, kind):
        return default
    if isinstance(value, list) and kind is list:
        return [v if isinstance(v, str) else json.dumps(v) for v in value]  # tags are text
    return value


def _sections(value: dict[str, Any], **kinds: type) -> dict[str, Any]:
    """``value`` without the sections named in ``kinds`` that are not of their kind (a list
    section keeps only its dicts): readers take them apart without checking."""
    for key, kind in kinds.items():
        v = value.get(key)
        if v is not None and not isinstance(v, kind):
            del value[key]
        elif isinstance(v, list):
            value[key] = [x for x in v if isinstance(x, dict)]
    return value


def _status_rank(status: str) -> int:
    """Worst first; a status this version does not know (a newer one's) after those it does."""
    return STATUS_ORDER.index(status) if status in STATUS_ORDER else len(STATUS_ORDER)


def _open_shards(store_dir: str) -> list[Shard]:
    """The store's readable shards. One that cannot be read (a node's corrupt or truncated
    file) is left out with a warning, so the other nodes' runs stay readable; when none can be
    read, its StoreError is raised."""
    if not os.path.isdir(store_dir):
        return []
    shards: list[Shard] = []
    bad: list[StoreError] = []
    for path in shard_paths(store_dir):
        try:
            shard = Shard(path, create=False, readonly=True)
        except StoreError as exc:
            bad.append(exc)
            continue
        if shard.empty:  # created a moment ago, schema not written yet: nothing to read
            shard.close()
        else:
            shards.append(shard)
    if bad and not shards:
        raise bad[0]
    for unreadable in bad:
        import warnings

        from tracklab.errors import TracklabWarning

        warnings.warn(f"tracklab: {unreadable}; its runs are left out", TracklabWarning,
                      stacklevel=3)
    return shards


class RunView:
    """One run, merged over the shards (nodes) that hold it. Read-only.

    A context manager: ``with tracklab.open_run("latest") as run:`` closes its shards at the end.
    """

    def __init__(self, parts: list[tuple[Shard, dict[str, Any]]], store_dir: str) -> None:
        self._parts = parts
        self.store_dir = store_dir
        self.id: str = parts[0][1]["id"]

    @property
    def paths(self) -> list[str]:
        """The shard files (one a node) this run's data comes from."""
        return [shard.path for shard, _ in self._parts]
    def __enter__(self) -> RunView:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def parts(self) -> list[tuple[Shard, dict[str, Any]]]:
        """The run on each node that holds it: ``(shard, row)``, ``row`` being that node's run
        record as stored (columns of the ``runs`` table)."""
        return self._parts

    # -- the record ------------------------------------------------------------------------------

    @property
    def info(self) -> RunInfo:
        rows = [r for _, r in self._parts]
        statuses = [resolve_status(r) for r in rows]
        first = min(rows, key=lambda r: r["started_at"])
        ended = [r["ended_at"] for r in rows if r["ended_at"]]
        status = min(statuses, key=_status_rank) if statuses else "unknown"
        exit_codes = [r["exit_code"] for r in rows if r["exit_code"] is not None]
        end = max(ended) if ended and status != "running" else None
        info: RunInfo = {
            "id": self.id, "name": first["name"], "project": first["project"],
            "status": status, "exit_code": max(exit_codes, key=abs) if exit_codes else None,
            "signal": next((r["signal"] for r in rows if r["signal"]), None),
            "command": _json(first["command"], (list, str), None), "cwd": first["cwd"],
            "host": first["host"], "nodes": sorted({r["node"] for r in rows if r["node"]}),
            "owner": first["owner"], "pid": first["pid"], "interval": first["interval"],
            "started_at": first["started_at"],
            "ended_at": end,
            "heartbeat_at": max((r["heartbeat_at"] or 0) for r in rows) or None,
            "config": _json(first["config"], dict, {}),
            "system": _sections(_json(first["system"], dict, {}), gpus=list),
            "summary": _sections(_json(first["summary"], dict, {}), peaks=dict, energy=dict,
                                 console=dict, user=dict),
            "tags": _json(first["tags"], list, []), "notes": first["notes"],
            "context": _sections(_json(first.get("context"), dict, {}), code=dict,
                                 python=dict, packages=dict),
            "duration": None,
        }
        until = end or (time.time() if status == "running" else info["heartbeat_at"])
        info["duration"] = (until - info["started_at"]) if until else None
        if len(rows) > 1:
            info["node_status"] = {r["node"]: s for r, s in zip(rows, statuses)}
        return info

    # -- training metrics --------------------------------------------------------------------------

    def metrics(self, keys: list[str] | None = None) -> list[dict[str, Any]]:
        """Every logged point: ``{step, time, key, value, pid, rank, node}``, values exact."""
        return list(self.iter_metrics(keys))

    def iter_metrics(self, keys: list[str] | None = None) -> Iterator[dict[str, Any]]:
        from tracklab.read.fleet import time_offsets

        wanted = set(keys) if keys else None
        for (shard, row), off in zip(self._parts, time_offsets(self._parts)):
            procs = shard.procs(row["num"])
            names: dict[str, list[str]] = {}
            for proc, step, t, keys_json, fmt, blob in shard.points(row["num"]):
                ks = names.get(keys_json)
                if ks is None:
                    ks = names[keys_json] = json.loads(keys_json)
                pid, rank, _ = procs.get(proc, (None, None, None))
                for k, v in zip(ks, decode_values(fmt, blob)):
                    if wanted is None or k in wanted:
                        yield {"step": step, "time": t + off, "key": k, "value": v, "pid": pid,
                               "rank": rank, "node": row["node"]}

    def metric_summary(self) -> dict[str, MetricSummary]:
        """Per key: count, nans, min, max, mean, last, last_step, last_time (over all writers)."""
        out: dict[str, dict[str, Any]] = {}
        for shard, row in self._parts:
            for _proc, key, count, nans, lo, hi, total, last, last_step, last_time in (
                    shard.metric_stats(row["num"])):
                s = out.get(key)
                last_v = loads_exact(last)
                if s is None:
                    out[key] = {"count": count, "nans": nans, "min": lo, "max": hi,
                                "sum": total, "last": last_v, "last_step": last_step,
                                "last_time": last_time}
                    continue
                s["count"] += count
                s["nans"] += nans
                s["min"] = lo if s["min"] is None else (s["min"] if lo is None else min(s["min"], lo))
                s["max"] = hi if s["max"] is None else (s["max"] if hi is None else max(s["max"], hi))
                s["sum"] = None if s["sum"] is None or total is None else s["sum"] + total
                if (last_time or 0) >= (s["last_time"] or 0):
                    s["last"], s["last_step"], s["last_time"] = last_v, last_step, last_time
        for s in out.values():
            n = s["count"] - s["nans"]
            s["mean"] = s.pop("sum") / n if n and s["sum"] is not None else None
        # built with a running sum, which the finished rows no longer hold
        return cast("dict[str, MetricSummary]", dict(sorted(out.items())))

    # -- system samples ----------------------------------------------------------------------------

    def samples(self, since: float | None = None) -> list[dict[str, Any]]:
        """System snapshots in the format of API.md §4, oldest first (all nodes)."""
        from tracklab.read.fleet import time_offsets

        out = []
        for (shard, row), off in zip(self._parts, time_offsets(self._parts)):
            layouts: dict[str, list[str]] = {}
            for t, paths_json, blob in shard.samples(
                    row["num"], None if since is None else since - off):
                paths = layouts.get(paths_json)
                if paths is None:
                    paths = layouts[paths_json] = json.loads(paths_json)
                snap = {"nodeId": row["node"], "timestamp": round((t + off) * 1000)}
                snap.update(unflatten(paths, decode_sample(blob)))
                out.append(snap)
        out.sort(key=lambda s: s["timestamp"])
        return out

    def sample_count(self) -> int:
        return sum(shard.sample_count(row["num"]) for shard, row in self._parts)

    def system_summary(self) -> dict[str, dict[str, Any]]:
        """Per flattened path (``cpu.overall``, ``accelerators.0.utilization``...): min, max,
        mean, last, count over the run, merged over writers and nodes."""
        return summary(self.stats())

    def stats(self) -> Stats:
        """The statistics fold (see :mod:`tracklab.sampling.stats`) merged over writers and
        nodes."""
        merged: Stats = {}
        for shard, row in self._parts:
            merge_stored((j for _pid, _count, j in shard.sample_stats(row["num"])), merged)
        return merged

    def peaks(self) -> dict[str, Any]:
        """The run's headline figures (peaks and means of CPU, RSS, GPU memory...), by the one
        definition the wrapper stores at the end of a run and ``ls`` shows: see
        :func:`tracklab.sampling.stats.peaks`."""
        return peaks(self.stats())

    def close(self) -> None:
        for shard, _ in self._parts:
            shard.close()


def _group(rows_by_shard: list[tuple[Shard, dict[str, Any]]]) -> dict[str, list[Any]]:
    groups: dict[str, list[Any]] = {}
    for shard, row in rows_by_shard:
        groups.setdefault(row["id"], []).append((shard, row))
    return groups


def open_run(ref: str, dir: str | None = None) -> RunView:
    """Open a run by full id, unique id prefix, name, or ``latest``.

    Raises:
        RunNotFound: nothing matches. AmbiguousRun: several runs match (``.candidates``).
        StoreError: the store cannot be read (corrupt file, not a tracklab store).
    """
    store_dir = _env.store_dir(dir)
    shards = _open_shards(store_dir)
    try:
        if ref == "latest":
            found = [(s, r) for s in shards for r in s.run_rows(limit=1)]
            if found:
                newest = max(found, key=lambda sr: sr[1]["started_at"])[1]["id"]
                found = [(s, r) for s in shards for r in s.run_rows("id = ?", (newest,))]
        else:
            found = [(s, r) for s in shards for r in s.find_runs(ref)]
            exact = [(s, r) for s, r in found if r["id"] == ref]
            if exact:
                found = exact
            else:
                named = [(s, r) for s, r in found if r["name"] == ref]
                found = named or found
    except sqlite3.Error as exc:
        for s in shards:
            s.close()
        raise StoreError(store_dir, str(exc)) from None
    groups = _group(found)
    if not groups:
        for s in shards:
            s.close()
        raise RunNotFound(ref, store_dir)
    if len(groups) > 1:
        for s in shards:
            s.close()
        raise AmbiguousRun(ref, sorted(groups))
    return RunView(next(iter(groups.values())), store_dir)


def list_runs(dir: str | None = None, project: str | None = None, limit: int | None = 20,
              status: str | None = None, since: float | None = None,
              tag: str | None = None) -> list[RunInfo]:
    """Runs newest first (merged over nodes), each a dict like ``RunView.info`` plus peaks."""
    store_dir = _env.store_dir(dir)
    shards = _open_shards(store_dir)
    try:
        where: list[str] = []
        params: list[Any] = []
        if project:
            where.append("project = ?")
            params.append(project)
        if since is not None:
            where.append("started_at >= ?")
            params.append(since)
        if tag:  # exact: LIKE would treat % and _ as wildcards and miss JSON-escaped tags (ü, ")
            where.append("EXISTS (SELECT 1 FROM json_each(CASE WHEN json_valid(tags) THEN tags "
                         "END) WHERE value = ?)")
            params.append(tag)
        # a status filter is applied after resolution (running may read as crashed)
        fetch = None if (status or limit is None) else limit
        rows = [(s, r) for s in shards
                for r in s.run_rows(" AND ".join(where), tuple(params), limit=fetch)]
        groups = _group(rows)
        ids = sorted(groups, key=lambda i: -min(r["started_at"] for _, r in groups[i]))
        out = []
        for run_id in ids:
            view = RunView(groups[run_id], store_dir)
            info = view.info
            if status and info["status"] != status:
                continue
            out.append(info)
            if limit is not None and len(out) >= limit:
                break
        return out
    except sqlite3.Error as exc:
        raise StoreError(store_dir, str(exc)) from None
    finally:
        for s in shards:
            s.close()
