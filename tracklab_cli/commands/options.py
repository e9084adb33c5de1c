"""The options of ``tracklab run``, declared once for both the fast parser and the Typer app."""

from __future__ import annotations

from typing import Any, NamedTuple

from tracklab.wrapper import defaults


class Opt(NamedTuple):  # a NamedTuple, not a dataclass: `dataclasses` costs the wrapper ~14 ms
    names: tuple[str, ...]
    dest: str
    kind: type  # float, int, str, bool (a flag) or list (repeatable str)
    default: Any
    help: str
    metavar: str = ""


MIN_INTERVAL = defaults.MIN_INTERVAL_S

RUN_OPTIONS: list[Opt] = [
    Opt(("--interval", "-i"), "interval", float, defaults.INTERVAL_S,
        f"Seconds between samples (at least {MIN_INTERVAL}).", "S"),
    Opt(("--project", "-p"), "project", str, None, "Project the run belongs to.", "P"),
    Opt(("--name", "-n"), "name", str, None, "Name of the run (default: script name + id).", "N"),
    Opt(("--dir", "-d"), "dir", str, None,
        "Store folder (default: $TRACKLAB_DIR, else ./.tracklab).", "D"),
    Opt(("--node-id",), "node_id", str, None,
        "This node's id (default: $TRACKLAB_NODE_ID, scheduler variables, host name).", "ID"),
    Opt(("--run-id",), "run_id", str, None,
        "Run id to use (default: from SLURM_JOB_ID / TORCHELASTIC_RUN_ID, else new).", "ID"),
    Opt(("--kill-after",), "kill_after", float, defaults.KILL_AFTER_S,
        "Seconds a child may take to exit after SIGTERM before it gets SIGKILL.", "S"),
    Opt(("--tag", "-t"), "tags", list, None, "Tag the run (repeatable).", "TAG"),
    Opt(("--notes",), "notes", str, None, "A note stored with the run.", "TEXT"),
    Opt(("--config", "-c"), "config", list, None,
        "Add a config value, KEY=VALUE (repeatable).", "KEY=VALUE"),
    Opt(("--quiet", "-q"), "quiet", bool, False, "Print nothing at start and end."),
    Opt(("--prometheus-port",), "prometheus_port", int, None,
        "Serve the latest sample and training metrics at :PORT/metrics for Prometheus "
        "(needs tracklab[prometheus]).", "PORT"),
    Opt(("--prometheus-addr",), "prometheus_addr", str, defaults.PROMETHEUS_ADDR,
        "Address the Prometheus endpoint binds.", "ADDR"),
    # run context
    Opt(("--no-capture",), "no_capture", bool, False,
        "Leave the command's output alone: not stored, written to the terminal by the "
        "command itself (for full-screen interactive programs)."),
    Opt(("--capture-limit",), "capture_limit", str, None,
        f"Output stored per run, first half and last half kept (default "
        f"{defaults.CAPTURE_LIMIT // 2**20}MiB; "
        "e.g. 100k, 50MB, 1GiB).", "BYTES"),
    Opt(("--save-diff",), "save_diff", bool, False,
        "Store the text of `git diff HEAD` with the run (its hash and size always are)."),
    Opt(("--no-tensorboard",), "no_tensorboard", bool, False,
        "Do not read the TensorBoard event files and Lightning CSVLogger files the command "
        "writes under its working folder into the run's training metrics."),
    # energy as emissions
    Opt(("--carbon-intensity",), "carbon_intensity", float, None,
        "Grid carbon intensity in gCO2e/kWh: the run's measured energy is also stored as "
        "grams CO2e.", "G_PER_KWH"),
]

CAPTURE_LIMIT = defaults.CAPTURE_LIMIT
_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 1000**2, "mb": 1000**2,
          "mib": 1024**2, "g": 1000**3, "gb": 1000**3, "gib": 1024**3}


def parse_size(text: str | None, default: int = CAPTURE_LIMIT) -> int:
    """``"10MiB"`` -> 10485760, ``"50MB"`` / ``"50M"`` -> 50000000, ``None`` -> ``default``."""
    import re

    if text is None:
        return default
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]*)?)\s*([a-zA-Z]*)\s*", text)
    unit = m and _UNITS.get(m.group(2).lower())
    # 400 digits parse as float infinity, which int() cannot take
    if not m or unit is None or float(m.group(1)) * unit == float("inf"):
        raise ValueError(f"--capture-limit takes a size such as 10MiB or 500k, not {text!r}")
    return int(float(m.group(1)) * unit)


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
