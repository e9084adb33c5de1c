"""Stores and processes the benchmarks measure against, built through tracklab's own writers.

Scale fixtures are large, so they are cached under ``$TMPDIR/tracklab-bench-cache/<key>/``,
where the key hashes the store's code and this file: a change to either rebuilds them
(``--fresh-fixtures`` forces it). Generation time is never part of a figure.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ._util import PY, Ctx, checkpointed_size, run_worker, sources_hash

# A process tree for the process collector: a Python parent with three sleeping children.
CHILD_TREE = ("import subprocess, sys, time\n"
              "ps = [subprocess.Popen(['sleep', '3600']) for _ in range(3)]\n"
              "print('up', flush=True)\n"
              "sys.stdin.read()\n"
              "[p.kill() for p in ps]\n")


def start_tree() -> subprocess.Popen[str]:
    """A real child with three grandchildren; ``stop_tree`` ends it."""
    p = subprocess.Popen([PY, "-c", CHILD_TREE], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         text=True)
    assert p.stdout is not None
    p.stdout.readline()
    return p


def stop_tree(p: subprocess.Popen[str]) -> None:
    try:
        assert p.stdin is not None
        p.stdin.close()
        p.wait(10)
    except (OSError, subprocess.TimeoutExpired):
        p.kill()
        p.wait()


@contextlib.contextmanager
def full_sampling(store: str) -> Iterator[tuple[Any, Any, str]]:
    """What a wrapper samples: a real process tree (its pid given 2 GB on fake GPU 0), all
    collectors primed, and a recorder on a new run. Yields ``(collectors, recorder, shard_path)``
    and closes them all."""
    from tracklab import _env
    from tracklab.collectors import SystemCollectors
    from tracklab.sampling.recorder import SampleRecorder

    tree = start_tree()
    try:
        os.environ["TRACKLAB_FAKE_NVML_PIDS"] = f"{tree.pid}:2000000000"
        path, num, _ = make_run(store)
        collectors = SystemCollectors(_env.node_id(), disk_path=store, root_pid=tree.pid,
                                      guard_gpu=False)  # as the wrapper reads GPUs
        collectors.prime()
        rec = SampleRecorder(path, num, heartbeat=True)
        try:
            yield collectors, rec, path
        finally:
            rec.close()
            collectors.close()
    finally:
        stop_tree(tree)


def make_run(store: str, run_id: str | None = None, *, status: str = "running",
             started: float | None = None, ended: float | None = None,
             pid: int | None = None) -> tuple[str, int, str]:
    """Create a run row the way the wrapper does. Returns ``(shard_path, run_num, run_id)``."""
    import psutil

    from tracklab import _env
    from tracklab import store as tstore
    from tracklab.ids import new_run_id
    from tracklab.store.codec import dumps_exact

    run_id = run_id or new_run_id()
    now = time.time() if started is None else started
    pid = os.getpid() if pid is None else pid
    shard = tstore.open_shard(store, _env.node_id())
    try:
        num = shard.insert_run({
            "id": run_id, "name": f"bench-{run_id[:4]}", "project": "bench", "status": status,
            "command": dumps_exact(["python", "train.py", "--lr", "3e-4"]), "cwd": "/work",
            "host": _env.hostname(), "node": _env.node_id(), "owner": "wrapper", "pid": pid,
            "pid_start": psutil.Process(pid).create_time() if status == "running" else None,
            "interval": 1.0, "started_at": now, "heartbeat_at": ended or now,
            "ended_at": ended, "exit_code": 0 if status == "finished" else None,
            "config": dumps_exact({"lr": 3e-4, "batch_size": 64}), "tags": dumps_exact([]),
        })
        return shard.path, num, run_id
    finally:
        shard.close()


def full_snapshot(store: str, root_pid: int) -> dict[str, Any]:
    """One real snapshot: every family, the given process tree, the fake NVML's eight GPUs."""
    from tracklab import _env
    from tracklab.collectors import SystemCollectors

    c = SystemCollectors(_env.node_id(), disk_path=store, root_pid=root_pid)
    c.prime()
    time.sleep(0.2)
    snap = c.snapshot()
    c.close()
    return snap


# -- the scale fixtures (figure 5, 8) ---------------------------------------------------------------

GROUPS, PER_GROUP = 10, 10  # 100 keys, logged as 10 calls of 10 keys per step


def worker_build_run(store: str, steps: int, samples: int) -> dict[str, Any]:
    """One run of ``steps`` x 100 keys and ``samples`` full system samples, a day at 1 s apart."""
    import tracklab
    from tracklab.sampling.recorder import SampleRecorder
    from tracklab.store import Shard
    from tracklab.store.codec import dumps_exact, encode_sample, flatten

    tree = start_tree()
    try:
        os.environ["TRACKLAB_FAKE_NVML_PIDS"] = f"{tree.pid}:2000000000"
        snap = full_snapshot(store, tree.pid)
    finally:
        stop_tree(tree)
    t_end = time.time()
    t_start = t_end - max(samples, 1) - 5
    run = tracklab.init(dir=store, project="bench", name=f"scale-{steps}x100")
    names = [[f"group{g}/metric{k}" for k in range(PER_GROUP)] for g in range(GROUPS)]
    for s in range(steps):
        for g, keys in enumerate(names):
            run.log({k: s * 1e-4 + g + k_i * 0.01 for k_i, k in enumerate(keys)}, step=s)
    run.finish()
    path, num = run._shard_path, run._run_num
    body = {k: v for k, v in snap.items() if k not in ("nodeId", "timestamp")}
    paths, values = flatten(body)
    rec = SampleRecorder(path, num)  # for its running statistics only
    shard = Shard(path)
    layout = shard.layout(tuple(paths))
    for i in range(samples):
        wobble = 1.0 + ((i * 7919) % 101 - 50) / 1000.0
        vals = [v * wobble if type(v) is float else v for v in values]
        rec._update(paths, vals)
        last = i == samples - 1
        # the running statistics row is replaced on every sample; only the last one survives
        shard.write_sample(num, t_start + i, layout, encode_sample(vals), os.getpid(), i + 1,
                           dumps_exact(rec.stats) if last else "{}", last)
    shard.update_run(num, started_at=t_start, ended_at=t_end, heartbeat_at=t_end,
                     interval=1.0)
    shard.close()
    size = checkpointed_size(path)
    return {"run_id": run.id, "bytes": size}


def worker_build_runs(store: str, runs: int) -> dict[str, Any]:
    """``runs`` finished runs, a minute apart, each with a realistic record and summary."""
    from tracklab.store import Shard
    from tracklab.store.codec import dumps_exact

    peaks = {"peaks": {"cpu_peak": 97.5, "cpu_mean": 61.2, "memory_peak": 48.0,
                       "memory_used_peak": 61_000_000_000, "process_rss_peak": 9_800_000_000,
                       "gpus": [{"id": g, "utilization_peak": 99, "utilization_mean": 87.5,
                                 "memory_peak": 70_000_000_000, "energy": 1.2e6}
                                for g in range(8)]}}
    now = time.time() - runs * 60
    path = None
    for i in range(runs):
        p, num, _ = make_run(store, f"run{i:06d}", status="finished", started=now + i * 60,
                             ended=now + i * 60 + 50, pid=1)
        path = p
        if i == 0 or i == runs - 1:
            s = Shard(p)
            s.update_run(num, summary=dumps_exact(peaks))
            s.close()
    assert path is not None
    return {"bytes": checkpointed_size(path)}


def scale_fixtures(ctx: Ctx) -> dict[str, Any]:
    """Build (or reuse) the four stores; returns their folders and run ids.

    A build goes to a private folder renamed into place when complete, so two suites running at
    once never see (or delete) each other's half-built stores.
    """
    import shutil

    steps, samples = ctx.scale(10_000, 1_000), ctx.scale(86_400, 8_640)
    many = ctx.scale(10_000, 300)
    root = ctx.cache / sources_hash(f"{steps}/{samples}/{many}")
    if (root / "meta.json").exists() and not ctx.fresh_fixtures:
        ctx.log(f"scale: reusing fixtures in {root}")
        return _located(root, cached=True)
    meta: dict[str, Any] = {"steps": steps, "samples": samples, "runs": many}
    for old in ctx.cache.glob("*/meta.json"):  # the same sizes, built by older code a day ago
        try:
            stale = ({k: json.loads(old.read_text()).get(k) for k in meta} == meta
                     and time.time() - old.stat().st_mtime > 86_400)
        except (OSError, ValueError):
            stale = False
        if stale:
            shutil.rmtree(old.parent, ignore_errors=True)
    build = root.with_name(f"{root.name}.building-{os.getpid()}")
    shutil.rmtree(build, ignore_errors=True)
    build.mkdir(parents=True)
    t0 = time.perf_counter()
    for label, args in (("big", {"steps": steps, "samples": samples}),
                        ("small", {"steps": 1, "samples": 10})):
        ctx.log(f"scale: building the {label} run ({args['steps'] * 100:,} points, "
                f"{args['samples']:,} samples)")
        d = build / label
        d.mkdir()
        out = run_worker("fixtures.build_run", dict(args, store=str(d)), store=d,
                         extra_env={"TRACKLAB_NVML_MODULE": "tests.fakes",
                                    "TRACKLAB_FAKE_NVML": "eight_gpus"})
        meta[label] = {"run_id": out["run_id"], "bytes": out["bytes"]}
    for label, n in (("many", many), ("few", 10)):
        ctx.log(f"scale: building a store of {n:,} runs")
        d = build / label
        d.mkdir()
        out = run_worker("fixtures.build_runs", {"store": str(d), "runs": n}, store=d)
        meta[label] = {"runs": n, "bytes": out["bytes"]}
    meta["build_s"] = time.perf_counter() - t0
    (build / "meta.json").write_text(json.dumps(meta))
    if ctx.fresh_fixtures:
        shutil.rmtree(root, ignore_errors=True)
    try:
        build.rename(root)
    except OSError:  # another suite finished the same build first: use it, drop ours
        shutil.rmtree(build, ignore_errors=True)
    return _located(root, cached=False)


def _located(root: Path, cached: bool) -> dict[str, Any]:
    meta: dict[str, Any] = json.loads((root / "meta.json").read_text())
    for label in ("big", "small", "many", "few"):
        meta[label]["store"] = str(root / label)
    return dict(meta, cached=cached)
