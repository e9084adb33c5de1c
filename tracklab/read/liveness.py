"""Whether a run marked ``running`` still is: its writer alive on this host (pid present and not
reused), or a fresh heartbeat from another host. Every reader and the SDK's attach decide by it.
"""

from __future__ import annotations

import time
from typing import Any

from tracklab import _env


def resolve_status(row: dict[str, Any], now: float | None = None) -> str:
    """The honest status of a run row: ``running`` only while its writer is alive."""
    status = row["status"]
    if status != "running":
        return str(status)
    now = time.time() if now is None else now
    pid, host = row.get("pid"), row.get("host")
    if pid and host == _env.hostname():
        return "running" if _pid_alive(pid, row.get("pid_start")) else "crashed"
    beat = row.get("heartbeat_at") or row.get("started_at") or 0
    stale = max(30.0, 3 * (row.get("interval") or 5.0) + 10)
    return "running" if now - beat <= stale else "crashed"


def _pid_alive(pid: int, started: float | None) -> bool:
    import psutil

    try:
        p = psutil.Process(pid)
        if started is not None and abs(p.create_time() - started) > 1.0:
            return False  # the pid was reused by another process
        return p.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
