"""Memory and swap: usage in percent, sizes in bytes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psutil

from tracklab.collectors._procfs import ProcFiles, read_once

_MEMINFO = "/proc/meminfo"


class MemoryCollector:
    def __init__(self) -> None:
        self._files = ProcFiles()

    def close(self) -> None:
        self._files.close()

    def collect(self) -> dict[str, Any]:
        info = _meminfo(self._files.read)
        if info is not None:
            total, available = info["MemTotal"], info["MemAvailable"]
            swap_total, swap_free = info.get("SwapTotal", 0), info.get("SwapFree", 0)
            swap_used = swap_total - swap_free
            swap: dict[str, float | None] = {
                "used": swap_used, "total": swap_total,
                "percentage": round(swap_used / swap_total * 100, 1) if swap_total else 0.0}
            usage = round((total - available) / total * 100, 1) if total else None
            return {"usage": usage, "used": total - available, "total": total,
                    "available": available, "swap": swap}
        vm = psutil.virtual_memory()
        try:
            sw = psutil.swap_memory()
            swap = {"used": sw.used, "total": sw.total, "percentage": sw.percent}
        except (OSError, RuntimeError):
            swap = {"used": None, "total": None, "percentage": None}
        return {"usage": vm.percent, "used": vm.total - vm.available, "total": vm.total,
                "available": vm.available, "swap": swap}


_KEYS = (b"MemTotal:", b"MemAvailable:", b"SwapTotal:", b"SwapFree:")


def _meminfo(read: Callable[[str], bytes | None] = read_once) -> dict[str, int] | None:
    """The four fields of /proc/meminfo this collector uses, in bytes, read once for memory and
    swap (psutil reads it, and /proc/vmstat, once for each). None where it is missing or lacks
    MemTotal or MemAvailable."""
    text = read(_MEMINFO)
    if text is None:
        return None
    out: dict[str, int] = {}
    for key in _KEYS:
        at = text.find(key)
        if at < 0 or (at and text[at - 1] != 10):  # 10: a newline; a key starts a line
            continue
        fields = text[at + len(key):text.find(b"\n", at)].split()
        try:
            out[key[:-1].decode()] = int(fields[0]) * (1024 if len(fields) > 1 else 1)
        except (IndexError, ValueError):
            continue
    return out if "MemTotal" in out and "MemAvailable" in out else None
