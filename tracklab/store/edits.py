"""Edits of a run's JSON columns that writers of every kind share (the wrapper, the SDK, the
monitors): one transaction each, through :meth:`Shard.edit_run_json`."""

from __future__ import annotations

from typing import Any


def merge_summary(shard: Any, num: int, patch: dict[str, Any], **fields: Any) -> None:
    """Merge ``patch`` into a run's summary JSON; dict values (``user``) merge one level down.
    ``fields`` (status, ended_at...; ``fields_from``, see ``Shard.edit_run_json``) are written
    in the same transaction."""

    def edit(old: Any) -> dict[str, Any]:
        new = dict(old) if isinstance(old, dict) else {}
        for k, v in patch.items():
            if isinstance(v, dict) and isinstance(new.get(k), dict):
                new[k] = {**new[k], **v}
            else:
                new[k] = v
        return new

    shard.edit_run_json(num, "summary", edit, **fields)
