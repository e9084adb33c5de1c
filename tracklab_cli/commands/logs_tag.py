"""``tracklab logs`` and ``tracklab tag``: a run's captured output, and its tags."""

from __future__ import annotations

import os
import sys
from enum import Enum
from typing import Annotated, Any

import typer

from tracklab.textfmt import visible
from tracklab_cli.commands.common import fail, library_errors


class Stream(str, Enum):
    stdout = "stdout"
    stderr = "stderr"


def logs(
    run: Annotated[str, typer.Argument(help="Run id, unique id prefix, name, or 'latest'.")],
    tail: Annotated[int | None, typer.Option("--tail", "-n", min=0,
                                             help="Only the last N lines.")] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f",
                                         help="Keep printing new lines while the run is live."
                                         )] = False,
    stream: Annotated[Stream | None, typer.Option(
        "--stream", help="Only this stream (both, where they shared a terminal or file).")] = None,
    raw: Annotated[bool, typer.Option(
        "--raw", help="Replay the lines as stored, escape sequences and all.")] = False,
    dir: Annotated[str | None, typer.Option("--dir", "-d", help="Store folder.")] = None,
) -> None:
    """Print the output a run's command printed, as `tracklab run` captured it.

    A progress bar comes as its last state. To a terminal, your own run's lines come as stored,
    colours and all; anywhere else (a pipe, a file, another user's run) escape sequences are
    shown as text (\\x1b[31m), unless --raw. Where a long output was cut to the capture
    limit, one [tracklab: ...] line says how much is left out.

    Example: tracklab logs latest --tail 50 --follow
    """
    from tracklab.read.console import console_lines, follow_console, not_captured
    from tracklab.read.runs import open_run
    from tracklab.store.schema import BOTH

    which = stream.value if stream is not None else None
    out = sys.stdout
    noted = which is None

    def emit(rows: list[dict[str, Any]]) -> None:
        nonlocal noted
        for r in rows:
            if not noted and r["stream"] == BOTH:
                noted = True
                out.flush()
                print("note: this run's stdout and stderr went to one terminal or file, so they "
                      "were captured together, in order: --stream shows both", file=sys.stderr)
            out.write((r["line"] if replay else visible(r["line"])) + "\n")

    with library_errors():
        view = open_run(run, dir)
    replay = raw or (out.isatty() and _own(view))
    try:
        with library_errors():
            why = not_captured(view)
            if why:  # nothing to print now, nor to follow
                print(f"note: {why}", file=sys.stderr)
                return
            if not follow:
                emit(console_lines(view, which, tail))
                return
            for batch in follow_console(view, which, tail):
                emit(batch)
                out.flush()
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    except BrokenPipeError:  # `tracklab logs RUN | head`
        sys.stderr.close()
        raise typer.Exit(0) from None
    finally:
        view.close()


def _own(view: Any) -> bool:
    """Whether the reader owns every file the run's lines came from: only then do escape
    sequences in them reach the terminal (someone else's run could retitle it, clear it, or
    type into it through a terminal's answerback)."""
    try:
        return all(os.stat(p).st_uid == os.geteuid() for p in view.paths)
    except OSError:
        return False


def tag(
    run: Annotated[str, typer.Argument(help="Run id, unique id prefix, name, or 'latest'.")],
    tags: Annotated[list[str], typer.Argument(help="Tags to add (or remove).")],
    remove: Annotated[bool, typer.Option("--remove", "-r",
                                         help="Remove these tags instead.")] = False,
    dir: Annotated[str | None, typer.Option("--dir", "-d", help="Store folder.")] = None,
) -> None:
    """Add tags to a run (or remove them), and print the run's tags.

    Find runs by tag with `tracklab ls --tag TAG`.

    Example: tracklab tag latest baseline lr-sweep
    """
    from tracklab.read.manage import tag_run

    if any(not t.strip() for t in tags):
        raise fail("a tag cannot be empty", 2)
    with library_errors():
        result = tag_run(run, tags, remove=remove, dir=dir)
    sys.stdout.write((", ".join(visible(t) for t in result) if result else "(no tags)") + "\n")
