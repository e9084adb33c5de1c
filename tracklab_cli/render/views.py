"""Rendering of the views (sparklines, the watch dashboard, compare, plot figures).

Functions take the plain data of :mod:`tracklab.read.trends`; rich lives here and in the other render modules only.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from tracklab.read.payloads import CompareData, LiveFrame
from tracklab.textfmt import visible, visible_data
from tracklab_cli.render.fmt import duration, number, size
from tracklab_cli.render.text import command_text, num, sparkline, status_text

if TYPE_CHECKING:
    from matplotlib.axes import Axes


# -- watch ----------------------------------------------------------------------------------------

def _pct_bar(v: Any, width: int = 12) -> Text:
    f = num(v)
    if f is None:
        return Text("-".ljust(width), style="dim")
    filled = max(0, min(width, round(f / 100 * width)))
    style = "red" if f >= 90 else "yellow" if f >= 70 else "green"
    return Text("█" * filled, style=style) + Text("░" * (width - filled), style="dim")


def _count(n: Any, one: str, many: str) -> str:
    return f"{n or 0:,} {one if n == 1 else many}"


def _get(snap: dict[str, Any] | None, path: str) -> Any:
    node: Any = snap
    for part in path.split("."):
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict):
            node = node.get(part)
        else:
            return None
    return node


def _plain(value: Any) -> str:
    """A device or port name from a sample, kept to what such names are made of."""
    return "".join(ch for ch in str(value) if ch.isalnum() or ch in "_-.")[:16] or "?"


def _board(*titles: str) -> Table:
    """A table of the dashboard: every one has the same column widths, so the trends of the
    system, the GPUs and the training metrics line up in time."""
    t = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    t.add_column(titles[0], width=17, no_wrap=True, overflow="ellipsis")
    t.add_column(titles[1], width=11, justify="right", no_wrap=True)
    t.add_column(titles[2], width=19, no_wrap=True, overflow="ellipsis")
    t.add_column(titles[3], no_wrap=True)
    return t


def watch_frame(frame: LiveFrame, width: int = 100, refresh: float | None = None) -> Panel:
    """The dashboard of ``tracklab watch`` for one :func:`tracklab.read.trends.live` frame."""
    # a run's text is shown, never obeyed; the sample's few names are made safe where shown
    last_sample = frame["last"]
    frame = visible_data(frame)
    frame["last"] = last_sample
    info, last, tr = frame["info"], frame["last"], frame["trends"]
    status = status_text(info["status"])
    if info.get("exit_code") is not None:
        status.append(f" exit {info['exit_code']}")
    head = Text.assemble(status, "  ", (duration(info.get("duration")), "bold"),
                         " elapsed  ·  ", f"{frame['samples']:,} samples")
    if info.get("interval"):
        head.append(f"  ·  every {number(info['interval'])} s")
    head.append(f"\n{command_text(info.get('command'))}", style="dim")
    parts: list[Any] = [head]

    sw = max(10, min(60, width - 60))  # what the panel leaves beside the fixed columns
    sys_t = _board("system", "now", "", f"trend ({duration(frame['window'][1] - frame['window'][0])})")

    def row(lbl: str, path: str, unit: str, detail: Any = "") -> None:
        v = _get(last, path)
        if v is None and not any(x is not None for x in tr.get(path) or []):
            return
        sys_t.add_row(lbl, number(v, unit), detail, sparkline(tr.get(path), sw, unit))

    mem_total = _get(last, "memory.total")
    row("CPU (all cores)", "cpu.overall", "%", _pct_bar(_get(last, "cpu.overall")))
    row("memory", "memory.usage", "%", _pct_bar(_get(last, "memory.usage")))
    row("memory used", "memory.used", "B", f"of {size(mem_total)}" if mem_total else "")
    row("process tree CPU", "process.cpu", "%", "of one core")
    row("process tree RSS", "process.rss", "B")
    row("disk read", "disk.ioRead", "B/s")
    row("disk write", "disk.ioWrite", "B/s")
    row("network in", "network.bytesIn", "B/s")
    row("network out", "network.bytesOut", "B/s")
    for k, port in enumerate(_get(last, "network.infiniband") or []):
        where = f"port {k}" if not isinstance(port, dict) else (
            f"{_plain(port.get('device'))}/{_plain(port.get('port'))}")
        row(f"IB {where} out", f"network.infiniband.{k}.txBytes", "B/s")
        row(f"IB {where} in", f"network.infiniband.{k}.rxBytes", "B/s")
    parts.append(sys_t if sys_t.row_count else Text("no system samples yet", style="dim"))

    gpus = (last or {}).get("accelerators") or []
    if gpus:
        g_t = _board("GPU", "util", "memory  temp  power", "utilization trend")
        for i, g in enumerate(gpus):
            gid = g.get("id", i)
            mem = g.get("memory") or {}
            used, total = mem.get("used"), mem.get("total")
            scale, unit = _byte_scale(float(total or used or 1))
            mem_text = "-" if used is None else (
                f"{used / scale:.0f}/{total / scale:.0f} {unit}" if total else size(used))
            temp, power = g.get("temperature"), g.get("power")
            name = visible(str(g.get("name") or "").replace("NVIDIA ", ""))
            g_t.add_row(f"{gid} {name}".strip(), number(g.get("utilization"), "%"),
                        f"{mem_text:<10}{'-' if temp is None else f'{temp:.0f}°C':>4}"
                        f"{'-' if power is None else f'{power:.0f}W':>5}",
                        sparkline(tr.get(f"accelerators.{gid}.utilization"), sw, "%"))
            gpm = g.get("gpm") or {}
            if gpm.get("smActive") is not None:  # Hopper and newer: what utilization hides
                tensor, dram = gpm.get("tensorActive"), gpm.get("dramActive")
                g_t.add_row("  SM active", number(gpm["smActive"], "%"),
                            f"tensor {'-' if tensor is None else f'{tensor:.0f}%'} "
                            f"DRAM {'-' if dram is None else f'{dram:.0f}%'}",
                            sparkline(tr.get(f"accelerators.{gid}.gpm.smActive"), sw, "%"))
        parts.append(g_t)
    elif last is not None:
        parts.append(Text("no NVIDIA GPU in the samples", style="dim"))

    proc = (last or {}).get("process")
    if proc:
        pids = proc.get("pids") or []
        shown = " ".join(map(str, pids[:8])) + (f" +{len(pids) - 8}" if len(pids) > 8 else "")
        parts.append(Text.assemble(
            ("process tree  ", "bold"),
            f"{_count(proc.get('count'), 'process', 'processes')} · "
            f"{_count(proc.get('threads'), 'thread', 'threads')} · "
            f"CPU {number(proc.get('cpu'), '%')} · RSS {number(proc.get('rss'), 'B')}"
            + (f" · {proc['openFiles']} open files" if proc.get("openFiles") is not None
               else "") + f" · pids {shown}"))
    elif last is not None and info["status"] == "running":
        parts.append(Text("process tree: not sampled (attached SDK run or child gone)",
                          style="dim"))

    metrics = frame["metrics"]
    if metrics:
        m_t = _board("training metric", "last", "step", "trend")
        shown_keys = list(frame["metric_trends"])
        for key in shown_keys:
            s = metrics[key]
            m_t.add_row(Text(key, overflow="ellipsis"), number(s["last"]),
                        f"{s['last_step']:,}" if s["last_step"] is not None else "-",
                        sparkline(frame["metric_trends"][key], sw))
        parts.append(m_t)
        if len(metrics) > len(shown_keys):
            parts.append(Text(f"… {len(metrics) - len(shown_keys)} more training metrics "
                              f"(tracklab show {info['id']})", style="dim"))
    else:
        parts.append(Text("no training metrics yet", style="dim"))
    sub = time.strftime("%H:%M:%S", time.localtime(frame["now"]))
    sub += f" · every {refresh:g} s · Ctrl-C to stop" if refresh else ""
    spaced = [x for p in parts for x in (Text(""), p)][1:]
    return Panel(Group(*spaced), title=f"tracklab watch · {info['name']} ({info['id']})",
                 title_align="left", subtitle=sub, subtitle_align="right", width=width)


# -- compare ---------------------------------------------------------------------------------------

def _cell(v: Any, unit: str) -> str:
    if unit == "s":
        return duration(v)
    if isinstance(v, list):
        return command_text(v)
    if isinstance(v, (dict, str)) or v is None:
        return "-" if v is None else str(v)
    return number(v, unit)


def compare(data: CompareData) -> Table:
    data = visible_data(data)
    t = Table(caption="* differs: numbers by more than 10% of the largest, anything else at all",
              caption_justify="left")
    t.add_column("", width=1, no_wrap=True)
    t.add_column("")
    for r in data["runs"]:
        t.add_column(f"{r['id']}\n{r['name']}", justify="right", overflow="fold")
    for sec in data["sections"]:
        if not sec["rows"] and not sec.get("note"):
            continue
        t.add_row("", Text(sec["title"], style="bold underline"), *([""] * len(data["runs"])))
        for row in sec["rows"]:
            style = "bold yellow" if row["marked"] else ""
            t.add_row(Text("*" if row["marked"] else "", style=style), Text(row["label"]),
                      *(Text(_cell(v, row["unit"]), style=style) for v in row["values"]))
        note = sec.get("note")
        if note:
            t.add_row("", Text(note, style="dim"), *([""] * len(data["runs"])))
    return t


# -- plot -----------------------------------------------------------------------------------------

def _byte_scale(peak: float) -> tuple[float, str]:
    for i, unit in enumerate(("B", "KiB", "MiB", "GiB", "TiB")):
        if peak < 1024 ** (i + 1) or unit == "TiB":
            return 1024.0 ** i, unit
    return 1.0, "B"


def plot_figure(data: dict[str, Any], path: str, title: str) -> int:
    """Draw the panels of :func:`tracklab.read.trends.panels` into ``path`` (format from its suffix)
    with matplotlib; returns the number of panels. Raises ImportError without matplotlib."""
    from matplotlib import rc_context
    from matplotlib.figure import Figure

    panels = data["panels"]
    dur = data["end"] - data["start"]
    div, tunit = (1.0, "s") if dur < 180 else (60.0, "min") if dur < 3 * 3600 else (3600.0, "h")
    fig = Figure(figsize=(10, 1.2 + 2.0 * max(1, len(panels))), layout="constrained")
    axes = fig.subplots(max(1, len(panels)), 1, squeeze=False)[:, 0]
    first_time: Axes | None = None
    first_step: Axes | None = None
    for ax, p in zip(axes, panels):
        timed = p["axis"] == "time"
        share = first_time if timed else first_step
        if share is not None:
            ax.sharex(share)
        elif timed:
            first_time = ax
        else:
            first_step = ax
        unit = p["unit"]
        peak = max((abs(y) for s in p["series"] for y in s["y"] if y is not None), default=0.0)
        scale, shown = _byte_scale(peak) if unit in ("B", "B/s") else (1.0, unit)
        if unit == "B/s":
            shown += "/s"
        for s in p["series"]:
            xs = [x / div for x in s["x"]] if timed else s["x"]
            ys = [math.nan if y is None else y / scale for y in s["y"]]
            ax.plot(xs, ys, label=s["label"], linewidth=1.2,
                    marker="o" if len(xs) == 1 else None, markersize=3)
        ax.set_title(p["title"], loc="left", fontsize=10)
        if shown:
            ax.set_ylabel(shown)
        if unit == "%":
            ax.set_ylim(bottom=0, top=max(100.0, peak * 1.05))
        elif not p["training"] and peak >= 0 and all(
                y is None or y >= 0 for s in p["series"] for y in s["y"]):
            ax.set_ylim(bottom=0, top=peak / scale * 1.05 if peak > 0 else 1.0)
        ax.grid(True, alpha=0.3)
        if p["series"]:
            ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    for kind, label in (("time", f"time since start ({tunit})"), ("step", "step")):
        last = [ax for ax, p in zip(axes, panels) if p["axis"] == kind]
        if last:  # one label under the last panel of each axis; shared ticks stay on each
            last[-1].set_xlabel(label, fontsize=9)
    if not panels:
        axes[0].text(0.5, 0.5, "nothing recorded", ha="center", va="center")
    fig.suptitle(title, x=0.01, ha="left", fontsize=11)
    with rc_context({"svg.fonttype": "none"}):  # SVG text stays text: searchable, smaller
        fig.savefig(path, dpi=110)
    return len(panels)
