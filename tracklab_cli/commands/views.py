"""Commands that look at runs: watch, plot, report, compare, export, rm.

Each parses, calls :mod:`tracklab.read.trends`, renders (tracklab_cli.render.views) and maps library errors to
one line on stderr and an exit code, like every command (see common.py).
"""

from __future__ import annotations

import os
import re
import sys
import time
from datetime import datetime
from typing import Annotated, Any

import typer

from tracklab.textfmt import visible
from tracklab_cli.commands.common import fail, library_errors

RunArg = Annotated[str, typer.Argument(help="Run id, unique id prefix, name, or 'latest'.")]
DirOpt = Annotated[str | None, typer.Option("--dir", "-d", help="Store folder.")]

# `plot` draws one figure: past these, panels grow unreadable (and matplotlib slow), so the
# rest are counted in a note; 10 series is matplotlib's colour cycle
PLOT_PANELS = 16  # training metric panels at most
PLOT_SERIES = 10  # training metrics per panel at most
_UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(text: str, now: float | None = None) -> float:
    """``2h``, ``30m``, ``3d``, ``1w`` ago, or a date/time (``2024-05-01``, ``2024-05-01 12:00``,
    ISO 8601), as epoch seconds. Raises typer.BadParameter."""
    now = time.time() if now is None else now
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|d|w)\s*", text)
    if m:
        return now - float(m.group(1)) * _UNITS[m.group(2)]
    try:
        return datetime.fromisoformat(text.strip()).timestamp()
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is neither an age (30m, 2h, 3d, 1w) nor a date (2024-05-01 12:00)"
        ) from None


def _open(ref: str, dir: str | None) -> Any:
    from tracklab.read.runs import open_run

    return open_run(ref, dir)


def watch(
    run: Annotated[str | None, typer.Argument(
        help="Run id, prefix, name or 'latest' (default: the newest running run).")] = None,
    interval: Annotated[float, typer.Option("--interval", "-n", min=0.1, max=86400.0,
                                            help="Seconds between refreshes.")] = 1.0,
    once: Annotated[bool, typer.Option("--once", help="Print one frame and exit.")] = False,
    json_out: Annotated[bool, typer.Option(
        "--json", help="Print each frame as one JSON line instead of drawing it.")] = False,
    dir: DirOpt = None,
) -> None:
    """Watch a run live: CPU, memory, GPUs, process tree and training metrics with trends.

    Read-only: it costs the run nothing. Ends by itself when the run ends (exit 0); Ctrl-C
    stops watching and leaves the run alone. With --json, one JSON object a refresh (the
    README's "JSON output" lists its fields).

    Example: tracklab watch            (from a second terminal while `tracklab run` works)
    """
    from rich.console import Console
    from rich.live import Live

    from tracklab.errors import RunNotFound
    from tracklab.read import trends
    from tracklab.read.runs import list_runs
    from tracklab_cli.render.views import watch_frame

    console = Console(highlight=False, markup=False)  # a run's name is no markup
    view: Any = None

    def frame(going: bool = True) -> Any:
        return watch_frame(trends.live(view), width=min(console.width, 120),
                           refresh=interval if going and not once else None)

    try:
        with library_errors():
            if run is None:
                running = list_runs(dir, limit=1, status="running")
                if not running:
                    raise fail("no running run to watch; name one: tracklab watch RUN")
                run = running[0]["id"]
            view = _open(run, dir)
            if json_out:
                view = _json_frames(view, run, interval, once)
                return
            if once or view.info["status"] != "running":
                console.print(frame(False))
                if not once:
                    _ended(view)
                return
            with Live(frame(), console=console, auto_refresh=False,
                      redirect_stderr=False) as live:
                while True:
                    time.sleep(interval)
                    try:
                        view = trends.reopen(view)
                    except RunNotFound:
                        raise fail(f"run {run} was deleted while watching") from None
                    going = view.info["status"] == "running"
                    live.update(frame(going), refresh=True)
                    if not going:
                        break
            _ended(view)
    except KeyboardInterrupt:
        what = f" {visible(view.id)}" if view is not None else ""
        sys.stderr.write(f"tracklab: stopped watching{what}; the run goes on\n")
    finally:
        if view is not None:
            view.close()


def _json_frames(view: Any, ref: str, interval: float, once: bool) -> Any:
    """``watch --json``: a frame a refresh, as JSON lines, until the run ends; returns the view
    it read last (the caller closes it)."""
    from tracklab.errors import RunNotFound
    from tracklab.read import trends
    from tracklab_cli import render

    while True:
        frame = trends.live(view)
        render.print_json(frame, indent=None)
        sys.stdout.flush()
        if once or frame["info"]["status"] != "running":
            return view
        time.sleep(interval)
        try:
            view = trends.reopen(view)
        except RunNotFound:
            raise fail(f"run {ref} was deleted while watching") from None


def _ended(view: Any) -> None:
    from tracklab_cli.render.fmt import duration

    info = view.info
    code = "" if info["exit_code"] is None else f", exit {info['exit_code']}"
    sys.stderr.write(visible(f"tracklab: run {info['id']} {info['status']}{code} after "
                             f"{duration(info['duration'])}") + "\n")


def plot(
    run: RunArg,
    output: Annotated[str, typer.Option("--output", "-o", help="Image file: .png, .svg or .pdf.")],
    metric: Annotated[list[str] | None, typer.Option(
        "--metric", "-m", help="Only series matching this glob (repeatable); 'train' also "
        "matches 'train/*', 'accelerators' every GPU path.")] = None,
    step: Annotated[bool, typer.Option("--step", help="Training metrics against their step.")]
    = False,
    points: Annotated[int, typer.Option("--points", min=10, help="Points per series.")] = 1000,
    dir: DirOpt = None,
) -> None:
    """Plot a run: one panel per metric family on a shared time axis, training metrics included.

    Needs matplotlib: pip install 'tracklab[plot]'.

    Example: tracklab plot latest -o run.png --metric train --metric 'accelerators.*.utilization'
    """
    ext = os.path.splitext(output)[1].lower()
    if ext not in (".png", ".svg", ".pdf"):
        raise fail(f"cannot tell the image format of {output!r}: use .png, .svg or .pdf", 2)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise fail("plot needs matplotlib; install it with: pip install 'tracklab[plot]'") \
            from None
    from tracklab.read import trends
    from tracklab_cli.render.fmt import duration
    from tracklab_cli.render.views import plot_figure

    with library_errors():
        view = _open(run, dir)
        try:
            data = trends.panels(view, metric or None, step=step, n=points,
                                max_panels=PLOT_PANELS, max_series=PLOT_SERIES)
            info = view.info
        finally:
            view.close()
    if metric and not data["panels"]:
        raise fail(f"no series matches {', '.join(metric)}")
    if not data["panels"]:
        raise fail(f"run {info['id']} has no samples or training metrics to plot yet")
    title = (f"{info['name']} ({info['id']}) · {info['status']} · "
             f"{duration(info['duration'])}")
    try:
        n = plot_figure(data, output, title)
    except OSError as exc:
        raise fail(f"cannot write {output}: {exc.strerror or exc}") from None
    sys.stderr.write(f"tracklab: wrote {output} ({n} panel{'s' * (n != 1)})\n")
    if data["left_out"]:
        sys.stderr.write(f"tracklab: {data['left_out']:,} more training metric(s) not drawn "
                         f"(at most {PLOT_PANELS} panels of {PLOT_SERIES}); pick them with "
                         "--metric\n")


def report(
    run: RunArg,
    output: Annotated[str | None, typer.Option(
        "--output", "-o", help="HTML file (default: standard output).")] = None,
    dir: DirOpt = None,
) -> None:
    """Write one self-contained HTML report of a run: header, diagnosis, tables, charts.

    It fetches nothing, so it opens offline in any browser and can be mailed or archived.

    Example: tracklab report latest -o report.html
    """
    from tracklab.read.report import report_html

    with library_errors():
        view = _open(run, dir)
        try:
            html = report_html(view)
        finally:
            view.close()
    if output is None:
        sys.stdout.write(html)
        return
    try:
        with open(output, "w", encoding="utf-8") as f:
            f.write(html)
    except OSError as exc:
        raise fail(f"cannot write {output}: {exc.strerror or exc}") from None
    sys.stderr.write(f"tracklab: wrote {output} ({len(html.encode()) / 1024:.0f} KiB)\n")


def compare(
    runs: Annotated[list[str], typer.Argument(help="Two or more runs.")],
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    dir: DirOpt = None,
) -> None:
    """Compare runs side by side: duration, exit, peaks, mean utilizations, energy, final
    training metrics and config; the differences that matter are marked with *.

    Example: tracklab compare run-a run-b
    """
    from tracklab.read import trends
    from tracklab_cli import render
    from tracklab_cli.render.views import compare as render_compare

    if len(runs) < 2:
        raise fail("give at least two runs to compare", 2)
    opened: list[Any] = []
    with library_errors():
        try:
            for ref in runs:
                opened.append(_open(ref, dir))
            data = trends.compare(opened)
        finally:
            for v in opened:
                v.close()
    if json_out:
        render.print_json(data)
    else:
        render.console().print(render_compare(data))


def export(
    run: RunArg,
    what: Annotated[str, typer.Option("--what", help="metrics (training points) or samples "
                                      "(system values).")] = "metrics",
    fmt: Annotated[str | None, typer.Option(
        "--format", "-f", help="csv, jsonl or parquet (default: from -o's suffix, else csv).")]
    = None,
    output: Annotated[str | None, typer.Option(
        "--output", "-o", help="File to write (default: standard output).")] = None,
    key: Annotated[list[str] | None, typer.Option(
        "--key", "-k", help="Only this metric key or system path (repeatable).")] = None,
    dir: DirOpt = None,
) -> None:
    """Export every point of a run, flat: run_id, node, rank, time, step, key, value.

    Writes to standard output unless -o is given, so it pipes into other tools. Parquet needs
    pyarrow: pip install 'tracklab[parquet]'.

    Example: tracklab export latest --format csv | head
    """
    from tracklab.errors import MissingExtra
    from tracklab.read.export import iter_export, write_export

    if what not in ("metrics", "samples"):
        raise fail(f"--what must be metrics or samples, not {what!r}", 2)
    if fmt is None:
        ext = os.path.splitext(output or "")[1].lower().lstrip(".")
        fmt = ext if ext in ("csv", "jsonl", "parquet") else "csv"
    if fmt not in ("csv", "jsonl", "parquet"):
        raise fail(f"--format must be csv, jsonl or parquet, not {fmt!r}", 2)
    if fmt == "parquet" and output is None and sys.stdout.isatty():
        raise fail("parquet is binary: give a file with -o", 2)
    with library_errors():
        view = _open(run, dir)
        try:
            rows = iter_export(view, what, key)
            if output is None:
                _to_stdout(rows, fmt)
            else:
                tmp = f"{output}.part"
                try:
                    with open(tmp, "wb") as f:
                        n = write_export(rows, fmt, f)
                    os.replace(tmp, output)
                except OSError as exc:
                    raise fail(f"cannot write {output}: {exc.strerror or exc}") from None
                finally:
                    if os.path.exists(tmp):
                        os.unlink(tmp)
                sys.stderr.write(f"tracklab: wrote {n:,} rows to {output}\n")
        except MissingExtra as exc:
            raise fail(f"{fmt} export needs {exc.package}; install it with: {exc.hint}") \
                from None
        finally:
            view.close()


def _to_stdout(rows: Any, fmt: str) -> None:
    from tracklab.read.export import write_export

    try:
        write_export(rows, fmt, sys.stdout.buffer)
        sys.stdout.buffer.flush()
    except BrokenPipeError:
        # the reader went away (``| head``): stop quietly, as Python's docs advise
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        raise typer.Exit(1) from None


def rm(
    runs: Annotated[list[str], typer.Argument(help="Runs to delete.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Also delete runs still running.")]
    = False,
    dir: DirOpt = None,
) -> None:
    """Delete runs from the store: their record, training points, samples and console output.

    Asks first unless --yes; refuses a running run unless --force.

    Example: tracklab rm old-run-1 old-run-2 --yes
    """
    from tracklab.read.manage import remove_run
    from tracklab_cli.render.fmt import duration, when

    opened: list[Any] = []
    try:
        with library_errors():
            for ref in runs:
                v = _open(ref, dir)
                if any(v.id == o.id for o in opened):
                    v.close()
                    continue
                opened.append(v)
            infos = [v.info for v in opened]
        running = [i["id"] for i in infos if i["status"] == "running"]
        if running and not force:
            raise fail(f"{', '.join(running)} still running; stop it first or pass --force")
        for i in infos:
            sys.stderr.write(visible(f"  {i['id']}  {i['name']}  {i['status']}  "
                                     f"{when(i['started_at'])}  {duration(i['duration'])}")
                             + "\n")
        if not yes and not typer.confirm(f"Delete {len(opened)} run{'s' * (len(opened) > 1)}?"):
            raise fail("nothing deleted")
        with library_errors():
            while opened:
                remove_run(opened.pop(0))
    finally:
        for v in opened:
            v.close()
    sys.stderr.write(f"tracklab: deleted {len(infos)} run{'s' * (len(infos) > 1)}\n")
