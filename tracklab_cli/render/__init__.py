"""The only module that builds rich output. Functions take the library's plain data."""

from __future__ import annotations

import json
import math
import sys
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from tracklab.read.payloads import RunInfo, ShowData
from tracklab.textfmt import visible, visible_data
from tracklab_cli.render.fmt import duration, number, size, when
from tracklab_cli.render.text import command_text, sparkline, status_text, trend_title


def console() -> Console:
    # no markup: a run named "[link=...]" is a name, not a link
    return Console(highlight=False, soft_wrap=False, markup=False)


def _json_default(v: Any) -> Any:
    return str(v)


def _jsonable(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)  # strict JSON has no NaN/Infinity: print them as strings
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v


def print_json(data: Any, indent: int | None = 2) -> None:
    sys.stdout.write(json.dumps(_jsonable(data), indent=indent, default=_json_default,
                                allow_nan=False) + "\n")


def show(data: ShowData) -> None:
    from tracklab_cli.render.tables import figures_table

    c = console()
    lines = [dict(r, line=visible(r["line"], colours=True)) for r in data.get("last_lines") or []]
    data = visible_data(data)  # a run's text is shown, never obeyed
    data["last_lines"] = lines
    trend = trend_title(data) if data.get("trend_window") else None
    info = data["info"]
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    head.add_row("run", f"{info['id']}  ({info['name']})")
    head.add_row("project", str(info["project"]))
    status = status_text(info["status"])
    if info.get("exit_code") is not None:
        status.append(f"  exit {info['exit_code']}")
    if info.get("signal"):
        status.append(f" (signal {info['signal']})")
    head.add_row("status", status)
    head.add_row("command", command_text(info.get("command")))
    head.add_row("host", f"{info.get('host')}" + (
        f"  nodes: {', '.join(info['nodes'])}" if len(info.get("nodes") or []) > 1 else ""))
    head.add_row("started", when(info.get("started_at")))
    head.add_row("duration", duration(info.get("duration")))
    head.add_row("samples", str(data.get("samples", 0)))
    if info.get("config"):
        head.add_row("config", Text(", ".join(f"{k}={v}" for k, v in _flat(info["config"]))))
    if info.get("tags"):
        head.add_row("tags", ", ".join(info["tags"]))
    context_rows(head, data)  # notes, code, python, summary, output
    c.print(head)
    last_lines(c, data)
    usage(c, data)  # percentages' bases, GPUs given, energy, diagnosis
    nodes = data.get("fleet")
    if nodes:
        fleet(c, nodes)

    def figures(title: str, header: list[str], rows: list[list[Any]],
                trends: list[tuple[Any, str]]) -> None:
        c.print(figures_table(title, header, rows, c.width, trend,
                              lambda w: [sparkline(v, w, u) for v, u in trends]))

    head5 = ["metric", "min", "mean", "max", "last"]
    if data["system"]:
        figures("System", head5, [[r["label"], number(r["min"], r["unit"]),
                                   number(r["mean"], r["unit"]), number(r["max"], r["unit"]),
                                   number(r["last"], r["unit"])] for r in data["system"]],
                [(r.get("trend"), r["unit"]) for r in data["system"]])
    else:
        c.print(Text("no system samples", style="dim"))

    for g in data["gpus"]:
        figures(f"GPU {g['id']}" + (f" · {g['name']}" if g.get("name") else ""), head5,
                [[r["label"], number(r["min"], r["unit"]), number(r["mean"], r["unit"]),
                  number(r["max"], r["unit"]), number(r["last"], r["unit"])] for r in g["rows"]],
                [(r.get("trend"), r["unit"]) for r in g["rows"]])
    if not data["gpus"]:
        c.print(Text("no NVIDIA GPU recorded", style="dim"))

    if data["metrics"]:
        figures("Training metrics", ["metric", "last", "min", "max", "count", "last step"],
                [[key, number(s["last"]), number(s["min"]), number(s["max"]), f"{s['count']:,}",
                  str(s["last_step"])] for key, s in data["metrics"].items()],
                [(s.get("trend"), "") for s in data["metrics"].values()])
    else:
        c.print(Text("no training metrics", style="dim"))


_LS_CAPS = {"name": 20, "project": 12}


def run_list(runs: list[RunInfo]) -> None:
    c = console()
    runs = visible_data(runs)
    if not runs:
        c.print("no runs")
        return
    peaks = [(h, f) for h, f in _LS_PEAKS if any(f(_peaks(r)) for r in runs)]
    cols = ["id", "name", "project", "status", "exit", "started", "duration",
            *(h for h, _ in peaks), "command"]
    rows = [[r["id"], str(r["name"]), str(r["project"]), r["status"],
             "-" if r.get("exit_code") is None else str(r["exit_code"]),
             when(r.get("started_at"), short=True), duration(r.get("duration")),
             *(f(_peaks(r)) or "-" for _, f in peaks), command_text(r.get("command"))]
            for r in runs]
    # One line per run. Short columns keep their full width; name and project are capped; the
    # command gets what is left of the terminal. If even that does not fit, the peak columns
    # and then the start time give way (`tracklab ls --json` has everything).
    widths = [max(len(col), *(len(row[i]) for row in rows)) for i, col in enumerate(cols)]
    for i, col in enumerate(cols):
        if col in _LS_CAPS:
            widths[i] = min(widths[i], _LS_CAPS[col])
    for drop in [*(h for h, _ in peaks), "started", None]:
        fixed = sum(widths[:-1]) + 3 * len(cols) + 1  # cell padding and borders
        if fixed + 12 <= c.width or drop is None:
            break
        i = cols.index(drop)
        del cols[i], widths[i]
        for row in rows:
            del row[i]
    widths[-1] = max(10, min(widths[-1], c.width - fixed))
    t = Table()
    for col, width in zip(cols, widths):
        t.add_column(col, no_wrap=True, overflow="ellipsis", min_width=width, max_width=width)
    for row in rows:
        t.add_row(*row[:3], status_text(row[3]), *row[4:])
    c.print(t)


def _fleet_value(v: Any, unit: str) -> str:
    if unit == "s":
        return duration(v)
    if unit == "1/s":
        return "-" if v is None else f"{number(v)}/s"
    return number(v, unit)


# (header, key, unit) of the per-node table; a column no node has a value for is left out
_NODE_COLUMNS = [
    ("duration", "duration", "s"), ("start", "start_delay", "s"),
    ("CPU avg", "cpu_mean", "%"), ("CPU max", "cpu_peak", "%"), ("mem max", "memory_peak", "%"),
    ("GPU avg", "gpu_util_mean", "%"), ("GPU mem", "gpu_memory_peak", "B"),
    ("step", "last_step", ""), ("steps/s", "steps_per_s", "1/s"),
]


def fleet(c: Console, f: dict[str, Any]) -> None:
    """A run across nodes: one row per node, min/mean/max over nodes, the stragglers."""
    nodes = f["nodes"]
    cols = [(h, k, u) for h, k, u in _NODE_COLUMNS if any(n.get(k) is not None for n in nodes)]
    if max((n.get("start_delay") or 0) for n in nodes) < 1.0:  # started together: no column
        cols = [col for col in cols if col[1] != "start_delay"]
    offsets = f.get("clock_offsets")
    statuses = len({n["status"] for n in nodes}) > 1  # all alike: the header says it
    t = Table(title=f"Nodes ({len(nodes)})", title_justify="left", box=box.SIMPLE_HEAD,
              pad_edge=False, collapse_padding=True)
    t.add_column("node", no_wrap=True)
    if statuses:
        t.add_column("status", no_wrap=True)
    for header, _k, _u in cols:
        t.add_column(header, justify="right", no_wrap=True)
    if offsets:
        t.add_column("clock", justify="right", no_wrap=True)
    for n in nodes:
        row: list[Any] = [Text(str(n["node"]))] + ([status_text(n["status"])] if statuses else [])
        row += [("+" if k == "start_delay" else "") + _fleet_value(n.get(k), u)
                for _h, k, u in cols]
        if offsets:
            off = n.get("clock_offset")
            row.append("-" if off is None else f"{off:+.3f} s")
        t.add_row(*row)
    c.print(t)

    s = Table(title="Fleet (over nodes)", title_justify="left")
    for col in ("figure", "min", "mean", "max"):
        s.add_column(col, justify="left" if col == "figure" else "right")
    for r in f["summary"]:
        u = r["unit"]
        if r["key"] == "start_delay" and r["max"] < 1.0:
            continue
        s.add_row(r["label"], f"{_fleet_value(r['min'], u)} ({r['min_node']})",
                  _fleet_value(r["mean"], u), f"{_fleet_value(r['max'], u)} ({r['max_node']})")
    c.print(s)

    for title, item, name in (("slowest node", f.get("slowest_node"), None),
                              ("slowest GPU", f.get("slowest_gpu"), "gpu")):
        if not item:
            continue
        who = f"{item['node']}" + (f" GPU {item['gpu']}" if name else "")
        line = Text(f"{title}: ", style="bold")
        line.append(who, style="yellow")
        line.append(f" · {_fleet_value(item['value'], item['unit'])} ({item['by']}")
        pct = item.get("behind_mean_pct")
        if pct is not None and item["unit"] != "s":
            line.append(f", {pct:.1f}% below the mean")
        elif pct is not None:
            line.append(f", {pct:.1f}% above the mean")
        line.append(")")
        if name and item.get("temperature_peak") is not None:
            line.append(f" · peak {number(item['temperature_peak'], '°C')}")
        c.print(line)


# -- run context -------------------------------------------------------------------------


def _flat(d: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out += _flat(v, f"{prefix}{k}.")
        else:
            out.append((f"{prefix}{k}", v))
    return out


def code_text(code: dict[str, Any]) -> str:
    if not code or code.get("repo") is None:
        return "not in a git repository"
    if code.get("commit") is None:
        return f"{code['repo']} (no commits)"
    text: str = code["commit"][:12]
    text += f" on {code['branch']}" if code.get("branch") else " (detached)"
    if code.get("dirty"):
        text += f", dirty: diff {size(code.get('diff_bytes') or 0)}"
        if code.get("diff_sha256"):
            text += f" sha256 {code['diff_sha256'][:12]}"
        text += " (saved)" if code.get("diff") else ""
    elif code.get("dirty") is False:
        text += ", clean"
    if code.get("untracked"):
        text += f", {code['untracked']:,} untracked file(s)"
    return text


def context_rows(head: Table, data: ShowData) -> None:
    info = data["info"]
    if info.get("notes"):
        head.add_row("notes", Text(str(info["notes"])))
    ctx = info.get("context") or {}
    for key in ("group", "job_type"):  # init(group=, job_type=): wandb's
        if ctx.get(key):
            head.add_row(key.replace("_", " "), Text(str(ctx[key])))
    if ctx.get("code") is not None:
        head.add_row("code", Text(code_text(ctx["code"])))
    py = ctx.get("python")
    if py:
        pk = ", ".join(f"{k} {v}" for k, v in (ctx.get("packages") or {}).items() if v)
        head.add_row("python", Text(f"{py.get('version')} {py.get('executable')}"
                                    + (f" · {pk}" if pk else "")))
    user = ((info.get("summary") or {}).get("user")) or {}
    if user:
        head.add_row("summary", Text(", ".join(f"{k}={number(v) if isinstance(v, (int, float)) else v}"
                                               for k, v in _flat(user))))
    out = (info.get("summary") or {}).get("console") or {}
    if out.get("captured"):
        n = out.get("lines", 0)
        text = f"{n:,} line{'' if n == 1 else 's'} stored (tracklab logs {info['id']})"
        if out.get("trimmed"):
            text += f", {out['trimmed']:,} left out in the middle (limit {size(out['limit'])})"
        if out.get("dropped"):
            text += f", {out['dropped']:,} dropped (the store did not keep up)"
        head.add_row("output", text)
    elif out.get("captured") is False:
        head.add_row("output", "not captured")


def last_lines(c: Console, data: ShowData) -> None:
    """A run that ended badly: its last lines of output, beside its status."""
    lines = data.get("last_lines") or []
    if not lines:
        return
    c.print(Text(f"last {len(lines)} lines of output", style="bold"))
    for r in lines:  # made visible by show(): colour codes dropped, other escapes shown
        text = Text(r["line"])
        if r["stream"] == "stderr":
            text.stylize("red")
        elif r["stream"] == "tracklab":
            text.stylize("dim")
        c.print(Text("  ").append_text(text), soft_wrap=True)


# -- what the run used ----------------------------------------------------------------


def _peaks(run: RunInfo) -> dict[str, Any]:
    return ((run.get("summary") or {}).get("peaks")) or {}


def _energy_text(e: dict[str, Any] | None) -> str | None:
    return None if not e or e.get("total_j") is None else number(e["total_j"], "J")


# (header, value from the run's stored peaks): a column no listed run has is left out
_LS_PEAKS: list[tuple[str, Any]] = [
    ("peak RSS", lambda p: None if p.get("process_rss_peak") is None
     else size(p["process_rss_peak"])),
    ("GPU mem", lambda p: None if p.get("gpu_memory_peak") is None
     else size(p["gpu_memory_peak"])),
    ("energy", lambda p: _energy_text(p.get("energy"))),
]


def usage(c: Console, data: ShowData) -> None:
    """The bases of the percentages, the GPUs the run was given, its energy, the diagnosis."""
    res = data.get("resources") or {}
    t = Table.grid(padding=(0, 2))
    t.add_column(style="bold")
    t.add_column()
    if res:
        mem = f"host RAM ({number(res.get('memory_total'), 'B')})"
        if res.get("memory_base") == "container":
            mem += f"; container rows: its limit ({number(res.get('memory_limit'), 'B')})"
        t.add_row("memory % of", mem)
        cores = res.get("cpu_count")
        cpu = f"host ({cores} cores)" if cores else "host"
        if res.get("cpu_base") == "container":
            cpu += f"; container rows: its quota ({res['cpu_quota']:g} cores)"
        t.add_row("CPU % of", cpu + "; process tree: one core")
        gpus, given, cvd = res.get("gpus") or [], res.get("gpus_given"), res.get(
            "cuda_visible_devices")
        if gpus or cvd is not None:
            if cvd is None:
                text = f"all {len(gpus)} (CUDA_VISIBLE_DEVICES unset)"
            else:
                ids = "none" if given == [] else ("?" if given is None else
                                                  ", ".join(map(str, given)))
                text = f"{ids} (CUDA_VISIBLE_DEVICES={cvd})" + (
                    f" of {len(gpus)}" if gpus else "")
            t.add_row("GPUs given", text)
    e = data.get("energy")
    if e:
        parts = [f"{name} {number(e[f'{key}_j'], 'J')} ({e.get(f'{key}_source') or '?'})"
                 for key, name in (("cpu", "CPU"), ("gpu", "GPU")) if e.get(f"{key}_j") is not None]
        text = (f"{number(e['total_j'], 'J')} = {e['total_kwh']:.6f} kWh: " + " + ".join(parts)
                if e.get("total_j") is not None else "not measured")
        if e.get("co2_g") is not None:
            text += f" · {e['co2_g']:.3g} g CO2e at {e['carbon_intensity']:g} g/kWh"
        if e.get("missing"):
            text += " · not readable: " + ", ".join(
                {"cpu": "CPU (no RAPL, or root-only)", "gpu": "GPU (no energy reading)"}.get(m, m)
                for m in e["missing"])
        t.add_row("energy", text)
    c.print(t)
    findings = data.get("diagnosis")
    if findings is None:
        return
    c.print(Text("Diagnosis", style="bold"))
    if not findings:
        c.print(Text("  nothing to report", style="dim"))
        return
    style = {"error": "red", "warning": "yellow", "info": "cyan"}
    d = Table.grid(padding=(0, 1))
    d.add_column(no_wrap=True)
    d.add_column(no_wrap=True)
    d.add_column()
    for f in findings:
        cell = Text(f["message"])
        cell.append("\n" + f["evidence"], style="dim")
        d.add_row("", Text(f["severity"], style=style.get(f["severity"], "")), cell)
    c.print(d)
