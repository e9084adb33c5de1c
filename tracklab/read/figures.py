"""The figures a run's samples hold, by path, with their display names and units: the rows of
``show``'s system and GPU tables, the labels of trends and charts. Data only; the CLI formats.
"""

from __future__ import annotations

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
    # the cgroup's own figures; its percentages are against its limits (see show)
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
