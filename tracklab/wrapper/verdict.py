"""How a run ended, as ``tracklab run`` records it: the status of a child's exit code or
signal (``oom-killed`` when the cgroup's OOM-kill counter rose), and which verdict stands when
several wrappers of one run end on one node."""

from __future__ import annotations

import signal
from typing import Any


def verdict(rc: int, killed: bool, requested: str | None,
            oom_before: int | None) -> tuple[str, int, int | None]:
    """``(status, exit code, signal)`` of a run whose child ended with returncode ``rc``:
    ``killed`` by us (a second Ctrl-C, ``--kill-after``), ``requested`` (a status the run
    asked for), or what the code or signal says; SIGKILL with the cgroup's OOM-kill counter
    above ``oom_before`` is ``oom-killed``."""
    if rc < 0:
        sig = -rc
        code = 128 + sig
        if killed:
            return "killed", code, sig
        if sig == signal.SIGKILL:
            after = oom_kills("self")
            oom = oom_before is not None and after is not None and after > oom_before
            return ("oom-killed" if oom else "killed"), code, sig
        if sig == signal.SIGINT:
            return "interrupted", code, sig
        if sig in (signal.SIGTERM, signal.SIGHUP):
            return "terminated", code, sig
        return "failed", code, sig
    if killed:
        return "killed", rc, None
    if requested:
        return requested, rc, None
    return ("finished" if rc == 0 else "failed"), rc, None


def oom_kills(pid: int | str) -> int | None:
    """The OOM-kill counter of the cgroup of ``pid`` (``"self"``: ours); None if unreadable."""
    try:
        from tracklab.collectors.cgroup import read_limits
    except ImportError:
        return None
    try:
        return read_limits(pid).get("oomKills")
    except OSError:
        return None


def verdict_to_keep(row: dict[str, Any], started: float, status: str, exit_code: int,
                    sig: int | None) -> dict[str, Any]:
    """The run's status fields to write at this wrapper's end: its own verdict, unless another
    wrapper of the same run on this node (``srun`` with several tasks per node) already ended
    it worse during this one's life: a failed task is not hidden by one that finished later."""
    from tracklab.read.runs import STATUS_ORDER

    theirs = row.get("status")
    if theirs in STATUS_ORDER and status in STATUS_ORDER and theirs != "running" and \
            (row.get("ended_at") or 0) >= started and \
            STATUS_ORDER.index(theirs) < STATUS_ORDER.index(status):
        return {}
    return {"status": status, "exit_code": exit_code, "signal": sig}
