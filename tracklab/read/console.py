"""A run's console output, read back: ``tracklab logs``, ``logs --follow`` and the last lines in
``show``. :mod:`tracklab.wrapper.capture` and :mod:`tracklab.wrapper.console_store` write it; a stored row holds
one or more lines, which are split here."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from tracklab.store.schema import BOTH, MARKER


def not_captured(view: Any) -> str | None:
    """Why a run has no captured output at all, or None where it has or may still get some."""
    info = view.info
    if info["owner"] != "wrapper":
        return f"run {info['id']} was not started by `tracklab run`: its output was not captured"
    if info["summary"].get("console", {}).get("captured") is False:
        return (f"run {info['id']}'s output was not captured (it ran with --no-capture or "
                "--capture-limit 0)")
    return None


def console_lines(view: Any, stream: str | None = None, tail: int | None = None,
                  after: dict[int, int] | None = None) -> list[dict[str, Any]]:
    """A run's stored lines, oldest first, over all its nodes: ``{time, stream, line, node}``.

    Args:
        view: a :class:`~tracklab.read.runs.RunView`.
        stream: ``stdout`` or ``stderr`` for one stream (marker rows, and rows of both streams
            captured together, are always included).
        tail: only the last ``tail`` lines.
        after: per shard (index in the view's parts), the last row id already read; updated in
            place, for following a live run.
    """
    # a row holds one or more lines, so the last `tail` rows hold the last `tail` lines
    streams = (stream, BOTH, MARKER) if stream else None
    out: list[dict[str, Any]] = []
    for i, (shard, row) in enumerate(view.parts):
        start = after.get(i, 0) if after is not None else 0
        rows = shard.console(row["num"], streams, tail, start)
        if rows and after is not None:
            after[i] = rows[-1][0]
        node = row["node"]
        out.extend({"time": t, "stream": s, "line": line, "node": node}
                   for _rowid, t, s, text in rows for line in text.split("\n"))
    if len(view.parts) > 1:
        out.sort(key=lambda r: r["time"])
    return out[-tail:] if tail is not None and tail > 0 else ([] if tail == 0 else out)


def follow_console(view: Any, stream: str | None = None, tail: int | None = None,
                   poll: float = 0.2) -> Iterator[list[dict[str, Any]]]:
    """Yield batches of lines: the stored ones (or the last ``tail``), then new ones while the
    run is live, every ``poll`` seconds. Ends after the run has ended and its last lines."""
    from tracklab.read.liveness import resolve_status

    after: dict[int, int] = {}
    first = console_lines(view, stream, tail, after)
    for i, (shard, row) in enumerate(view.parts):
        after.setdefault(i, 0 if tail != 0 else _last_rowid(shard, row["num"]))
    yield first
    while True:
        live = False
        for shard, row in view.parts:
            fresh = shard.run_rows("num = ?", (row["num"],))
            live = live or bool(fresh and resolve_status(fresh[0]) == "running")
        batch = console_lines(view, stream, None, after)
        if batch:
            yield batch
        if not live:
            return
        time.sleep(poll)


def _last_rowid(shard: Any, num: int) -> int:
    rows = shard.console(num, None, 1, 0)
    return int(rows[-1][0]) if rows else 0
