"""The cost of the GPU efficiency fields (GPM, PCIe, NVLink, memory health) per sample, on eight
fake H100s (``tests/fakes.py``, scenario ``eight_gpus``: GPM, NVLink and PCIe byte counters).

The GPU family is timed alone, CPU time around ``GpuCollector.collect`` of all eight, three ways
in one interpreter: without the efficiency fields (the readings before them), with them as
sampled (GPM's window computed at every sample, as at ``--interval`` 0.1 s and up, the slow
fields on their 2 s and 10 s cadences), and with every field read at every sample (the worst
case). Its budget is a tenth of the full sample's 1.5 ms, for eight GPUs.
"""

from __future__ import annotations

import time
from typing import Any

from ._util import FAKE_GPUS, Ctx, Row, median, run_worker, window

GAP_S = 0.002
BUDGET_S = 0.15e-3


def worker_gpus(samples: int) -> dict[str, Any]:
    from tests import fakes
    from tracklab.collectors import gpu_efficiency
    from tracklab.collectors._nvml import Nvml
    from tracklab.collectors.gpu import GpuCollector

    gpu_efficiency.GPM_MIN_WINDOW_S = 0.0  # type: ignore[misc]  # a window at every sample

    def timed(disable: bool = False, every: bool = False) -> float:
        fakes.use_scenario("eight_gpus")
        nvml = Nvml.open(module=fakes)
        assert nvml is not None
        c = GpuCollector(nvml)
        c.collect()
        if disable:
            for g in c._gpus or ():
                g.efficiency = None
        slow, counters = gpu_efficiency.SLOW_EVERY_S, gpu_efficiency.COUNTERS_EVERY_S
        if every:
            gpu_efficiency.SLOW_EVERY_S = gpu_efficiency.COUNTERS_EVERY_S = 0.0  # type: ignore[misc]
        tt, cpu = time.process_time, []
        try:
            with window():
                for _ in range(samples):
                    time.sleep(GAP_S)
                    c0 = tt()
                    c.collect({1})
                    cpu.append(tt() - c0)
        finally:
            gpu_efficiency.SLOW_EVERY_S, gpu_efficiency.COUNTERS_EVERY_S = slow, counters  # type: ignore[misc]
            c.close()
        return sum(cpu) / samples

    base = timed(disable=True)
    return {"base_s": base, "sampled_s": timed(), "every_s": timed(every=True)}


def bench(ctx: Ctx) -> list[Row]:
    n = ctx.scale(1000, 100)
    runs = []
    for i in range(ctx.reps):
        ctx.log(f"gpu: rep {i + 1}/{ctx.reps} ({n} samples of 8 fake H100s, three ways)")
        runs.append(run_worker("bench_gpu.gpus", {"samples": n}, extra_env=FAKE_GPUS))
    base, sampled, every = (median([r[k] for r in runs]) for k in ("base_s", "sampled_s",
                                                                   "every_s"))
    added = sampled - base
    prof = ("worker", "bench_gpu.gpus", {"samples": n}, FAKE_GPUS)
    return [
        Row("gpu", "efficiency fields' CPU per sample, 8 fake H100s (GPM window every sample)",
            f"{added * 1e3:.3f} ms  (GPU family {base * 1e3:.3f} -> {sampled * 1e3:.3f} ms)",
            f"<= {BUDGET_S * 1e3:.2f} ms", added <= BUDGET_S,
            {"base_s": base, "sampled_s": sampled, "added_s": added}, prof),
        Row("gpu", "  every field at every sample (worst case)",
            f"{(every - base) * 1e3:.3f} ms added", "", None, {"every_s": every}),
    ]
