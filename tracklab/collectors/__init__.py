"""Collectors: one module per source, each returning plain data in base units.

A collector is constructed once (priming any rate or percentage state) and then ``collect()``-ed
on every sample. A value the machine cannot give is ``None``; a collector never raises for a
missing reading. :class:`SystemCollectors` composes them into the snapshot format of API.md §4.
"""

from __future__ import annotations

import logging
import time
from typing import Any

log = logging.getLogger("tracklab.collectors")


class SystemCollectors:
    """Builds full snapshots (or one family of them) from every collector.

    Args:
        node_id: the ``nodeId`` written into every snapshot.
        disk_path: the folder whose filesystem ``disk.usage`` describes (the store's).
        root_pid: the launched process whose tree the ``process`` section describes; ``None``
            describes the calling process itself.
        nvml: an NVML seam for the GPU collector (tests pass a fake); ``None`` opens the real one
            lazily on the first GPU reading.
    """

    FAMILIES = ("cpu", "memory", "disk", "network", "accelerators", "process")

    def __init__(self, node_id: str, disk_path: str = ".", root_pid: int | None = None,
                 nvml: Any = None, families: tuple[str, ...] | None = None) -> None:
        self.node_id = node_id
        self.families = families or self.FAMILIES
        self._disk_path = disk_path
        self._root_pid = root_pid
        self._nvml = nvml
        self._made: dict[str, Any] = {}
        self._failed: set[str] = set()

    def _collector(self, family: str) -> Any:
        c = self._made.get(family)
        if c is None:
            if family == "cpu":
                from .cpu import CpuCollector
                c = CpuCollector()
            elif family == "memory":
                from .memory import MemoryCollector
                c = MemoryCollector()
            elif family == "disk":
                from .disk import DiskCollector
                c = DiskCollector(self._disk_path)
            elif family == "network":
                from .network import NetworkCollector
                c = NetworkCollector()
            elif family == "accelerators":
                from .gpu import GpuCollector
                c = GpuCollector(self._nvml)
            elif family == "process":
                from .process import ProcessTreeCollector
                c = ProcessTreeCollector(self._root_pid)
            else:
                raise ValueError(f"unknown family {family!r}")
            self._made[family] = c
        return c

    def prime(self) -> None:
        """Construct every collector now, so the first real sample has rates to report."""
        for family in self.families:
            try:
                self._collector(family)
            except Exception:
                log.debug("collector %s could not start", family, exc_info=True)

    def gpu(self) -> Any:
        return self._collector("accelerators")

    def snapshot(self, families: tuple[str, ...] | None = None) -> dict[str, Any]:
        snap: dict[str, Any] = {"nodeId": self.node_id, "timestamp": int(time.time() * 1000)}
        tree_pids: set[int] | None = None
        for family in families or self.families:
            try:
                if family == "accelerators":
                    snap[family] = self._collector(family).collect(tree_pids)
                else:
                    snap[family] = self._collector(family).collect()
                    if family == "process" and snap[family]:
                        tree_pids = set(snap[family].get("pids") or ())
            except Exception:
                if family not in self._failed:
                    self._failed.add(family)
                    log.warning("collector %s failed; its values are null", family, exc_info=True)
                snap[family] = [] if family == "accelerators" else None
        return snap

    def close(self) -> None:
        for c in self._made.values():
            close = getattr(c, "close", None)
            if close:
                close()
