"""The only module that builds rich output. Functions take the library's plain data."""

from __future__ import annotations

import json
import math
import shlex
import sys
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from .fmt import duration, number, when

STATUS_STYLE = {
    "running": "cyan", "finished": "green", "failed": "red", "crashed": "red",
    "killed": "red", "oom-killed": "red", "interrupted": "yellow", "terminated": "yellow",
}


def console() -> Console:
    return Console(highlight=False, soft_wrap=False)


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


def status_text(status: str) -> Text:
    return Text(status, style=STATUS_STYLE.get(status, ""))


def command_text(command: Any) -> str:
    if isinstance(command, list):
        return shlex.join(str(c) for c in command)
    return str(command or "-")


def show(data: dict[str, Any]) -> None:
    c = console()
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
        head.add_row("config", ", ".join(f"{k}={v}" for k, v in info["config"].items()))
    if info.get("tags"):
        head.add_row("tags", ", ".join(info["tags"]))
    c.print(head)

    if data["system"]:
        t = Table(title="System", title_justify="left")
        for col in ("metric", "min", "mean", "max", "last"):
            t.add_column(col, justify="left" if col == "metric" else "right")
        for r in data["system"]:
            u = r["unit"]
            t.add_row(r["label"], number(r["min"], u), number(r["mean"], u),
                      number(r["max"], u), number(r["last"], u))
        c.print(t)
    else:
        c.print("[dim]no system samples[/dim]")

    for g in data["gpus"]:
        t = Table(title=f"GPU {g['id']}" + (f" · {g['name']}" if g.get("name") else ""),
                  title_justify="left")
        for col in ("metric", "min", "mean", "max", "last"):
            t.add_column(col, justify="left" if col == "metric" else "right")
        for r in g["rows"]:
            u = r["unit"]
            t.add_row(r["label"], number(r["min"], u), number(r["mean"], u),
                      number(r["max"], u), number(r["last"], u))
        c.print(t)
    if not data["gpus"]:
        c.print("[dim]no NVIDIA GPU recorded[/dim]")

    if data["metrics"]:
        t = Table(title="Training metrics", title_justify="left")
        for col in ("metric", "last", "min", "max", "count", "last step"):
            t.add_column(col, justify="left" if col == "metric" else "right")
        for key, s in data["metrics"].items():
            t.add_row(Text(key), number(s["last"]), number(s["min"]), number(s["max"]),
                      f"{s['count']:,}", str(s["last_step"]))
        c.print(t)
    else:
        c.print("[dim]no training metrics[/dim]")


def run_list(runs: list[dict[str, Any]]) -> None:
    c = console()
    if not runs:
        c.print("no runs")
        return
    t = Table()
    for col in ("id", "name", "project", "status", "exit", "started", "duration", "command"):
        t.add_column(col, overflow="fold" if col == "command" else "ellipsis")
    for r in runs:
        t.add_row(r["id"], str(r["name"]), str(r["project"]), status_text(r["status"]),
                  "-" if r.get("exit_code") is None else str(r["exit_code"]),
                  when(r.get("started_at")), duration(r.get("duration")),
                  command_text(r.get("command")))
    c.print(t)
