"""Figure 4: start-up wall time against ``python -c "import psutil"``, interleaved, median of 7.

``tracklab run -- true`` is timed through ``python -m tracklab_cli`` and the installed
``tracklab`` entry point, into a store created beforehand (schema creation is not measured).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ._util import PY, Ctx, Row, fmt, interleaved, median, ratio_row, wall


def entry_point() -> str | None:
    here = Path(PY).parent / "tracklab"
    return str(here) if here.exists() else shutil.which("tracklab")


def bench(ctx: Ctx) -> list[Row]:
    reps = max(ctx.reps, 3 if ctx.quick else 7)
    store = ctx.newdir("startup-store")
    run_m = [PY, "-m", "tracklab_cli", "run", "-q", "--", "true"]
    cmds = {
        "pass": [PY, "-c", "pass"],
        "psutil": [PY, "-c", "import psutil"],
        "tracklab": [PY, "-c", "import tracklab"],
        "run -m": run_m,
    }
    ep = entry_point()
    if ep:
        cmds["run entry"] = [ep, "run", "-q", "--", "true"]
    for c in cmds.values():  # warm the page cache and create the store's schema
        wall(c, store)
    ctx.log(f"startup: {len(cmds)} commands x {reps}, interleaved")
    times = interleaved({k: (lambda c=c: wall(c, store)) for k, c in cmds.items()}, reps)
    med = {k: median(v) for k, v in times.items()}
    base = med["psutil"]
    rows = [
        ratio_row("startup", 'python -c "import tracklab"', med["tracklab"], base, 1.3,
                  base_label="import psutil", data={"samples": times["tracklab"]},
                  profile=("importtime", "import tracklab")),
        ratio_row("startup", "python -m tracklab_cli run -q -- true (store exists)",
                  med["run -m"], base, 3.5, base_label="import psutil",
                  data={"samples": times["run -m"]},
                  profile=("cmd", ["-m", "tracklab_cli", "run", "-q", "--", "true"], None,
                           str(store))),
    ]
    if ep:
        rows.append(ratio_row("startup", f"{ep} run -q -- true (store exists)",
                              med["run entry"], base, 3.5, base_label="import psutil",
                              data={"samples": times["run entry"]},
                              profile=("cmd", [ep, "run", "-q", "--", "true"], None,
                                       str(store))))
    else:
        rows.append(Row("startup", "tracklab entry point", "not installed", "", None))
    rows.append(Row("startup", "  python -c pass / import psutil (reference)",
                    f"{fmt(med['pass'])} / {fmt(base)}", "", None,
                    {"pass": times["pass"], "psutil": times["psutil"]}))
    return rows
