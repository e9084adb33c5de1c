"""Changing what the store holds about a run, for ``tracklab tag`` and ``tracklab rm``: the one
place readers write, each through the shard of every node that holds the run."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tracklab.read.runs import RunView, open_run
from tracklab.store import Shard


def tag_run(ref: str, tags: Iterable[str], remove: bool = False,
            dir: str | None = None) -> list[str]:
    """Add (or with ``remove``, take away) tags of a run on every node; returns its tags.

    Raises:
        RunNotFound, AmbiguousRun, StoreError: as :func:`tracklab.open_run`.
    """
    wanted = [t for t in dict.fromkeys(tags) if t]
    view = open_run(ref, dir)
    try:
        parts = [(shard.path, row["num"]) for shard, row in view.parts]
    finally:
        view.close()

    def edit(old: Any) -> list[str]:
        have = [str(t) for t in old] if isinstance(old, list) else []
        if remove:
            return [t for t in have if t not in wanted]
        return have + [t for t in wanted if t not in have]

    result: list[str] = []
    for path, num in parts:
        shard = Shard(path, create=False)
        try:
            result = shard.edit_run_json(num, "tags", edit)
        finally:
            shard.close()
    return result


def remove_run(view: RunView) -> None:
    """Delete the run from every shard that holds it (points, samples, console, record) and
    close ``view``. Raises StoreError when a shard cannot be written."""
    paths = [(shard.path, row["num"]) for shard, row in view.parts]
    view.close()
    for path, num in paths:
        shard = Shard(path, create=False)
        try:
            shard.delete_run(num)
        finally:
            shard.close()
