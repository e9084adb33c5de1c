"""The options of ``tracklab run``, declared once for both the fast parser and the Typer app."""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class Opt:
    names: tuple[str, ...]
    dest: str
    kind: type  # float, str, bool (a flag) or list (repeatable str)
    default: Any
    help: str
    metavar: str = ""


MIN_INTERVAL = 0.1

RUN_OPTIONS: list[Opt] = [
    Opt(("--interval", "-i"), "interval", float, 5.0,
        "Seconds between samples (at least 0.1).", "S"),
    Opt(("--project", "-p"), "project", str, None, "Project the run belongs to.", "P"),
    Opt(("--name", "-n"), "name", str, None, "Name of the run (default: script name + id).", "N"),
    Opt(("--dir", "-d"), "dir", str, None,
        "Store folder (default: $TRACKLAB_DIR, else ./.tracklab).", "D"),
    Opt(("--node-id",), "node_id", str, None,
        "This node's id (default: $TRACKLAB_NODE_ID, scheduler variables, host name).", "ID"),
    Opt(("--run-id",), "run_id", str, None,
        "Run id to use (default: from SLURM_JOB_ID / TORCHELASTIC_RUN_ID, else new).", "ID"),
    Opt(("--kill-after",), "kill_after", float, 10.0,
        "Seconds a child may take to exit after SIGTERM before it gets SIGKILL.", "S"),
    Opt(("--tag", "-t"), "tags", list, None, "Tag the run (repeatable).", "TAG"),
    Opt(("--notes",), "notes", str, None, "A note stored with the run.", "TEXT"),
    Opt(("--config", "-c"), "config", list, None,
        "Add a config value, KEY=VALUE (repeatable).", "KEY=VALUE"),
    Opt(("--quiet", "-q"), "quiet", bool, False, "Print nothing at start and end."),
]


def parse_config(items: list[str] | None) -> dict[str, Any]:
    """``["lr=0.1", "name=x"]`` -> ``{"lr": 0.1, "name": "x"}`` (numbers and booleans parsed)."""
    import json

    out: dict[str, Any] = {}
    for item in items or []:
        key, eq, raw = item.partition("=")
        if not eq or not key:
            raise ValueError(f"--config takes KEY=VALUE, not {item!r}")
        try:
            out[key] = json.loads(raw)
        except ValueError:
            out[key] = raw
    return out
