"""Process tree: the launched command and every descendant, summed (percent, bytes, bytes/s).

Workers come and go during a run (DataLoader workers, compiler subprocesses), so the tree is
walked again on every sample, which may come every 0.1 s. Cost therefore decides the method:

Walk (the walks are in :mod:`tracklab.collectors._tree`). ``/proc/<pid>/task/<tid>/children``
(Linux, ``CONFIG_PROC_CHILDREN``) reads only the tree's own files, one per thread, since a child's
parent is the thread that forked it. A training process often runs dozens of threads, so past
``_MAX_WALK_THREADS`` threads in the tree the walk switches to a
:class:`~tracklab.collectors._tree.ParentMap` of every process on the machine, kept current from
one ``listdir("/proc")`` per sample. Without ``/proc``: ``psutil.Process.children(recursive=True)``.

Read. On Linux one ``/proc/<pid>/stat`` gives CPU time, threads, RSS, state and start time (the
pid's identity: a reused pid starts at another time), then ``io`` and the size of ``fd``: three
reads where psutil's getters take five (measured: 50 us against 150 us a process on a slow VM).
psutil, inside ``oneshot()``, reads USS everywhere and everything on other systems.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psutil

from tracklab.collectors._procfs import ProcFiles, read_once
from tracklab.collectors._tree import GONE, HELPER_PIDS, ParentMap, walk_children_files, walk_psutil

_USS_EVERY_S = 5.0  # smaps costs milliseconds on big processes; USS moves slowly
_USS_REFRESH_PER_SAMPLE = 2  # spread refreshes so a tree of big workers never spikes one sample
_MAX_WALK_THREADS = 64  # above this many threads in the tree, the parent map is cheaper
_VERIFY_S = 2.0  # psutil path: how often a cached Process is checked against pid reuse
_BTIME_SLACK_S = 1.0  # psutil's create_time rests on /proc/stat btime, which is whole seconds

_HAS_PROC = sys.platform.startswith("linux") and os.path.isfile(f"/proc/{os.getpid()}/stat")
_TICK = os.sysconf("SC_CLK_TCK") if _HAS_PROC else 100  # in Hz
_PAGE = os.sysconf("SC_PAGE_SIZE") if _HAS_PROC else 4096  # in bytes
# since Linux 6.2 the size of /proc/<pid>/fd is the number of open descriptors
_FD_SIZE_COUNTS = _HAS_PROC and tuple(
    int(x) for x in os.uname().release.split(".")[:2] if x.isdigit()) >= (6, 2)


@dataclass
class _Reading:
    cpu: float  # user + system seconds; children_* would re-add reaped workers
    rss: int  # bytes
    threads: int
    io: tuple[int, int] | None  # read_bytes, write_bytes since the process started
    fds: int | None
    start: Any  # identity: start time in clock ticks (Linux) or psutil create_time


@dataclass
class _Tracked:
    """What is remembered about one process between samples."""

    proc: psutil.Process
    start: Any = None
    cpu: float | None = None  # at the last sample
    io: tuple[int, int] | None = None  # at the last sample
    uss: int | None = None  # bytes, as of uss_at
    uss_at: float | None = None  # monotonic seconds
    verified_at: float = 0.0  # monotonic seconds
    threads: int = 0  # at the last sample


class ProcessTreeCollector:
    """Sums the resources of a process and all its descendants.

    Args:
        root_pid: the launched process; ``None`` describes the calling process itself. When the
            root is another process, the calling process (the sampler) and anything it started are
            never counted, even if they sit inside the tree.

    The constructor takes a first, discarded reading, so the first :meth:`collect` already reports
    CPU and IO rates over a real interval.
    """

    def __init__(self, root_pid: int | None = None) -> None:
        me = os.getpid()
        self.root_pid = me if root_pid is None else int(root_pid)
        self._skip = None if self.root_pid == me else me
        self._linux = _HAS_PROC
        self._tracked: dict[int, _Tracked] = {}
        self._last_at: float | None = None  # monotonic seconds of the last sample
        self._last_wall: float | None = None  # epoch seconds of the last sample
        self._children_files = self._linux and os.path.exists(f"/proc/{me}/task/{me}/children")
        self._parents: ParentMap | None = None
        self._threads = 0  # in the tree at the last sample: picks the walk
        self._files = ProcFiles()  # the tree's stat, io and children files, kept open
        self.collect()

    def close(self) -> None:
        self._files.close()

    def collect(self) -> dict[str, Any] | None:
        """Read the tree once.

        Returns:
            ``None`` when the root process is gone (or a zombie), else a dict: ``pid`` (the root),
            ``count`` (processes read), ``cpu`` (percent of one core, summed, over the interval
            since the last call), ``rss`` (bytes, summed), ``uss`` (bytes, summed over processes
            whose smaps is readable, each refreshed at most every 5 s; ``None`` if none is),
            ``threads``, ``readBytes`` and ``writeBytes`` (storage IO, bytes/s, summed over the
            processes whose counters are readable; ``None`` if none is, or on the very first
            reading), ``openFiles`` (file descriptors; ``None`` when unreadable) and ``pids``
            (root first).
        """
        now, wall = time.monotonic(), time.time()
        try:
            return self._collect(now, wall)
        finally:
            self._files.sweep()  # descriptors of processes and threads that ended

    def _collect(self, now: float, wall: float) -> dict[str, Any] | None:
        pids = self._walk()
        if HELPER_PIDS:
            pids = [pid for pid in pids if pid not in HELPER_PIDS]
        dt = now - self._last_at if self._last_at is not None else None
        out: dict[str, Any] = {"pid": self.root_pid, "count": 0, "cpu": 0.0, "rss": 0,
                               "uss": None, "threads": 0, "readBytes": None,
                               "writeBytes": None, "openFiles": None, "pids": []}
        seen: dict[int, _Tracked] = {}
        uss_budget = _USS_REFRESH_PER_SAMPLE
        for pid in pids:
            got = self._read(pid, now)
            if got is None:
                if pid == self.root_pid:
                    self._tracked.clear()
                    return None
                continue  # vanished between the walk and the read
            t, r = got
            new = t.cpu is None
            born = new and self._last_wall is not None and self._born_after(t, r, self._last_wall)
            if t.uss_at is None:  # first sight: always, so the sum is whole from the start
                t.uss, t.uss_at = _uss(t.proc), now
            elif uss_budget > 0 and now - t.uss_at >= _USS_EVERY_S:
                uss_budget -= 1
                t.uss, t.uss_at = _uss(t.proc), now
            _accumulate(out, t, r, dt, born)
            seen[pid] = t
        if not seen:
            self._tracked.clear()
            return None
        self._tracked = seen
        self._last_at, self._last_wall = now, wall
        self._threads = out["threads"]
        out["cpu"] = round(out["cpu"], 2)
        for k in ("readBytes", "writeBytes"):
            if out[k] is not None:
                out[k] = round(out[k], 1)
        return out

    def _walk(self) -> list[int]:
        if not self._linux:
            return walk_psutil(self.root_pid, self._skip)
        limit = _MAX_WALK_THREADS // (1 if self._parents is None else 2)  # hysteresis
        if self._children_files and self._threads <= limit:
            self._parents = None
            # a process that had one thread at the last sample is not listed again (a /proc
            # listing each): a child forked by a thread born since then waits one sample
            single = {pid for pid, t in self._tracked.items() if t.threads == 1}
            return walk_children_files(self.root_pid, self._skip, read=self._files.read,
                                       single=single)
        if self._parents is None:
            self._parents = ParentMap()
        return self._parents.descendants(self.root_pid, self._skip)

    def _read(self, pid: int, now: float) -> tuple[_Tracked, _Reading] | None:
        t = self._tracked.get(pid)
        if t is not None and not self._linux and now - t.verified_at >= _VERIFY_S:
            if t.proc.is_running():  # compares create_time: a reused pid is another process
                t.verified_at = now
            else:
                t = None
        if t is None:
            try:
                t = _Tracked(psutil.Process(pid), verified_at=now)
            except GONE:
                return None
        r = read_proc(pid, read=self._files.read) if self._linux else read_psutil(t.proc)
        if r is None:
            return None
        if t.start is not None and r.start != t.start:  # pid reused since the last sample
            try:
                t = _Tracked(psutil.Process(pid), verified_at=now)
            except GONE:
                return None
        t.start, t.threads = r.start, r.threads
        return t, r

    def _born_after(self, t: _Tracked, r: _Reading, wall: float) -> bool:
        """Whether a newly seen process started after ``wall``, so all its counters are new."""
        if self._linux:
            try:
                up = time.clock_gettime(time.CLOCK_BOOTTIME)  # start times count from boot
            except (AttributeError, OSError):
                return False
            return bool(up - r.start / _TICK <= time.time() - wall)
        return bool(r.start >= wall - _BTIME_SLACK_S)


def _accumulate(out: dict[str, Any], t: _Tracked, r: _Reading, dt: float | None,
                born: bool) -> None:
    out["count"] += 1
    out["pids"].append(t.proc.pid)
    out["rss"] += r.rss
    out["threads"] += r.threads
    if t.uss is not None:
        out["uss"] = (out["uss"] or 0) + t.uss
    if r.fds is not None:
        out["openFiles"] = (out["openFiles"] or 0) + r.fds
    # A process first seen now contributes nothing (its counters are primed), unless it was born
    # since the last sample: then everything it has used was used in this interval.
    cpu_prev = t.cpu if t.cpu is not None else (0.0 if born else None)
    io_prev = t.io if t.io is not None else ((0, 0) if born else None)
    t.cpu, t.io = r.cpu, r.io
    if not dt or dt <= 0:
        return
    if cpu_prev is not None:
        out["cpu"] += max(0.0, r.cpu - cpu_prev) / dt * 100.0
    if r.io is not None:
        out["readBytes"] = out["readBytes"] or 0.0
        out["writeBytes"] = out["writeBytes"] or 0.0
        if io_prev is not None:
            out["readBytes"] += max(0, r.io[0] - io_prev[0]) / dt
            out["writeBytes"] += max(0, r.io[1] - io_prev[1]) / dt


# --- reading one process ----------------------------------------------------------------------


def read_proc(pid: int, proc_root: str = "/proc",
              read: Callable[[str], bytes | None] = read_once) -> _Reading | None:
    """One process from ``<proc_root>/<pid>/{stat,io,fd}``; ``None`` if gone or a zombie."""
    base = f"{proc_root}/{pid}"
    data = read(f"{base}/stat")
    if data is None:
        return None
    # the command name may hold spaces and parentheses: fields start after the last ")"
    fields = data[data.rfind(b")") + 2:].split()
    if len(fields) < 22 or fields[0] in (b"Z", b"X"):
        return None  # exited (a zombie holds nothing any more)
    io: tuple[int, int] | None = None
    text = read(f"{base}/io")  # None: another user's process (EACCES), or no IO accounting
    if text is not None:
        counters = dict(line.split(b":", 1) for line in text.splitlines() if b":" in line)
        try:
            io = (int(counters[b"read_bytes"]), int(counters[b"write_bytes"]))
        except (KeyError, ValueError):
            pass
    fds: int | None = None
    try:
        fds = os.stat(f"{base}/fd").st_size if _FD_SIZE_COUNTS else 0
        if not fds:  # older kernels report 0: count the entries
            fds = len(os.listdir(f"{base}/fd"))
    except OSError:
        fds = None
    return _Reading(cpu=(int(fields[11]) + int(fields[12])) / _TICK, rss=int(fields[21]) * _PAGE,
                    threads=int(fields[17]), io=io, fds=fds, start=int(fields[19]))


def read_psutil(proc: psutil.Process) -> _Reading | None:
    """One process through psutil (systems without ``/proc``); ``None`` if gone or a zombie."""
    try:
        with proc.oneshot():
            if proc.status() == psutil.STATUS_ZOMBIE:
                return None
            ct = proc.cpu_times()
            rss = proc.memory_info().rss
            threads = proc.num_threads()
            io = fds = None
            try:
                c = proc.io_counters()  # absent on macOS: AttributeError
                io = (c.read_bytes, c.write_bytes)
            except (psutil.AccessDenied, AttributeError):
                pass
            try:
                fds = proc.num_fds()
            except (psutil.AccessDenied, AttributeError):
                pass
    except GONE:
        return None
    return _Reading(cpu=ct.user + ct.system, rss=rss, threads=threads, io=io, fds=fds,
                    start=proc.create_time())


def _uss(proc: psutil.Process) -> int | None:
    """Unique set size in bytes (reads smaps: milliseconds for big processes); None if denied."""
    try:
        return int(proc.memory_full_info().uss)
    except (*GONE, AttributeError):
        return None
