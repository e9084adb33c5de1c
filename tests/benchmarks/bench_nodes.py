"""Issue 9's figure: ``tracklab show`` of one run written by 16 nodes x 2 ranks for 60 s.

The run is written by 16 real wrappers at once (``--node-id node0`` ... ``node15``, the same
``--run-id``), each around two ranks logging every 50 ms, as the acceptance test of
tests/test_multinode.py does; then ``tracklab show`` is timed (best of the repetitions, after a
warm-up, as a user's second look), with a one-node, one-second run as the baseline.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from ._util import PY, Ctx, Row, env, fmt, interleaved, wall

CHILD = r'''
import os, subprocess, sys, time
if os.environ.get("RANK") is None:  # the launcher: one process per rank, as torchrun would
    procs = [subprocess.Popen([sys.executable, *sys.argv], env={**os.environ, "RANK": str(r)})
             for r in range(2)]
    sys.exit(max(p.wait() for p in procs))
import tracklab
run = tracklab.init()
end, i = time.time() + float(sys.argv[1]), 0
while time.time() < end:
    tracklab.log({"loss": 1.0 / (i + 1), "rank_seen": int(os.environ["RANK"])}, step=i)
    i += 1
    time.sleep(0.05)
tracklab.finish()
'''


def write_run(store: Path, script: Path, nodes: int, seconds: float) -> None:
    e = env(store, TRACKLAB_NVML_MODULE="tests.fakes", TRACKLAB_FAKE_NVML="two_gpus")
    procs = [subprocess.Popen([PY, "-m", "tracklab_cli", "run", "-q", "--node-id", f"node{k}",
                               "--run-id", "shared", "--interval", "1", "--", PY, str(script),
                               str(seconds)], env=e, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
              for k in range(nodes)]
    for p in procs:
        _, err = p.communicate(timeout=seconds + 300)
        if p.returncode != 0:
            raise RuntimeError(f"a node's wrapper exited {p.returncode}: {err[-2000:]}")


def bench(ctx: Ctx) -> list[Row]:
    nodes, seconds = ctx.scale(16, 4), ctx.scale(60, 5)
    script = ctx.newdir("nodes-script") / "ranks.py"
    script.write_text(CHILD)
    big, small = ctx.newdir("nodes-big"), ctx.newdir("nodes-small")
    ctx.log(f"nodes: {nodes} wrappers x 2 ranks logging for {seconds} s into one run")
    t0 = time.perf_counter()
    write_run(big, script, nodes, seconds)
    write_run(small, script, 1, 1)
    ctx.log(f"nodes: written in {time.perf_counter() - t0:.0f} s; timing show")
    show = [PY, "-m", "tracklab_cli", "show", "shared"]
    wide = {"COLUMNS": "160"}
    for store in (big, small):
        wall(show, store, wide)  # warm the page cache
    times = interleaved({"big": lambda: wall(show, big, wide),
                         "small": lambda: wall(show, small, wide)}, max(ctx.reps, 3))
    best, base = min(times["big"]), min(times["small"])
    return [Row("nodes", f"tracklab show of one run from {nodes} nodes x 2 ranks x {seconds} s "
                "(best of the repetitions)",
                f"{fmt(best)}  ({best / base:.2f}x one node x 1 s = {fmt(base)})", "< 2 s",
                best < 2.0, {"seconds": best, "baseline_s": base, "ratio": best / base,
                             "nodes": nodes})]
