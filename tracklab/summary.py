"""The data behind ``tracklab show``: one plain dict per run, built from running statistics.

Display names and units live here (data), formatting lives in the CLI's renderer.
"""

from __future__ import annotations

from typing import Any

from .context import context_summary
from .fleet import fleet_summary
from .runs import RunView

# (path, label, unit): unit is "%", "B", "B/s", "1/s", "°C", "W", "J", "MHz" or "" (a count)
SYSTEM_ROWS: list[tuple[str, str, str]] = [
    ("cpu.overall", "CPU (all cores)", "%"),
    ("cpu.loadAverage.0", "load average (1 min)", ""),
    ("memory.usage", "memory", "%"),
    ("memory.used", "memory used", "B"),
    ("memory.swap.used", "swap used", "B"),
    ("disk.usage", "disk (store's filesystem)", "%"),
    ("disk.ioRead", "disk read", "B/s"),
    ("disk.ioWrite", "disk write", "B/s"),
    ("disk.iops", "disk IOPS", "1/s"),
    ("network.bytesIn", "network in", "B/s"),
    ("network.bytesOut", "network out", "B/s"),
    ("network.connections", "connections", ""),
    ("process.cpu", "process tree CPU (of one core)", "%"),
    ("process.rss", "process tree RSS", "B"),
    ("process.uss", "process tree USS", "B"),
    ("process.count", "process tree processes", ""),
    ("process.threads", "process tree threads", ""),
    ("process.readBytes", "process tree read", "B/s"),
    ("process.writeBytes", "process tree write", "B/s"),
    ("process.openFiles", "process tree open files", ""),
    # issue 6: the cgroup's own figures; its percentages are against its limits (see show)
    ("container.memoryWorkingSet", "container memory (working set)", "B"),
    ("container.memoryPercent", "container memory (of its limit)", "%"),
    ("container.cpuPercent", "container CPU (of its quota)", "%"),
    ("container.cpuThrottled", "container CPU throttled (periods)", "%"),
    ("cpu.frequency", "CPU frequency (mean of cores)", "MHz"),
    ("energy.cpu", "CPU package energy (RAPL)", "J"),
    ("energy.gpu", "GPU energy (the run's GPUs)", "J"),
]

GPU_ROWS: list[tuple[str, str, str]] = [
    ("utilization", "utilization", "%"),
    ("memory.used", "memory used", "B"),
    ("memory.percentage", "memory", "%"),
    ("treeMemory", "memory used by the run", "B"),
    ("treeUtilization", "SM use by the run", "%"),
    ("temperature", "temperature", "°C"),
    ("power", "power", "W"),
    ("fanSpeed", "fan", "%"),
    ("clocks.sm", "SM clock", "MHz"),
    ("energy", "energy", "J"),
    # how well it was used: GPM (Hopper and newer), the memory controller, the interconnects
    ("gpm.smActive", "SM active (GPM)", "%"),
    ("gpm.smOccupancy", "SM occupancy (GPM)", "%"),
    ("gpm.tensorActive", "tensor pipes active (GPM)", "%"),
    ("gpm.dramActive", "DRAM bandwidth, of peak (GPM)", "%"),
    ("gpm.fp16Active", "FP16 pipe active (GPM)", "%"),
    ("gpm.fp32Active", "FP32 pipe active (GPM)", "%"),
    ("gpm.fp64Active", "FP64 pipe active (GPM)", "%"),
    ("memoryUtilization", "memory controller busy", "%"),
    ("memoryTemperature", "memory temperature", "°C"),
    ("clocks.memory", "memory clock", "MHz"),
    ("pstate", "P-state", ""),
    ("pcie.txBytes", "PCIe out", "B/s"),
    ("pcie.rxBytes", "PCIe in", "B/s"),
    ("pcie.gen", "PCIe link generation", ""),
    ("pcie.genMax", "PCIe link generation, max", ""),
    ("pcie.width", "PCIe link width (lanes)", ""),
    ("pcie.widthMax", "PCIe link width, max", ""),
    ("nvlink.txBytes", "NVLink out", "B/s"),
    ("nvlink.rxBytes", "NVLink in", "B/s"),
    ("nvlink.crcErrors", "NVLink CRC errors", ""),
    ("nvlink.replayErrors", "NVLink replay errors", ""),
    ("nvlink.recoveryErrors", "NVLink recovery errors", ""),
    ("encoderUtilization", "encoder", "%"),
    ("decoderUtilization", "decoder", "%"),
    ("remappedRows.uncorrectable", "remapped rows (uncorrectable errors)", ""),
    ("remappedRows.correctable", "remapped rows (correctable errors)", ""),
    ("retiredPages", "retired pages", ""),
]
# per InfiniBand/RoCE port k: network.infiniband.<k>.<field>
IB_ROWS: list[tuple[str, str, str]] = [
    ("txBytes", "out", "B/s"),
    ("rxBytes", "in", "B/s"),
    ("txWait", "transmit waits", "1/s"),
    ("linkDowned", "link downed (count)", ""),
    ("symbolErrors", "symbol errors", ""),
]


def summarize(view: RunView) -> dict[str, Any]:
    """Everything ``show`` prints, as data: info, system rows, per-GPU rows, training metrics."""
    info = view.info
    stats = view.system_summary()
    system = [dict(path=p, label=label, unit=unit, **stats[p])
              for p, label, unit in SYSTEM_ROWS if p in stats]
    ports = sorted({int(p.split(".")[2]) for p in stats if p.startswith("network.infiniband.")
                    and p.split(".")[2].isdigit()})
    system += [dict(path=f"network.infiniband.{k}.{f}", label=f"InfiniBand/RoCE port {k} {label}",
                    unit=unit, **stats[f"network.infiniband.{k}.{f}"])
               for k in ports for f, label, unit in IB_ROWS
               if f"network.infiniband.{k}.{f}" in stats]
    system += [dict(path=p, label=p, unit="", **s) for p, s in stats.items()
               if p.startswith("custom.")]
    gpu_ids = sorted({int(p.split(".")[1]) for p in stats if p.startswith("accelerators.")})
    gpus = []
    for g in gpu_ids:
        rows = [dict(path=f"accelerators.{g}.{p}", label=label, unit=unit,
                     **stats[f"accelerators.{g}.{p}"])
                for p, label, unit in GPU_ROWS if f"accelerators.{g}.{p}" in stats]
        gpus.append({"id": g, "rows": rows})
    names = {g.get("id"): g.get("name") for g in (info.get("system") or {}).get("gpus", [])}
    for gpu in gpus:
        gpu["name"] = names.get(gpu["id"])
    from .diagnose import diagnose
    from .diagnose_data import MAX_SAMPLES, read_samples, resources
    from .views import attach_trends  # sparklines: about 40 index seeks, whatever the run's size

    # issue 6: findings from the statistics and at most MAX_SAMPLES evenly spaced samples
    sampled = read_samples(view, MAX_SAMPLES)
    peaks = (info.get("summary") or {}).get("peaks") or {}
    return attach_trends(view, {
        "diagnosis": diagnose(info, stats, sampled),
        "resources": resources(info, stats, sampled),
        "energy": peaks.get("energy"),  # None until the run has ended
        "info": info,
        "samples": view.sample_count(),
        "system": system,
        "gpus": gpus,
        "metrics": view.metric_summary(),
        # a run across nodes: per-node rows, min/mean/max over nodes, stragglers (else None)
        "fleet": fleet_summary(view),
        # issue 8: summary values (metric lasts + run.summary), last lines if it ended badly
        **context_summary(view, info),
    })
