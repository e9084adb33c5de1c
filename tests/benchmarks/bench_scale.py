"""Figures 5 and 8: reading a big run costs what reading a small one does.

The big run holds 1,000,000 training points (100 keys x 10,000 steps, logged as ten calls of ten
keys per step) and 86,400 full system samples (a day at 1 s: eight fake GPUs, a process tree);
the small run the same 100 keys once and 10 samples. ``ls`` compares a store of 10,000 runs with
one of 10. CLI commands run as subprocesses with output to a pipe; the library calls run in one
warmed-up interpreter. Fixtures are cached (see fixtures.py).
"""

from __future__ import annotations

import subprocess
import time
from typing import Any

from ._util import (
    PY,
    ROOT,
    Ctx,
    Row,
    env,
    fmt,
    interleaved,
    median,
    ratio_row,
    run_worker,
    wall,
    window,
)
from .fixtures import scale_fixtures

CLI = [PY, "-m", "tracklab_cli"]


def worker_read(big: list[str], small: list[str], many: str, few: str,
                reps: int) -> dict[str, Any]:
    from tracklab.read.runs import list_runs, open_run
    from tracklab.read.show import summarize

    def info(store: str, run_id: str) -> float:
        t0 = time.perf_counter()
        v = open_run(run_id, store)
        v.info  # noqa: B018 - the property is the work
        v.close()
        return time.perf_counter() - t0

    def summary(store: str, run_id: str) -> float:
        t0 = time.perf_counter()
        v = open_run(run_id, store)
        summarize(v)
        v.close()
        return time.perf_counter() - t0

    def ls(store: str) -> float:
        t0 = time.perf_counter()
        list_runs(store)
        return time.perf_counter() - t0

    fns = {"info big": lambda: info(*big), "info small": lambda: info(*small),
           "summary big": lambda: summary(*big), "summary small": lambda: summary(*small),
           "ls many": lambda: ls(many), "ls few": lambda: ls(few)}
    for fn in fns.values():
        fn()  # imports, page cache
    with window():
        times = interleaved(fns, reps)
    return {k: median(v) for k, v in times.items()}


def _info(row: Row) -> Row:
    row.target, row.ok = "", None
    return row


def cli_commands() -> set[str]:
    p = subprocess.run([*CLI, "--help"], cwd=ROOT, env=env(None), capture_output=True, text=True,
                       timeout=60)
    names = set()
    section = False
    for line in p.stdout.splitlines():
        if line.strip().startswith("Commands"):
            section = True
            continue
        if section and line.startswith("  ") and line.strip():
            names.add(line.split()[0])
    return names


def help_text(cmd: str) -> str:
    p = subprocess.run([*CLI, cmd, "--help"], cwd=ROOT, env=env(None), capture_output=True,
                       text=True, timeout=60)
    return p.stdout


def bench(ctx: Ctx) -> list[Row]:
    fx = scale_fixtures(ctx)
    big, small, many, few = fx["big"], fx["small"], fx["many"], fx["few"]
    reps = max(ctx.reps, 2 if ctx.quick else 5)
    npts, nsamp = fx["steps"] * 100, fx["samples"]
    ctx.log(f"scale: CLI x {reps} (big run {npts:,} points + {nsamp:,} samples, "
            f"{big['bytes'] / 1e6:.0f} MB; {many['runs']:,} runs)")

    def cli(*args: str, store: str) -> Any:
        return lambda: wall([*CLI, *args], store)

    cmds = {
        "show json big": cli("show", big["run_id"], "--json", store=big["store"]),
        "show json small": cli("show", small["run_id"], "--json", store=small["store"]),
        "show big": cli("show", big["run_id"], store=big["store"]),
        "show small": cli("show", small["run_id"], store=small["store"]),
        "ls many": cli("ls", store=many["store"]),
        "ls few": cli("ls", store=few["store"]),
    }
    extra = cli_commands() & {"watch", "report"}
    notes = []
    if "report" in extra:
        out = str(ctx.newdir("report") / "r.html")
        cmds["report big"] = cli("report", big["run_id"], "-o", out, store=big["store"])
        cmds["report small"] = cli("report", small["run_id"], "-o", out, store=small["store"])
    if "watch" in extra:
        h = help_text("watch")
        once = next((o for o in ("--once", "--frames", "--count", "--iterations") if o in h), None)
        if once:
            tail = [once] if once == "--once" else [once, "1"]
            cmds["watch big"] = cli("watch", big["run_id"], *tail, store=big["store"])
            cmds["watch small"] = cli("watch", small["run_id"], *tail, store=small["store"])
        else:
            notes.append("watch exists but has no --once/--frames option: not timed")
    for fn in cmds.values():
        fn()  # warm-up
    t = {k: median(v) for k, v in interleaved(cmds, reps).items()}
    ctx.log("scale: library calls")
    read_args = {"big": [big["store"], big["run_id"]], "small": [small["store"], small["run_id"]],
                 "many": many["store"], "few": few["store"], "reps": ctx.scale(20, 5)}
    lib = run_worker("bench_scale.read", read_args)
    lprof = ("worker", "bench_scale.read", read_args)

    def cprof(*args: str, store: str) -> tuple[Any, ...]:
        return ("cmd", ["-m", "tracklab_cli", *args], None, store)

    size = f"{npts:,} points + {nsamp:,} samples vs 100 points"
    rows = [
        ratio_row("scale", f"tracklab show --json: {size}", t["show json big"],
                  t["show json small"], 1.5, base_label="small",
                  profile=cprof("show", big["run_id"], "--json", store=big["store"])),
        ratio_row("scale", "tracklab show (rendered, to a pipe)", t["show big"], t["show small"],
                  1.5, base_label="small", profile=cprof("show", big["run_id"], store=big["store"])),
        ratio_row("scale", "open_run(...).info", lib["info big"], lib["info small"], 1.5,
                  base_label="small", profile=lprof),
        # where show's own time goes (show, above, is the figure with the target): bounded work
        # (at most 100 samples and a fixed number of trend bins) that the small run lacks
        _info(ratio_row("scale", "  of which open_run(...) + summarize() in-process",
                        lib["summary big"], lib["summary small"], 1.5, base_label="small",
                        profile=lprof)),
        ratio_row("scale", f"tracklab ls: {many['runs']:,} runs vs 10", t["ls many"], t["ls few"],
                  1.5, base_label="10 runs", profile=cprof("ls", store=many["store"])),
        ratio_row("scale", f"list_runs(): {many['runs']:,} runs vs 10", lib["ls many"],
                  lib["ls few"], 1.5, base_label="10 runs", profile=lprof),
        Row("scale", "  fixtures", f"big run {big['bytes'] / 1e6:.1f} MB, {many['runs']:,}-run "
            f"store {many['bytes'] / 1e6:.1f} MB; "
            + ("cached" if fx.get("cached") else f"built in {fx.get('build_s', 0):.0f} s"),
            "", None, {"fixtures": fx}),
    ]
    rows.append(Row("issue 7", f"show on the {nsamp:,}-sample run (wall, incl. start-up)",
                    f"{fmt(t['show big'])}  (--json {fmt(t['show json big'])})", "", None))
    for cmd in ("report", "watch"):
        if f"{cmd} big" in t:
            tail = ["-o", str(ctx.tmp / "profile-report.html")] if cmd == "report" else ["--once"]
            rows.append(ratio_row("issue 7", f"{cmd} on the {nsamp:,}-sample run",
                                  t[f"{cmd} big"], t[f"{cmd} small"], 1.5, base_label="small",
                                  profile=cprof(cmd, big["run_id"], *tail, store=big["store"])))
        elif cmd not in extra:
            rows.append(Row("issue 7", f"{cmd} on the {nsamp:,}-sample run",
                            f"skipped: no '{cmd}' command yet", "", None))
    for note in notes:
        rows.append(Row("issue 7", "watch", f"skipped: {note}", "", None))
    return rows
