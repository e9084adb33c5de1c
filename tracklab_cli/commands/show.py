"""``tracklab show`` and ``tracklab ls``: one run in full, and the list of runs."""

from __future__ import annotations

from typing import Annotated

import typer

from tracklab_cli.commands.common import fail, library_errors


def show(
    run: Annotated[str, typer.Argument(help="Run id, unique id prefix, name, or 'latest'.")],
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    dir: Annotated[str | None, typer.Option("--dir", "-d", help="Store folder.")] = None,
) -> None:
    """Show one run: header, system metrics, GPUs and training metrics.

    Example: tracklab show latest
    """
    from tracklab.read.runs import open_run
    from tracklab.read.show import summarize
    from tracklab_cli import render

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
    from tracklab.read.runs import list_runs
    from tracklab.read.trends import SORT_KEYS, sort_runs
    from tracklab_cli import render
    from tracklab_cli.commands.views import parse_since

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
