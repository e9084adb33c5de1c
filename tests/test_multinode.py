"""One run across many nodes: real wrappers as separate "nodes" writing one run to one store.

Each "node" is a real ``tracklab run --node-id nodeK --run-id shared`` process whose child starts
two "ranks" (``RANK`` / ``LOCAL_RANK``) that log through the SDK. The checks read the run back the
way users do (``open_run``, ``tracklab show``) and open every shard on its own to prove that no
shard holds another node's rows.
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import tracklab
from tests.conftest import TRACKLAB, cli, run_tracklab, wait_until, write_script

RANKS_CHILD = r'''
import os, subprocess, sys, time

ranks = int(os.environ.get("MN_RANKS", "2"))
if os.environ.get("RANK") is None:  # the launcher: one process per rank, as torchrun would
    procs = [subprocess.Popen([sys.executable, __file__],
                              env={**os.environ, "RANK": str(r), "LOCAL_RANK": str(r)})
             for r in range(ranks)]
    sys.exit(max(p.wait() for p in procs))

import tracklab

node = int(os.environ["TRACKLAB_NODE_ID"].lstrip("node"))
rank = int(os.environ["RANK"])
step_s = float(os.environ["MN_STEP_S"])
if str(node) == os.environ.get("MN_STRAGGLER"):
    step_s *= 4
run = tracklab.init()
end = time.time() + float(os.environ["MN_SECONDS"])
i = 0
while True:
    tracklab.log({"loss": 1.0 / (i + 1), "node_index": node, "rank_seen": rank}, step=i)
    i += 1
    if time.time() >= end:
        break
    time.sleep(step_s)
tracklab.log({"logged": i}, step=i - 1)
tracklab.finish()
'''


def launch_nodes(tmp_path: Path, nodes: int, seconds: float, step_s: float = 0.05,
                 interval: float = 0.5, straggler: int | None = None, run_id: str = "shared",
                 extra_env: dict[str, str] | None = None,
                 timeout: float = 120) -> list[subprocess.CompletedProcess[str]]:
    """Start ``nodes`` real wrappers at once, each with two ranks; wait for all of them."""
    child = write_script(tmp_path, RANKS_CHILD, "ranks.py")
    env = {**os.environ, "MN_SECONDS": str(seconds), "MN_STEP_S": str(step_s),
           "TRACKLAB_NVML_MODULE": "tests.fakes", "TRACKLAB_FAKE_NVML": "two_gpus",
           **(extra_env or {})}
    if straggler is not None:
        env["MN_STRAGGLER"] = str(straggler)
    procs = [subprocess.Popen(
        [*TRACKLAB, "run", "-q", "--node-id", f"node{k}", "--run-id", run_id,
         "--interval", str(interval), "--", sys.executable, str(child)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for k in range(nodes)]
    out = []
    deadline = time.monotonic() + timeout
    for p in procs:
        try:
            stdout, stderr = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
        out.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
    return out


def check_merged(store: Path, nodes: int, ranks: int = 2) -> dict[str, Any]:
    """The checks shared by the small and the acceptance-scale test."""
    import tracklab
    from tracklab.store import Shard

    names = [f"node{k}" for k in range(nodes)]
    assert sorted(p.name for p in store.glob("node-*.db")) == sorted(
        f"node-{n}.db" for n in names)
    view = tracklab.open_run("shared")
    try:
        info = view.info
        assert info["nodes"] == sorted(names)
        assert info["status"] == "finished"
        assert info["exit_code"] == 0
        points = view.metrics()
    finally:
        view.close()
    # every (node, rank) logged, nothing lost: the "logged" count each rank wrote at its end
    # equals the points of "loss" stored for it
    loss = collections.Counter((m["node"], m["rank"]) for m in points if m["key"] == "loss")
    logged = {(m["node"], m["rank"]): m["value"] for m in points if m["key"] == "logged"}
    assert set(loss) == {(n, r) for n in names for r in range(ranks)}
    assert loss == logged
    for m in points:  # a point is stored under the node that logged it, with its rank
        if m["key"] == "node_index":
            assert f"node{m['value']}" == m["node"]
        if m["key"] == "rank_seen":
            assert m["value"] == m["rank"]
    # no shard is written by two nodes: one run row, its own node's processes and samples only
    wrapper_pids = set()
    for n in names:
        shard = Shard(str(store / f"node-{n}.db"), create=False, readonly=True)
        try:
            rows = shard.run_rows()
            assert [(r["id"], r["node"]) for r in rows] == [("shared", n)]
            num, pid = rows[0]["num"], rows[0]["pid"]
            procs = shard.procs(num)
            assert sorted(r for _pid, r, _lr in procs.values()) == list(range(ranks))
            assert [p for p, _c, _s in shard.sample_stats(num)] == [pid]
            assert shard.sample_count(num) >= 1
            wrapper_pids.add(pid)
        finally:
            shard.close()
    assert len(wrapper_pids) == nodes
    return {"points": len(points)}


def test_four_nodes_one_run(tmp_path: Path, isolated_env: Path) -> None:
    results = launch_nodes(tmp_path, nodes=4, seconds=3, straggler=3)
    for r in results:
        assert r.returncode == 0, r.stderr
    check_merged(isolated_env, 4)

    shown = cli("show", "shared", "--json")
    assert shown.returncode == 0, shown.stderr
    fleet = json.loads(shown.stdout)["fleet"]
    assert [n["node"] for n in fleet["nodes"]] == ["node0", "node1", "node2", "node3"]
    for n in fleet["nodes"]:
        assert n["ranks"] == [0, 1]
        assert n["status"] == "finished"
        assert n["samples"] >= 1 and n["duration"] > 0
        assert n["cpu_mean"] is not None and n["gpu_util_mean"] is not None
        assert len(n["gpus"]) == 2
        assert n["last_step"] >= 1 and n["steps_per_s"] > 0
    # node3 steps four times slower than the others
    assert fleet["slowest_node"]["node"] == "node3"
    assert fleet["slowest_node"]["by"] == "fewest training steps per second"
    assert fleet["slowest_gpu"]["gpu"] == 0  # the fake's GPU 0 is the least busy
    summary = {r["key"]: r for r in fleet["summary"]}
    assert summary["steps_per_s"]["min_node"] == "node3"
    assert summary["cpu_mean"]["nodes"] == 4

    shown = cli("show", "shared", env={**os.environ, "COLUMNS": "160"})
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    assert "Nodes (4)" in out and "Fleet (over nodes)" in out
    for k in range(4):
        assert f"node{k} " in out
    assert "slowest node: node3" in out
    assert "slowest GPU: " in out


def test_one_node_run_has_no_fleet(tmp_path: Path) -> None:
    results = launch_nodes(tmp_path, nodes=1, seconds=0.5)
    assert results[0].returncode == 0, results[0].stderr
    shown = cli("show", "shared", "--json")
    assert json.loads(shown.stdout)["fleet"] is None
    assert "Nodes (" not in cli("show", "shared").stdout


def test_clock_offsets_line_shards_up(tmp_path: Path, isolated_env: Path) -> None:
    """A node whose clock is behind the store's: its recorded offset moves its times on read."""
    import tracklab
    from tracklab.store import Shard

    results = launch_nodes(tmp_path, nodes=2, seconds=0.5)
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results]

    def times() -> tuple[dict[str, list[float]], dict[str, list[int]]]:
        view = tracklab.open_run("shared")
        try:
            m: dict[str, list[float]] = collections.defaultdict(list)
            for p in view.metrics(["loss"]):
                m[p["node"]].append(p["time"])
            s: dict[str, list[int]] = collections.defaultdict(list)
            for snap in view.samples():
                s[snap["nodeId"]].append(snap["timestamp"])
            return m, s
        finally:
            view.close()

    before_m, before_s = times()
    shard = Shard(str(isolated_env / "node-node1.db"))
    try:
        row = shard.run_rows()[0]
        recorded = row["clock_offset"]
        assert recorded is not None and abs(recorded) < 1.0  # same host: about no skew
        shard.update_run(row["num"], clock_offset=recorded + 3600.0)
    finally:
        shard.close()
    after_m, after_s = times()
    assert after_m["node0"] == before_m["node0"]
    assert [round(b - a, 3) for a, b in zip(before_m["node1"], after_m["node1"])] == \
        [3600.0] * len(before_m["node1"])
    assert all(b - a == 3_600_000 for a, b in zip(before_s["node1"], after_s["node1"]))
    # samples(since) compares on the merged clock too: only node1's shifted samples are newer
    view = tracklab.open_run("shared")
    try:
        newest_node0 = max(before_s["node0"]) / 1000
        assert {s["nodeId"] for s in view.samples(since=newest_node0 + 60)} == {"node1"}
    finally:
        view.close()
    shown = json.loads(cli("show", "shared", "--json").stdout)["fleet"]
    assert shown["clock_offsets"] is True
    text = cli("show", "shared", env={**os.environ, "COLUMNS": "160"}).stdout
    assert "clock" in text and "+3600" in text


def test_measure_clock_offset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tracklab.read import fleet

    assert fleet.measure_clock_offset(str(tmp_path)) == 0.0  # one host: no skew to see
    assert list(tmp_path.iterdir()) == []  # the probe file is gone
    assert fleet.measure_clock_offset(str(tmp_path / "missing")) is None

    probes = iter([(0.5, 1000.0, 1_100_000_000_000), (0.01, 1000.0, 1_100_250_000_000),
                   (0.2, 1000.0, 1_100_000_000_000)])
    monkeypatch.setattr(fleet, "_probe", lambda d: next(probes))
    assert fleet.measure_clock_offset("x") == 100.25  # the shortest round trip counts
    monkeypatch.setattr(fleet, "_probe", lambda d: (0.01, 1000.3, 1_000_000_000_000))
    assert fleet.measure_clock_offset("x") is None  # whole-second stamps hide a small offset
    monkeypatch.setattr(fleet, "_probe", lambda d: (0.01, 1000.3, 1_010_000_000_000))
    assert fleet.measure_clock_offset("x") == 10.2
    monkeypatch.setattr(fleet, "_probe", lambda d: (0.3, 1000.0, 1_000_100_000_000))
    assert fleet.measure_clock_offset("x") == 0.0  # within the round trip's uncertainty
    monkeypatch.setattr(fleet, "_probe", lambda d: (3.0, 1000.0, 1_000_100_000_000))
    assert fleet.measure_clock_offset("x") is None  # too slow to say


def test_scheduler_variables_share_the_run(tmp_path: Path, isolated_env: Path) -> None:
    """Under SLURM, wrappers need no flags: the job id names the run, the node id the shard."""
    child = write_script(tmp_path, "import tracklab\ntracklab.init()\n"
                                   "tracklab.log({'x': 1.0})\ntracklab.finish()\n")
    procs = [subprocess.Popen(
        [*TRACKLAB, "run", "-q", "--", sys.executable, str(child)],
        env={**os.environ, "SLURM_JOB_ID": "4242", "SLURM_STEP_ID": "0",
             "SLURM_NODEID": str(k), "SLURM_PROCID": str(k)},
        stderr=subprocess.PIPE, text=True) for k in range(2)]
    for p in procs:
        _out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
    assert sorted(p.name for p in isolated_env.glob("node-*.db")) == [
        "node-node-0.db", "node-node-1.db"]
    import tracklab

    view = tracklab.open_run("slurm-4242-0")
    try:
        assert view.info["nodes"] == ["node-0", "node-1"]
        # without torchrun, SLURM_PROCID stands in for RANK
        assert sorted((m["node"], m["rank"]) for m in view.metrics()) == [
            ("node-0", 0), ("node-1", 1)]
    finally:
        view.close()


def test_torchrun_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    from tracklab import _env
    from tracklab.wrapper.runner import derive_run_id

    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "abc")
    monkeypatch.setenv("GROUP_RANK", "3")
    assert derive_run_id() == "torchrun-abc"
    assert _env.node_id() == "node-3"
    monkeypatch.setenv("SLURM_JOB_ID", "7")  # the scheduler's id wins over torchrun's
    assert derive_run_id() == "slurm-7"
    assert derive_run_id("mine") == "mine"
    monkeypatch.setenv("TRACKLAB_NODE_ID", "gpu-a017")
    assert _env.node_id() == "gpu-a017"
    assert _env.node_id("explicit") == "explicit"


@pytest.mark.slow
def test_acceptance_sixteen_nodes_sixty_seconds(tmp_path: Path, isolated_env: Path) -> None:
    """Issue 9's acceptance: 16 nodes x 2 ranks logging for 60 s into one run; ``tracklab show``
    renders the merged run with per-node rows; nothing lost; one writer per shard. (How long show
    takes on such a run is a benchmark figure: ``python -m tests.benchmarks --only nodes``.)"""
    results = launch_nodes(tmp_path, nodes=16, seconds=60, step_s=0.05, interval=1.0,
                           timeout=400)
    for r in results:
        assert r.returncode == 0, r.stderr
    check_merged(isolated_env, 16)
    shown = cli("show", "shared", env={**os.environ, "COLUMNS": "160"})
    assert shown.returncode == 0, shown.stderr
    assert "Nodes (16)" in shown.stdout
    for k in range(16):
        assert f"node{k} " in shown.stdout


def test_wrappers_sharing_a_node_keep_the_worst_verdict_and_a_reused_id_runs_again(
        store_dir: Path) -> None:
    """``srun`` with several tasks per node starts several wrappers of one run on one node:
    the task that failed is not hidden by one that finished after it. A run id used again
    after its run ended reads as running while the new command runs, then as it ended."""
    common = ["run", "-q", "--run-id", "shared", "--node-id", "node0", "--interval", "0.2", "--"]
    slow = subprocess.Popen([*TRACKLAB, *common, sys.executable, "-c",
                             "import time; time.sleep(3)"])
    try:
        wait_until(lambda: any(r["id"] == "shared" for r in tracklab.list_runs()),
                   "the first wrapper to record its run")
        fast = run_tracklab(*common, sys.executable, "-c", "import sys; sys.exit(3)")
        assert fast.returncode == 3, fast.stderr
        assert slow.wait(timeout=60) == 0
    finally:
        slow.kill()
        slow.wait()
    info = tracklab.open_run("shared").info
    assert (info["status"], info["exit_code"]) == ("failed", 3)

    again = subprocess.Popen([*TRACKLAB, *common, sys.executable, "-c",
                              "import time; time.sleep(3)"])
    try:
        wait_until(lambda: tracklab.open_run("shared").info["status"] == "running",
                   "the reused run id to read as running")
        assert again.wait(timeout=60) == 0
    finally:
        again.kill()
        again.wait()
    info = tracklab.open_run("shared").info
    assert (info["status"], info["exit_code"]) == ("finished", 0)
