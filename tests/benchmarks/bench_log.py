"""Figure 1 (``log()`` on the training thread, and end to end) and figure 2a (bytes per point).

The baseline is the ceiling of issue 5: Python's ``sqlite3``, WAL, ``synchronous=NORMAL`` (what
tracklab's shards use), one ``executemany`` of every row ``(run_id, step, key, value, time)``
into a fresh file; the rows are built before the clock starts. tracklab's workload logs the same
20,000 steps of 8 floats from dicts also built before the clock starts, so both sides time only
the tracker. Each side runs in a fresh interpreter, alternating, median of ``reps``.
"""

from __future__ import annotations

import time
from typing import Any

from ._util import Ctx, Row, checkpointed_size, fmt, median, ratio_row, run_worker, shard_of, window

KEYS = ("loss", "acc", "lr", "grad_norm", "tokens_per_s", "epoch", "val_loss", "val_acc")


def steps_data(steps: int) -> list[dict[str, float]]:
    return [{k: s * 1e-3 + i + 0.5 for i, k in enumerate(KEYS)} for s in range(steps)]


# -- workers (run in a fresh interpreter) -----------------------------------------------------------


def worker_sqlite(steps: int, path: str) -> dict[str, Any]:
    import sqlite3

    now = time.time()
    rows = [("k3xq9a2b", s, k, s * 1e-3 + i + 0.5, now + s * 1e-3)
            for s in range(steps) for i, k in enumerate(KEYS)]
    c = sqlite3.connect(path, isolation_level=None)
    c.execute("PRAGMA journal_mode=WAL")
    c.execute("PRAGMA synchronous=NORMAL")
    c.execute("CREATE TABLE points (run_id TEXT, step INTEGER, key TEXT, value REAL, time REAL)")
    before = checkpointed_size(path)
    t0 = time.perf_counter()
    c.execute("BEGIN")
    c.executemany("INSERT INTO points VALUES (?, ?, ?, ?, ?)", rows)
    t1 = time.perf_counter()
    c.execute("COMMIT")
    t2 = time.perf_counter()
    c.close()
    return {"insert_s": t1 - t0, "e2e_s": t2 - t0,
            "bytes_per_point": (checkpointed_size(path) - before) / len(rows)}


def worker_tracklab(steps: int, store: str, latency: bool = False) -> dict[str, Any]:
    import tracklab

    data = steps_data(steps)
    run = tracklab.init(dir=store, project="bench")
    writer = run._writer
    shard = shard_of(store)
    before = checkpointed_size(shard)
    log = run.log
    pc = time.perf_counter
    out: dict[str, Any] = {}
    lat: list[float] = []
    starts: list[float] = []
    with window():
        if latency:
            append, mark = lat.append, starts.append
            t0 = pc()
            for d in data:
                a = pc()
                log(d)
                append(pc() - a)
                mark(a)
            t1 = pc()
        else:
            c0 = time.thread_time()
            t0 = pc()
            for d in data:
                log(d)
            t1 = pc()
            out["thread_cpu_s"] = time.thread_time() - c0
        run.finish()
        t2 = pc()
    if latency:
        # where the slowest calls fell: (call index, ms after the loop started, ms it took)
        worst = sorted(range(len(lat)), key=lat.__getitem__)[-5:][::-1]
        out["slowest"] = [(i, round((starts[i] - t0) * 1e3, 2), round(lat[i] * 1e3, 3))
                          for i in worst]
        lat.sort()
        n = len(lat)
        out.update(p50=lat[n // 2], p99=lat[min(n - 1, int(n * 0.99))], max=lat[-1],
                   over_1ms=sum(x > 1e-3 for x in lat))
    out.update(loop_s=t1 - t0, e2e_s=t2 - t0, finish_s=t2 - t1, written=writer.written,
               dropped=writer.dropped,
               bytes_per_point=(checkpointed_size(shard) - before) / (steps * len(KEYS)))
    return out


def worker_floor(steps: int) -> dict[str, Any]:
    """The same timed loop around a do-nothing ``log``: this machine's noise floor for latency
    (scheduler preemption, page faults, the collector) with no tracker and no second thread."""
    from collections import deque

    q: deque[Any] = deque()

    def log(d: dict[str, float]) -> None:
        q.append((0, 0.0, tuple(d), tuple(d.values())))

    data = steps_data(steps)
    pc = time.perf_counter
    lat = []
    for d in data:
        a = pc()
        log(d)
        lat.append(pc() - a)
    lat.sort()
    n = len(lat)
    return {"p50": lat[n // 2], "p99": lat[min(n - 1, int(n * 0.99))], "max": lat[-1],
            "over_1ms": sum(x > 1e-3 for x in lat)}


# -- the benchmark ----------------------------------------------------------------------------------


def bench(ctx: Ctx) -> list[Row]:
    steps = ctx.scale(20_000, 5_000)
    base, tl, lat, floor = [], [], [], []
    for i in range(ctx.reps):
        ctx.log(f"log: rep {i + 1}/{ctx.reps} ({steps} steps x 8 floats)")
        d = ctx.newdir("sqlite")
        base.append(run_worker("bench_log.sqlite", {"steps": steps, "path": str(d / "b.db")}))
        tl.append(run_worker("bench_log.tracklab", {"steps": steps, "store": str(ctx.newdir("log"))}))
        lat.append(run_worker("bench_log.tracklab",
                              {"steps": steps, "store": str(ctx.newdir("lat")), "latency": True}))
        floor.append(run_worker("bench_log.floor", {"steps": steps}))
    b_ins = median([r["insert_s"] for r in base])
    b_e2e = median([r["e2e_s"] for r in base])
    loop = median([r["loop_s"] for r in tl])
    e2e = median([r["e2e_s"] for r in tl])
    prof = ("worker", "bench_log.tracklab", {"steps": steps, "store": "{tmp}"})
    n = steps * len(KEYS)
    written = [r["written"] for r in tl + lat]
    dropped = sum(r["dropped"] for r in tl + lat)
    rows = [
        ratio_row("log", f"log() on the training thread, {steps:,} steps x 8 floats", loop, b_ins,
                  0.35, base_label="sqlite3 executemany",
                  data={"per_step_us": loop / steps * 1e6,
                        "thread_cpu_s": median([r["thread_cpu_s"] for r in tl])},
                  profile=prof),
        Row("log", "  per step on the training thread", f"{loop / steps * 1e6:.2f} us "
            f"(sqlite3 ceiling {b_ins / steps * 1e6:.2f} us)", "", None),
    ]
    p50, p99, mx = (median([r[k] for r in lat]) for k in ("p50", "p99", "max"))
    worst = max(r["max"] for r in lat)
    rows.append(Row("log", "  per-call latency p50 / p99 / max (median of reps)",
                    f"{fmt(p50)} / {fmt(p99)} / {fmt(mx)}  (worst {fmt(worst)}, "
                    f"{median([r['over_1ms'] for r in lat]):.0f} calls > 1 ms)",
                    "max < 1 ms", worst < 1e-3,
                    {"p50": p50, "p99": p99, "max": mx, "worst": worst,
                     "over_1ms": [r["over_1ms"] for r in lat],
                     "slowest": [r["slowest"] for r in lat], "floor": floor},
                    ("worker", "bench_log.tracklab",
                     {"steps": steps, "store": "{tmp}", "latency": True})))
    rows.append(Row("log", "  same loop around a no-op log(): this machine's noise floor",
                    f"{fmt(median([r['p50'] for r in floor]))} / "
                    f"{fmt(median([r['p99'] for r in floor]))} / "
                    f"{fmt(median([r['max'] for r in floor]))}  (worst "
                    f"{fmt(max(r['max'] for r in floor))}, "
                    f"{median([r['over_1ms'] for r in floor]):.0f} calls > 1 ms)", "", None))
    rows.append(ratio_row("log", "end to end incl. finish() flush", e2e, b_e2e, 1.25,
                          base_label="sqlite3 incl. commit",
                          data={"finish_s": median([r["finish_s"] for r in tl])}, profile=prof))
    rows.append(Row("log", "  points stored / logged", f"{min(written):,} / {steps:,} rows, "
                    f"{dropped} dropped", "equal", min(written) == steps and dropped == 0,
                    {"written": written, "dropped": dropped}))
    bpp = median([r["bytes_per_point"] for r in tl])
    rows.append(Row("storage", "bytes on disk per training point (after WAL checkpoint)",
                    f"{bpp:.1f} B  (sqlite3 baseline "
                    f"{median([r['bytes_per_point'] for r in base]):.1f} B)",
                    "<= 24 B", bpp <= 24, {"bytes_per_point": bpp, "points": n}))
    return rows
