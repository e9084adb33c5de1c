"""Network: bytes and packets per second over the last interval, and the connection count."""

from __future__ import annotations

import time
from typing import Any

import psutil

_PROC_NET = ("/proc/net/tcp", "/proc/net/tcp6", "/proc/net/udp", "/proc/net/udp6")


class NetworkCollector:
    def __init__(self) -> None:
        self._last = self._counters()

    def _counters(self) -> tuple[float, Any] | None:
        try:
            c = psutil.net_io_counters()
        except (OSError, RuntimeError):
            return None
        return (time.monotonic(), c) if c else None

    def collect(self) -> dict[str, Any]:
        out: dict[str, Any] = {"bytesIn": None, "bytesOut": None, "packetsIn": None,
                               "packetsOut": None, "connections": connection_count()}
        now = self._counters()
        if now and self._last:
            dt = now[0] - self._last[0]
            a, b = self._last[1], now[1]
            if dt > 0:
                out["bytesIn"] = round(max(0, b.bytes_recv - a.bytes_recv) / dt, 1)
                out["bytesOut"] = round(max(0, b.bytes_sent - a.bytes_sent) / dt, 1)
                out["packetsIn"] = round(max(0, b.packets_recv - a.packets_recv) / dt, 1)
                out["packetsOut"] = round(max(0, b.packets_sent - a.packets_sent) / dt, 1)
        self._last = now
        return out


def connection_count() -> int | None:
    """Inet sockets, counted from /proc/net (psutil.net_connections maps every fd: too slow)."""
    total = 0
    found = False
    for path in _PROC_NET:
        try:
            with open(path, "rb") as f:
                total += max(0, f.read().count(b"\n") - 1)
                found = True
        except OSError:
            continue
    if found:
        return total
    try:
        return len(psutil.net_connections(kind="inet"))
    except (psutil.AccessDenied, OSError, RuntimeError):
        return None
