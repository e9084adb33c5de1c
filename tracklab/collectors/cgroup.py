"""Container limits: the memory limit and usage (bytes), CPU quota (cores) and OOM kills of the
cgroup a process runs in, for cgroup v2 and v1.

A run that dies at its memory limit looks, from inside, like a process that vanished; these
figures say why. Every path is rooted at a parameter, so tests read recorded file trees.

Where the files are: ``/proc/<pid>/cgroup`` names the process's cgroup (v2 ``0::/path``, v1
``N:memory:/path`` and ``N:cpu,cpuacct:/path``). On a host that path exists below the mount. In a
container without its own cgroup namespace, the path shown is the host's, but the container's
cgroup is mounted at the root, so the path is tried in full and then walked up to the root.
The limit that binds is the smallest on the way from the cgroup up to the mount's root, so limits
are the minimum over that chain; usage and OOM kills are the cgroup's own.
"""

from __future__ import annotations

import os
from typing import Any

UNLIMITED_BYTES = 2**62  # v1 writes "no limit" as PAGE_COUNTER_MAX pages: 9223372036854771712


def read_limits(pid: int | str = "self", proc_root: str = "/proc",
                cgroup_root: str = "/sys/fs/cgroup") -> dict[str, Any]:
    """The limits of the cgroup that ``pid`` runs in.

    Args:
        pid: a process id, or ``"self"`` for the calling process.
        proc_root: where ``/proc`` is mounted.
        cgroup_root: where the cgroup file systems are mounted (v2: the unified hierarchy itself;
            v1: a folder of controller mounts such as ``memory/`` and ``cpu,cpuacct/``).

    Returns:
        ``version`` (1, 2, or ``None`` when no cgroup is readable), ``path`` (the cgroup's
        folder that was found; for v1 the memory controller's), ``memoryLimit`` (bytes; ``None``
        when unlimited: v2 ``max``, v1 values of 2**62 bytes and more), ``memoryUsage`` (bytes),
        ``cpuQuota`` (cores: quota / period; ``None`` when unlimited: v2 ``max``, v1 ``-1``) and
        ``oomKills`` (processes the kernel killed at the limit since the cgroup was created; v2
        counts its descendants too). Any figure that cannot be read is ``None``; nothing is raised.
    """
    out: dict[str, Any] = {"version": None, "path": None, "memoryLimit": None,
                           "memoryUsage": None, "cpuQuota": None, "oomKills": None}
    entries = _read_proc_cgroup(f"{proc_root}/{pid}/cgroup")
    if entries is None:
        return out
    v1 = {c: path for controllers, path in entries.items() if controllers
          for c in controllers.split(",")}
    if os.path.isfile(f"{cgroup_root}/cgroup.controllers"):  # a pure v2 host
        return _v2(out, cgroup_root, entries.get("", "/"))
    if ("memory" in v1 and os.path.isdir(f"{cgroup_root}/memory")) or _v1_cpu_mounts(
            cgroup_root, v1):
        return _v1(out, cgroup_root, v1)
    if "" in entries and os.path.isfile(f"{cgroup_root}/unified/cgroup.controllers"):
        return _v2(out, f"{cgroup_root}/unified", entries[""])  # hybrid, v1 controllers absent
    return out


def usage_against_limit(value: float | None, limit: float | None) -> float | None:
    """``value`` as a percentage (0-100, more when over) of ``limit``.

    Both in the same unit (bytes for memory, cores for CPU). Past about 90 % of a memory limit
    the kernel reclaims page cache hard and the next large allocation may be OOM-killed.

    Returns:
        ``None`` when either is missing or the limit is not positive (an unlimited cgroup).
    """
    if value is None or limit is None or limit <= 0:
        return None
    return round(100.0 * value / limit, 2)


# --- cgroup v2 --------------------------------------------------------------------------------


def _v2(out: dict[str, Any], mount: str, path: str) -> dict[str, Any]:
    chain = _chain(mount, path, "cgroup.controllers")
    if not chain:
        return out
    out.update(version=2, path=chain[0])
    out["memoryLimit"] = _smallest(_v2_bytes(_read(f"{d}/memory.max")) for d in chain)
    out["cpuQuota"] = _smallest(_v2_cpu(_read(f"{d}/cpu.max")) for d in chain)
    # the root cgroup has neither file: the nearest cgroup that has them speaks for the process
    out["memoryUsage"] = _first(_int(_read(f"{d}/memory.current")) for d in chain)
    out["oomKills"] = _first(_keyed(_read(f"{d}/memory.events"), "oom_kill") for d in chain)
    return out


def _v2_bytes(text: str | None) -> int | None:
    """memory.max: bytes, or ``max`` for unlimited."""
    return None if text is None or text == "max" else _int(text)


def _v2_cpu(text: str | None) -> float | None:
    """cpu.max: ``"<quota> <period>"`` in microseconds, quota ``max`` for unlimited."""
    if not text:
        return None
    parts = text.split()
    quota = _int(parts[0])
    period = _int(parts[1]) if len(parts) > 1 else 100_000  # the kernel's default period
    if quota is None or not period or quota <= 0:
        return None
    return quota / period


# --- cgroup v1 --------------------------------------------------------------------------------


def _v1(out: dict[str, Any], root: str, paths: dict[str, str]) -> dict[str, Any]:
    out["version"] = 1
    if "memory" in paths:
        mount = f"{root}/memory"
        chain = _chain(mount, paths["memory"], "memory.limit_in_bytes")
        if chain:
            here = chain[0]
            out["path"] = here
            out["memoryLimit"] = _smallest(
                _v1_bytes(_read(f"{d}/memory.limit_in_bytes")) for d in chain)
            out["memoryUsage"] = _int(_read(f"{here}/memory.usage_in_bytes"))
            # the oom_kill line exists since Linux 4.13
            out["oomKills"] = _keyed(_read(f"{here}/memory.oom_control"), "oom_kill")
    for mount in _v1_cpu_mounts(root, paths):
        chain = _chain(mount, paths["cpu"], "cpu.cfs_quota_us")
        if chain:
            out["cpuQuota"] = _smallest(_v1_cpu(d) for d in chain)
            break
    return out


def _v1_cpu_mounts(root: str, paths: dict[str, str]) -> list[str]:
    """Where the cpu controller may be mounted: alone, or co-mounted with cpuacct."""
    if "cpu" not in paths:
        return []
    return [f"{root}/{name}" for name in ("cpu", "cpu,cpuacct", "cpuacct,cpu")
            if os.path.isdir(f"{root}/{name}")]


def _v1_bytes(text: str | None) -> int | None:
    """memory.limit_in_bytes: bytes; no limit reads as about 2**63 (rounded to a page)."""
    value = _int(text)
    return None if value is None or value >= UNLIMITED_BYTES else value


def _v1_cpu(folder: str) -> float | None:
    """cpu.cfs_quota_us / cpu.cfs_period_us (microseconds); quota -1 for unlimited."""
    quota = _int(_read(f"{folder}/cpu.cfs_quota_us"))
    period = _int(_read(f"{folder}/cpu.cfs_period_us"))
    if quota is None or period is None or quota <= 0 or period <= 0:
        return None
    return quota / period


# --- shared -----------------------------------------------------------------------------------


def _read_proc_cgroup(path: str) -> dict[str, str] | None:
    """``/proc/<pid>/cgroup`` as {controllers: path}; v2's line has controllers ``""``."""
    text = _read(path)
    if text is None:
        return None
    entries: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            entries[parts[1]] = parts[2]
    return entries


def _chain(mount: str, path: str, marker: str) -> list[str]:
    """The cgroup's folder and its ancestors up to ``mount``, nearest first; ``[]`` if none.

    The cgroup's folder is the first that holds ``marker`` (a file every cgroup folder has),
    trying ``mount + path`` and then each parent: in a container the path shown is the host's
    while the container's files sit at the mount's root.
    """
    parts = [p for p in path.split("/") if p and p not in (".", "..")]
    for depth in range(len(parts), -1, -1):
        here = "/".join([mount, *parts[:depth]])
        if os.path.isfile(f"{here}/{marker}"):
            return ["/".join([mount, *parts[:d]]) for d in range(depth, -1, -1)]
    return []


def _smallest(values: Any) -> Any:
    """The tightest of the limits on the chain; ``None`` when none is set."""
    found = [v for v in values if v is not None]
    return min(found) if found else None


def _first(values: Any) -> Any:
    return next((v for v in values if v is not None), None)


def _keyed(text: str | None, key: str) -> int | None:
    """The value of ``key`` in a flat-keyed file such as ``memory.events``."""
    for line in (text or "").splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            return _int(value)
    return None


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except (OSError, UnicodeDecodeError):
        return None
