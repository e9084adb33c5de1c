"""Fixed costs against psrecord: start-up, the wrapper's overhead and idle CPU, a fresh-store
``init().finish()``, the read commands and every ``--help``.

psrecord (``pip install psrecord``, in this interpreter's environment) is the peer: it starts a
command and samples it with psutil, which is the least a wrapper can do. Every figure alternates
tracklab and its baseline, each in a fresh process, and takes the median of at least 5.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from pathlib import Path

from ._util import PY, ROOT, Ctx, Row, env, fmt, interleaved, median, ratio_row, wall

# the commands whose --help is timed; `tracklab --help` itself too
COMMANDS = ("run", "show", "ls", "logs", "tag", "watch", "plot", "report", "compare", "export",
            "rm", "ui")


def _script(name: str) -> list[str] | None:
    here = Path(PY).parent / name
    if here.exists():
        return [str(here)]
    found = shutil.which(name)
    return [found] if found else None


def bench(ctx: Ctx) -> list[Row]:
    tracklab = _script("tracklab")
    if tracklab is None:
        return [Row("light", "tracklab entry point", "not installed", "", None)]
    has_psrecord = importlib.util.find_spec("psrecord") is not None
    psrecord = (_script("psrecord") or [PY, "-m", "psrecord"]) if has_psrecord else None
    reps = max(ctx.reps, 5)
    store = ctx.newdir("light-store")
    rows: list[Row] = []

    # -- start-up: a command that does nothing, and a fresh store's init().finish() ----------
    fresh = iter(range(10**6))

    def init_finish() -> float:
        return wall([PY, "-c", "import tracklab; tracklab.init().finish()"],
                    ctx.newdir(f"light-fresh-{next(fresh)}"))

    cmds = {
        "psutil": lambda: wall([PY, "-c", "import psutil"], store),
        "run true": lambda: wall([*tracklab, "run", "-q", "--", "true"], store),
        "init": init_finish,
    }
    if psrecord:
        cmds["psrecord true"] = lambda: wall([*psrecord, "true"], store)
    for fn in cmds.values():  # warm the page cache and the bytecode cache; creates the store
        fn()
    ctx.log(f"light: start-up, {len(cmds)} commands x {reps}, interleaved")
    times = interleaved(cmds, reps)
    med = {k: median(v) for k, v in times.items()}
    psutil_s = med["psutil"]
    if psrecord:
        rows.append(ratio_row("light", "tracklab run -q -- true (store exists)", med["run true"],
                              med["psrecord true"], 1.5, base_label="psrecord true",
                              data={"samples": times["run true"],
                                    "psrecord": times["psrecord true"]},
                              profile=("cmd", ["-m", "tracklab_cli", "run", "-q", "--", "true"],
                                       None, str(store))))
    else:
        rows.append(Row("light", "psrecord (the peer)", "not installed: pip install psrecord",
                        "", None))
    rows.append(ratio_row("light", 'python -c "import tracklab; tracklab.init().finish()", '
                          "fresh store", med["init"], psutil_s, 2.0, base_label="import psutil",
                          data={"samples": times["init"]},
                          profile=("cmd", ["-c", "import tracklab; tracklab.init().finish()"],
                                   None, "{tmp}")))

    # -- the wrapper's overhead around a 5 s command ----------------------------------------------
    if psrecord:
        secs = 1 if ctx.quick else 5
        sleep = {"run": lambda: wall([*tracklab, "run", "-q", "--", "sleep", str(secs)], store),
                 "psrecord": lambda: wall([*psrecord, f"sleep {secs}"], store)}
        ctx.log(f"light: overhead around sleep {secs}, 2 x {reps}, interleaved")
        st = interleaved(sleep, reps)
        ours, theirs = median(st["run"]) - secs, median(st["psrecord"]) - secs
        rows.append(ratio_row("light", f"tracklab run -- sleep {secs}: wall minus {secs} s",
                              ours, theirs, 1.5, base_label="psrecord",
                              data={"samples": st["run"], "psrecord": st["psrecord"]}))

        # -- idle CPU: a silent command sampled once a second ------------------------------------
        secs = 5 if ctx.quick else 60
        ctx.log(f"light: wrapper CPU around sleep {secs} at --interval 1, {reps} pairs side by side")
        ours_cpu: list[float] = []
        theirs_cpu: list[float] = []
        for _ in range(reps):
            # side by side, not one after the other: both idle, and a pair costs one minute
            a = _Timed([*tracklab, "run", "-q", "--interval", "1", "--", "sleep", str(secs)],
                       store)
            b = _Timed([*psrecord, f"sleep {secs}", "--interval", "1"], store)
            ours_cpu.append(a.cpu())
            theirs_cpu.append(b.cpu())
        rows.append(ratio_row("light", f"wrapper CPU, all threads, sleep {secs} at --interval 1 "
                              "(no GPU driver)" if not _gpu_driver() else
                              f"wrapper CPU, all threads, sleep {secs} at --interval 1",
                              median(ours_cpu), median(theirs_cpu), 1.5, base_label="psrecord",
                              data={"samples": ours_cpu, "psrecord": theirs_cpu}))

    # -- the read commands and --help ----------------------------------------------------------------
    read = {
        "psutil": lambda: wall([PY, "-c", "import psutil"], store),
        "show": lambda: wall([*tracklab, "show", "latest"], store),
        "ls": lambda: wall([*tracklab, "ls"], store),
        "--help": lambda: wall([*tracklab, "--help"], store),
    }
    for c in COMMANDS:
        read[f"{c} --help"] = lambda c=c: wall([*tracklab, c, "--help"], store)
    for fn in read.values():
        fn()
    ctx.log(f"light: read commands and --help, {len(read)} commands x {reps}, interleaved")
    rt = interleaved(read, reps)
    rmed = {k: median(v) for k, v in rt.items()}
    base = rmed["psutil"]
    for key, label in (("show", "tracklab show latest"), ("ls", "tracklab ls")):
        rows.append(ratio_row("light", label, rmed[key], base, 2.5, base_label="import psutil",
                              data={"samples": rt[key]},
                              profile=("cmd", ["-m", "tracklab_cli", *label.split()[1:]], None,
                                       str(store))))
    helps = {k: v for k, v in rmed.items() if k.endswith("--help")}
    slowest = max(helps, key=lambda k: helps[k])
    rows.append(ratio_row("light", f"slowest --help of {len(helps)} (tracklab {slowest})",
                          helps[slowest], base, 3.0, base_label="import psutil",
                          data={"all": helps},
                          profile=("cmd", ["-m", "tracklab_cli", *slowest.split()], None,
                                   str(store))))
    rows.append(Row("light", "  every --help (reference)",
                    ", ".join(f"{k.replace(' --help', '') if k != '--help' else '(none)'} "
                              f"{fmt(v)}" for k, v in helps.items()), "", None))
    return rows


class _Timed:
    """A command started now, its CPU time read when it has ended."""

    def __init__(self, cmd: list[str], store: Path) -> None:
        self.cmd = cmd
        self.p = subprocess.Popen(cmd, cwd=ROOT, env=env(store), stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)

    def cpu(self) -> float:
        _, status, usage = os.wait4(self.p.pid, 0)
        self.p.returncode = os.waitstatus_to_exitcode(status)
        if self.p.returncode != 0:
            raise RuntimeError(f"{' '.join(self.cmd)} exited {self.p.returncode}")
        return usage.ru_utime + usage.ru_stime


def _gpu_driver() -> bool:
    return any(os.path.exists(p) for p in ("/dev/nvidiactl", "/proc/driver/nvidia/version"))
