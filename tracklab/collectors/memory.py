"""Memory and swap: usage in percent, sizes in bytes."""

from __future__ import annotations

from typing import Any

import psutil


class MemoryCollector:
    def collect(self) -> dict[str, Any]:
        vm = psutil.virtual_memory()
        try:
            sw = psutil.swap_memory()
            swap = {"used": sw.used, "total": sw.total, "percentage": sw.percent}
        except (OSError, RuntimeError):
            swap = {"used": None, "total": None, "percentage": None}
        return {
            "usage": vm.percent,
            "used": vm.total - vm.available,
            "total": vm.total,
            "available": vm.available,
            "swap": swap,
        }
