"""``tracklab show`` and ``tracklab ls`` without Typer, for well-formed command lines.

Importing Typer costs more than reading a run of a million points, and these two are typed most.
Options are parsed here only when every word is one this parser knows, with a valid value;
anything else (``--help``, a typo, ``--limit 0``, ``--since``, ``--``) returns None and the Typer
command takes the same words, so usage errors and help read exactly as before. What runs then is
what the Typer commands in :mod:`tracklab_cli.commands.show` run: :func:`show_run` and
:func:`list_runs_cmd`, defined here once.
"""

from __future__ import annotations

from typing import Any

from tracklab.errors import TracklabError

# (names, destination, takes a value) for each command; the defaults are the Typer commands'
_SHOW = ((("--json",), "json_out", False), (("--dir", "-d"), "dir", True))
_LS = (
    (("--project", "-p"), "project", True), (("--limit", "-n"), "limit", True),
    (("--status",), "status", True), (("--tag",), "tag", True), (("--sort",), "sort", True),
    (("--reverse",), "reverse", False), (("--json",), "json_out", False),
    (("--dir", "-d"), "dir", True),
)


def _parse(args: list[str], spec: tuple[tuple[tuple[str, ...], str, bool], ...]
           ) -> tuple[dict[str, Any], list[str]] | None:
    by_name = {n: (dest, takes) for names, dest, takes in spec for n in names}
    values: dict[str, Any] = {}
    words: list[str] = []
    i = 0
    while i < len(args):
        word = args[i]
        i += 1
        if not word.startswith("-") or word == "-":
            words.append(word)
            continue
        name, eq, inline = word.partition("=") if word.startswith("--") else (word, "", "")
        opt = by_name.get(name)
        if opt is None:
            return None  # --help, --, a short option with its value attached, a typo...
        dest, takes = opt
        if not takes:
            if eq:
                return None
            values[dest] = True
        elif eq:
            values[dest] = inline
        elif i < len(args):
            values[dest] = args[i]
            i += 1
        else:
            return None
    return values, words


def main_read(command: str, args: list[str]) -> int | None:
    """Run ``show`` or ``ls``; None hands the command line to Typer."""
    if command == "show":
        parsed = _parse(args, _SHOW)
        if parsed is None or len(parsed[1]) != 1:
            return None
        values = parsed[0]
        return show_run(parsed[1][0], values.get("json_out", False), values.get("dir"))
    parsed = _parse(args, _LS)
    if parsed is None or parsed[1]:
        return None
    values = parsed[0]
    try:
        limit = int(values.get("limit", 20))
    except ValueError:
        return None
    if limit < 1:
        return None
    from tracklab.read.trends import SORT_KEYS

    if values.get("sort", "started") not in SORT_KEYS:
        return None
    return list_runs_cmd(limit, values.get("project"), values.get("status"), values.get("tag"),
                         None, values.get("sort", "started"), values.get("reverse", False),
                         values.get("json_out", False), values.get("dir"))


def _library_error(exc: Exception) -> int:
    from tracklab_cli.commands.common import tell_library_error

    tell_library_error(exc)
    return 1


def show_run(run: str, json_out: bool, dir: str | None) -> int:
    """``tracklab show``: one run in full (or as JSON); the exit code."""
    from tracklab.read.runs import open_run
    from tracklab.read.show import summarize
    from tracklab_cli import render

    try:
        view = open_run(run, dir)
        try:
            data = summarize(view)
        finally:
            view.close()
    except TracklabError as exc:
        return _library_error(exc)
    if json_out:
        render.print_json(data)
    else:
        render.show(data)
    return 0


def list_runs_cmd(limit: int, project: str | None, status: str | None, tag: str | None,
                  since: float | None, sort: str, reverse: bool, json_out: bool,
                  dir: str | None) -> int:
    """``tracklab ls`` (``sort`` already checked); the exit code."""
    from tracklab.read.runs import list_runs
    from tracklab.read.trends import sort_runs
    from tracklab_cli import render

    try:
        # any order but the store's own (newest first) needs every run before the cut
        runs = list_runs(dir, project=project, limit=limit if sort == "started" else None,
                         status=status, tag=tag, since=since)
    except TracklabError as exc:
        return _library_error(exc)
    runs = sort_runs(runs, sort, reverse)[:limit]
    if json_out:
        for r in runs:
            render.print_json(r, indent=None)
    else:
        render.run_list(runs)
    return 0
