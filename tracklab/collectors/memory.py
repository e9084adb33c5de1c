"""Memory and swap: usage in percent, sizes in bytes."""

from __future__ import annotations

from typing import Any

import psutil

_MEMINFO = "/proc/meminfo"


class MemoryCollector:
    def collect(self) -> dict[str, Any]:
        info = _meminfo()
        if info is not None:
            total, available = info["MemTotal"], info["MemAvailable"]
            swap_total, swap_free = info.get("SwapTotal", 0), info.get("SwapFree", 0)
            swap_used = swap_total - swap_free
            swap = {"used": swap_used, "total": swap_total,
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


def _meminfo() -> dict[str, int] | None:
    """/proc/meminfo in bytes, read once for memory and swap (psutil reads it, and /proc/vmstat,
    once for each: a third of this collector's cost). None where it is missing or incomplete."""
    try:
        with open(_MEMINFO, "rb") as f:
            text = f.read()
    except OSError:
        return None
    out: dict[str, int] = {}
    for line in text.splitlines():
        name, _, rest = line.partition(b":")
        fields = rest.split()
        if fields:
            try:
                out[name.decode()] = int(fields[0]) * (1024 if len(fields) > 1 else 1)
            except ValueError:
                continue
    return out if "MemTotal" in out and "MemAvailable" in out else None
