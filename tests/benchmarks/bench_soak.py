"""Figure 9, the soak of issue 4 (opt-in: ``--only soak --minutes 10``).

``tracklab run --interval 0.1`` (eight fake GPUs) around a training script that logs a step of
8 floats about every millisecond for N minutes. Reports the wrapper's RSS growth from the end of
a warm-up (a tenth of the run, at least 10 s) to the end, and points stored against logged.
"""

from __future__ import annotations

import os
import subprocess
import time

from ._util import FAKE_GPUS, PY, ROOT, Ctx, Row, env, fmt
from .bench_memory import MB, _Poll

CHILD = """\
import sys, time
import tracklab

run = tracklab.init()
deadline = time.monotonic() + float(sys.argv[1])
n = 0
while time.monotonic() < deadline:
    s = n * 1e-3
    run.log({"loss": s, "acc": s + 1, "lr": s + 2, "grad_norm": s + 3, "tokens_per_s": s + 4,
             "epoch": s + 5, "val_loss": s + 6, "val_acc": s + 7})
    n += 1
    time.sleep(0.001)
run.finish()
with open(sys.argv[2], "w") as f:
    f.write(str(n))
"""


def bench(ctx: Ctx) -> list[Row]:
    from tracklab.read.runs import open_run

    seconds = ctx.minutes * 60
    store = ctx.newdir("soak")
    script, count_file = store.parent / "soak_child.py", store.parent / "soak_count"
    script.write_text(CHILD)
    run_id = f"soak{os.getpid()}{int(time.time())}"
    ctx.log(f"soak: tracklab run --interval 0.1 for {ctx.minutes:g} min")
    cmd = [PY, "-m", "tracklab_cli", "run", "-q", "--interval", "0.1", "--run-id", run_id, "--",
           PY, str(script), str(seconds), str(count_file)]
    p = subprocess.Popen(cmd, cwd=ROOT, env=env(store, **FAKE_GPUS))
    poll = _Poll(p.pid, 1.0)
    poll.start()
    rc = p.wait(seconds + 120)
    poll.stop.set()
    poll.join()
    logged = int(count_file.read_text()) * 8 if count_file.exists() else -1
    view = open_run(run_id, str(store))
    try:
        stored = sum(s["count"] for s in view.metric_summary().values())
        samples = view.sample_count()
        status = view.info["status"]
    finally:
        view.close()
    warm = max(10.0, seconds / 10)
    s = [x for x in poll.series if x[0] <= seconds]
    settled = [x for x in s if x[0] >= warm] or s
    a, b = settled[0], settled[-1]
    growth = b[1] - a[1]
    cpu = (b[2] - a[2]) / (b[0] - a[0]) * 100 if b[0] > a[0] else float("nan")
    data = {"rc": rc, "status": status, "logged": logged, "stored": stored, "samples": samples,
            "rss_warm": a[1], "rss_end": b[1], "rss_max": max(x[1] for x in poll.series),
            "cpu_percent": cpu, "series": [(round(t), r) for t, r, _ in poll.series[::10]]}
    return [
        Row("soak", f"wrapper RSS growth over {ctx.minutes:g} min at --interval 0.1",
            f"{fmt(growth, 'B')}  ({fmt(a[1], 'B')} at {a[0]:.0f} s -> {fmt(b[1], 'B')}, "
            f"max {fmt(data['rss_max'], 'B')})", "< 5 MB", growth < 5 * MB, data),
        Row("soak", "points stored / logged", f"{stored:,} / {logged:,}  (run {status}, exit "
            f"{rc}; {samples:,} samples, expected ~{int(seconds / 0.1):,})", "equal",
            stored == logged and rc == 0),
        Row("soak", "  wrapper CPU (warm-up to end)", f"{cpu:.2f} % of one core", "", None),
    ]
