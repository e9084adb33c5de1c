"""Figure 6: eight processes attached to one run, each logging 20,000 steps of 8 floats, against
one process logging all 160,000 steps to a run of its own, wall time from spawn to exit.

Each process attaches the way a wrapper's child does (``TRACKLAB_RUN_ID`` of a running run
created first). Zero errors means: every process exits 0, nothing on stderr, nothing dropped,
and ``open_run(...).metric_summary()`` counts exactly 8 x 20,000 values per key.
"""

from __future__ import annotations

import time
from typing import Any

from ._util import Ctx, Row, collect, median, ratio_row, spawn_worker, window
from .bench_log import KEYS, steps_data
from .fixtures import make_run

PROCS = 8


def worker_attached(steps: int) -> dict[str, Any]:
    import tracklab

    data = steps_data(steps)
    t0 = time.perf_counter()
    run = tracklab.init()
    t_init = time.perf_counter() - t0
    writer = run._writer
    for d in data:
        run.log(d)
    t1 = time.perf_counter()
    run.finish()
    return {"init_s": t_init, "loop_s": t1 - t0, "e2e_s": time.perf_counter() - t0,
            "finish_s": time.perf_counter() - t1, "written": writer.written,
            "dropped": writer.dropped, "attached": run.attached}


def worker_profiled_round(steps: int, store: str, procs: int = PROCS) -> dict[str, Any]:
    """One process of a round, in this interpreter (to be profiled), beside procs-1 others."""
    import os

    _, _, run_id = make_run(store)
    os.environ["TRACKLAB_RUN_ID"] = run_id
    os.environ["TRACKLAB_DIR"] = store
    others = [spawn_worker("bench_concurrency.attached", {"steps": steps}, store=store,
                           extra_env={"TRACKLAB_RUN_ID": run_id}) for _ in range(procs - 1)]
    with window():
        mine = worker_attached(steps)
    return {"mine": mine, "others": [collect(p)["e2e_s"] for p in others]}


def _round(ctx: Ctx, procs: int, steps: int) -> dict[str, Any]:
    from tracklab.read.runs import open_run

    store = ctx.newdir(f"conc{procs}")
    _, _, run_id = make_run(str(store))
    extra = {"TRACKLAB_RUN_ID": run_id}
    t0 = time.perf_counter()
    ps = [spawn_worker("bench_concurrency.attached", {"steps": steps}, store=store,
                       extra_env=extra) for _ in range(procs)]
    results = []
    crashed = []
    for p in ps:
        try:
            results.append(collect(p))
        except RuntimeError as exc:
            crashed.append(str(exc))
    t = time.perf_counter() - t0
    view = open_run(run_id, str(store))
    try:
        counts = {k: s["count"] for k, s in view.metric_summary().items()}
    finally:
        view.close()
    stderr = [r["_stderr"].strip() for r in results if r["_stderr"].strip()]
    return {"wall_s": t, "counts": counts, "crashed": crashed, "stderr": stderr,
            "dropped": sum(r["dropped"] for r in results),
            "attached": all(r["attached"] for r in results),
            "exact": counts == {k: procs * steps for k in KEYS}}


def bench(ctx: Ctx) -> list[Row]:
    steps = ctx.scale(20_000, 2_000)
    many, one = [], []
    for i in range(ctx.reps):
        ctx.log(f"concurrency: rep {i + 1}/{ctx.reps} ({PROCS} x {steps:,} steps, "
                f"then 1 x {PROCS * steps:,})")
        many.append(_round(ctx, PROCS, steps))
        one.append(_round(ctx, 1, PROCS * steps))
    a, b = median([r["wall_s"] for r in many]), median([r["wall_s"] for r in one])
    bad = [r for r in many + one if r["crashed"] or r["stderr"] or r["dropped"] or not r["exact"]]
    detail = "" if not bad else (
        f"; first problem: crashed={bad[0]['crashed'][:1]} stderr={bad[0]['stderr'][:1]} "
        f"dropped={bad[0]['dropped']} counts={dict(list(bad[0]['counts'].items())[:2])}")
    return [
        ratio_row("concurrency", f"{PROCS} processes x {steps:,} steps into one run", a, b, 2.0,
                  base_label=f"1 process x {PROCS * steps:,}",
                  data={"many": many, "one": one},
                  profile=("worker", "bench_concurrency.profiled_round",
                           {"steps": steps, "store": "{tmp}"})),
        Row("concurrency", "  errors, drops, exact counts (every rep)",
            ("none; " if not bad else f"{len(bad)} bad reps") +
            f"{PROCS * steps:,} values per key" + detail[:200], "0 errors, exact",
            not bad),
    ]
