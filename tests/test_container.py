"""The ``container`` and ``energy`` sections of every sample, on recorded cgroup and powercap
trees; the sections in full snapshots; ``--carbon-intensity`` end to end; peaks in the record."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests import fakes
from tests.conftest import cli, run_tracklab, write_script
from tests.test_cgroup import V1_OOM_CONTROL, V1_UNLIMITED, V2_EVENTS, record
from tests.test_energy import powercap
from tracklab.collectors import SystemCollectors
from tracklab.collectors.container import LIMITS_EVERY_S, ContainerCollector
from tracklab.collectors.energy import EnergyCollector

GiB = 2**30
PID = 4242


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def collector(tmp_path: Path, proc_cgroup: str, files: dict[str, str],
              clock: Clock) -> ContainerCollector:
    record(tmp_path / "proc", {f"{PID}/cgroup": proc_cgroup})
    record(tmp_path / "cg", files)
    return ContainerCollector(PID, proc_root=str(tmp_path / "proc"),
                              cgroup_root=str(tmp_path / "cg"), clock=clock)


def v2_stat(usage_usec: int, periods: int, throttled: int) -> str:
    return (f"usage_usec {usage_usec}\nuser_usec {usage_usec // 2}\nsystem_usec 0\n"
            f"nr_periods {periods}\nnr_throttled {throttled}\nthrottled_usec 0\n")


# a Kubernetes container: 2 GiB and 1.5 cores on the container, 4 GiB and 4 cores on the pod
CTR = "kubepods.slice/pod1/ctr"
V2 = {
    "cgroup.controllers": "cpuset cpu io memory pids\n",
    "kubepods.slice/cgroup.controllers": "cpu memory\n",
    "kubepods.slice/pod1/cgroup.controllers": "cpu memory\n",
    "kubepods.slice/pod1/memory.max": "4294967296\n",
    "kubepods.slice/pod1/cpu.max": "400000 100000\n",
    "kubepods.slice/pod1/cpu.stat": v2_stat(0, 0, 0),
    f"{CTR}/cgroup.controllers": "\n",
    f"{CTR}/memory.max": "2147483648\n",
    f"{CTR}/memory.current": f"{GiB + 512 * 2**20}\n",  # 1.5 GiB, 0.5 GiB of it inactive cache
    f"{CTR}/memory.stat": f"anon 100\nfile 200\ninactive_anon 0\ninactive_file {512 * 2**20}\n"
                          "active_file 0\n",
    f"{CTR}/cpu.max": "150000 100000\n",
    f"{CTR}/cpu.stat": v2_stat(10_000_000, 100, 0),
    f"{CTR}/memory.events": V2_EVENTS,
}


def test_v2_usage_against_limits(tmp_path: Path) -> None:
    clock = Clock()
    c = collector(tmp_path, f"0::/{CTR}\n", V2, clock)
    clock.t += 2.0
    # 2 s of wall time, 2.4 s of CPU: 1.2 cores of a 1.5-core quota; 5 of 20 periods throttled
    record(tmp_path / "cg", {f"{CTR}/cpu.stat": v2_stat(12_400_000, 120, 5)})
    got = c.collect()
    assert got == {"version": 2, "memoryLimit": 2 * GiB, "memoryUsage": GiB + 512 * 2**20,
                   "memoryWorkingSet": GiB, "memoryPercent": 50.0, "cpuQuota": 1.5,
                   "cpuPercent": 80.0, "cpuThrottled": 25.0, "oomKills": 2}


def test_limits_are_reread_at_most_every_10_s_usage_every_sample(tmp_path: Path) -> None:
    clock = Clock()
    c = collector(tmp_path, f"0::/{CTR}\n", V2, clock)
    record(tmp_path / "cg", {f"{CTR}/memory.max": f"{4 * GiB}\n",
                             f"{CTR}/memory.current": f"{2 * GiB}\n",
                             f"{CTR}/memory.events": V2_EVENTS.replace("oom_kill 2", "oom_kill 3")})
    clock.t += 1.0
    got = c.collect()
    assert got is not None
    assert got["memoryLimit"] == 2 * GiB  # the old limit, still
    assert got["memoryUsage"] == 2 * GiB and got["oomKills"] == 3  # counters: every sample
    clock.t += LIMITS_EVERY_S
    got = c.collect()
    assert got is not None and got["memoryLimit"] == 4 * GiB
    assert got["memoryPercent"] == pytest.approx(100.0 * (2 * GiB - 512 * 2**20) / (4 * GiB),
                                                 abs=0.01)


def test_counts_after_the_child_is_gone(tmp_path: Path) -> None:
    # the sample after an OOM kill: /proc/<pid> is gone, the cgroup's files are still there
    clock = Clock()
    c = collector(tmp_path, f"0::/{CTR}\n", V2, clock)
    (tmp_path / "proc" / str(PID) / "cgroup").unlink()
    record(tmp_path / "cg", {f"{CTR}/memory.events": V2_EVENTS.replace("oom_kill 2",
                                                                        "oom_kill 3")})
    clock.t += LIMITS_EVERY_S + 1
    got = c.collect()
    assert got is not None and got["oomKills"] == 3 and got["memoryLimit"] == 2 * GiB


def test_v2_without_limits_reports_usage_and_null_percentages(tmp_path: Path) -> None:
    files = {"cgroup.controllers": "cpu memory\n",
             "user.slice/cgroup.controllers": "cpu memory\n",
             "user.slice/memory.max": "max\n", "user.slice/cpu.max": "max 100000\n",
             "user.slice/memory.current": "123\n", "user.slice/cpu.stat": v2_stat(5, 0, 0),
             "user.slice/memory.events": "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n"}
    c = collector(tmp_path, "0::/user.slice\n", files, Clock())
    assert c.collect() == {"version": 2, "memoryLimit": None, "memoryUsage": 123,
                           "memoryWorkingSet": None, "memoryPercent": None, "cpuQuota": None,
                           "cpuPercent": None, "cpuThrottled": None, "oomKills": 0}


def test_no_cgroup_is_a_null_section(tmp_path: Path) -> None:
    c = ContainerCollector(PID, proc_root=str(tmp_path / "proc"),
                           cgroup_root=str(tmp_path / "cg"), clock=Clock())
    assert c.collect() is None


def test_v1_separate_cpu_and_cpuacct_mounts(tmp_path: Path) -> None:
    # docker on a v1 host: memory, cpu and cpuacct each mounted alone (as on this machine)
    d = "docker/abc123"
    files = {
        f"memory/{d}/memory.limit_in_bytes": f"{GiB}\n",
        f"memory/{d}/memory.usage_in_bytes": f"{900 * 2**20}\n",
        f"memory/{d}/memory.stat": f"cache 10\nrss 20\ninactive_file 7\n"
                                   f"total_inactive_file {100 * 2**20}\n",
        f"memory/{d}/memory.oom_control": V1_OOM_CONTROL,
        "memory/memory.limit_in_bytes": V1_UNLIMITED + "\n",
        f"cpu/{d}/cpu.cfs_quota_us": "200000\n", f"cpu/{d}/cpu.cfs_period_us": "100000\n",
        f"cpu/{d}/cpu.stat": "nr_periods 10\nnr_throttled 1\nthrottled_time 5\n",
        "cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n",
        f"cpuacct/{d}/cpuacct.usage": "1000000000\n",
    }
    proc = f"5:memory:/{d}\n4:cpu:/{d}\n3:cpuacct:/{d}\n"
    clock = Clock()
    c = collector(tmp_path, proc, files, clock)
    clock.t += 1.0
    record(tmp_path / "cg", {f"cpuacct/{d}/cpuacct.usage": "2000000000\n",  # +1 s of CPU in 1 s
                             f"cpu/{d}/cpu.stat": "nr_periods 20\nnr_throttled 1\n"})
    assert c.collect() == {"version": 1, "memoryLimit": GiB, "memoryUsage": 900 * 2**20,
                           "memoryWorkingSet": 800 * 2**20, "memoryPercent": 78.12,
                           "cpuQuota": 2.0, "cpuPercent": 50.0, "cpuThrottled": 0.0,
                           "oomKills": 5}


def test_v1_co_mounted_cpu_cpuacct(tmp_path: Path) -> None:
    files = {
        "memory/memory.limit_in_bytes": V1_UNLIMITED + "\n",
        "memory/memory.usage_in_bytes": "4096\n",
        "memory/memory.oom_control": V1_OOM_CONTROL,
        "cpu,cpuacct/cpu.cfs_quota_us": "50000\n", "cpu,cpuacct/cpu.cfs_period_us": "100000\n",
        "cpu,cpuacct/cpu.stat": "nr_periods 0\nnr_throttled 0\n",
        "cpu,cpuacct/cpuacct.usage": "0\n",
    }
    clock = Clock()
    c = collector(tmp_path, "4:memory:/\n3:cpu,cpuacct:/\n", files, clock)
    clock.t += 2.0
    record(tmp_path / "cg", {"cpu,cpuacct/cpuacct.usage": "500000000\n",
                             "cpu,cpuacct/cpu.stat": "nr_periods 20\nnr_throttled 10\n"})
    got = c.collect()
    assert got is not None
    assert (got["memoryLimit"], got["memoryPercent"], got["memoryUsage"]) == (None, None, 4096)
    assert (got["cpuQuota"], got["cpuPercent"], got["cpuThrottled"]) == (0.5, 50.0, 50.0)


def test_this_machine_reads_without_error() -> None:
    got = ContainerCollector().collect()
    if got is not None:
        assert got["version"] in (1, 2)
        assert got["memoryUsage"] is None or got["memoryUsage"] > 0
        if got["memoryLimit"] is None:
            assert got["memoryPercent"] is None


# -- energy section --------------------------------------------------------------------------------


def gpu(i: int, joules: float | None, source: str | None = "counter", **more: Any) -> dict:
    return {"id": i, "energy": joules, "energySource": source, **more}


def test_energy_rapl_and_the_runs_gpus(tmp_path: Path) -> None:
    powercap(tmp_path, {"intel-rapl:0": 1_000_000, "intel-rapl:1": 2_000_000})
    e = EnergyCollector(str(tmp_path))
    assert e.collect([gpu(0, 0.0), gpu(1, 0.0, visible=False)]) == {
        "cpu": 0.0, "cpuSource": "rapl", "gpu": 0.0, "gpuSource": "counter"}
    powercap(tmp_path, {"intel-rapl:0": 3_000_000, "intel-rapl:1": 2_500_000})
    got = e.collect([gpu(0, 100.0), gpu(1, 900.0, visible=False)])  # GPU 1 is not the run's
    assert got == {"cpu": 2.5, "cpuSource": "rapl", "gpu": 100.0, "gpuSource": "counter"}


def test_energy_unreadable_sources_are_null(tmp_path: Path) -> None:
    e = EnergyCollector(str(tmp_path / "absent"))
    assert e.collect([]) == {"cpu": None, "cpuSource": None, "gpu": None, "gpuSource": None}
    # a GPU that never gave energy makes the GPU total null, not a partial sum
    assert e.collect([gpu(0, 5.0), gpu(1, None, None)])["gpu"] is None


def test_energy_lost_gpu_keeps_what_it_used_and_sources_are_named(tmp_path: Path) -> None:
    e = EnergyCollector(str(tmp_path / "absent"))
    got = e.collect([gpu(0, 10.0), gpu(1, 20.0, "power-integration")])
    assert got["gpu"] == 30.0 and got["gpuSource"] == "counter+power-integration"
    lost = {"id": 1, "lost": True, "utilization": None}  # the collector's lost entry
    assert e.collect([gpu(0, 15.0), lost])["gpu"] == 35.0


# -- in full snapshots -------------------------------------------------------------------------------


def test_snapshot_has_container_and_energy_and_attributes_gpu_memory() -> None:
    from tracklab.collectors._nvml import Nvml

    fakes.use_scenario("two_gpus", pids={0: [(os.getpid(), 123_456_789)]})
    try:
        nvml = Nvml.open(module=fakes)
        c = SystemCollectors("n", nvml=nvml)
        c.prime()
        snap = c.snapshot()
        c.close()
    finally:
        fakes.reset()
    assert list(snap)[-2:] == ["container", "energy"]
    assert snap["container"] is None or snap["container"]["version"] in (1, 2)
    # the process section is read before the GPUs, so their memory is matched to the tree
    g0, g1 = snap["accelerators"]
    assert (g0["treeMemory"], g0["attribution"], g1["treeMemory"]) == (123_456_789, "pid", 0)
    assert snap["energy"]["gpu"] is not None and snap["energy"]["gpuSource"] == "counter"
    assert set(snap["cpu"]) >= {"frequency", "frequencyMax"}


# -- end to end ------------------------------------------------------------------------------------

CHILD = "import time\nx = bytearray(50 * 2**20)\ntime.sleep(1.5)\n"


def stored_summary(store: Path) -> dict[str, Any]:
    import tracklab

    view = tracklab.open_run("latest", str(store))
    try:
        return view.info["summary"]
    finally:
        view.close()


def test_carbon_intensity_end_to_end_with_fake_gpus(tmp_path: Path, isolated_env: Path) -> None:
    script = write_script(tmp_path, CHILD)
    env = {**os.environ, "TRACKLAB_NVML_MODULE": "tests.fakes", "TRACKLAB_FAKE_NVML": "two_gpus"}
    r = run_tracklab("run", "-q", "--interval", "0.2", "--carbon-intensity", "400", "--",
                     "python", str(script), env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    peaks = stored_summary(isolated_env)["peaks"]
    e = peaks["energy"]
    assert e["gpu_j"] > 0 and e["gpu_source"] == "counter"
    if e["cpu_j"] is None:  # RAPL is absent or root-only on most machines: named, not guessed
        assert e["missing"] == ["cpu"] and e["cpu_source"] is None
    else:
        assert e["cpu_source"] == "rapl" and e["missing"] == []
    assert e["total_j"] == pytest.approx((e["cpu_j"] or 0) + e["gpu_j"], abs=1e-3)
    assert e["total_kwh"] == pytest.approx(e["total_j"] / 3.6e6, rel=1e-3)
    assert e["carbon_intensity"] == 400
    assert e["co2_g"] == pytest.approx(e["total_kwh"] * 400, rel=1e-3)
    assert peaks["process_rss_peak"] > 50 * 2**20
    assert [g["id"] for g in peaks["gpus"]] == [0, 1] and peaks["gpu_memory_peak"] is not None

    shown = cli("show", "latest", "--json", timeout=60)
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert data["energy"]["co2_g"] == e["co2_g"]
    assert isinstance(data["diagnosis"], list) and data["resources"]["gpus"] == [0, 1]
    text = cli("show", "latest", env={**os.environ, "COLUMNS": "200"}, timeout=60)
    assert "g CO2e at 400 g/kWh" in text.stdout and "Diagnosis" in text.stdout
    listed = cli("ls", env={**os.environ, "COLUMNS": "250"}, timeout=60)
    assert "peak RSS" in listed.stdout and "energy" in listed.stdout


def test_without_energy_sources_the_summary_says_so(tmp_path: Path, isolated_env: Path) -> None:
    script = write_script(tmp_path, "import time\ntime.sleep(0.5)\n")
    env = {**os.environ, "TRACKLAB_NVML_MODULE": "tests.fakes", "TRACKLAB_FAKE_NVML": "no_driver"}
    r = run_tracklab("run", "-q", "--interval", "0.2", "--carbon-intensity", "400", "--",
                     "python", str(script), env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    e = stored_summary(isolated_env)["peaks"]["energy"]
    assert e["gpu_j"] is None and "gpu" not in e["missing"]  # no GPU: nothing unreadable
    if e["cpu_j"] is None:
        assert e["missing"] == ["cpu"] and e["total_j"] is None and e["co2_g"] is None


@pytest.mark.parametrize("value", ["-1", "nan", "inf"])
def test_carbon_intensity_must_be_a_finite_non_negative_number(value: str) -> None:
    r = run_tracklab("run", "--carbon-intensity", value, "--", "true")
    assert r.returncode == 2 and "--carbon-intensity" in r.stderr


def test_sdk_standalone_run_stores_peaks(isolated_env: Path) -> None:
    import tracklab

    run = tracklab.init(project="p", system_monitor=True)
    run.finish()
    peaks = stored_summary(isolated_env)["peaks"]
    assert peaks["process_rss_peak"] > 0 and peaks["process_count_peak"] == 1
    assert "energy" in peaks and "container_memory_percent_peak" in peaks


def test_ls_and_show_give_one_runs_headline_figures_alike(tmp_path: Path,
                                                          isolated_env: Path) -> None:
    script = write_script(tmp_path, CHILD)
    env = {**os.environ, "TRACKLAB_NVML_MODULE": "tests.fakes", "TRACKLAB_FAKE_NVML": "two_gpus"}
    r = run_tracklab("run", "-q", "--interval", "0.2", "--", "python", str(script), env=env,
                     timeout=120)
    assert r.returncode == 0, r.stderr
    listed = cli("ls", "--json", timeout=60)
    shown = cli("show", "latest", "--json", timeout=60)
    assert listed.returncode == 0 and shown.returncode == 0, listed.stderr + shown.stderr
    ls_peaks = json.loads(listed.stdout.splitlines()[0])["summary"]["peaks"]
    show = json.loads(shown.stdout)
    rows = {row["path"]: row for row in show["system"]}
    for key, path in [("cpu_peak", "cpu.overall"), ("process_rss_peak", "process.rss")]:
        assert ls_peaks[key] is not None
        assert ls_peaks[key] == show["peaks"][key] == rows[path]["max"], key
    gpu_rows = {(g["id"], row["path"].split(".", 2)[2]): row["max"]
                for g in show["gpus"] for row in g["rows"]}
    # the run's own GPU memory where its processes' use is known, as show's "used by the run" row
    field = {"run": "treeMemory", "gpu": "memory.used"}[ls_peaks["gpu_memory_peak_of"]]
    assert ls_peaks["gpu_memory_peak"] == show["peaks"]["gpu_memory_peak"] == max(
        gpu_rows[(g, field)] for g in (0, 1))
