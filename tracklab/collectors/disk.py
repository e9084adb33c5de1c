"""Disk: usage of one filesystem (bytes, percent) and system-wide IO rates (bytes/s, ops/s)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import psutil

from tracklab.collectors._procfs import ProcFiles, read_once


class _Totals(NamedTuple):
    read_bytes: int
    write_bytes: int
    read_count: int
    write_count: int


_DISKS: list[frozenset[bytes]] = []


def _diskstats(read: Callable[[str], bytes | None] = read_once) -> _Totals | None:
    """Whole-disk IO totals from /proc/diskstats (sectors of 512 bytes), partitions left out.

    psutil checks sysfs for every device on every call (0.2 ms here); the list of whole disks
    (/sys/block) is read once instead. None where /proc/diskstats is missing.
    """
    text = read("/proc/diskstats")
    if text is None:
        return None
    if not _DISKS:
        try:
            _DISKS.append(frozenset(os.fsencode(n) for n in os.listdir("/sys/block")))
        except OSError:
            return None
    disks = _DISKS[0]
    rb = wb = rc = wc = 0
    for line in text.splitlines():
        f = line.split()
        if len(f) < 10 or f[2] not in disks:
            continue
        rc += int(f[3])
        rb += int(f[5]) * 512
        wc += int(f[7])
        wb += int(f[9]) * 512
    return _Totals(rb, wb, rc, wc)


class DiskCollector:
    def __init__(self, path: str) -> None:
        self.path = path
        self._files = ProcFiles()
        self._last = self._counters()

    def close(self) -> None:
        self._files.close()

    def _counters(self) -> tuple[float, Any] | None:
        c: tuple[int, ...] | None = _diskstats(self._files.read)  # _Totals or psutil's sdiskio
        if c is None:
            try:
                c = psutil.disk_io_counters(perdisk=False)
            except (OSError, RuntimeError):
                return None
        return (time.monotonic(), c) if c else None

    def collect(self) -> dict[str, Any]:
        out: dict[str, Any] = {"usage": None, "used": None, "total": None,
                               "ioRead": None, "ioWrite": None, "iops": None}
        path = self.path
        while path and not os.path.exists(path):
            path = os.path.dirname(path)
        try:
            u = psutil.disk_usage(path or "/")
            out.update(usage=u.percent, used=u.used, total=u.total)
        except OSError:
            pass
        now = self._counters()
        if now and self._last:
            dt = now[0] - self._last[0]
            a, b = self._last[1], now[1]
            if dt > 0:
                out["ioRead"] = round(max(0, b.read_bytes - a.read_bytes) / dt, 1)
                out["ioWrite"] = round(max(0, b.write_bytes - a.write_bytes) / dt, 1)
                ops = (b.read_count - a.read_count) + (b.write_count - a.write_count)
                out["iops"] = round(max(0, ops) / dt, 1)
        self._last = now
        return out
