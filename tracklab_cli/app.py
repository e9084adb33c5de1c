"""The Typer app. Each command parses, calls one library function, renders, and maps library
errors to one line on stderr and an exit code (0 ok, 1 not found / store error, 2 usage)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, TypeVar

import typer

from tracklab.errors import AmbiguousRun, TracklabError
from tracklab.textfmt import visible

from . import fastrun
from .options import RUN_OPTIONS

app = typer.Typer(
    name="tracklab",
    help="Know what your hardware did during a training run.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int = 1, *more: str) -> typer.Exit:
    """One line on stderr (then ``more``, one a line), with whatever came from a run, a store
    or a user shown as text, never as escape sequences; the exit to raise."""
    sys.stderr.write("".join(f"{visible(m)}\n" for m in (f"tracklab: {message}", *more)))
    return typer.Exit(code)


@contextmanager
def library_errors() -> Iterator[None]:
    """Turn the library's exceptions (any TracklabError) into one line on stderr and exit 1."""
    try:
        yield
    except AmbiguousRun as exc:
        raise fail(f"{exc.ref!r} matches {len(exc.candidates)} runs; use a longer prefix:", 1,
                   *(f"  {c}" for c in exc.candidates[:20])) from None
    except TracklabError as exc:
        raise fail(str(exc)) from None


def _opt(dest: str) -> Any:
    o = next(o for o in RUN_OPTIONS if o.dest == dest)
    return typer.Option(*o.names, help=o.help, metavar=o.metavar or None,
                        show_default=o.default not in (None, False))


@app.command(context_settings={"allow_interspersed_args": False})
def run(
    command: Annotated[list[str] | None, typer.Argument(help="The command, after --.")] = None,
    interval: Annotated[float, _opt("interval")] = 5.0,
    project: Annotated[str | None, _opt("project")] = None,
    name: Annotated[str | None, _opt("name")] = None,
    dir: Annotated[str | None, _opt("dir")] = None,
    node_id: Annotated[str | None, _opt("node_id")] = None,
    run_id: Annotated[str | None, _opt("run_id")] = None,
    kill_after: Annotated[float, _opt("kill_after")] = 10.0,
    tags: Annotated[list[str] | None, _opt("tags")] = None,
    notes: Annotated[str | None, _opt("notes")] = None,
    config: Annotated[list[str] | None, _opt("config")] = None,
    quiet: Annotated[bool, _opt("quiet")] = False,
    prometheus_port: Annotated[int | None, _opt("prometheus_port")] = None,
    prometheus_addr: Annotated[str, _opt("prometheus_addr")] = "0.0.0.0",
    no_capture: Annotated[bool, _opt("no_capture")] = False,
    capture_limit: Annotated[str | None, _opt("capture_limit")] = None,
    save_diff: Annotated[bool, _opt("save_diff")] = False,
    carbon_intensity: Annotated[float | None, _opt("carbon_intensity")] = None,
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
                  carbon_intensity=carbon_intensity)
    checked = fastrun.check(values, list(command or []))
    if isinstance(checked, int):
        raise typer.Exit(checked)
    raise typer.Exit(fastrun.execute(checked))


@app.command()
def show(
    run: Annotated[str, typer.Argument(help="Run id, unique id prefix, name, or 'latest'.")],
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    dir: Annotated[str | None, typer.Option("--dir", "-d", help="Store folder.")] = None,
) -> None:
    """Show one run: header, system metrics, GPUs and training metrics.

    Example: tracklab show latest
    """
    from tracklab.runs import open_run
    from tracklab.summary import summarize

    from . import render

    with library_errors():
        view = open_run(run, dir)
        try:
            data = summarize(view)
        finally:
            view.close()
    if json_out:
        render.print_json(data)
    else:
        render.show(data)


@app.command("ls")
def ls(
    project: Annotated[str | None, typer.Option("--project", "-p", help="Only this project.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="At most N runs.")] = 20,
    status: Annotated[str | None, typer.Option("--status", help="Only runs with this status.")] = None,
    tag: Annotated[str | None, typer.Option("--tag", help="Only runs with this tag.")] = None,
    since: Annotated[str | None, typer.Option(
        "--since", help="Only runs started since: an age (30m, 2h, 3d, 1w) or a date.")] = None,
    sort: Annotated[str, typer.Option(
        "--sort", help="started (newest first), duration (longest first), name, project, "
        "status or exit.")] = "started",
    reverse: Annotated[bool, typer.Option("--reverse", help="Reverse the order.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON lines.")] = False,
    dir: Annotated[str | None, typer.Option("--dir", "-d", help="Store folder.")] = None,
) -> None:
    """List runs, newest first, with status, exit code, duration and command.

    Example: tracklab ls --project demo --since 2d --sort duration --limit 5
    """
    from tracklab.runs import list_runs
    from tracklab.views import SORT_KEYS, sort_runs

    from . import render
    from .views import parse_since

    if sort not in SORT_KEYS:
        raise fail(f"--sort must be one of {', '.join(SORT_KEYS)}, not {sort!r}", 2)
    after = None if since is None else parse_since(since)
    with library_errors():
        # any order but the store's own (newest first) needs every run before the cut
        runs = list_runs(dir, project=project, limit=limit if sort == "started" else None,
                         status=status, tag=tag, since=after)
    runs = sort_runs(runs, sort, reverse)[:limit]
    if json_out:
        for r in runs:
            render.print_json(r, indent=None)
    else:
        render.run_list(runs)


from . import context_cmds, views  # noqa: E402,F401  (registers commands)
