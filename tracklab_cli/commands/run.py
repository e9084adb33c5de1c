"""``tracklab run`` as a Typer command: for ``--help`` and completion. Running goes through the
fast path (fastrun), which parses the same options without Typer."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from tracklab.wrapper import defaults
from tracklab_cli.commands import fastrun
from tracklab_cli.commands.options import RUN_OPTIONS


def _opt(dest: str) -> Any:
    o = next(o for o in RUN_OPTIONS if o.dest == dest)
    return typer.Option(*o.names, help=o.help, metavar=o.metavar or None,
                        show_default=o.default not in (None, False))


def run(
    command: Annotated[list[str] | None, typer.Argument(help="The command, after --.")] = None,
    interval: Annotated[float, _opt("interval")] = defaults.INTERVAL_S,
    project: Annotated[str | None, _opt("project")] = None,
    name: Annotated[str | None, _opt("name")] = None,
    dir: Annotated[str | None, _opt("dir")] = None,
    node_id: Annotated[str | None, _opt("node_id")] = None,
    run_id: Annotated[str | None, _opt("run_id")] = None,
    kill_after: Annotated[float, _opt("kill_after")] = defaults.KILL_AFTER_S,
    tags: Annotated[list[str] | None, _opt("tags")] = None,
    notes: Annotated[str | None, _opt("notes")] = None,
    config: Annotated[list[str] | None, _opt("config")] = None,
    quiet: Annotated[bool, _opt("quiet")] = False,
    prometheus_port: Annotated[int | None, _opt("prometheus_port")] = None,
    prometheus_addr: Annotated[str, _opt("prometheus_addr")] = defaults.PROMETHEUS_ADDR,
    no_capture: Annotated[bool, _opt("no_capture")] = False,
    capture_limit: Annotated[str | None, _opt("capture_limit")] = None,
    save_diff: Annotated[bool, _opt("save_diff")] = False,
    carbon_intensity: Annotated[float | None, _opt("carbon_intensity")] = None,
    no_tensorboard: Annotated[bool, _opt("no_tensorboard")] = False,
) -> None:
    """Run COMMAND as a child process, sampling system metrics into the run store.

    Exits with the child's exit code (128+N if it died of signal N; 127/126 if it cannot be
    started). The child sees TRACKLAB_RUN_ID, so tracklab.init() in it joins this run.
    Its output reaches the terminal unchanged (a pseudo-terminal keeps it a TTY) and is
    stored with the run, with git state and package versions: see tracklab logs / show.

    Example: tracklab run --interval 1 --project demo -- python train.py --lr 3e-4
    """
    values = dict(interval=interval, project=project, name=name, dir=dir, node_id=node_id,
                  run_id=run_id, kill_after=kill_after, tags=tags or [], notes=notes,
                  config=config or [], quiet=quiet, prometheus_port=prometheus_port,
                  prometheus_addr=prometheus_addr, no_capture=no_capture,
                  capture_limit=capture_limit, save_diff=save_diff,
                  carbon_intensity=carbon_intensity, no_tensorboard=no_tensorboard)
    checked = fastrun.check(values, list(command or []))
    if isinstance(checked, int):
        raise typer.Exit(checked)
    raise typer.Exit(fastrun.execute(checked))
