"""The process-tree collector on real processes: workers that come and go, a busy loop, a vanished
child, the sampler inside the tree, a root that exits; the walks also on recorded /proc trees."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.conftest import wait_until
from tracklab.collectors import _tree, process
from tracklab.collectors._tree import ParentMap, walk_children_files, walk_psutil
from tracklab.collectors.process import ProcessTreeCollector

MiB = 2**20
PY = sys.executable
TYPES: dict[str, Any] = {"pid": int, "count": int, "cpu": float, "rss": int, "uss": (int, type(None)),
                         "threads": int, "readBytes": (float, type(None)),
                         "writeBytes": (float, type(None)), "openFiles": (int, type(None)),
                         "pids": list}

# Two workers each touch 200 MiB so it is resident, hold it 2 s and exit; the parent lingers 1.5 s.
WORKERS = f"""
import subprocess, sys, time
worker = '''
import time
b = bytearray(200 * {MiB})
b[::4096] = b"\\\\x01" * (len(b) // 4096)
time.sleep(2.0)
'''
procs = [subprocess.Popen([sys.executable, "-c", worker]) for _ in range(2)]
for p in procs:
    p.wait()
time.sleep(1.5)
"""


def spawn(code: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([PY, "-c", code])


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test starts; they and any descendants are ended and reaped afterwards."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for p in started:
        try:
            kids = psutil.Process(p.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            kids = []
        for k in [*kids, p]:
            try:
                k.kill()
            except psutil.NoSuchProcess:
                pass
        p.wait(timeout=10)  # grandchildren are reaped by whoever adopts them


def tree_size(pid: int) -> int:
    return 1 + len(psutil.Process(pid).children(recursive=True))


def check_types(snap: dict[str, Any]) -> None:
    assert set(snap) == set(TYPES)
    for key, kind in TYPES.items():
        assert isinstance(snap[key], kind), (key, snap[key])
    assert all(isinstance(p, int) for p in snap["pids"])


@pytest.mark.slow
def test_workers_rss_rises_above_400mb_then_falls(procs: list[subprocess.Popen[bytes]]) -> None:
    root = spawn(WORKERS)
    procs.append(root)
    collector = ProcessTreeCollector(root.pid)
    samples = []
    while root.poll() is None:
        snap = collector.collect()
        if snap is not None:
            check_types(snap)
            samples.append(snap)
        time.sleep(0.2)
    assert collector.collect() is None  # the root is gone
    peak = max(samples, key=lambda s: s["rss"])
    assert peak["rss"] > 400 * MiB and peak["count"] == 3, peak
    assert peak["uss"] is None or peak["uss"] > 0
    after = samples[samples.index(peak) + 1:]
    lingering = [s for s in after if s["count"] == 1]
    assert len(lingering) >= 3, [(s["count"], s["rss"]) for s in after]  # 1.5 s at 0.2 s
    assert all(s["rss"] < 100 * MiB and s["pids"] == [root.pid] for s in lingering)


def _cpu_seconds(pid: int) -> float:
    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


def test_busy_child_cpu_matches_its_cpu_time(procs: list[subprocess.Popen[bytes]]) -> None:
    # Compared with the CPU time the kernel charged over the same window, so a loaded machine
    # (where the child gets less than a core) does not fail the test.
    busy = spawn("while True: pass")
    procs.append(busy)
    collector = ProcessTreeCollector(busy.pid)
    before, t0 = _cpu_seconds(busy.pid), time.monotonic()
    time.sleep(1.0)
    snap = collector.collect()
    expected = (_cpu_seconds(busy.pid) - before) / (time.monotonic() - t0) * 100
    assert snap is not None and snap["count"] == 1
    assert expected > 5 and abs(snap["cpu"] - expected) < max(15.0, expected * 0.25), (snap, expected)


def test_first_collect_after_construction_is_primed(procs: list[subprocess.Popen[bytes]]) -> None:
    busy = spawn("import time\ntime.sleep(0.5)\nwhile True: pass")
    procs.append(busy)
    time.sleep(1.5)  # CPU already used before the collector exists must not count
    collector = ProcessTreeCollector(busy.pid)
    before, t0 = _cpu_seconds(busy.pid), time.monotonic()
    time.sleep(0.3)
    snap = collector.collect()
    expected = (_cpu_seconds(busy.pid) - before) / (time.monotonic() - t0) * 100
    assert snap is not None and snap["cpu"] < 150
    assert abs(snap["cpu"] - expected) < max(20.0, expected * 0.3), (snap, expected)


def test_child_born_between_samples_counts_its_cpu(procs: list[subprocess.Popen[bytes]]) -> None:
    root = spawn("import subprocess, sys, time\ntime.sleep(0.3)\n"
                 "subprocess.Popen([sys.executable, '-c', 'while True: pass'])\ntime.sleep(60)")
    procs.append(root)
    collector = ProcessTreeCollector(root.pid)
    assert collector.collect()["count"] == 1  # type: ignore[index]
    t0 = time.monotonic()
    time.sleep(1.5)
    snap = collector.collect()
    assert snap is not None and snap["count"] == 2
    worker = snap["pids"][1]
    # the worker's whole life fell inside this interval, so all of its CPU time counts
    expected = (_cpu_seconds(worker)) / (time.monotonic() - t0) * 100
    assert snap["cpu"] >= expected * 0.7 and snap["cpu"] > 5, (snap, expected)


def test_vanished_child_is_skipped(procs: list[subprocess.Popen[bytes]]) -> None:
    root = spawn("import time\ntime.sleep(60)")
    gone = spawn("pass")
    procs += [root, gone]
    gone.wait()
    collector = ProcessTreeCollector(root.pid)
    collector._walk = lambda: [root.pid, gone.pid]  # type: ignore[method-assign]
    snap = collector.collect()
    assert snap is not None and snap["pids"] == [root.pid] and snap["count"] == 1


def test_churning_children_never_break_a_sample(procs: list[subprocess.Popen[bytes]]) -> None:
    root = spawn("import subprocess, time\nend = time.time() + 60\n"
                 "while time.time() < end: subprocess.run(['true'])")
    procs.append(root)
    collector = ProcessTreeCollector(root.pid)
    counts = set()
    for _ in range(60):
        snap = collector.collect()
        assert snap is not None
        counts.add(snap["count"])
        time.sleep(0.005)
    assert counts <= {1, 2}


def test_sampler_inside_the_tree_never_counts_itself(tmp_path: Path) -> None:
    # A sampler started by the root (here: by this test) measures the root's tree: it and the
    # process it started stay out, the root and a sibling are in.
    sibling = spawn("import time\ntime.sleep(60)")
    try:
        code = ("import os, subprocess, json\n"
                "from tracklab.collectors.process import ProcessTreeCollector\n"
                "helper = subprocess.Popen(['sleep', '30'])\n"
                "snap = ProcessTreeCollector(os.getppid()).collect()\n"
                "print(json.dumps([os.getpid(), helper.pid, snap['pids']]))\n"
                "helper.kill(); helper.wait()\n")
        out = subprocess.run([PY, "-c", code], capture_output=True, text=True, check=True,
                             timeout=30).stdout
        me, helper, pids = __import__("json").loads(out)
        assert os.getpid() == pids[0] and sibling.pid in pids
        assert me not in pids and helper not in pids
    finally:
        sibling.kill()
        sibling.wait()


def test_calling_process_by_default() -> None:
    snap = ProcessTreeCollector().collect()
    assert snap is not None
    check_types(snap)
    assert snap["pid"] == os.getpid() and snap["pids"][0] == os.getpid()
    assert snap["rss"] > 10 * MiB and snap["threads"] >= 1 and snap["openFiles"]


def test_root_gone_is_none(procs: list[subprocess.Popen[bytes]]) -> None:
    root = spawn("import time\ntime.sleep(60)")
    procs.append(root)
    collector = ProcessTreeCollector(root.pid)
    assert collector.collect() is not None
    root.kill()
    root.wait()
    assert collector.collect() is None
    gone = spawn("pass")
    gone.wait()
    assert ProcessTreeCollector(gone.pid).collect() is None


def test_unreaped_root_counts_as_gone(procs: list[subprocess.Popen[bytes]]) -> None:
    root = spawn("pass")
    procs.append(root)
    wait_until(lambda: psutil.Process(root.pid).status() == psutil.STATUS_ZOMBIE)
    assert ProcessTreeCollector(root.pid).collect() is None


def test_uss_is_read_at_most_every_five_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    collector = ProcessTreeCollector()  # USS read once, on first sight
    calls: list[int] = []
    monkeypatch.setattr(process, "_uss", lambda proc: calls.append(proc.pid) or 12345)
    for _ in range(5):
        snap = collector.collect()
        assert snap is not None and snap["uss"] != 12345
    assert calls == []
    collector._tracked[os.getpid()].uss_at -= 6.0  # type: ignore[operator]
    assert collector.collect()["uss"] == 12345  # type: ignore[index]
    assert calls == [os.getpid()]


def test_psutil_path_matches_proc_path(procs: list[subprocess.Popen[bytes]]) -> None:
    # what systems without /proc get: psutil walks and reads inside oneshot()
    root = spawn("import subprocess, time\nsubprocess.Popen(['sleep', '60'])\ntime.sleep(60)")
    procs.append(root)
    wait_until(lambda: tree_size(root.pid) == 2)
    fast = ProcessTreeCollector(root.pid)
    slow = ProcessTreeCollector(root.pid)
    slow._linux = False
    a, b = fast.collect(), slow.collect()
    assert a is not None and b is not None
    check_types(b)
    assert a["pids"] == b["pids"] and a["threads"] == b["threads"]
    assert abs(a["rss"] - b["rss"]) < 4 * MiB and a["openFiles"] == b["openFiles"]


def test_many_threads_switch_to_parent_map(procs: list[subprocess.Popen[bytes]]) -> None:
    root = spawn("import subprocess, threading, time\n"
                 "for _ in range(80): threading.Thread(target=time.sleep, args=(60,)).start()\n"
                 "subprocess.Popen(['sleep', '60'])\ntime.sleep(60)")
    procs.append(root)
    wait_until(lambda: tree_size(root.pid) == 2 and psutil.Process(root.pid).num_threads() > 80)
    collector = ProcessTreeCollector(root.pid)
    snap = collector.collect()
    assert collector._parents is not None  # 80 children files would be read per sample
    assert snap is not None and snap["count"] == 2 and snap["threads"] > 80


def test_walks_agree_on_this_machine(procs: list[subprocess.Popen[bytes]]) -> None:
    root = spawn("import subprocess, time\n"
                 "subprocess.Popen(['sh', '-c', 'sleep 60 & sleep 60'])\ntime.sleep(60)")
    procs.append(root)
    wait_until(lambda: tree_size(root.pid) == 4)
    expected = sorted(walk_psutil(root.pid))
    assert len(expected) == 4 and sorted(ParentMap().descendants(root.pid)) == expected
    if os.path.exists(f"/proc/{root.pid}/task/{root.pid}/children"):
        assert sorted(walk_children_files(root.pid)) == expected
    # skip is the sampler: it only matters inside the tree (here this test is root's parent) ...
    assert sorted(walk_psutil(root.pid, skip=os.getpid())) == expected
    assert sorted(ParentMap().descendants(root.pid, skip=os.getpid())) == expected
    # ... where it leaves out the sampler and everything the sampler started
    for walk in (walk_psutil, ParentMap().descendants, walk_children_files):
        assert not set(walk(os.getpid(), root.pid)) & set(expected), walk


# --- recorded /proc trees ---------------------------------------------------------------------


def fake_proc(root: Path, tree: dict[int, int], threads: dict[int, list[int]] | None = None) -> None:
    """Writes ``stat`` (pid -> parent) and per-thread ``children`` files under ``root``."""
    threads = threads or {}
    for pid, parent in tree.items():
        d = root / str(pid)
        (d / "task").mkdir(parents=True, exist_ok=True)
        # a command name with a space and a parenthesis, as real ones can have
        (d / "stat").write_text(f"{pid} (py thon) x) S {parent} {pid} {pid} 0 -1 4194560\n")
        tids = threads.get(pid, [pid])
        for tid in tids:
            (d / "task" / str(tid)).mkdir(exist_ok=True)
            (d / "task" / str(tid) / "children").write_text("")
        kids = [c for c, p in tree.items() if p == pid]
        for i, kid in enumerate(kids):  # each child forked by one of the threads, in turn
            f = d / "task" / str(tids[i % len(tids)]) / "children"
            f.write_text(f.read_text() + f"{kid} ")


def test_children_files_read_every_thread(tmp_path: Path) -> None:
    fake_proc(tmp_path, {1: 0, 10: 1, 11: 10, 12: 10, 13: 12, 20: 1},
              threads={10: [10, 14, 15]})
    tree = walk_children_files(10, proc_root=str(tmp_path))
    assert tree[0] == 10 and sorted(tree) == [10, 11, 12, 13]  # 12 was forked by thread 14
    assert walk_children_files(10, skip=12, proc_root=str(tmp_path)) == [10, 11]
    assert walk_children_files(99, proc_root=str(tmp_path)) == []


def test_parent_map_follows_births_deaths_and_reparenting(tmp_path: Path) -> None:
    fake_proc(tmp_path, {1: 0, 10: 1, 11: 10, 12: 11, 20: 1})
    pm = ParentMap(str(tmp_path))
    assert pm.descendants(10) == [10, 11, 12]
    assert pm.descendants(10, skip=11) == [10]
    fake_proc(tmp_path, {13: 10})  # a new worker
    assert sorted(pm.descendants(10)) == [10, 11, 12, 13]
    # 11 exits: 12 is reparented to init and leaves the tree
    for f in sorted((tmp_path / "11").rglob("*"), reverse=True):
        f.rmdir() if f.is_dir() else f.unlink()
    (tmp_path / "11").rmdir()
    fake_proc(tmp_path, {12: 1})
    assert pm.descendants(10) == [10, 13]
    assert pm.descendants(11) == []


def test_parent_map_reads_only_what_changed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_proc(tmp_path, {1: 0, 10: 1, 11: 10, 20: 1, 21: 20})
    pm = ParentMap(str(tmp_path))
    pm.refresh()
    reads: list[int] = []
    original = ParentMap._read_ppid
    monkeypatch.setattr(ParentMap, "_read_ppid",
                        lambda self, pid: reads.append(pid) or original(self, pid))
    pm.descendants(10)
    assert reads == []
    fake_proc(tmp_path, {12: 10})
    assert pm.descendants(10) == [10, 11, 12] and reads == [12]
    pm._full_at -= _tree._RESCAN_S  # the periodic full re-read
    pm.refresh()
    assert sorted(reads) == [1, 10, 11, 12, 12, 20, 21]


def test_read_proc_on_recorded_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(process, "_FD_SIZE_COUNTS", False)  # a plain folder's size is no count
    d = tmp_path / "42"
    (d / "fd").mkdir(parents=True)
    for i in range(3):
        (d / "fd" / str(i)).write_text("")
    fields = ["S", "1"] + ["0"] * 9 + ["150", "50"] + ["0"] * 4 + ["7", "0", "12345", "0", "100"]
    (d / "stat").write_text("42 (a) b) " + " ".join(fields) + "\n")
    (d / "io").write_text("rchar: 9\nwchar: 9\nsyscr: 1\nsyscw: 1\nread_bytes: 4096\n"
                          "write_bytes: 8192\ncancelled_write_bytes: 0\n")
    r = process.read_proc(42, str(tmp_path))
    assert r is not None
    assert r.cpu == pytest.approx(200 / process._TICK) and r.threads == 7
    assert r.rss == 100 * process._PAGE and r.start == 12345 and r.io == (4096, 8192)
    assert r.fds == 3
    (d / "io").unlink()  # another user's process: no io counters
    assert process.read_proc(42, str(tmp_path)).io is None  # type: ignore[union-attr]
    (d / "stat").write_text("42 (a) " + " ".join(["Z", *fields[1:]]) + "\n")
    assert process.read_proc(42, str(tmp_path)) is None  # a zombie
    assert process.read_proc(43, str(tmp_path)) is None


def test_tracklabs_own_helper_commands_are_not_part_of_the_tree() -> None:
    """The SDK measures the tree of the process it runs in, which also starts tracklab's own
    short commands (git, a package probe): those are left out; a child of the user's is not."""
    import threading

    from tracklab.collectors._tree import HELPER_PIDS
    from tracklab.sampling import machine as context

    c = process.ProcessTreeCollector()
    sleeper = [sys.executable, "-c", "import time; time.sleep(3)"]
    helper = threading.Thread(target=context._helper, args=(sleeper,))
    helper.start()
    users = subprocess.Popen(sleeper)
    try:
        deadline = time.monotonic() + 10
        while not HELPER_PIDS and time.monotonic() < deadline:
            time.sleep(0.01)
        (ours,) = HELPER_PIDS
        got = c.collect()
        assert got is not None and users.pid in got["pids"] and ours not in got["pids"]
        assert got["count"] == 2  # this process and the user's child
    finally:
        users.kill()
        users.wait()
        helper.join()
        c.close()
    assert not HELPER_PIDS
