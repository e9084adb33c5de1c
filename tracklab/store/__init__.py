"""The run store: a folder of per-node SQLite shards, merged by readers."""

from __future__ import annotations

import glob
import os
import re

from tracklab.errors import StoreError
from tracklab.store.shard import FINAL_TIMEOUT_S, Shard

SHARD_GLOB = "node-*.db"


def shard_name(node: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", node)[:120] or "node"
    return f"node-{safe}.db"


def ensure_dir(path: str) -> str:
    """Create the store folder 0700 (parents as needed). Raises :class:`StoreError`."""
    try:
        if not os.path.isdir(path):
            os.makedirs(path, mode=0o700, exist_ok=True)
            os.chmod(path, 0o700)
    except OSError as exc:
        raise StoreError(path, exc.strerror or str(exc)) from None
    return path


def open_shard(store_dir: str, node: str) -> Shard:
    """The writable shard of ``node`` under ``store_dir``, created (0600) when new."""
    ensure_dir(store_dir)
    return Shard(os.path.join(store_dir, shard_name(node)))


def shard_paths(store_dir: str) -> list[str]:
    return sorted(glob.glob(os.path.join(glob.escape(store_dir), SHARD_GLOB)))


__all__ = ["FINAL_TIMEOUT_S", "Shard", "StoreError", "ensure_dir", "open_shard", "shard_name", "shard_paths"]
