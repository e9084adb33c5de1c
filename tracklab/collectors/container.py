"""Container limits in every sample: the run's cgroup memory and CPU against their limits.

Limits change rarely (a ``docker update``, a Kubernetes resize), so the limit files, and which
files to poll, are found again at most every :data:`LIMITS_EVERY_S` seconds through
:func:`~tracklab.collectors.cgroup.read_limits`; each sample then reads only the counters that
move: memory usage (and, under a memory limit, ``memory.stat`` for the working set), the OOM-kill
counter, and under a CPU quota the cgroup's CPU time and throttling counters. That is two small
file reads a sample without limits and five with both.

Which base a percentage uses:

- ``memoryPercent`` is the cgroup's *working set* (usage less inactive page cache, as
  ``docker stats`` and the kubelet count it) against the tightest memory limit on the way up.
  Raw usage includes page cache the kernel drops before it OOM-kills anything, so a job that
  streams its dataset through the cache would read 100 % all along.
- ``cpuPercent`` is the CPU time of the cgroup the run is in (every process of the container,
  the sampler included, which is what the quota throttles), per second of wall time, against
  the quota in cores. It can pass 100 for a moment: the kernel enforces the quota per period.
  Not the process tree's CPU (other processes in the container eat the same quota) and not the
  host's (whose cores the container cannot have).
- ``cpuThrottled`` is the share of the scheduler's enforcement periods (100 ms by default) in
  the interval in which the cgroup holding the tightest quota was throttled.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from tracklab.collectors.cgroup import (
    _chain,
    _int,
    _keyed,
    _read,
    _read_proc_cgroup,
    _v1_cpu,
    _v1_cpu_mounts,
    _v2_cpu,
    read_limits,
    usage_against_limit,
)

LIMITS_EVERY_S = 10.0  # limit files and the files to poll are found again at most this often

FIELDS = ("version", "memoryLimit", "memoryUsage", "memoryWorkingSet", "memoryPercent",
          "cpuQuota", "cpuPercent", "cpuThrottled", "oomKills")


class _Files:
    """What a sample reads, found at each refresh of the limits (``None``: not readable)."""

    def __init__(self) -> None:
        self.memory_usage: str | None = None  # bytes
        self.memory_stat: str | None = None  # for inactive page cache
        self.inactive_key = "inactive_file"  # v1: total_inactive_file (the whole subtree)
        self.events: str | None = None  # the file and key holding the OOM-kill counter
        self.events_key = "oom_kill"
        self.cpu_usage: str | None = None  # v2: cpu.stat (usage_usec); v1: cpuacct.usage (ns)
        self.cpu_usage_scale = 1e-6  # to seconds
        self.cpu_throttle: str | None = None  # cpu.stat of the cgroup holding the quota

    def paths(self) -> list[str]:
        return [p for p in (self.memory_usage, self.memory_stat, self.events, self.cpu_usage,
                            self.cpu_throttle) if p]


class _Poll:
    """Counter files kept open and read with ``pread`` at offset 0, which makes cgroupfs and
    sysfs produce the file afresh: a twentieth of the cost of open, read and close (measured:
    1.5 us against 20 us a file), which matters at ``--interval 0.1``."""

    def __init__(self) -> None:
        self._fds: dict[str, int] = {}

    def read(self, path: str | None) -> str | None:
        if path is None:
            return None
        fd = self._fds.get(path)
        try:
            if fd is None:
                fd = self._fds[path] = os.open(path, os.O_RDONLY)  # not inherited (PEP 446)
            return os.pread(fd, 65536, 0).decode("ascii", "replace").strip()
        except OSError:  # the file or the cgroup went away (ENOENT, ENODEV): open again next time
            self._drop(path)
            return None

    def keep(self, paths: Any) -> None:
        for path in set(self._fds) - set(paths):
            self._drop(path)

    def _drop(self, path: str) -> None:
        fd = self._fds.pop(path, None)
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass


class ContainerCollector:
    """The ``container`` section of a snapshot.

    Args:
        root_pid: the process whose cgroup is read; ``None`` reads the calling process's own.
            When that process is gone (its ``/proc`` entry with it), the files already found
            are still read, so the sample after a child's death still counts its OOM kill.
        proc_root: where ``/proc`` is mounted (tests pass a recorded tree).
        cgroup_root: where the cgroup file systems are mounted.
        clock: monotonic seconds (tests pass a fake one).

    The constructor reads the limits and a first CPU-time reading, so the first :meth:`collect`
    already has a rate.
    """

    def __init__(self, root_pid: int | None = None, proc_root: str = "/proc",
                 cgroup_root: str = "/sys/fs/cgroup",
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._pid: int | str = "self" if root_pid is None else int(root_pid)
        self._proc_root = proc_root
        self._cgroup_root = cgroup_root
        self._clock = clock
        self._limits: dict[str, Any] | None = None
        self._files = _Files()
        self._poll = _Poll()
        self._refreshed_at: float | None = None
        self._cpu_last: tuple[float, float | None, int | None, int | None] | None = None
        self._refresh(clock())
        if self._limits is not None and self._limits["cpuQuota"] is not None:
            self._cpu_last = (clock(), *self._cpu_counters())

    def collect(self) -> dict[str, Any] | None:
        """One reading.

        Returns:
            ``None`` when no cgroup is readable (not Linux, or ``/proc`` and ``/sys/fs/cgroup``
            hidden). Else ``version`` (1 or 2), ``memoryLimit`` (bytes, ``None`` when
            unlimited), ``memoryUsage`` (bytes, page cache included), ``memoryWorkingSet``
            (bytes; only under a memory limit), ``memoryPercent`` (working set against the
            limit), ``cpuQuota`` (cores, ``None`` when unlimited), ``cpuPercent`` (the cgroup's
            CPU time against the quota), ``cpuThrottled`` (percent of periods throttled) and
            ``oomKills`` (processes the kernel OOM-killed in the cgroup since it was created).
            A figure that cannot be read is ``None``, as are the percentages without a limit
            and the rates on the first reading.
        """
        now = self._clock()
        if self._refreshed_at is None or now - self._refreshed_at >= LIMITS_EVERY_S:
            self._refresh(now)
        lim = self._limits
        if lim is None:
            return None
        f = self._files
        read = self._poll.read
        usage = _int(read(f.memory_usage))
        limit = lim["memoryLimit"]
        working = None
        if limit is not None and usage is not None:
            inactive = _stat_value(read(f.memory_stat), f.inactive_key)
            working = usage if inactive is None else max(0, usage - inactive)
        quota = lim["cpuQuota"]
        cpu_pct = throttled = None
        if quota is not None:
            cpu_pct, throttled = self._cpu_rates(now, quota)
        return {
            "version": lim["version"],
            "memoryLimit": limit,
            "memoryUsage": usage,
            "memoryWorkingSet": working,
            "memoryPercent": usage_against_limit(working, limit),
            "cpuQuota": quota,
            "cpuPercent": cpu_pct,
            "cpuThrottled": throttled,
            "oomKills": _keyed(read(f.events), f.events_key) if f.events else None,
        }

    # -- internals ------------------------------------------------------------------------------

    def _refresh(self, now: float) -> None:
        self._refreshed_at = now
        lim = read_limits(self._pid, self._proc_root, self._cgroup_root)
        if lim["version"] is None:
            return  # gone, or never readable: keep what was found before (or stay None)
        files = _find_files(lim, self._pid, self._proc_root, self._cgroup_root)
        if self._limits is not None and files.cpu_usage != self._files.cpu_usage:
            self._cpu_last = None  # another counter: no rate across the change
        self._limits, self._files = lim, files
        self._poll.keep(files.paths())

    def close(self) -> None:
        """Close the files kept open; a later :meth:`collect` opens them again."""
        self._poll.keep(())

    def _cpu_counters(self) -> tuple[float | None, int | None, int | None]:
        """(CPU seconds of the cgroup, enforcement periods, throttled periods)."""
        f = self._files
        seconds = None
        if f.cpu_usage is not None:
            if f.cpu_usage.endswith("cpu.stat"):
                raw = _stat_value(self._poll.read(f.cpu_usage), "usage_usec")
            else:
                raw = _int(self._poll.read(f.cpu_usage))
            seconds = None if raw is None else raw * f.cpu_usage_scale
        periods = throttled = None
        if f.cpu_throttle is not None:
            text = self._poll.read(f.cpu_throttle)
            periods, throttled = _keyed(text, "nr_periods"), _keyed(text, "nr_throttled")
        return seconds, periods, throttled

    def _cpu_rates(self, now: float, quota: float) -> tuple[float | None, float | None]:
        seconds, periods, throttled = self._cpu_counters()
        last, self._cpu_last = self._cpu_last, (now, seconds, periods, throttled)
        if last is None or now <= last[0]:
            return None, None
        dt = now - last[0]
        pct = None
        if seconds is not None and last[1] is not None and seconds >= last[1]:
            pct = round((seconds - last[1]) / dt / quota * 100.0, 2)
        share = None
        if None not in (periods, throttled, last[2], last[3]):
            dp = periods - last[2]  # type: ignore[operator]
            dn = throttled - last[3]  # type: ignore[operator]
            share = round(100.0 * dn / dp, 2) if dp > 0 and dn >= 0 else (0.0 if dp == 0 else None)
        return pct, share


def _find_files(lim: dict[str, Any], pid: int | str, proc_root: str, cgroup_root: str) -> _Files:
    f = _Files()
    if lim["version"] == 2:
        chain = _up_to(lim["path"], cgroup_root)
        here = next((d for d in chain if os.path.isfile(f"{d}/memory.current")), None)
        if here is not None:
            f.memory_usage, f.memory_stat = f"{here}/memory.current", f"{here}/memory.stat"
        f.events = next((f"{d}/memory.events" for d in chain
                         if os.path.isfile(f"{d}/memory.events")), None)
        f.cpu_usage = next((f"{d}/cpu.stat" for d in chain if os.path.isfile(f"{d}/cpu.stat")),
                           None)
        binding = _binding(chain, lambda d: _v2_cpu(_read(f"{d}/cpu.max")))
        if binding is not None:
            f.cpu_throttle = f"{binding}/cpu.stat"
        return f
    here = lim["path"]
    if here is not None:  # the memory controller's folder
        f.memory_usage, f.memory_stat = f"{here}/memory.usage_in_bytes", f"{here}/memory.stat"
        f.inactive_key = "total_inactive_file"
        f.events = f"{here}/memory.oom_control"
    paths = {c: p for controllers, p in (_read_proc_cgroup(f"{proc_root}/{pid}/cgroup") or {}).items()
             if controllers for c in controllers.split(",")}
    for mount in _v1_cpu_mounts(cgroup_root, paths):
        chain = _chain(mount, paths["cpu"], "cpu.cfs_quota_us")
        binding = _binding(chain, _v1_cpu)
        if binding is not None:
            f.cpu_throttle = f"{binding}/cpu.stat"
            break
    if "cpuacct" in paths:
        for name in ("cpuacct", "cpu,cpuacct", "cpuacct,cpu"):
            chain = _chain(f"{cgroup_root}/{name}", paths["cpuacct"], "cpuacct.usage")
            if chain:
                f.cpu_usage, f.cpu_usage_scale = f"{chain[0]}/cpuacct.usage", 1e-9
                break
    return f


def _up_to(path: str | None, root: str) -> list[str]:
    """``path`` and its ancestors down to ``root``, nearest first."""
    if path is None:
        return []
    out = [path]
    root = root.rstrip("/") or "/"
    while len(path) > len(root):
        path = os.path.dirname(path)
        out.append(path)
    return out


def _binding(chain: list[str], quota_of: Callable[[str], float | None]) -> str | None:
    """The folder on the chain with the smallest CPU quota, ``None`` when none is set."""
    best: tuple[float, str] | None = None
    for d in chain:
        q = quota_of(d)
        if q is not None and (best is None or q < best[0]):
            best = (q, d)
    return None if best is None else best[1]


def _stat_value(text: str | None, key: str) -> int | None:
    """One value of a flat-keyed stat file, found without splitting the whole file."""
    if not text:
        return None
    start = 0 if text.startswith(key + " ") else text.find("\n" + key + " ") + 1
    if start == 0 and not text.startswith(key + " "):
        return None
    end = text.find("\n", start)
    return _int(text[start + len(key) + 1:end if end >= 0 else None])
