"""Figure 10 (optional): the log workload of figure 1 through wandb, MLflow and trackio.

Each tool is looked for in this interpreter and in the interpreters listed in
``$TRACKLAB_BENCH_COMPARE_PYTHON`` (``os.pathsep``-separated paths to the ``python`` of a separate
virtual environment, so their dependencies never mix with tracklab's). Nothing is installed here.
The adapter script is standalone: it runs in the other interpreter, which lacks tracklab.
MLflow logs a step per round trip to its SQLite store (minutes for 20,000 steps), so it gets at
most 1,000 steps and its times are scaled up to the full count (said in the row).
"""

from __future__ import annotations

import json
import os
import subprocess

from ._util import PY, Ctx, Row, env, median, run_worker

TOOLS = ("wandb", "mlflow", "trackio")
MLFLOW_STEPS = 1000

ADAPTER = r'''
import json, os, sys, time
tool, steps, d = sys.argv[1], int(sys.argv[2]), sys.argv[3]
keys = ("loss", "acc", "lr", "grad_norm", "tokens_per_s", "epoch", "val_loss", "val_acc")
data = [{k: s * 1e-3 + i + 0.5 for i, k in enumerate(keys)} for s in range(steps)]
os.environ.update(WANDB_MODE="offline", WANDB_DIR=d, WANDB_SILENT="true", HF_HOME=d,
                  TRACKIO_DIR=d, MLFLOW_TRACKING_URI="sqlite:///" + os.path.join(d, "mlflow.db"))
t0 = time.perf_counter()
if tool == "wandb":
    import wandb
    t1 = time.perf_counter()
    run = wandb.init(project="bench", dir=d)
    t2 = time.perf_counter()
    for x in data:
        run.log(x)
    t3 = time.perf_counter()
    run.finish()
elif tool == "mlflow":
    import mlflow
    t1 = time.perf_counter()
    mlflow.start_run()
    t2 = time.perf_counter()
    for s, x in enumerate(data):
        mlflow.log_metrics(x, step=s)
    t3 = time.perf_counter()
    mlflow.end_run()
else:
    import trackio
    t1 = time.perf_counter()
    trackio.init(project="bench")
    t2 = time.perf_counter()
    for x in data:
        trackio.log(x)
    t3 = time.perf_counter()
    trackio.finish()
t4 = time.perf_counter()
size = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(d) for f in fs)
version = sys.modules[tool].__version__
print(json.dumps({"import_s": t1 - t0, "init_s": t2 - t1, "loop_s": t3 - t2, "e2e_s": t4 - t2,
                  "bytes_per_point": size / (steps * len(keys)), "version": version}))
'''


def interpreters() -> list[str]:
    extra = [p for p in os.environ.get("TRACKLAB_BENCH_COMPARE_PYTHON", "").split(os.pathsep) if p]
    return [PY, *extra]


def has(python: str, tool: str) -> bool:
    code = f"import importlib.util, sys; sys.exit(importlib.util.find_spec({tool!r}) is None)"
    return subprocess.run([python, "-c", code], capture_output=True, timeout=60).returncode == 0


def bench(ctx: Ctx) -> list[Row]:
    found = {}
    for tool in TOOLS:
        found[tool] = next((py for py in interpreters() if has(py, tool)), None)
    rows = []
    if not any(found.values()):
        return [Row("compare", f"{tool} (same log workload)",
                    "not installed (set TRACKLAB_BENCH_COMPARE_PYTHON to another venv's python)",
                    "", None) for tool in TOOLS]
    steps = ctx.scale(20_000, 2_000)
    base = median([run_worker("bench_log.sqlite", {
        "steps": steps, "path": str(ctx.newdir("cmp-sqlite") / "b.db")})["insert_s"]
        for _ in range(ctx.reps)])
    script = ctx.tmp / "compare_adapter.py"
    script.write_text(ADAPTER)
    for tool in TOOLS:
        py = found[tool]
        if py is None:
            rows.append(Row("compare", f"{tool} (same log workload)", "not installed", "", None))
            continue
        n = min(steps, MLFLOW_STEPS) if tool == "mlflow" else steps
        ctx.log(f"compare: {tool} x {ctx.reps} ({n} steps, {py})")
        results = []
        for _ in range(ctx.reps):
            d = ctx.newdir(f"cmp-{tool}")
            p = subprocess.run([py, str(script), tool, str(n), str(d)], capture_output=True,
                               text=True, env=env(d), cwd=d, timeout=3600)
            lines = p.stdout.strip().splitlines()
            if p.returncode != 0 or not lines:
                rows.append(Row("compare", f"{tool}", f"failed: {p.stderr.strip()[-150:]}",
                                "", None))
                break
            results.append(json.loads(lines[-1]))
        else:
            k = steps / n
            loop = median([r["loop_s"] for r in results]) * k
            e2e = median([r["e2e_s"] for r in results]) * k
            v = results[0]["version"]
            scaled = f", scaled from {n:,} steps" if k != 1 else ""
            rows.append(Row("compare", f"{tool} {v}: log() {steps:,} steps x 8 floats",
                            f"{loop:.2f} s = {loop / base:.1f}x sqlite3 ({base:.2f} s); incl. "
                            f"flush {e2e:.2f} s; {median([r['bytes_per_point'] for r in results]):.0f}"
                            f" B/point; import {median([r['import_s'] for r in results]):.2f} s"
                            f"{scaled}", "", None, {"results": results, "baseline_s": base,
                                                    "scale": k, "python": py}))
    return rows

