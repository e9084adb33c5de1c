"""Network: bytes and packets per second over the last interval, the connection count, and the
InfiniBand/RoCE ports (:mod:`.infiniband`), whose RDMA traffic the interfaces never see."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import psutil

from tracklab.collectors._procfs import ProcFiles, read_once
from tracklab.collectors.infiniband import ROOT as IB_ROOT
from tracklab.collectors.infiniband import InfinibandCollector

_SOCKSTAT = ("/proc/net/sockstat", "/proc/net/sockstat6")


class NetworkCollector:
    def __init__(self, infiniband_root: str = IB_ROOT) -> None:
        self._files = ProcFiles()
        self._last = self._counters()
        self._ib = InfinibandCollector(infiniband_root)

    def _counters(self) -> tuple[float, tuple[int, int, int, int]] | None:
        c = net_totals(self._files.read)
        return (time.monotonic(), c) if c else None

    def collect(self) -> dict[str, Any]:
        out: dict[str, Any] = {"bytesIn": None, "bytesOut": None, "packetsIn": None,
                               "packetsOut": None,
                               "connections": connection_count(self._files.read),
                               "infiniband": self._ib.collect()}
        now = self._counters()
        if now and self._last:
            dt = now[0] - self._last[0]
            a, b = self._last[1], now[1]
            if dt > 0:
                out["bytesIn"], out["packetsIn"], out["bytesOut"], out["packetsOut"] = (
                    round(max(0, y - x) / dt, 1) for x, y in zip(a, b))
        self._last = now
        return out

    def close(self) -> None:
        self._files.close()
        self._ib.close()


def net_totals(read: Callable[[str], bytes | None] = read_once
               ) -> tuple[int, int, int, int] | None:
    """Bytes and packets received, bytes and packets sent, summed over every interface (as
    ``psutil.net_io_counters()``), from one read of /proc/net/dev; psutil elsewhere."""
    data = read("/proc/net/dev")
    if data is not None:
        rb = rp = sb = sp = 0
        for line in data.splitlines()[2:]:  # two header lines
            f = line.partition(b":")[2].split()
            if len(f) >= 10:
                rb += int(f[0])
                rp += int(f[1])
                sb += int(f[8])
                sp += int(f[9])
        return rb, rp, sb, sp
    try:
        c = psutil.net_io_counters()
    except (OSError, RuntimeError):
        return None
    return (c.bytes_recv, c.packets_recv, c.bytes_sent, c.packets_sent) if c else None


def connection_count(read: Callable[[str], bytes | None] = read_once) -> int | None:
    """Inet sockets in use (TCP, UDP, v4 and v6), from the kernel's counters in
    /proc/net/sockstat{,6}: constant cost. Listing /proc/net/tcp costs ~10 ms on a busy host and
    psutil.net_connections maps every fd: both far too slow for every sample."""
    total = 0
    found = False
    for path in _SOCKSTAT:
        text = read(path)
        if text is None:
            continue
        for line in text.splitlines():
            name, _, rest = line.partition(b":")
            if name in (b"TCP", b"UDP", b"TCP6", b"UDP6"):
                fields = rest.split()
                if len(fields) >= 2 and fields[0] == b"inuse":
                    total += int(fields[1])
                    found = True
    if found:
        return total
    try:
        return len(psutil.net_connections(kind="inet"))
    except (psutil.AccessDenied, OSError, RuntimeError):
        return None
