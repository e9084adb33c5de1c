"""Container limits on recorded cgroup v1 and v2 file trees, and once on this machine."""

from __future__ import annotations

import os
from pathlib import Path

from tracklab.collectors.cgroup import read_limits, usage_against_limit

GiB = 2**30
V1_UNLIMITED = "9223372036854771712"  # what v1 memory.limit_in_bytes reads with no limit
V2_EVENTS = "low 0\nhigh 0\nmax 14\noom 3\noom_kill 2\noom_group_kill 0\n"
V1_OOM_CONTROL = "oom_kill_disable 0\nunder_oom 0\noom_kill 5\n"


def record(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def limits(tmp_path: Path, proc_cgroup: str, files: dict[str, str], pid: int | str = 4242) -> dict:
    record(tmp_path / "proc", {f"{pid}/cgroup": proc_cgroup})
    record(tmp_path / "cg", files)
    return read_limits(pid, proc_root=str(tmp_path / "proc"), cgroup_root=str(tmp_path / "cg"))


# --- v2 ---------------------------------------------------------------------------------------

V2_POD = {
    "cgroup.controllers": "cpuset cpu io memory pids\n",
    "kubepods.slice/cgroup.controllers": "cpu memory\n",
    "kubepods.slice/memory.max": "max\n",
    "kubepods.slice/cpu.max": "max 100000\n",
    "kubepods.slice/pod1/cgroup.controllers": "cpu memory\n",
    "kubepods.slice/pod1/memory.max": "4294967296\n",
    "kubepods.slice/pod1/cpu.max": "400000 100000\n",
    "kubepods.slice/pod1/ctr/cgroup.controllers": "\n",
    "kubepods.slice/pod1/ctr/memory.max": "2147483648\n",
    "kubepods.slice/pod1/ctr/memory.current": "1048576\n",
    "kubepods.slice/pod1/ctr/cpu.max": "150000 100000\n",
    "kubepods.slice/pod1/ctr/memory.events": V2_EVENTS,
}


def test_v2_limits_usage_quota_and_oom_kills(tmp_path: Path) -> None:
    got = limits(tmp_path, "0::/kubepods.slice/pod1/ctr\n", V2_POD)
    assert got == {"version": 2, "path": str(tmp_path / "cg/kubepods.slice/pod1/ctr"),
                   "memoryLimit": 2 * GiB, "memoryUsage": 1048576, "cpuQuota": 1.5,
                   "oomKills": 2}


def test_v2_tighter_parent_limit_binds(tmp_path: Path) -> None:
    files = {**V2_POD, "kubepods.slice/pod1/memory.max": "1073741824\n",
             "kubepods.slice/pod1/cpu.max": "50000 100000\n"}
    got = limits(tmp_path, "0::/kubepods.slice/pod1/ctr\n", files)
    assert got["memoryLimit"] == GiB and got["cpuQuota"] == 0.5


def test_v2_unlimited_is_none(tmp_path: Path) -> None:
    files = {"cgroup.controllers": "cpu memory\n",
             "user.slice/cgroup.controllers": "cpu memory\n",
             "user.slice/memory.max": "max\n", "user.slice/cpu.max": "max 100000\n",
             "user.slice/memory.current": "123\n",
             "user.slice/memory.events": "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n"}
    got = limits(tmp_path, "0::/user.slice\n", files)
    assert got["version"] == 2 and got["memoryLimit"] is None and got["cpuQuota"] is None
    assert got["memoryUsage"] == 123 and got["oomKills"] == 0


def test_v2_container_path_not_mounted(tmp_path: Path) -> None:
    # a container without its own cgroup namespace: /proc shows the host's path, the container's
    # cgroup files sit at the mount's root
    files = {"cgroup.controllers": "cpu memory\n", "memory.max": "536870912\n",
             "memory.current": "1000\n", "cpu.max": "200000 100000\n",
             "memory.events": V2_EVENTS}
    got = limits(tmp_path, "0::/kubepods/burstable/pod9/0123abcd\n", files)
    assert got == {"version": 2, "path": str(tmp_path / "cg"), "memoryLimit": 512 * 2**20,
                   "memoryUsage": 1000, "cpuQuota": 2.0, "oomKills": 2}


def test_v2_root_cgroup_has_no_limit_files(tmp_path: Path) -> None:
    got = limits(tmp_path, "0::/\n", {"cgroup.controllers": "cpu memory\n"})
    assert got == {"version": 2, "path": str(tmp_path / "cg"), "memoryLimit": None,
                   "memoryUsage": None, "cpuQuota": None, "oomKills": None}


def test_v2_malformed_values_are_none(tmp_path: Path) -> None:
    files = {"cgroup.controllers": "", "a/cgroup.controllers": "", "a/memory.max": "lots\n",
             "a/cpu.max": "\n", "a/memory.current": "\n", "a/memory.events": "oom_kill x\n"}
    got = limits(tmp_path, "0::/a\n", files)
    assert got["version"] == 2
    assert got["memoryLimit"] is got["cpuQuota"] is got["memoryUsage"] is got["oomKills"] is None


# --- v1 ---------------------------------------------------------------------------------------

V1_DOCKER = {
    "memory/memory.limit_in_bytes": V1_UNLIMITED,
    "memory/memory.usage_in_bytes": "999999999",
    "memory/docker/abc/memory.limit_in_bytes": "1073741824\n",
    "memory/docker/abc/memory.usage_in_bytes": "52428800\n",
    "memory/docker/abc/memory.oom_control": V1_OOM_CONTROL,
    "cpu,cpuacct/cpu.cfs_quota_us": "-1\n",
    "cpu,cpuacct/cpu.cfs_period_us": "100000\n",
    "cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "50000\n",
    "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n",
    "unified/cgroup.controllers": "\n",
}
V1_PROC = "12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n1:name=systemd:/docker/abc\n0::/\n"


def test_v1_limits_usage_quota_and_oom_kills(tmp_path: Path) -> None:
    got = limits(tmp_path, V1_PROC, V1_DOCKER)
    assert got == {"version": 1, "path": str(tmp_path / "cg/memory/docker/abc"),
                   "memoryLimit": GiB, "memoryUsage": 52428800, "cpuQuota": 0.5, "oomKills": 5}


def test_v1_unlimited_is_none(tmp_path: Path) -> None:
    files = {**V1_DOCKER, "memory/docker/abc/memory.limit_in_bytes": V1_UNLIMITED,
             "cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "-1\n"}
    got = limits(tmp_path, V1_PROC, files)
    assert got["version"] == 1 and got["memoryLimit"] is None and got["cpuQuota"] is None
    assert got["memoryUsage"] == 52428800


def test_v1_container_path_not_mounted(tmp_path: Path) -> None:
    files = {"memory/memory.limit_in_bytes": "268435456\n",
             "memory/memory.usage_in_bytes": "1024\n",
             "memory/memory.oom_control": "oom_kill_disable 0\nunder_oom 1\noom_kill 1\n",
             "cpu,cpuacct/cpu.cfs_quota_us": "300000\n", "cpu,cpuacct/cpu.cfs_period_us": "100000\n"}
    got = limits(tmp_path, V1_PROC, files)
    assert got == {"version": 1, "path": str(tmp_path / "cg/memory"), "memoryLimit": 256 * 2**20,
                   "memoryUsage": 1024, "cpuQuota": 3.0, "oomKills": 1}


def test_v1_separate_cpu_mount_and_old_kernel(tmp_path: Path) -> None:
    # cpu and cpuacct mounted apart (as on this machine); before Linux 4.13 oom_control had no
    # oom_kill line
    files = {"memory/job/memory.limit_in_bytes": "2147483648\n",
             "memory/job/memory.oom_control": "oom_kill_disable 0\nunder_oom 0\n",
             "cpu/job/cpu.cfs_quota_us": "25000\n", "cpu/job/cpu.cfs_period_us": "100000\n",
             "cpuacct/job/cpuacct.usage": "1\n"}
    got = limits(tmp_path, "4:memory:/job\n2:cpuacct:/job\n1:cpu:/job\n", files)
    assert got["memoryLimit"] == 2 * GiB and got["cpuQuota"] == 0.25
    assert got["oomKills"] is None and got["memoryUsage"] is None


def test_v1_parent_limit_binds(tmp_path: Path) -> None:
    files = {**V1_DOCKER, "memory/docker/memory.limit_in_bytes": "536870912\n"}
    assert limits(tmp_path, V1_PROC, files)["memoryLimit"] == 512 * 2**20


# --- nothing to read --------------------------------------------------------------------------


def test_missing_files_are_none(tmp_path: Path) -> None:
    empty = {"version": None, "path": None, "memoryLimit": None, "memoryUsage": None,
             "cpuQuota": None, "oomKills": None}
    assert read_limits(1, proc_root=str(tmp_path), cgroup_root=str(tmp_path)) == empty
    assert limits(tmp_path, "0::/x\n", {"README": ""}) == empty  # no cgroup mounted
    assert limits(tmp_path, "garbage\n", {"cgroup.controllers": ""})["memoryLimit"] is None


def test_unreadable_file_is_none(tmp_path: Path) -> None:
    # a read that fails (here: a folder where a file should be, which fails even for root) and
    # bytes that are not text
    files = {"cgroup.controllers": "", "a/cgroup.controllers": "", "a/memory.max/x": ""}
    record(tmp_path / "cg", files)
    (tmp_path / "cg/a/cpu.max").write_bytes(b"\xff\xfe 100000\n")
    got = limits(tmp_path, "0::/a\n", {})
    assert got["version"] == 2 and got["memoryLimit"] is None and got["cpuQuota"] is None


def test_this_machine() -> None:
    got = read_limits()
    assert got["version"] in (1, 2)
    assert read_limits(os.getpid())["version"] == got["version"]
    for key in ("memoryLimit", "memoryUsage", "oomKills"):
        assert got[key] is None or (isinstance(got[key], int) and got[key] >= 0)
    assert got["cpuQuota"] is None or got["cpuQuota"] > 0
    assert read_limits(2**22 + 1)["version"] is None  # above any pid_max: no such process


def test_usage_against_limit() -> None:
    assert usage_against_limit(512, 1024) == 50.0
    assert usage_against_limit(1.5, 1.0) == 150.0  # over a CPU quota
    assert usage_against_limit(None, 1024) is None
    assert usage_against_limit(512, None) is None  # unlimited
    assert usage_against_limit(512, 0) is None
