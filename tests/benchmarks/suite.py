"""The command line of the suite: pick benchmarks, run them, print one table, write JSON."""

from __future__ import annotations

import argparse
import datetime
import io
import json
import os
import platform
import pstats
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import (
    bench_capture,
    bench_compare,
    bench_concurrency,
    bench_gpu,
    bench_log,
    bench_memory,
    bench_nodes,
    bench_sampler,
    bench_scale,
    bench_soak,
    bench_startup,
    bench_ui,
)
from ._util import PY, ROOT, Ctx, Row, default_tmp, env, rmtree, run_worker

BENCHES: dict[str, Callable[[Ctx], list[Row]]] = {
    "log": bench_log.bench,            # figures 1 and 2a
    "sampler": bench_sampler.bench,    # figures 2b and 3
    "startup": bench_startup.bench,    # figure 4
    "scale": bench_scale.bench,        # figures 5 and 8
    "concurrency": bench_concurrency.bench,  # figure 6
    "memory": bench_memory.bench,      # figure 7
    "soak": bench_soak.bench,          # figure 9, only with --only soak
    "compare": bench_compare.bench,    # figure 10
    "capture": bench_capture.bench,    # issue 8: console capture's cost to the child
    "nodes": bench_nodes.bench,        # issue 9: show of a 16-node run
    "gpu": bench_gpu.bench,            # the GPU efficiency fields' share of the sampler
    "ui": bench_ui.bench,              # the dashboard: series, charts drawn, a big store
}
OPT_IN = {"soak"}


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m tests.benchmarks",
        description="tracklab's performance suite (issue 5): one table, every figure with its "
                    "target, each a ratio against a baseline measured in the same invocation.")
    p.add_argument("--quick", action="store_true",
                   help="smoke mode: small counts, one repetition, under a minute")
    p.add_argument("--only", action="append", default=[], metavar="NAME",
                   help=f"run only this benchmark (repeatable): {', '.join(BENCHES)}")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON here")
    p.add_argument("--reps", type=int, help="repetitions per figure (default 3, --quick 1)")
    p.add_argument("--minutes", type=float, default=10.0, help="soak length (default 10)")
    p.add_argument("--drive-samples", type=int, metavar="N",
                   help="samples for the memory benchmark's sampler loop (default 86,400: a day "
                        "at 1 s; --quick 300)")
    p.add_argument("--profile", action="store_true",
                   help="for every missed target, print a cProfile summary of its workload")
    p.add_argument("--strict", action="store_true", help="exit 1 when any target is missed")
    p.add_argument("--fresh-fixtures", action="store_true",
                   help="rebuild the cached scale fixtures instead of reusing them")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder")
    ns = p.parse_args(argv)
    names = [n for o in ns.only for n in o.split(",") if n]
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        p.error(f"unknown benchmark {unknown[0]!r}; choose from {', '.join(BENCHES)}")
    ns.names = names or [n for n in BENCHES if n not in OPT_IN]
    return ns


def main(argv: list[str] | None = None) -> int:
    ns = parse(argv)
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="tracklab-bench-"))
    ctx = Ctx(quick=ns.quick, reps=ns.reps or (1 if ns.quick else 3), tmp=tmp,
              cache=default_tmp() / "tracklab-bench-cache", minutes=ns.minutes,
              fresh_fixtures=ns.fresh_fixtures, drive_samples=ns.drive_samples,
              log=lambda m: print(f"[{time.perf_counter() - started:6.1f}s] {m}",
                                  file=sys.stderr, flush=True))
    rows: list[Row] = []
    timings: dict[str, float] = {}
    errors = 0
    try:
        for name in ns.names:
            t0 = time.perf_counter()
            try:
                rows.extend(BENCHES[name](ctx))
            except Exception as exc:  # noqa: BLE001 - one broken benchmark must not hide the rest
                errors += 1
                traceback.print_exc()
                rows.append(Row(name, "(benchmark crashed)", f"{type(exc).__name__}: "
                                f"{str(exc).splitlines()[0][:120] if str(exc) else ''}",
                                "", False, {"error": traceback.format_exc()}))
            timings[name] = time.perf_counter() - t0
        total = time.perf_counter() - started
        print(table(rows, ctx, total), flush=True)
        profiles = run_profiles(rows, ctx) if ns.profile else {}
        if ns.json:
            write_json(ns.json, rows, ctx, total, timings, profiles)
    finally:
        if ns.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            rmtree(tmp)
    failed = sum(r.ok is False for r in rows)
    return 1 if errors or (ns.strict and failed) else 0


def header(ctx: Ctx, total: float) -> str:
    mode = "quick (smoke counts)" if ctx.quick else "full"
    return (f"tracklab benchmarks, {datetime.datetime.now():%Y-%m-%d %H:%M}, {mode}, "
            f"median of {ctx.reps}; {platform.node()}, {os.cpu_count()} CPUs, "
            f"Python {platform.python_version()}; total {total:.0f} s")


def table(rows: list[Row], ctx: Ctx, total: float) -> str:
    cells = [("benchmark", "figure", "measured", "target", "result")]
    for r in rows:
        result = {True: "pass", False: "FAIL", None: "info"}[r.ok]
        if r.ok is None and r.value.startswith(("not installed", "skipped")):
            result = "skip"
        cells.append((r.bench, r.figure, r.value, r.target, result))
    widths = [max(len(c[i]) for c in cells) for i in range(5)]
    lines = [header(ctx, total), ""]
    for i, c in enumerate(cells):
        lines.append("  ".join(x.ljust(w) for x, w in zip(c, widths)).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    passed = sum(r.ok is True for r in rows)
    failed = sum(r.ok is False for r in rows)
    lines += ["", f"{passed} targets met, {failed} missed."]
    return "\n".join(lines)


def write_json(path: str, rows: list[Row], ctx: Ctx, total: float, timings: dict[str, float],
               profiles: dict[str, str]) -> None:
    doc = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "quick": ctx.quick, "reps": ctx.reps, "total_s": total, "bench_s": timings,
        "machine": {"node": platform.node(), "cpus": os.cpu_count(),
                    "python": platform.python_version(), "platform": platform.platform()},
        "rows": [{"bench": r.bench, "figure": r.figure, "value": r.value, "target": r.target,
                  "ok": r.ok, "data": r.data} for r in rows],
        "profiles": profiles,
    }
    Path(path).write_text(json.dumps(doc, indent=2, default=str) + "\n")


# -- profiles of missed targets ------------------------------------------------------------------


def run_profiles(rows: list[Row], ctx: Ctx) -> dict[str, str]:
    done: dict[str, str] = {}
    for r in rows:
        if r.ok is not False or r.profile is None:
            continue
        key = json.dumps(r.profile, sort_keys=True, default=str)
        if key not in done:
            ctx.log(f"profiling: {r.bench} / {r.figure.strip()}")
            try:
                done[key] = profile(r.profile, ctx)
            except Exception as exc:  # noqa: BLE001 - a profile is a courtesy, never fatal
                done[key] = f"(profile failed: {exc})"
        print(f"\n=== profile for missed target: {r.bench} / {r.figure.strip()} ===")
        print(done[key])
    return {k: v for k, v in done.items()}


def _fill(value: Any, ctx: Ctx) -> Any:
    if value == "{tmp}":
        return str(ctx.newdir("profile"))
    if isinstance(value, dict):
        return {k: _fill(v, ctx) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, ctx) for v in value]
    return value


def profile(spec: tuple[Any, ...], ctx: Ctx) -> str:
    kind = spec[0]
    if kind == "worker":
        _, name, args, *rest = spec
        extra = rest[0] if rest else None
        return str(run_worker(name, _fill(args, ctx), extra_env=extra, profile=True)["profile"])
    if kind == "cmd":
        _, argv, extra, store = spec
        out = ctx.tmp / f"cmd-{time.monotonic_ns()}.prof"
        argv = _fill(list(argv), ctx)
        subprocess.run([PY, "-m", "cProfile", "-o", str(out), *argv], cwd=ROOT,
                       env=env(store, **(extra or {})), capture_output=True, timeout=600)
        buf = io.StringIO()
        # tracklab's own functions only: the CLI's frames (runpy, typer, click) would fill the top
        pstats.Stats(str(out), stream=buf).sort_stats("cumulative").print_stats(
            r"/tracklab(_cli)?/", 15)
        lines = [ln.replace(str(ROOT) + "/", "") for ln in buf.getvalue().splitlines()
                 if ln.strip() and "Ordered by" not in ln and "List reduced" not in ln]
        return "(tracklab's own functions, by cumulative time)\n" + "\n".join(lines[1:])
    if kind == "importtime":
        _, code = spec
        p = subprocess.run([PY, "-X", "importtime", "-c", code], cwd=ROOT, env=env(None),
                           capture_output=True, text=True, timeout=120)
        entries = []
        for ln in p.stderr.splitlines():
            parts = ln.split("|")
            if len(parts) == 3 and parts[1].strip().isdigit():
                entries.append((int(parts[1]), int(parts[0].split(":")[1]), parts[2].rstrip()))
        entries.sort(reverse=True)
        lines = ["cumulative us   self us  module (python -X importtime, top 15)"]
        lines += [f"{c:>13}  {s:>8}  {m}" for c, s, m in entries[:15]]
        return "\n".join(lines)
    raise ValueError(kind)
