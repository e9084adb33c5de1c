"""``tracklab run`` without Typer: parses RUN_OPTIONS by hand and calls the library's runner.

Returns None to hand over to Typer (for ``--help``), else the exit code.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from tracklab_cli.commands.options import MIN_INTERVAL, RUN_OPTIONS, parse_config, parse_size

USAGE = "Usage: tracklab run [OPTIONS] -- COMMAND [ARGS]..."


def usage_error(message: str) -> int:
    sys.stderr.write(f"{USAGE}\nTry 'tracklab run --help' for help.\nError: {message}\n")
    return 2


def parse(args: list[str]) -> dict[str, Any] | int | None:
    by_name = {n: o for o in RUN_OPTIONS for n in o.names}
    values: dict[str, Any] = {o.dest: ([] if o.kind is list else o.default) for o in RUN_OPTIONS}
    i = 0
    command: list[str] = []
    while i < len(args):
        word = args[i]
        if word == "--":
            command = args[i + 1:]
            break
        if word in ("--help", "-h"):
            return None
        if not word.startswith("-") or word == "-":
            command = args[i:]
            break
        name, eq, inline = word.partition("=") if word.startswith("--") else (word, "", "")
        opt = by_name.get(name)
        if opt is None:
            return usage_error(f"No such option: {name}")
        if opt.kind is bool:
            if eq:
                return usage_error(f"Option '{name}' does not take a value.")
            values[opt.dest] = True
            i += 1
            continue
        if eq:
            raw = inline
            i += 1
        else:
            if i + 1 >= len(args):
                return usage_error(f"Option '{name}' requires an argument.")
            raw = args[i + 1]
            i += 2
        if opt.kind is float:
            try:
                values[opt.dest] = float(raw)
            except ValueError:
                return usage_error(f"Invalid value for '{name}': {raw!r} is not a number.")
        elif opt.kind is int:
            try:
                values[opt.dest] = int(raw)
            except ValueError:
                return usage_error(f"Invalid value for '{name}': {raw!r} is not an integer.")
        elif opt.kind is list:
            values[opt.dest].append(raw)
        else:
            values[opt.dest] = raw
    return check(values, command)


def check(values: dict[str, Any], command: list[str]) -> dict[str, Any] | int:
    """Validation shared with the Typer command."""
    interval = values["interval"]
    if not (interval >= MIN_INTERVAL) or interval != interval or interval == float("inf"):
        return usage_error(f"Invalid value for '--interval': {interval!r} is not a number of "
                           f"seconds >= {MIN_INTERVAL}.")
    if not values["kill_after"] >= 0:
        return usage_error("Invalid value for '--kill-after': must be >= 0.")
    if not command:
        return usage_error("Missing command. Put it after '--', e.g. "
                           "tracklab run -- python train.py")
    tags = values.get("tags") or []
    if any(not t.strip() for t in tags):  # as `tracklab tag` says
        return usage_error("a tag cannot be empty")
    values["tags"] = list(dict.fromkeys(tags))  # `--tag a --tag a` is one tag, as in `tag`
    try:
        values["config"] = parse_config(values.get("config"))
    except ValueError as exc:
        return usage_error(str(exc))
    port = values.get("prometheus_port")
    if port is not None:  # multi-node: Prometheus exposition
        if not 0 <= port <= 65535:
            return usage_error(f"Invalid value for '--prometheus-port': {port} is not a port.")
        from tracklab.sampling.prometheus import MISSING, available

        if not available():
            sys.stderr.write(f"tracklab: --prometheus-port: {MISSING}\n")
            return 2
    ci = values.get("carbon_intensity")
    if ci is not None and not 0 <= ci < float("inf"):
        return usage_error(f"Invalid value for '--carbon-intensity': {ci!r} is not a number of "
                           "gCO2e/kWh >= 0.")
    try:
        values["capture_limit"] = parse_size(values.get("capture_limit"))
    except ValueError as exc:
        return usage_error(str(exc))
    values["command"] = command
    return values


def main_run(args: list[str]) -> int | None:
    parsed = parse(args)
    if parsed is None or isinstance(parsed, int):
        return parsed
    return execute(parsed)


def execute(values: dict[str, Any]) -> int:
    from tracklab.wrapper.runner import RunOptions, run

    opts = RunOptions(**{k: v for k, v in values.items()})
    quiet = opts.quiet
    _open_closed_stdio()
    # Python leaves sys.stderr None when fd 2 was closed at start (`2>&-`)
    err = sys.stderr if sys.stderr is not None else open(os.devnull, "w")  # noqa: SIM115

    def on_start(run_id: str, store: str | None) -> None:
        if not quiet:
            where = store or "nowhere (store unavailable)"
            err.write(f"tracklab: run {run_id} -> {where}\n")
            err.flush()

    def on_warning(message: str) -> None:
        err.write(f"tracklab: warning: {message}\n")
        err.flush()

    try:
        result = run(opts, on_start=on_start, on_warning=on_warning)
    except FileNotFoundError:
        err.write(f"tracklab: command not found: {opts.command[0]}\n")
        return 127
    except OSError as exc:  # PermissionError, exec format error, name too long, ...
        err.write(f"tracklab: cannot execute: {opts.command[0]}: {exc.strerror}\n")
        return 126
    if not quiet:
        from tracklab_cli.render.fmt import end_line

        err.write(end_line(result) + "\n")
    return result.exit_code


def _open_closed_stdio() -> None:
    """Put /dev/null on a closed fd 0, 1 or 2 (`tracklab run ... 2>&-`), so that the capture's
    pipes and ptys, which would otherwise take those numbers, do not pass for the wrapper's own
    stdout or stderr."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            os.open(os.devnull, os.O_RDWR)  # the lowest free number: fd itself
