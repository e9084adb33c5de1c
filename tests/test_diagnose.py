"""Every diagnosis rule, positive and negative, on recorded sample series; then on a stored run,
read with a bounded number of samples, and in ``show``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tracklab.read import diagnose_data
from tracklab.read.diagnose import diagnose
from tracklab.read.diagnose_data import read_samples, resources, summarize_samples

GiB = 2**30
MiB = 2**20
N = 50  # samples in a series


def gpu(i: int, util: float = 95.0, used: int = 20 * GiB, total: int = 40 * GiB,
        tree: int | None = 10 * GiB, visible: bool | None = None, attribution: str | None = "pid",
        throttle: list[str] | None = None, temp: float = 60.0) -> dict[str, Any]:
    return {"id": i, "type": "gpu", "uuid": f"GPU-{i}", "utilization": util,
            "memory": {"used": used, "total": total, "percentage": round(100 * used / total, 2)},
            "temperature": temp, "power": 250.0, "powerLimit": 400.0,
            "throttleReasons": [] if throttle is None else throttle, "visible": visible,
            "treeMemory": tree, "attribution": attribution}


def lost(i: int) -> dict[str, Any]:
    return {"id": i, "type": "gpu", "uuid": f"GPU-{i}", "lost": True, "utilization": None,
            "memory": {"used": None, "total": 40 * GiB, "percentage": None}}


def snap(i: int, gpus: list[dict[str, Any]] | None = None, tree_cpu: float = 300.0,
         mem_pct: float = 40.0, swap: int = 0, container: dict[str, Any] | None = None
         ) -> dict[str, Any]:
    s: dict[str, Any] = {
        "nodeId": "n", "timestamp": (1000 + i) * 1000,
        "cpu": {"overall": 50.0}, "memory": {"usage": mem_pct, "used": int(mem_pct * GiB),
                                             "total": 100 * GiB, "swap": {"used": swap}},
        "process": {"cpu": tree_cpu, "rss": 4 * GiB, "count": 3},
        "accelerators": gpus if gpus is not None else [],
    }
    if container is not None:
        s["container"] = container
    return s


def series(make: Callable[[int], dict[str, Any]], n: int = N) -> list[dict[str, Any]]:
    return [make(i) for i in range(n)]


def info(status: str = "finished", cvd: str | None = None, cpu_count: int = 8) -> dict[str, Any]:
    return {"status": status, "started_at": 1000.0,
            "system": {"cpu_count": cpu_count, "cuda_visible_devices": cvd,
                       "memory_total": 100 * GiB}}


def rules(found: list[dict[str, Any]]) -> list[str]:
    return [f["rule"] for f in found]


def only(found: list[dict[str, Any]], rule: str) -> dict[str, Any]:
    [f] = [f for f in found if f["rule"] == rule]
    assert f["evidence"] and set(f) == {"rule", "severity", "message", "evidence", "figures"}
    return f


def busy(i: int) -> dict[str, Any]:
    return snap(i, [gpu(0)])


def test_a_healthy_run_has_no_findings() -> None:
    assert diagnose(info(), None, series(busy)) == []


# -- oom-killed ---------------------------------------------------------------------------------


def container(pct: float, oom: int = 0, limit: int = 8 * GiB, throttled: float = 0.0,
              quota: float | None = 2.0) -> dict[str, Any]:
    return {"version": 2, "memoryLimit": limit, "memoryUsage": int(limit * pct / 100),
            "memoryWorkingSet": int(limit * pct / 100), "memoryPercent": pct,
            "cpuQuota": quota, "cpuPercent": 90.0, "cpuThrottled": throttled, "oomKills": oom}


def test_oom_killed_positive() -> None:
    samples = series(lambda i: snap(i, container=container(60.0 + i * 0.8, oom=1 if i == N - 1
                                                           else 0)))
    found = diagnose(info("oom-killed"), None, samples)
    f = only(found, "oom-killed")
    assert f["severity"] == "error" and found[0] is f  # the most severe comes first
    assert "99%" in f["evidence"] and "8.0 GiB limit" in f["evidence"]
    assert "oom-kill" not in rules(found)  # the run's own kill is not reported twice


def test_oom_killed_negative() -> None:
    samples = series(lambda i: snap(i, container=container(50.0)))
    assert "oom-killed" not in rules(diagnose(info("killed"), None, samples))


# -- gpu-lost -----------------------------------------------------------------------------------


def test_gpu_lost_positive() -> None:
    samples = series(lambda i: snap(i, [gpu(0), gpu(1) if i < 30 else lost(1)]))
    f = only(diagnose(info(), None, samples), "gpu-lost")
    assert f["severity"] == "error" and f["message"] == "GPU 1 was lost during the run"
    assert f["figures"]["seconds_into_run"] == 30.0 and "by 30.0 s into" in f["evidence"]


def test_gpu_lost_late_reads_as_a_clock() -> None:
    samples = series(lambda i: snap(i, [gpu(0) if i < 90 else lost(0)]), n=100)
    f = only(diagnose(info(), None, samples), "gpu-lost")
    assert "by 0:01:30 into" in f["evidence"]


def test_gpu_lost_negative() -> None:
    samples = series(lambda i: snap(i, [gpu(0), gpu(1)]))
    assert "gpu-lost" not in rules(diagnose(info(), None, samples))


# -- oom-kill (a worker) ----------------------------------------------------------------------


def test_worker_oom_kill_positive() -> None:
    samples = series(lambda i: snap(i, container=container(70.0, oom=2 if i < 20 else 3)))
    f = only(diagnose(info(), None, samples), "oom-kill")
    assert f["severity"] == "warning" and f["figures"]["oom_kills"] == 1
    assert "from 2 to 3" in f["evidence"]


def test_worker_oom_kill_of_a_run_that_then_failed_does_not_say_it_went_on() -> None:
    # `bash -c 'python train.py; exit $?'`: the OOM-killed python is bash's, which exits 137
    samples = series(lambda i: snap(i, container=container(70.0, oom=2 if i < 20 else 3)))
    f = only(diagnose({**info("failed"), "exit_code": 137}, None, samples), "oom-kill")
    assert "went on" not in f["message"]
    assert f["message"].endswith("OOM-killed during the run, and the run ended failed (exit 137)")
    f = only(diagnose(info(), None, samples), "oom-kill")
    assert f["message"].endswith("OOM-killed during the run, which went on")


def test_worker_oom_kill_negative() -> None:
    # kills from before the run (the counter lives as long as the cgroup) are not the run's
    samples = series(lambda i: snap(i, container=container(70.0, oom=2)))
    assert "oom-kill" not in rules(diagnose(info(), None, samples))


# -- memory-limit -------------------------------------------------------------------------------


def test_memory_limit_positive_container() -> None:
    samples = series(lambda i: snap(i, container=container(97.0 if i == 25 else 50.0)))
    f = only(diagnose(info(), None, samples), "memory-limit")
    assert f["message"] == "peak memory 97% of the container limit"


def test_memory_limit_positive_host_without_a_limit() -> None:
    samples = series(lambda i: snap(i, mem_pct=95.0 if i > 40 else 50.0,
                                    container=container(0, limit=0) | {"memoryLimit": None,
                                                                       "memoryPercent": None}))
    f = only(diagnose(info(), None, samples), "memory-limit")
    assert f["message"] == "peak memory 95% of the host's RAM" and "100.0 GiB" in f["evidence"]


def test_memory_limit_negative() -> None:
    # under a limit the container's share counts, not the host's (other tenants fill the host)
    under_limit = series(lambda i: snap(i, mem_pct=95.0, container=container(60.0)))
    assert "memory-limit" not in rules(diagnose(info(), None, under_limit))
    host = series(lambda i: snap(i, mem_pct=89.9))
    assert "memory-limit" not in rules(diagnose(info(), None, host))


# -- swap ---------------------------------------------------------------------------------------


def test_swap_positive() -> None:
    samples = series(lambda i: snap(i, swap=i * 5 * MiB))
    f = only(diagnose(info(), None, samples), "swap")
    assert f["message"] == "swap used" and "245.0 MiB" in f["evidence"]


def test_swap_negative() -> None:
    # 2 GiB swapped out before the run and left alone
    samples = series(lambda i: snap(i, swap=2 * GiB + (i % 2) * MiB))
    assert "swap" not in rules(diagnose(info(), None, samples))


# -- gpu-not-given ------------------------------------------------------------------------------


def test_gpu_not_given_positive() -> None:
    samples = series(lambda i: snap(i, [gpu(0, util=0.0, tree=0, visible=True),
                                        gpu(1, tree=GiB, visible=False)]))
    found = diagnose(info(cvd="0"), None, samples)
    f = only(found, "gpu-not-given")
    assert f["message"] == "run was given GPU 0 but used GPU 1"
    assert "CUDA_VISIBLE_DEVICES=0" in f["evidence"] and "CUDA_DEVICE_ORDER" in f["evidence"]
    assert f["figures"] == {"given": [0], "used": [1], "cuda_visible_devices": "0"}
    assert "gpu-memory-full" not in rules(found)


def test_gpu_not_given_negative() -> None:
    samples = series(lambda i: snap(i, [gpu(0, tree=GiB, visible=True),
                                        gpu(1, tree=0, visible=False)]))
    assert "gpu-not-given" not in rules(diagnose(info(cvd="0"), None, samples))
    unset = series(lambda i: snap(i, [gpu(0, tree=GiB), gpu(1, tree=GiB)]))
    assert "gpu-not-given" not in rules(diagnose(info(), None, unset))


# -- input-bound --------------------------------------------------------------------------------


def waiting(i: int, tree_cpu: float = 100.0, tree: int = 10 * GiB) -> dict[str, Any]:
    """GPU 0 idle in 31 of 50 samples (62 %), the tree at ``tree_cpu`` % of one core."""
    return snap(i, [gpu(0, util=0.0 if i % 50 < 31 else 95.0, tree=tree)], tree_cpu=tree_cpu)


def test_input_bound_positive() -> None:
    f = only(diagnose(info(), None, series(waiting)), "input-bound")
    assert f["message"] == ("GPU 0 idle 62% of the run while the run's processes used 100% of "
                            "one core: likely input-bound")
    assert f["figures"] == {"gpu": 0, "idle_share": 62.0, "tree_cpu_median": 100.0, "samples": N}


def test_input_bound_positive_all_cores_of_a_quota() -> None:
    samples = series(lambda i: waiting(i, tree_cpu=195.0) | {"container": container(50.0)})
    f = only(diagnose(info(), None, samples), "input-bound")
    assert "all 2 of its cores" in f["message"]


def test_input_bound_negative() -> None:
    assert "input-bound" not in rules(diagnose(info(), None, series(busy)))  # GPU busy
    # idle, but the CPU is idle too: waiting on something else (network, a lock, a peer)
    quiet = series(lambda i: waiting(i, tree_cpu=5.0))
    assert "input-bound" not in rules(diagnose(info(), None, quiet))
    # the run never touched this GPU
    not_ours = series(lambda i: waiting(i, tree=0))
    assert "input-bound" not in rules(diagnose(info(), None, not_ours))
    # too few samples to speak of a share of the run
    assert "input-bound" not in rules(diagnose(info(), None, series(waiting, 4)))


def test_input_bound_without_attribution_uses_the_gpus_given_that_worked() -> None:
    samples = series(lambda i: snap(i, [gpu(0, util=0.0 if i < 31 else 95.0, tree=None,
                                            attribution="unattributed")], tree_cpu=100.0))
    found = diagnose(info(), None, samples)
    assert rules(found) == ["input-bound", "gpu-unattributed"]


# -- gpu-throttled ------------------------------------------------------------------------------


def test_gpu_throttled_positive_thermal_and_power() -> None:
    samples = series(lambda i: snap(i, [
        gpu(0, throttle=["sw_power_cap"] if i % 2 else []),
        gpu(1, throttle=["hw_thermal"] if i % 5 == 0 else ["idle"], temp=88.0)]))
    found = [f for f in diagnose(info(), None, samples) if f["rule"] == "gpu-throttled"]
    assert [(f["severity"], f["message"]) for f in found] == [
        ("warning", "GPU 1 thermally throttled 20% of the time"),
        ("info", "GPU 0 power-capped 50% of the time")]
    assert "peak 88 °C" in found[0]["evidence"]


def test_gpu_throttled_negative() -> None:
    samples = series(lambda i: snap(i, [
        gpu(0, throttle=["hw_thermal"] if i < 4 else []),  # 8 %: under the threshold
        gpu(1, throttle=["idle", "applications_clocks"]),  # not a slowdown
        gpu(2, throttle=["hw_thermal"], visible=False, tree=0)]))  # not the run's GPU
    assert "gpu-throttled" not in rules(diagnose(info(cvd="0,1"), None, samples))


# -- gpu-memory-full ------------------------------------------------------------------------------


def test_gpu_memory_full_positive() -> None:
    samples = series(lambda i: snap(i, [gpu(0, used=int(39 * GiB) if i == 10 else 20 * GiB,
                                            tree=38 * GiB)]))
    f = only(diagnose(info(), None, samples), "gpu-memory-full")
    assert f["message"] == "GPU 0 memory near full: peak 98%"
    assert "39.0 GiB of 40.0 GiB" in f["evidence"] and "38.0 GiB" in f["evidence"]


def test_gpu_memory_full_negative() -> None:
    samples = series(lambda i: snap(i, [gpu(0, used=32 * GiB)]))
    assert "gpu-memory-full" not in rules(diagnose(info(), None, samples))
    others = series(lambda i: snap(i, [gpu(0, visible=True),
                                       gpu(1, used=40 * GiB, tree=0, visible=False)]))
    assert "gpu-memory-full" not in rules(diagnose(info(cvd="0"), None, others))


# -- cpu-throttled ------------------------------------------------------------------------------


def test_cpu_throttled_positive() -> None:
    samples = series(lambda i: snap(i, container=container(50.0, throttled=40.0)))
    f = only(diagnose(info(), None, samples), "cpu-throttled")
    assert f["message"] == "CPU throttled by the container's quota 40% of the time"
    assert "the quota is 2 cores" in f["evidence"]


def test_cpu_throttled_negative() -> None:
    samples = series(lambda i: snap(i, container=container(50.0, throttled=5.0)))
    assert "cpu-throttled" not in rules(diagnose(info(), None, samples))


# -- gpu-unattributed ---------------------------------------------------------------------------


def test_gpu_unattributed_positive() -> None:
    samples = series(lambda i: snap(i, [gpu(0, tree=None, attribution="unattributed")]))
    f = only(diagnose(info(), None, samples), "gpu-unattributed")
    assert f["severity"] == "info" and "--pid=host" in f["evidence"]


def test_gpu_unattributed_negative() -> None:
    assert "gpu-unattributed" not in rules(diagnose(info(), None, series(busy)))


# -- resources: the bases of percentages, the GPUs given ----------------------------------------


def test_resources_name_the_bases_and_the_gpus_given() -> None:
    samples = series(lambda i: snap(i, [gpu(0, visible=False), gpu(1, visible=True)],
                                    container=container(50.0)))
    res = resources(info(cvd="1"), summarize_samples(samples), samples)
    assert res == {"memory_base": "container", "memory_limit": 8 * GiB,
                   "memory_total": 100 * GiB, "cpu_base": "container", "cpu_quota": 2.0,
                   "cpu_count": 8, "cuda_visible_devices": "1", "gpus_given": [1],
                   "gpus": [0, 1]}
    bare = series(lambda i: snap(i, [gpu(0)]))
    res = resources(info(), summarize_samples(bare), bare)
    assert (res["memory_base"], res["cpu_base"], res["gpus_given"]) == ("host", "host", None)


# -- a stored run: bounded reads, summarize, show, report -----------------------------------------


def store_run(store: Path, samples: list[dict[str, Any]], status: str = "finished") -> str:
    from tracklab import store as st
    from tracklab.sampling.recorder import SampleRecorder
    from tracklab.store.codec import dumps_exact

    shard = st.open_shard(str(store), "n")
    num = shard.insert_run({"id": "diag1", "name": "diag", "project": "p", "status": status,
                            "started_at": 1000.0, "heartbeat_at": 1000.0, "ended_at": 1000.0 + N,
                            "node": "n", "owner": "sdk", "command": dumps_exact(["x"]),
                            "system": dumps_exact(info()["system"])})
    path = shard.path
    shard.close()
    rec = SampleRecorder(path, num, heartbeat=False)
    for s in samples:
        rec(s)
    rec.close()
    return "diag1"


def test_stored_run_is_read_with_a_bounded_number_of_samples(isolated_env: Path,
                                                             monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    import tracklab

    # the first 62 % of the run idle (a periodic pattern would alias with the spacing)
    long = series(lambda i: waiting(0 if i < 620 else 49), 1000)
    for i, s in enumerate(long):
        s["timestamp"] = (1000 + i) * 1000
    store_run(isolated_env, long)
    view = tracklab.open_run("diag1")
    try:
        got = read_samples(view, 40)
        assert 40 <= len(got) <= 41 and got[-1]["timestamp"] == long[-1]["timestamp"]
        times = [s["timestamp"] for s in got]
        assert times == sorted(times)
        calls = []
        real = view.samples
        monkeypatch.setattr(view, "samples", lambda *a: calls.append(a) or real(*a))
        found = diagnose(view)
        assert calls == []  # never the full scan
    finally:
        view.close()
    f = only(found, "input-bound")
    assert 60 <= f["figures"]["idle_share"] <= 64 \
        and f["figures"]["samples"] <= diagnose_data.MAX_SAMPLES + 1


def test_show_has_a_diagnosis_section_with_evidence(isolated_env: Path) -> None:
    from tracklab_cli.app import app

    store_run(isolated_env, series(lambda i: waiting(i) | {"container": container(97.0)}))
    res = CliRunner().invoke(app, ["show", "diag1", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert rules(data["diagnosis"]) == ["memory-limit", "input-bound"]
    assert data["resources"]["memory_base"] == "container"
    res = CliRunner().invoke(app, ["show", "diag1"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "Diagnosis" in res.stdout and "likely input-bound" in res.stdout
    assert "GPU 0 utilization was under 10% in 31 of 50" in res.stdout  # the evidence
    assert "container rows: its limit (8.0 GiB)" in res.stdout


def test_show_says_nothing_to_report_for_a_healthy_run(isolated_env: Path) -> None:
    from tracklab_cli.app import app

    store_run(isolated_env, series(busy))
    res = CliRunner().invoke(app, ["show", "diag1"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "nothing to report" in res.stdout and "host RAM (100.0 GiB)" in res.stdout


def test_report_includes_the_diagnosis(isolated_env: Path) -> None:
    import tracklab
    from tracklab.read.report import report_html

    store_run(isolated_env, series(waiting))
    view = tracklab.open_run("diag1")
    try:
        html = report_html(view, n=50)
    finally:
        view.close()
    assert "<h2>Diagnosis</h2>" in html and "likely input-bound" in html
