"""Figure 7: memory of the wrapper and of an attached training process.

- The sampler loop driven directly (``SystemCollectors`` + ``SampleRecorder``, eight fake GPUs,
  a real process tree) for a day's worth of samples at 1 s (86,400) as fast as it goes; RSS
  after a warm-up against RSS at the end is the growth ("flat": under 5 MB).
- The real wrapper, ``tracklab run --interval 0.1 -- python -c "time.sleep(20)"``: its RSS
  (polled with psutil every 0.25 s) and its CPU time between 3 s and the end.
- A training process attached to a run (``TRACKLAB_RUN_ID``) logging 1,000,000 points (125,000
  steps of 8 floats, as fast as it can: the worst case for the queue): its peak RSS, polled from
  outside every 10 ms, over its RSS right after ``import tracklab; init()``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from typing import Any

from ._util import (
    FAKE_GPUS,
    PY,
    ROOT,
    Ctx,
    Row,
    collect,
    env,
    fmt,
    run_worker,
    spawn_worker,
    window,
)
from .bench_log import KEYS
from .fixtures import full_sampling, make_run

MB = 1e6


def worker_drive(samples: int, store: str) -> dict[str, Any]:
    import psutil

    me = psutil.Process()
    with full_sampling(store) as (collectors, rec, _path):
        warm = max(1, samples // 20)
        every = max(1, samples // 200)
        series = []
        t0 = time.perf_counter()
        with window():
            for i in range(1, samples + 1):
                rec(collectors.snapshot())
                if i % every == 0 or i == warm:
                    series.append((i, me.memory_info().rss))
        t = time.perf_counter() - t0
    at_warm = next(r for i, r in series if i >= warm)
    return {"seconds": t, "warm_at": warm, "rss_warm": at_warm, "rss_end": series[-1][1],
            "rss_max": max(r for _, r in series), "series": series[::10],
            "written": rec.count - rec.dropped}


def worker_train(steps: int, work_us: float = 0.0) -> dict[str, Any]:
    import tracklab

    run = tracklab.init()
    print("ready", flush=True)
    sys.stdin.readline()
    writer = run._writer
    log = run.log
    pc = time.perf_counter
    work = work_us * 1e-6
    t0 = pc()
    for s in range(steps):
        log({k: s * 1e-3 + i + 0.5 for i, k in enumerate(KEYS)})
        if work:  # stands for the training step's own work (a busy wait: it holds the GIL)
            until = pc() + work
            while pc() < until:
                pass
    t = pc() - t0
    print("done", flush=True)
    sys.stdin.readline()
    run.finish()
    return {"loop_s": t, "written": writer.written, "dropped": writer.dropped}


class _Poll(threading.Thread):
    """Polls a process's RSS (and CPU times) until stopped."""

    def __init__(self, pid: int, every: float) -> None:
        super().__init__(daemon=True)
        import psutil

        self.proc = psutil.Process(pid)
        self.every = every
        self.stop = threading.Event()
        self.series: list[tuple[float, int, float]] = []  # (seconds, rss, cpu seconds)

    def run(self) -> None:
        import psutil

        t0 = time.monotonic()
        while not self.stop.is_set():
            try:
                rss = self.proc.memory_info().rss
                ct = self.proc.cpu_times()
                self.series.append((time.monotonic() - t0, rss, ct.user + ct.system))
            except psutil.Error:
                return
            self.stop.wait(self.every)


def wrapper(ctx: Ctx, seconds: float) -> dict[str, Any]:
    from tracklab.read.runs import open_run

    store = ctx.newdir("wrapper")
    run_id = f"wrap{os.getpid()}{int(time.time())}"
    cmd = [PY, "-m", "tracklab_cli", "run", "-q", "--interval", "0.1", "--run-id", run_id, "--",
           PY, "-c", f"import time; time.sleep({seconds})"]
    p = subprocess.Popen(cmd, cwd=ROOT, env=env(store, **FAKE_GPUS))
    poll = _Poll(p.pid, 0.25)
    poll.start()
    p.wait(seconds + 60)
    poll.stop.set()
    poll.join()
    s = [x for x in poll.series if x[0] <= seconds]  # while the child lived
    settled = [x for x in s if x[0] >= 3.0] or s
    a, b = settled[0], settled[-1]
    cpu = (b[2] - a[2]) / (b[0] - a[0]) * 100 if b[0] > a[0] else None
    view = open_run(run_id, str(store))
    try:
        n = view.sample_count()
    finally:
        view.close()
    return {"rss_max": max(x[1] for x in poll.series), "rss_settled": a[1], "rss_end": b[1],
            "cpu_percent": cpu, "samples": n, "expected": int(seconds / 0.1), "rc": p.returncode,
            "series": [(round(t, 2), r) for t, r, _ in poll.series[::8]]}


def training(ctx: Ctx, steps: int, work_us: float = 0.0) -> dict[str, Any]:
    import psutil

    store = ctx.newdir("train")
    _, _, run_id = make_run(str(store))
    p = spawn_worker("bench_memory.train", {"steps": steps, "work_us": work_us}, store=store,
                     extra_env={"TRACKLAB_RUN_ID": run_id}, stdin=subprocess.PIPE)
    assert p.stdout is not None and p.stdin is not None
    if p.stdout.readline().strip() != "ready":
        raise RuntimeError(collect(p))
    rss0 = psutil.Process(p.pid).memory_info().rss
    poll = _Poll(p.pid, 0.01)
    poll.start()
    p.stdin.write("go\n")
    p.stdin.flush()
    p.stdout.readline()  # "done": logging is over, finish() not yet called
    rss_end = psutil.Process(p.pid).memory_info().rss
    poll.stop.set()
    poll.join()
    p.stdin.write("\n")
    p.stdin.flush()
    out = collect(p)
    peak = max([rss_end, *(r for _, r, _ in poll.series)])
    from tracklab.read.runs import open_run

    view = open_run(run_id, str(store))
    try:
        stored = sum(s["count"] for s in view.metric_summary().values())
    finally:
        view.close()
    return dict(out, rss_init=rss0, rss_peak=peak, rss_end=rss_end, growth=peak - rss0,
                stored=stored, logged=steps * len(KEYS))


def bench(ctx: Ctx) -> list[Row]:
    rows = []
    secs = 20.0 if not ctx.quick else 5.0
    ctx.log(f"memory: tracklab run --interval 0.1 for {secs:.0f} s (8 fake GPUs)")
    w = wrapper(ctx, secs)
    rows.append(Row("memory", "wrapper RSS, tracklab run --interval 0.1 (max)",
                    f"{fmt(w['rss_max'], 'B')}  ({w['samples']} samples in {secs:.0f} s, "
                    f"expected ~{w['expected']})", "< 60 MB", w["rss_max"] < 60 * MB, w,
                    ("worker", "bench_memory.drive", {"samples": 2000, "store": "{tmp}"},
                     FAKE_GPUS)))
    rows.append(Row("memory", "  wrapper RSS from 3 s to the end",
                    f"{fmt(w['rss_settled'], 'B')} -> {fmt(w['rss_end'], 'B')}", "", None))
    if w["cpu_percent"] is not None:
        rows.append(Row("sampler", "wrapper CPU at --interval 0.1 (measured, 3 s to end)",
                        f"{w['cpu_percent']:.2f} % of one core", "< 2 %", w["cpu_percent"] < 2,
                        {}, ("worker", "bench_sampler.sample", {"samples": 300, "store": "{tmp}"},
                             FAKE_GPUS)))
    n = ctx.drive_samples or ctx.scale(86_400, 300)
    ctx.log(f"memory: driving the sampler loop for {n:,} samples")
    d = ctx.newdir("drive")
    r = run_worker("bench_memory.drive", {"samples": n, "store": str(d)}, store=d,
                   extra_env=FAKE_GPUS)
    growth = r["rss_end"] - r["rss_warm"]
    rows.append(Row("memory", f"sampler loop, {n:,} samples: RSS growth after "
                    f"{r['warm_at']:,}", f"{fmt(growth, 'B')}  ({fmt(r['rss_warm'], 'B')} -> "
                    f"{fmt(r['rss_end'], 'B')}, max {fmt(r['rss_max'], 'B')}; "
                    f"{r['seconds']:.0f} s, {r['seconds'] / n * 1e3:.2f} ms/sample wall)",
                    "< 5 MB (flat)", growth < 5 * MB, r))
    steps = ctx.scale(125_000, 12_500)
    ctx.log(f"memory: attached training process logging {steps * 8:,} points")
    t = training(ctx, steps)
    rows.append(Row("memory", f"attached training process, {steps * 8:,} points: peak RSS "
                    "over import+init()", f"{fmt(t['growth'], 'B')}  ({fmt(t['rss_init'], 'B')}"
                    f" -> peak {fmt(t['rss_peak'], 'B')}; stored {t['stored']:,} of {t['logged']:,})",
                    "<= 10 MB", t["growth"] <= 10 * MB, t))
    rows.append(Row("memory", "  attached training process: points stored / logged",
                    f"{t['stored']:,} / {t['logged']:,}", "equal", t["stored"] == t["logged"]))
    ctx.log("memory: the same, with 20 us of work per step")
    t2 = training(ctx, steps, 20.0)
    rows.append(Row("memory", "  the same with 20 us of GIL-holding work per step",
                    f"{fmt(t2['growth'], 'B')}  (logging took {t2['loop_s']:.1f} s vs "
                    f"{t['loop_s']:.1f} s flat out; stored {t2['stored']:,} of {t2['logged']:,})",
                    "", None, t2))
    return rows
