"""Diagnosis of a run: a few findings, each with the evidence behind it.

Every rule reads the run's statistics (min, max, mean and last of each sampled path, kept while
the run is recorded) or at most :data:`~tracklab.read.diagnose_data.MAX_SAMPLES` samples evenly spaced
in time (read by :mod:`tracklab.read.diagnose_data`), so diagnosing a day-long run costs what a
minute-long one does. "X % of the run" is the share of those samples, each standing for an equal
slice of time; rules that count shares need :data:`MIN_SAMPLES`.

Rules, in the order they are reported (severity first):

- ``oom-killed`` (error): the run's status is ``oom-killed`` (its child died of SIGKILL while the
  cgroup's OOM-kill counter rose).
- ``gpu-lost`` (error): a GPU reported lost (NVML ``GPU_IS_LOST``, often Xid 79) during the run.
- ``oom-kill`` (warning): the cgroup's OOM-kill counter rose during a run that was not itself
  OOM-killed: a worker (a DataLoader process) was killed and the run went on.
- ``memory-limit`` (warning): peak memory reached :data:`MEMORY_NEAR_PCT` (90 %) of the container
  limit (the cgroup's working set: usage less inactive page cache), or, without a limit, of the
  host's RAM (host-wide memory in use).
- ``swap`` (warning): swap in use moved by :data:`SWAP_MOVED_BYTES` (64 MiB) or more during the
  run (swap already in use before the run and left alone says nothing about it).
- ``gpu-not-given`` (warning): the run's processes held memory on a GPU that
  ``CUDA_VISIBLE_DEVICES`` did not give it. Needs per-process attribution (see ``gpu-unattributed``).
- ``input-bound`` (warning): a GPU the run used was idle (utilization under
  :data:`IDLE_UTIL_PCT`, 10 %) in :data:`IDLE_SHARE_PCT` (30 %) or more of the run, while the
  process tree's CPU, in the median of those idle samples, was at least :data:`BUSY_CORE_PCT`
  (80 %) of one core: the GPU waited on work the CPU was doing (data loading, augmentation,
  tokenization). A GPU "the run used" holds memory of the process tree; without attribution,
  a GPU given to the run that was busy at some point.
- ``gpu-throttled`` (warning for thermal and hardware slowdown, info for the power cap, which a
  fully loaded GPU commonly reaches by design): a clock throttle reason was set in
  :data:`THROTTLE_SHARE_PCT` (10 %) or more of the samples of a GPU given to the run.
- ``gpu-memory-full`` (warning): a GPU given to the run peaked at :data:`GPU_MEMORY_NEAR_PCT`
  (95 %) of its memory or more.
- ``cpu-throttled`` (warning): the container's CPU quota throttled the cgroup in
  :data:`CPU_THROTTLED_PCT` (25 %) or more of the scheduler's periods, on average.
- ``gpu-unattributed`` (info): NVML's pids are not in this pid namespace (a container), so GPU
  memory could not be matched to the run's processes; ``docker run --pid=host`` fixes that.
- ``gpu-busy-sm-idle``, ``pcie-downtrained``, ``nvlink-errors`` (warnings),
  ``tensor-cores-unused``, ``memory-bandwidth-bound`` (info): see :mod:`tracklab.read.diagnose_gpu`.
"""

from __future__ import annotations

import statistics
from typing import Any

from tracklab.read.diagnose_data import gpus_of as _gpus
from tracklab.read.diagnose_data import read_samples, summarize_samples
from tracklab.read.diagnose_data import stat_of as _stat
from tracklab.read.diagnose_gpu import RULES as _GPU_RULES
from tracklab.textfmt import size

MIN_SAMPLES = 5  # fewer samples than this: no rule that counts a share of the run
IDLE_UTIL_PCT = 10.0  # GPU utilization under this is idle
IDLE_SHARE_PCT = 30.0  # idle this share of the run or more ...
BUSY_CORE_PCT = 80.0  # ... while the process tree kept at least this much of one core busy
MEMORY_NEAR_PCT = 90.0  # of the container limit, or of host RAM
SWAP_MOVED_BYTES = 64 * 2**20
THROTTLE_SHARE_PCT = 10.0
GPU_MEMORY_NEAR_PCT = 95.0
CPU_THROTTLED_PCT = 25.0

SEVERITIES = ("error", "warning", "info")
_KINDS = (("thermal", "thermally throttled", ("sw_thermal", "hw_thermal"), "warning"),
          ("slowdown", "in hardware slowdown", ("hw_slowdown",), "warning"),
          ("power", "power-capped", ("sw_power_cap", "hw_power_brake"), "info"))


def diagnose(run: Any, system_summary: dict[str, dict[str, Any]] | None = None,
             samples: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """The findings about one run, most severe first.

    Args:
        run: the run's record (``RunView.info``: ``status``, ``started_at``, ``system``), or a
            :class:`~tracklab.read.runs.RunView`, whose statistics and :func:`read_samples` are then
            read (the two other arguments are ignored).
        system_summary: ``{path: {min, max, mean, last, count}}`` as
            ``RunView.system_summary()`` gives; built from ``samples`` when ``None``.
        samples: snapshots (API.md §4 format), oldest first, evenly spaced in time.

    Returns:
        ``[{rule, severity, message, evidence, figures}]``: ``message`` is the finding in one
        sentence, ``evidence`` the figures behind it in words, ``figures`` the same as numbers.
        ``[]`` when nothing is worth saying.
    """
    if hasattr(run, "system_summary"):
        info, stats, samples = run.info, run.system_summary(), read_samples(run)
    else:
        info, samples = run, list(samples or [])
        stats = system_summary if system_summary is not None else summarize_samples(samples)
    found: list[dict[str, Any]] = []
    for rule in _RULES:
        found.extend(rule(info, stats, samples))
    order = {s: i for i, s in enumerate(SEVERITIES)}
    return sorted(found, key=lambda f: order[f["severity"]])  # stable: rule order within


# -- the rules: each (info, stats, samples) -> findings ------------------------------------------

Stats = dict[str, dict[str, Any]]
Samples = list[dict[str, Any]]


def _oom_killed(info: dict[str, Any], stats: Stats, samples: Samples) -> list[dict[str, Any]]:
    if info.get("status") != "oom-killed":
        return []
    return [_finding("oom-killed", "error",
                     "the kernel's OOM killer ended the run: it ran out of memory",
                     _memory_evidence(info, stats), _memory_figures(stats))]


def _gpu_lost(info: dict[str, Any], stats: Stats, samples: Samples) -> list[dict[str, Any]]:
    out = []
    start = _start(info, samples)
    first: dict[int, dict[str, Any]] = {}
    for snap in samples:
        for g in _gpus(snap):
            if g.get("lost") and g.get("visible") is not False and g["id"] not in first:
                first[g["id"]] = {"at": snap.get("timestamp", 0) / 1000.0, "uuid": g.get("uuid")}
    for gid, f in sorted(first.items()):
        after = max(0.0, f["at"] - start)
        out.append(_finding(
            "gpu-lost", "error", f"GPU {gid} was lost during the run",
            f"NVML reported GPU {gid} ({f['uuid'] or 'unknown UUID'}) lost (GPU_IS_LOST, often "
            f"Xid 79: fallen off the bus) by {_clock(after)} into the run; its readings are null "
            "from then on. Check `dmesg` for Xid messages.",
            {"gpu": gid, "uuid": f["uuid"], "seconds_into_run": round(after, 1)}))
    return out


def _oom_kill(info: dict[str, Any], stats: Stats, samples: Samples) -> list[dict[str, Any]]:
    lo, hi = _stat(stats, "container.oomKills", "min"), _stat(stats, "container.oomKills", "max")
    if lo is None or hi is None or hi <= lo or info.get("status") == "oom-killed":
        return []
    n = int(hi - lo)
    status, code = info.get("status"), info.get("exit_code")
    # "went on" only when it did: a shell whose worker was killed exits 137 itself
    after = ", which went on" if status in ("finished", "running", None) else \
        f", and the run ended {status}" + ("" if code is None else f" (exit {code})")
    return [_finding("oom-kill", "warning",
                     f"{n} process{'es' if n > 1 else ''} of the run's cgroup "
                     f"{'were' if n > 1 else 'was'} OOM-killed during the run{after}",
                     f"the cgroup's OOM-kill counter went from {int(lo)} to {int(hi)}; a killed "
                     "DataLoader worker shows up this way. " + _memory_evidence(info, stats),
                     {"oom_kills": n, **_memory_figures(stats)})]


def _memory_limit(info: dict[str, Any], stats: Stats, samples: Samples) -> list[dict[str, Any]]:
    pct = _stat(stats, "container.memoryPercent", "max")
    limit = _stat(stats, "container.memoryLimit", "max")
    if pct is not None and limit:
        if pct < MEMORY_NEAR_PCT:
            return []
        return [_finding("memory-limit", "warning",
                         f"peak memory {pct:.0f}% of the container limit",
                         _memory_evidence(info, stats), _memory_figures(stats))]
    pct = _stat(stats, "memory.usage", "max")
    if pct is None or pct < MEMORY_NEAR_PCT:
        return []
    return [_finding("memory-limit", "warning", f"peak memory {pct:.0f}% of the host's RAM",
                     _memory_evidence(info, stats), _memory_figures(stats))]


def _swap(info: dict[str, Any], stats: Stats, samples: Samples) -> list[dict[str, Any]]:
    lo, hi = _stat(stats, "memory.swap.used", "min"), _stat(stats, "memory.swap.used", "max")
    if lo is None or hi is None or hi - lo < SWAP_MOVED_BYTES:
        return []
    return [_finding("swap", "warning", "swap used",
                     f"swap in use moved between {_size(lo)} and {_size(hi)} during the run; a "
                     "process whose memory is swapped out waits on the disk at every touch",
                     {"swap_min": lo, "swap_max": hi})]


def _gpu_not_given(info: dict[str, Any], stats: Stats, samples: Samples) -> list[dict[str, Any]]:
    given: set[int] = set()
    wrong: dict[int, list[int]] = {}  # gpu -> tree memory readings while not visible
    for snap in samples:
        for g in _gpus(snap):
            if g.get("visible") is True:
                given.add(g["id"])
            elif g.get("visible") is False and (g.get("treeMemory") or 0) > 0:
                wrong.setdefault(g["id"], []).append(g["treeMemory"])
    if not wrong:
        return []
    cvd = (info.get("system") or {}).get("cuda_visible_devices")
    names = ", ".join(map(str, sorted(given))) or "none"
    used = ", ".join(map(str, sorted(wrong)))
    hint = ""
    if cvd and all(p.strip().isdigit() for p in cvd.split(",")):
        hint = (" CUDA numbers GPUs fastest first unless CUDA_DEVICE_ORDER=PCI_BUS_ID, while "
                "nvidia-smi and tracklab number them in PCI bus order: set it, or give UUIDs.")
    held = "; ".join(f"GPU {gid}: up to {_size(max(v))} in {len(v)} of {len(samples)} samples"
                     for gid, v in sorted(wrong.items()))
    return [_finding("gpu-not-given", "warning",
                     f"run was given GPU {names} but used GPU {used}",
                     f"CUDA_VISIBLE_DEVICES={cvd!s}; the run's processes held memory on GPUs it "
                     f"was not given ({held}).{hint}",
                     {"given": sorted(given), "used": sorted(wrong),
                      "cuda_visible_devices": cvd})]


def _input_bound(info: dict[str, Any], stats: Stats, samples: Samples) -> list[dict[str, Any]]:
    out = []
    used = _used_gpus(samples)
    for gid in used:
        pairs = []  # (gpu utilization, process tree CPU) at the same instants
        for snap in samples:
            g = _gpu(snap, gid)
            cpu = (snap.get("process") or {}).get("cpu")
            if g is not None and g.get("utilization") is not None and cpu is not None:
                pairs.append((g["utilization"], cpu))
        if len(pairs) < MIN_SAMPLES:
            continue
        idle = [cpu for util, cpu in pairs if util < IDLE_UTIL_PCT]
        share = 100.0 * len(idle) / len(pairs)
        if share < IDLE_SHARE_PCT:
            continue
        cpu = statistics.median(idle)
        if cpu < BUSY_CORE_PCT:
            continue
        cores = _cores(info, stats)
        if cores and cpu >= 0.9 * cores * 100.0 and cores > 1:
            what = f"all {cores:g} of its cores ({cpu:.0f}% of one core)"
        elif cpu <= 130.0:
            what = f"{cpu:.0f}% of one core"
        else:
            what = f"{cpu:.0f}% of one core (about {cpu / 100.0:.1f} cores)"
        out.append(_finding(
            "input-bound", "warning",
            f"GPU {gid} idle {share:.0f}% of the run while the run's processes used {what}: "
            "likely input-bound",
            f"GPU {gid} utilization was under {IDLE_UTIL_PCT:.0f}% in {len(idle)} of "
            f"{len(pairs)} evenly spaced samples; in those, the process tree's CPU had a median "
            f"of {cpu:.0f}% of one core. More DataLoader workers, or moving preprocessing off "
            "the training loop, usually helps.",
            {"gpu": gid, "idle_share": round(share, 1), "tree_cpu_median": round(cpu, 1),
             "samples": len(pairs)}))
    return out


def _gpu_throttled(info: dict[str, Any], stats: Stats, samples: Samples) -> list[dict[str, Any]]:
    counts: dict[int, dict[str, int]] = {}
    seen: dict[int, int] = {}
    for snap in samples:
        for g in _gpus(snap):
            reasons = g.get("throttleReasons")
            if g.get("visible") is False or g.get("lost") or not isinstance(reasons, list):
                continue
            gid = g["id"]
            seen[gid] = seen.get(gid, 0) + 1
            c = counts.setdefault(gid, {})
            for kind, _, names, _ in _KINDS:
                if any(r in names for r in reasons):
                    c[kind] = c.get(kind, 0) + 1
    out = []
    for gid in sorted(counts):
        if seen[gid] < MIN_SAMPLES:
            continue
        for kind, words, names, severity in _KINDS:
            n = counts[gid].get(kind, 0)
            share = 100.0 * n / seen[gid]
            if share < THROTTLE_SHARE_PCT:
                continue
            temp = _stat(stats, f"accelerators.{gid}.temperature", "max")
            power = _stat(stats, f"accelerators.{gid}.power", "max")
            limit = _stat(stats, f"accelerators.{gid}.powerLimit", "last")
            detail = (f"peak {temp:.0f} °C" if temp is not None else "temperature unknown")
            if power is not None:
                detail += f", peak power {power:.0f} W" + (f" of a {limit:.0f} W limit"
                                                            if limit else "")
            note = (" A GPU at full load commonly runs at its power cap; a lowered limit "
                    "(nvidia-smi -pl) makes it slower." if kind == "power" else
                    " Check cooling and airflow; clocks drop while it lasts.")
            out.append(_finding(
                "gpu-throttled", severity, f"GPU {gid} {words} {share:.0f}% of the time",
                f"{' or '.join(names)} set in {n} of {seen[gid]} samples ({detail}).{note}",
                {"gpu": gid, "kind": kind, "share": round(share, 1), "samples": seen[gid],
                 "temperature_peak": temp, "power_peak": power}))
    return out


def _gpu_memory_full(info: dict[str, Any], stats: Stats, samples: Samples) -> list[dict[str, Any]]:
    out = []
    not_given = {g["id"] for snap in samples[-1:] for g in _gpus(snap)
                 if g.get("visible") is False}
    ids = sorted({int(p.split(".")[1]) for p in stats
                  if p.startswith("accelerators.") and p.endswith(".memory.percentage")})
    for gid in ids:
        pct = _stat(stats, f"accelerators.{gid}.memory.percentage", "max")
        if gid in not_given or pct is None or pct < GPU_MEMORY_NEAR_PCT:
            continue
        used = _stat(stats, f"accelerators.{gid}.memory.used", "max")
        total = _stat(stats, f"accelerators.{gid}.memory.total", "max")
        tree = _stat(stats, f"accelerators.{gid}.treeMemory", "max")
        ev = f"peak {_size(used)} of {_size(total)} ({pct:.1f}%)"
        if tree is not None:
            ev += f"; the run's processes held up to {_size(tree)}"
        ev += (". The next larger batch or sequence may fail with CUDA out of memory (PyTorch's "
               "caching allocator keeps freed blocks, so part of this may be its reserve).")
        out.append(_finding("gpu-memory-full", "warning",
                            f"GPU {gid} memory near full: peak {pct:.0f}%", ev,
                            {"gpu": gid, "percent_peak": pct, "used_peak": used, "total": total,
                             "tree_peak": tree}))
    return out


def _cpu_throttled(info: dict[str, Any], stats: Stats, samples: Samples) -> list[dict[str, Any]]:
    mean = _stat(stats, "container.cpuThrottled", "mean")
    if mean is None or mean < CPU_THROTTLED_PCT:
        return []
    quota = _stat(stats, "container.cpuQuota", "min")
    use = _stat(stats, "container.cpuPercent", "mean")
    ev = f"throttled in {mean:.0f}% of the scheduler's periods on average"
    if quota:
        ev += f"; the quota is {quota:g} core{'s' if quota != 1 else ''}"
    if use is not None:
        ev += f", of which the cgroup used {use:.0f}% on average"
    ev += ". Fewer worker processes or threads, or a larger quota, avoid the stalls."
    return [_finding("cpu-throttled", "warning",
                     f"CPU throttled by the container's quota {mean:.0f}% of the time", ev,
                     {"throttled_mean": round(mean, 1), "quota": quota, "cpu_percent_mean": use})]


def _gpu_unattributed(info: dict[str, Any], stats: Stats, samples: Samples
                      ) -> list[dict[str, Any]]:
    ids = sorted({g["id"] for snap in samples for g in _gpus(snap)
                  if g.get("attribution") == "unattributed"})
    if not ids:
        return []
    return [_finding("gpu-unattributed", "info",
                     "GPU memory could not be matched to the run's processes",
                     f"NVML reported processes on GPU {', '.join(map(str, ids))} whose pids are "
                     "not in this pid namespace (a container sees the host's pids); run the "
                     "container with --pid=host to attribute GPU memory to the run",
                     {"gpus": ids})]


_RULES = (_oom_killed, _gpu_lost, _oom_kill, _memory_limit, _swap, _gpu_not_given,
          _input_bound, _gpu_throttled, _gpu_memory_full, _cpu_throttled, _gpu_unattributed,
          *_GPU_RULES)


# -- helpers ----------------------------------------------------------------------------------------


def _finding(rule: str, severity: str, message: str, evidence: str,
             figures: dict[str, Any]) -> dict[str, Any]:
    return {"rule": rule, "severity": severity, "message": message, "evidence": evidence,
            "figures": figures}


def _gpu(snap: dict[str, Any], gid: int) -> dict[str, Any] | None:
    return next((g for g in _gpus(snap) if g["id"] == gid and not g.get("lost")), None)


def _used_gpus(samples: Samples) -> list[int]:
    """GPUs holding memory of the process tree; without attribution, GPUs given to the run
    that were busy at some point."""
    attributed = any(g.get("attribution") == "pid" for s in samples for g in _gpus(s))
    ids: set[int] = set()
    for snap in samples:
        for g in _gpus(snap):
            if attributed:
                if (g.get("treeMemory") or 0) > 0:
                    ids.add(g["id"])
            elif g.get("visible") is not False and (g.get("utilization") or 0) >= IDLE_UTIL_PCT:
                ids.add(g["id"])
    return sorted(ids)


def _cores(info: dict[str, Any], stats: Stats) -> float | None:
    """Cores the run could use: the container's quota, else the host's logical CPUs."""
    quota = _stat(stats, "container.cpuQuota", "min")
    return quota or (info.get("system") or {}).get("cpu_count")


def _start(info: dict[str, Any], samples: Samples) -> float:
    if info.get("started_at"):
        return float(info["started_at"])
    return samples[0].get("timestamp", 0) / 1000.0 if samples else 0.0


def _memory_figures(stats: Stats) -> dict[str, Any]:
    return {"container_percent_peak": _stat(stats, "container.memoryPercent", "max"),
            "container_limit": _stat(stats, "container.memoryLimit", "max"),
            "container_working_set_peak": _stat(stats, "container.memoryWorkingSet", "max"),
            "host_percent_peak": _stat(stats, "memory.usage", "max"),
            "tree_rss_peak": _stat(stats, "process.rss", "max")}


def _memory_evidence(info: dict[str, Any], stats: Stats) -> str:
    f = _memory_figures(stats)
    parts = []
    if f["container_limit"]:
        ws = f["container_working_set_peak"]
        parts.append(f"the container's working set peaked at {_size(ws)} of its "
                     f"{_size(f['container_limit'])} limit"
                     + (f" ({f['container_percent_peak']:.0f}%)"
                        if f["container_percent_peak"] is not None else ""))
    if f["host_percent_peak"] is not None:
        total = _stat(stats, "memory.total", "last") or (info.get("system") or {}).get(
            "memory_total")
        parts.append(f"host memory in use peaked at {f['host_percent_peak']:.0f}%"
                     + (f" of {_size(total)}" if total else ""))
    if f["tree_rss_peak"] is not None:
        parts.append(f"the run's process tree peaked at {_size(f['tree_rss_peak'])} RSS")
    text = ("; ".join(parts) + ".") if parts else "no memory samples."
    return text[0].upper() + text[1:]


def _size(v: Any) -> str:
    return "?" if v is None else size(float(v))


def _clock(seconds: float) -> str:
    """``1:02:03``; under a minute as seconds (``0.9 s``), which the clock would show as 0."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"
