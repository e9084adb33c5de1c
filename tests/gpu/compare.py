"""The table of device_check.sh: tracklab's recorded GPU figures against torch.cuda's and
nvidia-smi's over the same seconds, each with the tolerance it must meet.

Usage: python tests/gpu/compare.py STORE WORK matmul=RUN_ID train=RUN_ID

WORK holds what the workload and the shell recorded: ``torch_<mode>.json`` (workload.py),
``smi_<mode>.csv`` (``epoch,utilization %,memory used MiB,power W``), ``apps_<mode>.csv``
(``epoch,pid,used MiB``) and ``dmon_<mode>.txt`` (``nvidia-smi dmon -o DT --gpm-metrics 2``,
whose last column is GPM's SM activity, where the driver has it). Exits 1 when a row fails.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from typing import Any

import tracklab
from tracklab.errors import TracklabError

MIB = 2**20
GIB = 2**30
SETTLE_S = 1.5  # a phase's first seconds are left out: clocks and power ramp up


def window(phase: dict[str, Any]) -> tuple[float, float]:
    return phase["start"] + SETTLE_S, phase["end"] - 0.5


def mean(rows: list[tuple[float, float | None]], span: tuple[float, float]) -> float | None:
    vals = [v for t, v in rows if span[0] <= t <= span[1] and v is not None]
    return statistics.fmean(vals) if vals else None


def read_csv(path: str) -> list[list[str]]:
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [[c.strip() for c in line.split(",")] for line in f if line.count(",") >= 2]


def num(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None  # "[N/A]", "[Not Supported]"


def mib(text: str) -> float | None:
    v = num(text)
    return None if v is None else v * MIB


def dmon_rows(path: str) -> list[tuple[float, float | None]]:
    """``(epoch, GPM SM activity)`` from dmon's output; ``[]`` when it had no GPM metrics."""
    if not os.path.exists(path):
        return []
    out = []
    with open(path) as f:
        for line in f:
            parts = line.split()
            if line.startswith("#") or len(parts) < 4 or not parts[0].isdigit():
                continue
            try:
                t = time.mktime(time.strptime(parts[0] + parts[1], "%Y%m%d%H:%M:%S"))
            except ValueError:
                continue
            out.append((t + 0.5, num(parts[-1])))  # dmon prints whole seconds
    return out if any(v is not None for _, v in out) else []


class Table:
    def __init__(self) -> None:
        self.rows: list[tuple[str, ...]] = []
        self.failed = 0

    def add(self, what: str, phase: str, ours: float | None, torch_v: float | None,
            smi: float | None, tolerance: str, ok: bool | None, fmt: str = "{:.1f}") -> None:
        def show(v: float | None) -> str:
            return "-" if v is None else fmt.format(v)

        result = "n/a" if ok is None else ("PASS" if ok else "FAIL")
        self.failed += ok is False
        self.rows.append((what, phase, show(ours), show(torch_v), show(smi), tolerance, result))

    def print(self) -> str:
        head = ("figure", "phase", "tracklab", "torch.cuda", "nvidia-smi", "tolerance", "result")
        widths = [max(len(r[i]) for r in [head, *self.rows]) for i in range(len(head))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in [head, *self.rows]]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines)


def close(a: float | None, b: float | None, tol: float) -> bool | None:
    return None if a is None or b is None else abs(a - b) <= tol


def compare_mode(table: Table, store: str, work: str, mode: str, run_id: str) -> None:
    with open(os.path.join(work, f"torch_{mode}.json")) as f:
        torch_rec = json.load(f)
    view = tracklab.open_run(run_id, store)
    try:
        samples = view.samples()
        from tracklab.read.diagnose import diagnose

        found = [f["rule"] for f in diagnose(view)]
    finally:
        view.close()
    pid = torch_rec["pid"]
    ours: dict[str, list[tuple[float, float | None]]] = {}
    for s in samples:
        gpus = s.get("accelerators") or []
        if not gpus:
            continue
        g, t = gpus[0], s["timestamp"] / 1000.0
        for key, v in (("util", g.get("utilization")), ("mem", (g.get("memory") or {}).get("used")),
                       ("tree", g.get("treeMemory")), ("power", g.get("power")),
                       ("sm", (g.get("gpm") or {}).get("smActive"))):
            ours.setdefault(key, []).append((t, v))
    trows = torch_rec["rows"]
    tor = {k: [(r["t"], r[k]) for r in trows] for k in ("utilization", "reserved", "device_used")}
    tor["power"] = [(r["t"], None if r["power_mw"] is None else r["power_mw"] / 1000.0)
                    for r in trows]
    smi = read_csv(os.path.join(work, f"smi_{mode}.csv"))
    smi_util = [(float(r[0]), num(r[1])) for r in smi]
    smi_mem = [(float(r[0]), mib(r[2])) for r in smi]
    smi_power = [(float(r[0]), num(r[3])) for r in smi if len(r) > 3]
    apps = [(float(r[0]), mib(r[2])) for r in read_csv(os.path.join(work, f"apps_{mode}.csv")) if r[1] == str(pid)]
    dmon = dmon_rows(os.path.join(work, f"dmon_{mode}.txt"))
    for phase in torch_rec["phases"]:
        name, span = phase["name"], window(phase)
        u, tu, su = mean(ours.get("util", []), span), mean(tor["utilization"], span), \
            mean(smi_util, span)
        both = [close(u, tu, 10.0), close(u, su, 10.0)]
        table.add("utilization %", name, u, tu, su, "±10 points of each",
                  None if all(b is None for b in both) else all(b is not False for b in both))
        m, tm, sm_ = mean(ours.get("mem", []), span), mean(tor["device_used"], span), \
            mean(smi_mem, span)
        # NVML's v1 "used" counts the driver's reserve, which nvidia-smi and cudaMemGetInfo
        # may not: up to some hundreds of MiB apart, by design
        both = [close(m, tm, GIB), close(m, sm_, GIB)]
        table.add("memory used GiB", name, m and m / GIB, tm and tm / GIB, sm_ and sm_ / GIB,
                  "±1 GiB of each", None if all(b is None for b in both) else
                  all(b is not False for b in both), "{:.2f}")
        p, tr_ = mean(ours.get("tree", []), span), mean(tor["reserved"], span)
        ap = mean(apps, span)
        ok_t = None if p is None or tr_ is None else tr_ <= p <= tr_ + 1.5 * GIB
        ok_s = close(p, ap, 64 * MIB)
        table.add("process memory MiB", name, p and p / MIB, tr_ and tr_ / MIB, ap and ap / MIB,
                  "torch reserved..+1.5 GiB (context); smi ±64 MiB",
                  None if ok_t is None and ok_s is None else ok_t is not False and ok_s is not False,
                  "{:.0f}")
        w, tw, sw = mean(ours.get("power", []), span), mean(tor["power"], span), \
            mean(smi_power, span)
        both = [None if w is None or x is None else abs(w - x) <= 0.15 * max(x, 1.0)
                for x in (tw, sw)]
        table.add("power W", name, w, tw, sw, "±15% of each",
                  None if all(b is None for b in both) else all(b is not False for b in both))
        sm, dm = mean(ours.get("sm", []), span), mean(dmon, span)
        if sm is None:
            table.add("SM active % (GPM)", name, None, None, dm, "needs GPM (Hopper+)", None)
            continue
        if name == "matmul":
            ok, tol = sm >= 60.0 and close(sm, dm, 10.0) is not False, ">= 60; dmon ±10"
        elif name == "spin":
            ok, tol = sm <= 10.0 and (u or 0) >= 90.0, "<= 10 while utilization >= 90"
        else:
            ok, tol = close(sm, dm, 10.0), "dmon ±10"
        table.add("SM active % (GPM)", name, sm, None, dm, tol, ok)
    if mode == "matmul":
        gpm = any(v is not None for _, v in ours.get("sm", []))
        table.add("diagnosis gpu-busy-sm-idle", "run", None, None, None,
                  "found (the spin phase)", ("gpu-busy-sm-idle" in found) if gpm else None)


def main(argv: list[str]) -> int:
    store, work, runs = argv[0], argv[1], dict(a.split("=", 1) for a in argv[2:])
    if not runs:
        print("device_check: no run to compare (every workload failed)")
        return 1
    table = Table()
    for mode, run_id in runs.items():
        try:
            compare_mode(table, store, work, mode, run_id)
        except (OSError, ValueError, KeyError, TracklabError) as exc:
            table.add(f"{mode} run unreadable: {exc}", mode, None, None, None, "", False)
    text = table.print()
    print(text)
    out = os.environ.get("OUT")
    if out:
        with open(os.path.join(out, "device_check_table.txt"), "w") as f:
            f.write(text + "\n")
    return 1 if table.failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
