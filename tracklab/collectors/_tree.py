"""Walking a process tree: a process and its descendants as a list of pids, root first, by one
of three methods with different costs: the ``children`` files of each thread, a
:class:`ParentMap` of every process on the machine, or psutil. Which one a sample uses is decided
by :class:`~tracklab.collectors.process.ProcessTreeCollector`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import psutil

from tracklab.collectors._procfs import read_once

_RESCAN_S = 30.0  # full re-read of the parent map: repairs a pid reused between two listdirs

GONE = (psutil.NoSuchProcess, psutil.AccessDenied)  # ZombieProcess is a NoSuchProcess
# tracklab's own short-lived subprocesses (git, a package probe; see context._helper): never part
# of a measured process tree, though the SDK measures the tree of the process that starts them
HELPER_PIDS: set[int] = set()


def walk_children_files(root: int, skip: int | None = None, proc_root: str = "/proc",
                        read: Callable[[str], bytes | None] = read_once,
                        single: set[int] | frozenset[int] = frozenset()) -> list[int]:
    """The tree from ``<proc_root>/<pid>/task/<tid>/children`` files, root first; the pids in
    ``single`` are taken to have one thread (their own), without listing their tasks.

    Returns:
        ``[]`` when the root is gone; ``skip`` and its descendants are left out.
    """
    out = [root]
    seen = {root}
    i = 0
    while i < len(out):
        pid = out[i]
        i += 1
        if pid in single:
            tids = [str(pid)]
        else:
            try:
                tids = os.listdir(f"{proc_root}/{pid}/task")
            except OSError:
                if pid == root:
                    return []
                continue
        for tid in tids:
            data = read(f"{proc_root}/{pid}/task/{tid}/children")
            if data is None:
                continue  # the thread or the process ended meanwhile
            for word in data.split():
                child = int(word)
                if child != skip and child not in seen:
                    seen.add(child)
                    out.append(child)
    return out


class ParentMap:
    """Every process's parent, kept current from ``<proc_root>`` with little reading.

    A process's parent changes only when that parent exits, so only processes that are new, and
    children of processes that vanished, have their ``stat`` read. The whole map is read again
    every ``_RESCAN_S`` seconds, which repairs a pid reused between two samples.
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
        data = read_once(f"{self.proc_root}/{pid}/stat")
        if data is None:
            return None
        fields = data[data.rfind(b")") + 2:].split()
        try:
            return int(fields[1])
        except (IndexError, ValueError):
            return None

    def descendants(self, root: int, skip: int | None = None) -> list[int]:
        """``[root, *descendants]`` breadth first, without ``skip`` and its descendants.

        Returns:
            ``[]`` when the root is gone.
        """
        if not self.refresh():
            return walk_psutil(root, skip)
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


def walk_psutil(root: int, skip: int | None = None) -> list[int]:
    """The tree through psutil, root first; ``[]`` when the root is gone."""
    try:
        kids = psutil.Process(root).children(recursive=True)
    except GONE:
        return []
    pids = [root, *(k.pid for k in kids)]
    if skip is None or skip not in pids:
        return pids
    # the sampler sits inside the tree: leave it and what it started out, as the other walks do
    try:
        skipped = {skip, *(k.pid for k in psutil.Process(skip).children(recursive=True))}
    except GONE:
        skipped = {skip}
    return [pid for pid in pids if pid not in skipped]
