"""Diagnosis rules on how well the GPUs were used, beyond "a kernel ran" (NVML's utilization).

They read the efficiency fields of the samples (GPM on Hopper and newer, the PCIe link) and the
NVLink error counters' statistics; :mod:`tracklab.read.diagnose` runs them with its own rules and
documents the format. Each looks only at GPUs given to the run, not lost:

- ``gpu-busy-sm-idle`` (warning): utilization at least :data:`BUSY_UTIL_PCT` (90 %) while SM
  activity (GPM) was under :data:`IDLE_SM_PCT` (20 %), in :data:`BUSY_IDLE_SHARE_PCT` (30 %) or
  more of the samples: kernels "ran" but hardly used the SMs, the shape of a rank spinning in an
  NCCL collective (a peer that never arrives) or a loop of tiny kernels bound by host syncs.
- ``tensor-cores-unused`` (info): in the samples where SM activity was at least
  :data:`SM_BUSY_PCT` (50 %), at least :data:`MIN_SAMPLES` of them and 30 % of the run, the
  tensor pipes' median activity was under :data:`TENSOR_IDLE_PCT` (2 %): matrix math ran on the
  FP32 pipes (no mixed precision or TF32).
- ``pcie-downtrained`` (warning): while the GPU was busy (utilization >= 50 %), its PCIe link
  ran below the generation or width the GPU and slot allow in half the samples or more (an idle
  GPU lowers the generation to save power, so idle samples do not count).
- ``nvlink-errors`` (warning): an NVLink CRC, replay or recovery error counter rose during the
  run.
- ``memory-bandwidth-bound`` (info): DRAM bandwidth (GPM) at least :data:`DRAM_BOUND_PCT`
  (60 %) of peak in 30 % or more of the busy samples while the tensor pipes' median stayed under
  30 %; without GPM, the memory controller busy (NVML ``utilization.memory``) at least
  :data:`MEMORY_BUSY_PCT` (80 %) of the time in as many samples.
"""

from __future__ import annotations

import statistics
from typing import Any

from tracklab.read.diagnose_data import gpus_of as _gpus
from tracklab.read.diagnose_data import stat_of as _stat

MIN_SAMPLES = 5
BUSY_UTIL_PCT = 90.0
IDLE_SM_PCT = 20.0
BUSY_IDLE_SHARE_PCT = 30.0
SM_BUSY_PCT = 50.0
TENSOR_IDLE_PCT = 2.0
LINK_BUSY_UTIL_PCT = 50.0
LINK_DOWN_SHARE_PCT = 50.0
DRAM_BOUND_PCT = 60.0
MEMORY_BUSY_PCT = 80.0
SHARE_PCT = 30.0
_GT_PER_LANE = {1: 2.5, 2: 5.0, 3: 8.0, 4: 16.0, 5: 32.0, 6: 64.0, 7: 128.0}  # GT/s per lane

Stats = dict[str, dict[str, Any]]
Samples = list[dict[str, Any]]


def _finding(rule: str, severity: str, message: str, evidence: str,
             figures: dict[str, Any]) -> dict[str, Any]:
    return {"rule": rule, "severity": severity, "message": message, "evidence": evidence,
            "figures": figures}


def _series(samples: Samples) -> dict[int, list[dict[str, Any]]]:
    """Each given, not lost GPU's readings, in time order."""
    out: dict[int, list[dict[str, Any]]] = {}
    for snap in samples:
        for g in _gpus(snap):
            if g.get("visible") is not False and not g.get("lost"):
                out.setdefault(g["id"], []).append(g)
    return out


def _num(g: dict[str, Any], part: str, key: str) -> float | None:
    v: Any = (g.get(part) or {}).get(key)
    return float(v) if type(v) in (int, float) and v == v else None


def _pct(v: Any) -> float | None:
    return float(v) if type(v) in (int, float) and v == v else None


def busy_sm_idle(info: dict[str, Any], stats: Stats, samples: Samples) -> list[dict[str, Any]]:
    out = []
    for gid, readings in sorted(_series(samples).items()):
        pairs = [(util, sm) for g in readings
                 if (util := _pct(g.get("utilization"))) is not None
                 and (sm := _num(g, "gpm", "smActive")) is not None]
        if len(pairs) < MIN_SAMPLES:
            continue
        hit = [sm for util, sm in pairs if util >= BUSY_UTIL_PCT and sm < IDLE_SM_PCT]
        share = 100.0 * len(hit) / len(pairs)
        if share < BUSY_IDLE_SHARE_PCT:
            continue
        sm = statistics.median(hit)
        out.append(_finding(
            "gpu-busy-sm-idle", "warning",
            f"GPU {gid} busy but its SMs idle {share:.0f}% of the run: a stuck collective or "
            "a synchronisation-bound loop",
            f"utilization was at least {BUSY_UTIL_PCT:.0f}% while SM activity (GPM) was under "
            f"{IDLE_SM_PCT:.0f}% in {len(hit)} of {len(pairs)} evenly spaced samples (median SM "
            f"activity {sm:.1f}%). NVML's utilization counts time in which any kernel ran, so "
            "a kernel spinning in an NCCL collective, waiting for a rank that never arrives, "
            "reads 100%, as does a loop of tiny kernels each followed by a host sync. Check "
            "that every rank is alive (py-spy dump, NCCL_DEBUG=INFO), or profile the step.",
            {"gpu": gid, "share": round(share, 1), "sm_active_median": round(sm, 1),
             "samples": len(pairs)}))
    return out


def tensor_unused(info: dict[str, Any], stats: Stats, samples: Samples) -> list[dict[str, Any]]:
    out = []
    for gid, readings in sorted(_series(samples).items()):
        gpm = [g["gpm"] for g in readings if _num(g, "gpm", "smActive") is not None]
        busy = [m for m in gpm if m["smActive"] >= SM_BUSY_PCT
                and type(m.get("tensorActive")) in (int, float)]
        if len(busy) < MIN_SAMPLES or 100.0 * len(busy) / len(gpm) < SHARE_PCT:
            continue
        tensor = statistics.median(m["tensorActive"] for m in busy)
        if tensor >= TENSOR_IDLE_PCT:
            continue
        fp32 = [m["fp32Active"] for m in busy if type(m.get("fp32Active")) in (int, float)]
        sm = statistics.median(m["smActive"] for m in busy)
        ev = (f"in {len(busy)} of {len(gpm)} samples SM activity was at least "
              f"{SM_BUSY_PCT:.0f}% (median {sm:.0f}%) while the tensor pipes' median was "
              f"{tensor:.1f}%")
        if fp32:
            ev += f" and the FP32 pipe's {statistics.median(fp32):.0f}%"
        ev += (". The math runs on the FP32 pipes: mixed precision (torch.autocast with "
               "bfloat16) or TF32 matmuls (torch.backends.cuda.matmul.allow_tf32 = True) put it "
               "on the tensor cores, often several times faster.")
        out.append(_finding("tensor-cores-unused", "info",
                            f"GPU {gid} busy without its tensor cores", ev,
                            {"gpu": gid, "sm_active_median": round(sm, 1),
                             "tensor_active_median": round(tensor, 2),
                             "samples": len(busy)}))
    return out


def _link(gen: float, width: float) -> str:
    return f"Gen{gen:.0f} x{width:.0f}"


def pcie_downtrained(info: dict[str, Any], stats: Stats, samples: Samples
                     ) -> list[dict[str, Any]]:
    out = []
    for gid, readings in sorted(_series(samples).items()):
        links: list[tuple[float, float, float, float]] = []
        for g in readings:
            vals = [_num(g, "pcie", k) for k in ("gen", "genMax", "width", "widthMax")]
            util = _pct(g.get("utilization"))
            a, b, c, d = vals
            if (a is not None and b is not None and c is not None and d is not None
                    and util is not None and util >= LINK_BUSY_UTIL_PCT):
                links.append((a, b, c, d))
        if len(links) < MIN_SAMPLES:
            continue
        down = [v for v in links if v[0] < v[1] or v[2] < v[3]]
        share = 100.0 * len(down) / len(links)
        if share < LINK_DOWN_SHARE_PCT:
            continue
        gen, gen_max, width, width_max = min(down, key=lambda v: v[0] * v[2])
        now = _GT_PER_LANE.get(int(gen), 0.0) * width
        best = _GT_PER_LANE.get(int(gen_max), 0.0) * width_max
        frac = f" ({100.0 * now / best:.0f}% of its bandwidth)" if now and best else ""
        out.append(_finding(
            "pcie-downtrained", "warning",
            f"GPU {gid}'s PCIe link down-trained: {_link(gen, width)} of "
            f"{_link(gen_max, width_max)}",
            f"while the GPU was busy (utilization at least {LINK_BUSY_UTIL_PCT:.0f}%) its "
            f"link ran below what the GPU and slot allow in {len(down)} of {len(links)} "
            f"samples, at worst {_link(gen, width)}{frac}. Host-device copies and GPUDirect "
            "traffic slow down by as much. Reseat the card or its riser, check the slot's "
            "setting in the BIOS; `nvidia-smi -q -d PCIE` and `lspci -vv` (LnkSta "
            "'downgraded') show it.",
            {"gpu": gid, "share": round(share, 1), "gen": int(gen), "gen_max": int(gen_max),
             "width": int(width), "width_max": int(width_max), "samples": len(links)}))
    return out


def nvlink_errors(info: dict[str, Any], stats: Stats, samples: Samples) -> list[dict[str, Any]]:
    not_given = {g["id"] for snap in samples[-1:] for g in _gpus(snap)
                 if g.get("visible") is False}
    ids = sorted({int(p.split(".")[1]) for p in stats
                  if p.startswith("accelerators.") and ".nvlink." in p})
    out = []
    for gid in ids:
        if gid in not_given:
            continue
        rose = {}
        for kind, words in (("crcErrors", "CRC"), ("replayErrors", "replay"),
                            ("recoveryErrors", "recovery")):
            lo = _stat(stats, f"accelerators.{gid}.nvlink.{kind}", "min")
            hi = _stat(stats, f"accelerators.{gid}.nvlink.{kind}", "max")
            if lo is not None and hi is not None and hi > lo:
                rose[words] = (int(lo), int(hi))
        if not rose:
            continue
        parts = "; ".join(f"{w} errors {a} to {b} (+{b - a})" for w, (a, b) in rose.items())
        out.append(_finding(
            "nvlink-errors", "warning", f"GPU {gid}'s NVLink errors rose during the run",
            f"NVML's NVLink counters, summed over the GPU's links: {parts}. CRC errors make the "
            "link replay data and recovery errors retrain it, both costing bandwidth; a count "
            "that keeps rising points to a bad link (bridge, cable or baseboard). "
            "`nvidia-smi nvlink -e` gives them per link.",
            {"gpu": gid, **{f"{w}_errors": b - a for w, (a, b) in rose.items()}}))
    return out


def memory_bound(info: dict[str, Any], stats: Stats, samples: Samples) -> list[dict[str, Any]]:
    out = []
    for gid, readings in sorted(_series(samples).items()):
        busy = [g for g in readings
                if (u := _pct(g.get("utilization"))) is not None and u >= LINK_BUSY_UTIL_PCT]
        dram = [(d, _num(g, "gpm", "tensorActive")) for g in busy
                if (d := _num(g, "gpm", "dramActive")) is not None]
        if len(dram) >= MIN_SAMPLES:
            hit = [(d, t) for d, t in dram if d >= DRAM_BOUND_PCT]
            tensors = [t for _, t in hit if t is not None]
            if (100.0 * len(hit) / len(dram) < SHARE_PCT
                    or (tensors and statistics.median(tensors) >= SHARE_PCT)):
                continue
            d = statistics.median(v for v, _ in hit)
            what = (f"DRAM bandwidth (GPM) was at least {DRAM_BOUND_PCT:.0f}% of peak in "
                    f"{len(hit)} of {len(dram)} busy samples (median {d:.0f}%)")
            if tensors:
                what += f", while the tensor pipes' median was {statistics.median(tensors):.0f}%"
            figures = {"gpu": gid, "source": "gpm", "dram_active_median": round(d, 1),
                       "samples": len(dram)}
        else:
            mem = [v for g in busy if (v := _pct(g.get("memoryUtilization"))) is not None]
            if len(mem) < MIN_SAMPLES:
                continue
            hit_m = [v for v in mem if v >= MEMORY_BUSY_PCT]
            if 100.0 * len(hit_m) / len(mem) < SHARE_PCT:
                continue
            d = statistics.median(hit_m)
            what = (f"the memory controller was busy at least {MEMORY_BUSY_PCT:.0f}% of the "
                    f"time (NVML utilization.memory) in {len(hit_m)} of {len(mem)} busy samples "
                    f"(median {d:.0f}%)")
            figures = {"gpu": gid, "source": "utilization.memory",
                       "memory_busy_median": round(d, 1), "samples": len(mem)}
        out.append(_finding(
            "memory-bandwidth-bound", "info", f"GPU {gid} likely memory-bandwidth bound",
            what + ". The kernels wait on device memory more than on compute: larger batches, "
            "fused kernels (torch.compile), fused attention, and bfloat16 activations move "
            "fewer bytes per FLOP.", figures))
    return out


RULES = (busy_sm_idle, pcie_downtrained, nvlink_errors, tensor_unused, memory_bound)
