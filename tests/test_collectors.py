"""System collectors against the real machine: counts and rates move when the machine does."""

from __future__ import annotations

import socket

from tracklab.collectors.cpu import process_and_thread_counts
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

    procs, threads = process_and_thread_counts()
    assert procs is not None and threads is not None and threads >= procs >= 1
    stop = threading.Event()
    extra = [threading.Thread(target=stop.wait) for _ in range(5)]
    for t in extra:
        t.start()
    try:
        assert process_and_thread_counts()[1] >= threads + 5 - 2  # others may exit meanwhile
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
