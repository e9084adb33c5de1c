"""Process tree: the launched command and every descendant, summed (percent, bytes, bytes/s).

Workers come and go during a run (DataLoader workers, compiler subprocesses), so the tree is
walked again on every sample. The walk is the expensive part, and it is done the cheapest way the
machine offers:

1. ``/proc/<pid>/task/<tid>/children`` (Linux with ``CONFIG_PROC_CHILDREN``): only the tree's own
   files are read.
2. Otherwise, on Linux, a parent map of every process kept up to date from one ``listdir("/proc")``
   per sample: only processes new since the last sample have their ``stat`` read, and the whole map
   is read again every ``_RESCAN_S`` seconds.
3. Elsewhere, ``psutil.Process(root).children(recursive=True)``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

import psutil

_USS_EVERY_S = 5.0  # smaps costs milliseconds on big processes; USS moves slowly
_USS_REFRESH_PER_SAMPLE = 2  # spread refreshes so a tree of big workers never spikes one sample
_RESCAN_S = 10.0  # full re-read of the parent map: repairs a pid reused between two listdirs
_VERIFY_S = 2.0  # how often a cached psutil.Process is checked against pid reuse
_BTIME_SLACK_S = 1.0  # psutil's create_time rests on /proc/stat btime, which is whole seconds

_Gone = (psutil.NoSuchProcess, psutil.AccessDenied)  # ZombieProcess is a NoSuchProcess


@dataclass
class _Tracked:
    """What is remembered about one process between samples."""

    proc: psutil.Process
    cpu: float | None = None  # user + system seconds at the last sample
    io: tuple[int, int] | None = None  # read_bytes, write_bytes at the last sample
    uss: int | None = None  # bytes, as of uss_at
    uss_at: float | None = None  # monotonic seconds
    verified_at: float = 0.0  # monotonic seconds


class ProcessTreeCollector:
    """Sums the resources of a process and all its descendants.

    Args:
        root_pid: the launched process; ``None`` describes the calling process itself. When the
            root is another process, the calling process (the sampler) and anything it started are
            never counted, even if they sit inside the tree.

    The constructor takes a first, discarded reading so the first :meth:`collect` already reports
    CPU and IO rates over a real interval.
    """

    def __init__(self, root_pid: int | None = None) -> None:
        self._self_pid = os.getpid()
        self.root_pid = self._self_pid if root_pid is None else int(root_pid)
        self._skip = None if self.root_pid == self._self_pid else self._self_pid
        self._tracked: dict[int, _Tracked] = {}
        self._last_at: float | None = None  # monotonic seconds of the last sample
        self._last_wall: float | None = None  # epoch seconds of the last sample
        self._walker = _make_walker()
        self._has_io = hasattr(psutil.Process, "io_counters")
        self._has_fds = hasattr(psutil.Process, "num_fds")
        self.collect()

    def collect(self) -> dict[str, Any] | None:
        """Read the tree once.

        Returns:
            ``None`` when the root process is gone (or a zombie), else a dict: ``pid`` (the root),
            ``count`` (processes read), ``cpu`` (percent of one core, summed, over the interval
            since the last call), ``rss`` (bytes, summed), ``uss`` (bytes, summed over processes
            whose smaps is readable, each refreshed at most every 5 s; ``None`` if none is),
            ``threads``, ``readBytes`` and ``writeBytes`` (storage IO, bytes/s; ``None`` when no
            process's counters are readable), ``openFiles`` (file descriptors; ``None`` when
            unreadable) and ``pids`` (root first).
        """
        now = time.monotonic()
        wall = time.time()
        pids = self._walker(self.root_pid, self._skip)
        if not pids:
            self._tracked.clear()
            return None
        dt = now - self._last_at if self._last_at is not None else None
        seen: dict[int, _Tracked] = {}
        out: dict[str, Any] = {"pid": self.root_pid, "count": 0, "cpu": 0.0, "rss": 0,
                               "uss": None, "threads": 0, "readBytes": None,
                               "writeBytes": None, "openFiles": None, "pids": []}
        uss_budget = _USS_REFRESH_PER_SAMPLE
        for pid in pids:
            t = self._track(pid, now)
            new = t is not None and t.cpu is None
            r = self._read(t, now, allow_uss_refresh=uss_budget > 0) if t is not None else None
            if r is None:
                if pid == self.root_pid:
                    self._tracked.clear()
                    return None
                continue  # vanished between the walk and the read
            if r.pop("uss_refreshed") and not new:
                uss_budget -= 1
            seen[pid] = t
            born = new and self._last_wall is not None and _born_after(t.proc, self._last_wall)
            _accumulate(out, r, dt, born)
        self._tracked = seen
        self._last_at, self._last_wall = now, wall
        out["cpu"] = round(out["cpu"], 2)
        for k in ("readBytes", "writeBytes"):
            if out[k] is not None:
                out[k] = round(out[k], 1)
        return out

    def _track(self, pid: int, now: float) -> _Tracked | None:
        t = self._tracked.get(pid)
        if t is not None and now - t.verified_at >= _VERIFY_S:
            # is_running() compares create_time: a reused pid is a different process
            t = t if t.proc.is_running() else None
            if t is not None:
                t.verified_at = now
        if t is None:
            try:
                t = _Tracked(psutil.Process(pid), verified_at=now)
            except _Gone:
                return None
        return t

    def _read(self, t: _Tracked, now: float, allow_uss_refresh: bool) -> dict[str, Any] | None:
        """One process's counters, and its rates against the last sample; None if it vanished."""
        p = t.proc
        r: dict[str, Any] = {"uss_refreshed": False, "io": None, "fds": None}
        try:
            with p.oneshot():
                if p.status() == psutil.STATUS_ZOMBIE:
                    return None  # exited, not yet reaped: it holds nothing any more
                ct = p.cpu_times()
                r["rss"] = p.memory_info().rss
                r["threads"] = p.num_threads()
                if self._has_io:
                    try:
                        c = p.io_counters()
                        r["io"] = (c.read_bytes, c.write_bytes)
                    except psutil.AccessDenied:
                        pass
                if self._has_fds:
                    try:
                        r["fds"] = p.num_fds()
                    except psutil.AccessDenied:
                        pass
                due = t.uss_at is None or (allow_uss_refresh and now - t.uss_at >= _USS_EVERY_S)
                if due:
                    t.uss_at = now
                    r["uss_refreshed"] = True
                    try:
                        t.uss = p.memory_full_info().uss
                    except (psutil.AccessDenied, AttributeError):
                        t.uss = None
        except _Gone:
            return None
        cpu = ct.user + ct.system  # children_* would re-add reaped workers already counted
        r["cpu"], r["cpu_prev"], t.cpu = cpu, t.cpu, cpu
        r["io_prev"], t.io = t.io, r["io"]
        r["uss"] = t.uss
        r["pid"] = p.pid
        return r


def _born_after(proc: psutil.Process, wall: float) -> bool:
    """Whether a newly seen process started after the last sample, so all its counters are new."""
    try:
        return proc.create_time() >= wall - _BTIME_SLACK_S
    except _Gone:
        return False


def _accumulate(out: dict[str, Any], r: dict[str, Any], dt: float | None, born: bool) -> None:
    out["count"] += 1
    out["pids"].append(r["pid"])
    out["rss"] += r["rss"]
    out["threads"] += r["threads"]
    if r["uss"] is not None:
        out["uss"] = (out["uss"] or 0) + r["uss"]
    if r["fds"] is not None:
        out["openFiles"] = (out["openFiles"] or 0) + r["fds"]
    if not dt or dt <= 0:
        return
    # A process first seen now contributes nothing, unless it was born since the last sample:
    # then everything it has used was used in this interval.
    cpu_prev = r["cpu_prev"] if r["cpu_prev"] is not None else (0.0 if born else None)
    if cpu_prev is not None:
        out["cpu"] += max(0.0, r["cpu"] - cpu_prev) / dt * 100.0
    io, io_prev = r["io"], r["io_prev"]
    if io is not None and io_prev is None and born:
        io_prev = (0, 0)
    if io is not None:
        out["readBytes"] = out["readBytes"] or 0.0
        out["writeBytes"] = out["writeBytes"] or 0.0
        if io_prev is not None:
            out["readBytes"] += max(0, io[0] - io_prev[0]) / dt
            out["writeBytes"] += max(0, io[1] - io_prev[1]) / dt


# --- tree walks -------------------------------------------------------------------------------


def _make_walker(proc_root: str = "/proc") -> Any:
    """The cheapest walk this machine offers: ``walk(root, skip) -> [root, *descendants] | []``."""
    me = os.getpid()
    if os.path.exists(f"{proc_root}/{me}/task/{me}/children"):
        return lambda root, skip: walk_children_files(root, skip, proc_root)
    if os.path.isfile(f"{proc_root}/{me}/stat"):
        return ParentMap(proc_root).descendants
    return _walk_psutil


def walk_children_files(root: int, skip: int | None = None,
                        proc_root: str = "/proc") -> list[int]:
    """The tree from ``<proc_root>/<pid>/task/<tid>/children`` files, root first.

    Every thread's file is read: a child's parent is the thread that forked it.

    Returns:
        ``[]`` when the root is gone; ``skip`` and its descendants are left out.
    """
    out = [root]
    seen = {root}
    i = 0
    while i < len(out):
        pid = out[i]
        i += 1
        try:
            tids = os.listdir(f"{proc_root}/{pid}/task")
        except OSError:
            if pid == root:
                return []
            continue
        for tid in tids:
            try:
                with open(f"{proc_root}/{pid}/task/{tid}/children", "rb") as f:
                    data = f.read()
            except OSError:
                continue  # the thread or the process ended meanwhile
            for word in data.split():
                child = int(word)
                if child != skip and child not in seen:
                    seen.add(child)
                    out.append(child)
    return out


class ParentMap:
    """Every process's parent, kept current from ``<proc_root>`` with little reading.

    A process's parent changes only when that parent exits; so only processes that are new, and
    children of processes that vanished, have their ``stat`` read. The whole map is read again
    every ``_RESCAN_S`` seconds, which repairs a pid that was reused between two samples.
    """

    def __init__(self, proc_root: str = "/proc") -> None:
        self.proc_root = proc_root
        self._ppid: dict[int, int] = {}
        self._children: dict[int, list[int]] | None = None
        self._full_at = -_RESCAN_S

    def refresh(self) -> bool:
        """Bring the map up to date; False when ``proc_root`` cannot be listed."""
        try:
            names = os.listdir(self.proc_root)
        except OSError:
            return False
        now = time.monotonic()
        live = {int(n) for n in names if n.isdigit()}
        if now - self._full_at >= _RESCAN_S:
            self._full_at = now
            self._ppid.clear()
        known = self._ppid
        gone = known.keys() - live
        new = live - known.keys()
        if not gone and not new:
            return True
        for pid in gone:
            del known[pid]
        if gone:
            new |= {pid for pid, parent in known.items() if parent in gone}  # reparented
        for pid in new:
            parent = self._read_ppid(pid)
            if parent is None:
                known.pop(pid, None)
            else:
                known[pid] = parent
        self._children = None
        return True

    def _read_ppid(self, pid: int) -> int | None:
        try:
            with open(f"{self.proc_root}/{pid}/stat", "rb") as f:
                data = f.read()
        except OSError:
            return None
        # the command name may hold spaces and parentheses: fields start after the last ")"
        fields = data[data.rfind(b")") + 2:].split()
        try:
            return int(fields[1])
        except (IndexError, ValueError):
            return None

    def descendants(self, root: int, skip: int | None = None) -> list[int]:
        """``[root, *descendants]`` breadth first; ``[]`` when the root is gone."""
        if not self.refresh():
            return _walk_psutil(root, skip)
        if root not in self._ppid:
            return []
        if self._children is None:
            children: dict[int, list[int]] = {}
            for pid, parent in self._ppid.items():
                children.setdefault(parent, []).append(pid)
            self._children = children
        out = [root]
        seen = {root}
        i = 0
        while i < len(out):
            for child in self._children.get(out[i], ()):
                if child != skip and child not in seen:
                    seen.add(child)
                    out.append(child)
            i += 1
        return out


def _walk_psutil(root: int, skip: int | None = None) -> list[int]:
    try:
        kids = psutil.Process(root).children(recursive=True)
    except _Gone:
        return []
    if skip is None:
        return [root, *(k.pid for k in kids)]
    # leave out the sampler and what it started, as the other walks do
    try:
        skipped = {skip, *(k.pid for k in psutil.Process(skip).children(recursive=True))}
    except _Gone:
        skipped = {skip}
    return [root, *(k.pid for k in kids if k.pid not in skipped)]
