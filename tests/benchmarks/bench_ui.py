"""The dashboard's figures: ``tracklab ui`` answering after its start; one key's chart series
on a 1,000,000-point run against a 1,000-point run; the charts of 10 runs x 8 metrics plus the
system panels, from navigation to drawn, in headless Chromium; the server's RSS and the runs
table's latency on a 1,000-run store.

Stores are written through the SDK (tests/ui_fixtures.py) in worker processes; the server is the
real command, talked to over loopback.
"""

from __future__ import annotations

import http.client
import json
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import psutil

from ._util import PY, Ctx, Row, env, fmt, median, ratio_row, run_worker


def worker_build(store: str, kind: str, n: int) -> dict[str, Any]:
    from tests.ui_fixtures import demo_store, make_run

    if kind == "points":
        run = make_run(store, f"points-{n}", steps=n, keys=1, samples=False, val=False)
        return {"ids": [run.id]}
    if kind == "sweep":
        return {"ids": demo_store(store, runs=10, steps=n, keys=8, val=False)}
    return {"ids": demo_store(store, runs=n, steps=50, keys=4)}


class Served:
    """``tracklab ui`` on a free loopback port, until ``close()``."""

    def __init__(self, store: Path) -> None:
        self.started = time.perf_counter()
        self.proc = subprocess.Popen([PY, "-m", "tracklab_cli", "ui", "--port", "0"],
                                     env=env(store), stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.proc.stdout.readline()
        m = re.search(r"http://127\.0\.0\.1:(\d+)/", self.proc.stdout.readline())
        assert m, "no URL printed"
        self.port = int(m.group(1))
        self.url = m.group(0)

    def get(self, path: str) -> tuple[int, bytes]:
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        try:
            c.request("GET", path)
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()

    def timed(self, path: str) -> float:
        t = time.perf_counter()
        status, _ = self.get(path)
        assert status == 200, path
        return time.perf_counter() - t

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def first_answer(store: Path) -> float:
    """Seconds from spawning ``tracklab ui`` to its first answered request."""
    t = time.perf_counter()
    s = Served(store)
    try:
        while True:
            try:
                s.get("/api/runs")
                return time.perf_counter() - t
            except OSError:
                time.sleep(0.01)
    finally:
        s.close()


def bench(ctx: Ctx) -> list[Row]:
    reps = max(ctx.reps, 3 if ctx.quick else 15)
    big_n = ctx.scale(1_000_000, 100_000)
    big, small = ctx.newdir("ui-big"), ctx.newdir("ui-small")
    ctx.log(f"ui: writing a {big_n:,}-point run and a 1,000-point run")
    (big_id,) = run_worker("bench_ui.build", {"store": str(big), "kind": "points", "n": big_n},
                           store=big)["ids"]
    (small_id,) = run_worker("bench_ui.build", {"store": str(small), "kind": "points",
                                                "n": 1000}, store=small)["ids"]
    rows: list[Row] = []
    start = [first_answer(small) for _ in range(3)]
    rows.append(Row("ui", "tracklab ui: spawn to first answered request", fmt(median(start)),
                    "< 1 s", median(start) < 1.0, {"samples": start}))
    servers = {"big": Served(big), "small": Served(small)}
    try:
        paths = {k: f"/api/series?run={rid}&key=train/loss&axis=step&width=1000"
                 for k, rid in (("big", big_id), ("small", small_id))}
        for k, s in servers.items():
            s.timed(paths[k])  # warm the page cache
        times: dict[str, list[float]] = {"big": [], "small": []}
        for _ in range(reps):
            for k, s in servers.items():
                times[k].append(s.timed(paths[k]))
        zoom = [servers["big"].timed(f"/api/series?run={big_id}&key=train/loss&axis=step"
                                     f"&width=1000&lo={big_n // 3}&hi={big_n // 3 + 50_000}")
                for _ in range(reps)]
        size = len(servers["big"].get(paths["big"])[1])
    finally:
        for s in servers.values():
            s.close()
    rows.append(ratio_row("ui", f"one key's series, {big_n:,}-point run vs 1,000 points "
                          "(width 1,000)", median(times["big"]), median(times["small"]), 3.0,
                          base_label="1,000 points", data={"samples": times, "bytes": size}))
    rows.append(Row("ui", f"zoom: 50,000 steps of the {big_n:,}-point run", fmt(median(zoom)),
                    "", None, {"samples": zoom}))
    rows.extend(charts_figure(ctx, reps))
    rows.extend(many_runs_figure(ctx))
    return rows


def charts_figure(ctx: Ctx, reps: int) -> list[Row]:
    from tests import browser

    why = browser.missing()
    if why:
        return [Row("ui", "charts of 10 runs x 8 metrics in headless Chromium", "skipped", "",
                    None, {"reason": why})]
    steps = ctx.scale(5000, 1000)
    store = ctx.newdir("ui-sweep")
    ctx.log(f"ui: writing 10 runs x 8 metrics x {steps:,} steps with system samples")
    ids = run_worker("bench_ui.build", {"store": str(store), "kind": "sweep", "n": steps},
                     store=store)["ids"]
    s = Served(store)
    driver = browser.chrome(1400, 900)
    drawn: list[float] = []
    charts = 0
    try:
        for i in range(min(reps, 5) + 1):
            driver.get(f"{s.url}?n={i}#/charts?runs={','.join(ids)}")
            deadline = time.monotonic() + 60
            while driver.execute_script("return window.__tracklabDrawn === undefined"):
                assert time.monotonic() < deadline, "charts never drawn"
                time.sleep(0.02)
            ms = driver.execute_script("return window.__tracklabDrawn")
            charts = driver.execute_script("return state.charts.size")
            if i:  # the first navigation also compiles the page's scripts
                drawn.append(ms / 1000)
    finally:
        driver.quit()
        s.close()
    value = median(drawn)
    return [Row("ui", f"charts of 10 runs x 8 metrics + system ({charts} charts, {steps:,} steps "
                "each): navigation to drawn, headless Chromium", fmt(value), "< 1.5 s",
                value < 1.5, {"samples": drawn, "charts": charts})]


def many_runs_figure(ctx: Ctx) -> list[Row]:
    n = ctx.scale(1000, 100)
    store = ctx.newdir("ui-many")
    ctx.log(f"ui: writing {n:,} runs")
    run_worker("bench_ui.build", {"store": str(store), "kind": "many", "n": n}, store=store)
    s = Served(store)
    try:
        times = [s.timed("/api/runs") for _ in range(5)]
        rss = psutil.Process(s.proc.pid).memory_info().rss
        body = s.get("/api/runs")[1]
        assert len(json.loads(body)["runs"]) == n
    finally:
        s.close()
    return [Row("ui", f"server RSS after the runs table of {n:,} runs", fmt(rss, "B"), "", None,
                {"rss": rss}),
            Row("ui", f"runs table of {n:,} runs (/api/runs, polled every second)",
                fmt(median(times)), "", None, {"samples": times})]
