"""InfiniBand and RoCE ports: traffic per second and error counters, from /sys/class/infiniband.

RDMA traffic (NCCL over InfiniBand or RoCE, GPUDirect) bypasses the kernel's network stack, so
/proc/net/dev never sees it: a distributed job's communication shows up only in the HCA's port
counters. Per port, ``<root>/<device>/ports/<n>/counters/``:

- ``port_xmit_data`` / ``port_rcv_data``: data sent and received, in units of 4 bytes (the
  InfiniBand spec counts octets divided by 4); given here as bytes per second;
- ``port_xmit_wait``: ticks in which the port had data to send and the link gave it no credit
  (congestion or a slow receiver); given per second;
- ``link_downed``, ``symbol_error``: counts since the driver loaded (a link that went down, bit
  errors on the wire), as read.

Only the three rate counters are read every sample (a DGX has eight HCAs, and each file read
costs some 20 us); the error counters, the port's state and rate every ``SLOW_EVERY_S``; its
``link_layer`` (``InfiniBand`` or ``Ethernet``, i.e. RoCE) once, when the ports are found, which
is when the collector is built.
"""

from __future__ import annotations

import os
import time
from typing import Any

from tracklab.collectors._procfs import ProcFiles

ROOT = "/sys/class/infiniband"

SLOW_EVERY_S = 10.0
_RATES = (("txBytes", "port_xmit_data", 4), ("rxBytes", "port_rcv_data", 4),
          ("txWait", "port_xmit_wait", 1))
_COUNTS = (("linkDowned", "link_downed"), ("symbolErrors", "symbol_error"))


def find_ports(root: str = ROOT) -> list[tuple[str, str, str]]:
    """``(device, port, port directory)`` of every port under ``root``, sorted."""
    found: list[tuple[str, str, str]] = []
    try:
        devices = sorted(os.listdir(root))
    except OSError:
        return []
    for dev in devices:
        ports_dir = os.path.join(root, dev, "ports")
        try:
            ports = sorted(os.listdir(ports_dir), key=lambda p: (len(p), p))
        except OSError:
            continue
        found.extend((dev, port, os.path.join(ports_dir, port)) for port in ports)
    return found


class InfinibandCollector:
    """Reads every InfiniBand/RoCE port under ``root`` (tests pass a fake tree)."""

    def __init__(self, root: str = ROOT) -> None:
        self._files = ProcFiles()
        self._ports = find_ports(root)
        self._last: dict[str, tuple[float, list[int | None]]] = {}
        self._layers = {path: self._text(f"{path}/link_layer") for _, _, path in self._ports}
        self._slow: dict[str, dict[str, Any]] = {}
        self._slow_at = float("-inf")
        if self._ports:
            self.collect()  # primes the rates

    def collect(self) -> list[dict[str, Any]] | None:
        """One entry per port, ``None`` on a machine without any (the common case)."""
        if not self._ports:
            return None
        out = []
        slow = time.monotonic() - self._slow_at >= SLOW_EVERY_S
        if slow:
            self._slow_at = time.monotonic()
        for dev, port, path in self._ports:
            now = time.monotonic()
            raw = [self._int(f"{path}/counters/{name}") for _, name, _ in _RATES]
            key = f"{dev}/{port}"
            last = self._last.get(key)
            self._last[key] = (now, raw)
            if slow:
                self._slow[path] = {
                    "state": _state(self._text(f"{path}/state")),
                    "rateGbps": _rate_gbps(self._text(f"{path}/rate")),
                    **{field: self._int(f"{path}/counters/{name}") for field, name in _COUNTS}}
            entry: dict[str, Any] = {"device": dev, "port": int(port) if port.isdigit() else port,
                                     "linkLayer": self._layers.get(path), **self._slow[path]}
            for i, ((field, _, unit), value) in enumerate(zip(_RATES, raw)):
                before = None if last is None else last[1][i]
                dt = 0.0 if last is None else now - last[0]
                entry[field] = (round((value - before) * unit / dt, 1)
                                if value is not None and before is not None and dt > 0
                                and value >= before else None)
            out.append(entry)
        return out

    def close(self) -> None:
        self._files.close()

    def _text(self, path: str) -> str | None:
        data = self._files.read(path)
        return None if data is None else data.decode("ascii", "replace").strip()

    def _int(self, path: str) -> int | None:
        text = self._text(path)
        try:
            return None if text is None else int(text)
        except ValueError:
            return None


def _state(text: str | None) -> str | None:
    """``"4: ACTIVE"`` -> ``"active"``."""
    return None if not text else text.partition(":")[2].strip().lower() or text.lower()


def _rate_gbps(text: str | None) -> float | None:
    """``"200 Gb/sec (4X HDR)"`` -> ``200.0``."""
    try:
        return None if not text else float(text.split()[0])
    except ValueError:
        return None
