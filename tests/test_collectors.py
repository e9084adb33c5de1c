"""System collectors against the real machine: counts and rates move when the machine does."""

from __future__ import annotations

import socket

from tracklab.collectors.cpu import load_and_threads, process_count
from tracklab.collectors.network import connection_count


def test_connection_count_sees_new_sockets() -> None:
    before = connection_count()
    assert before is not None
    socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(3)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
            s.listen()
        assert connection_count() >= before + 3  # type: ignore[operator]
    finally:
        for s in socks:
            s.close()


def test_process_and_thread_counts_are_plausible() -> None:
    import threading

    procs, threads = process_count(), load_and_threads()[1]
    assert procs is not None and threads is not None and threads >= procs >= 1
    stop = threading.Event()
    extra = [threading.Thread(target=stop.wait) for _ in range(5)]
    for t in extra:
        t.start()
    try:
        assert load_and_threads()[1] >= threads + 5 - 2  # others may exit meanwhile
    finally:
        stop.set()
        for t in extra:
            t.join()


def test_disk_totals_match_psutil() -> None:
    import psutil

    from tracklab.collectors.disk import _diskstats

    ours, theirs = _diskstats(), psutil.disk_io_counters()
    if ours is None or theirs is None:
        import pytest

        pytest.skip("no /proc/diskstats on this system")
    # read a moment apart: counters only grow, and by little
    assert theirs.read_bytes >= ours.read_bytes and theirs.read_count >= ours.read_count
    assert theirs.write_count - ours.write_count < 10_000


def test_memory_matches_psutil() -> None:
    import psutil

    from tracklab.collectors.memory import MemoryCollector

    mem = MemoryCollector().collect()
    vm, sw = psutil.virtual_memory(), psutil.swap_memory()
    assert mem["total"] == vm.total and mem["swap"]["total"] == sw.total
    assert abs(mem["usage"] - vm.percent) < 2.0
    assert abs(mem["available"] - vm.available) < 64 * 2**20


def test_proc_files_stay_bound_to_the_process_they_opened() -> None:
    """A kept descriptor of /proc/<pid>/stat reads that process while it lives and nothing once
    it has exited and been reaped, so a reused pid is never read as the old process; sweep()
    closes the descriptors a sample did not use."""
    import os
    import subprocess
    import sys

    from tracklab.collectors._procfs import ProcFiles

    files = ProcFiles()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    path = f"/proc/{child.pid}/stat"
    try:
        first = files.read(path)
        assert first is not None and first.startswith(f"{child.pid} (".encode())
        assert files.read(path) is not None and len(files) == 1
    finally:
        child.kill()
        child.wait()
    assert files.read(path) is None and len(files) == 0  # gone: dropped, not re-read
    before = len(os.listdir("/proc/self/fd"))
    assert files.read("/proc/meminfo") is not None and len(files) == 1
    files.sweep()  # used since the last sweep: kept
    assert len(files) == 1
    files.sweep()  # not used since: closed
    assert len(files) == 0 and len(os.listdir("/proc/self/fd")) == before
    assert files.read("/no/such/file") is None and len(files) == 0
    files.close()


def test_cpu_usage_agrees_with_psutil_over_the_same_window() -> None:
    import time

    import psutil

    from tracklab.collectors.cpu import CpuCollector

    c = CpuCollector()
    psutil.cpu_percent(percpu=True)
    end = time.perf_counter() + 0.3
    while time.perf_counter() < end:  # keep one core busy, so the figures are not all zero
        pass
    ours = [core["usage"] for core in c.collect()["cores"]]
    theirs = psutil.cpu_percent(percpu=True)
    c.close()
    assert len(ours) == len(theirs) == psutil.cpu_count()
    assert abs(sum(ours) - sum(theirs)) < 10 * len(ours)  # a few ms apart on a busy machine


def test_network_totals_match_psutil() -> None:
    import psutil

    from tracklab.collectors.network import net_totals

    ours, theirs = net_totals(), psutil.net_io_counters()
    assert ours is not None and theirs is not None
    assert ours[0] <= theirs.bytes_recv < ours[0] + 10 * 2**20  # read a moment apart
    assert ours[2] <= theirs.bytes_sent < ours[2] + 10 * 2**20
