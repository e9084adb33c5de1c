"""The run store: a folder of per-node SQLite shards, merged by readers."""

from __future__ import annotations

import glob
import os
import re
import stat

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


def folder_warnings(path: str) -> list[str]:
    """What is unsafe about the existing store folder ``path``, each with its fix: a symlink
    (followed), a folder every user may write, or one another user owns. A team's folder (its
    group may write, setgid, so files keep the group) is the documented way to share a store."""
    out: list[str] = []
    try:
        link = os.path.islink(path.rstrip(os.sep) or path)
        real = os.path.realpath(path)
        st = os.stat(real)
    except OSError:
        return out
    if link:
        out.append(f"store folder {path} is a symlink to {real}; following it (pass --dir "
                   f"{real} to use it without this warning)")
    mode = stat.S_IMODE(st.st_mode)
    if mode & stat.S_IWOTH:
        out.append(f"store folder {real} is writable by every user (mode {mode:04o}): any of "
                   f"them can alter or plant runs; fix: chmod 700 {real} (or chmod 2770 and "
                   "chgrp a team's group, to share it)")
    elif st.st_uid not in (os.geteuid(), 0) and not _team_folder(st):
        out.append(f"store folder {real} belongs to {_user(st.st_uid)}, who can alter or "
                   "remove its runs; fix: use a folder of your own (--dir), or a team's "
                   "folder (chmod 2770, chgrp the team's group)")
    return out


def _team_folder(st: os.stat_result) -> bool:
    """The group may write it, files made in it get its group, and we are in that group (root
    acts as a member of every group)."""
    return bool(st.st_mode & stat.S_IWGRP and st.st_mode & stat.S_ISGID) and \
        (os.geteuid() == 0 or st.st_gid == os.getegid() or st.st_gid in os.getgroups())


def _user(uid: int) -> str:
    try:
        import pwd

        return f"user {pwd.getpwuid(uid).pw_name} (uid {uid})"
    except (KeyError, ImportError):
        return f"uid {uid}"


def open_shard(store_dir: str, node: str) -> Shard:
    """The writable shard of ``node`` under ``store_dir``, created (0600) when new."""
    ensure_dir(store_dir)
    return Shard(os.path.join(store_dir, shard_name(node)))


def shard_paths(store_dir: str) -> list[str]:
    return sorted(glob.glob(os.path.join(glob.escape(store_dir), SHARD_GLOB)))


__all__ = ["FINAL_TIMEOUT_S", "Shard", "StoreError", "ensure_dir", "folder_warnings", "open_shard", "shard_name", "shard_paths"]
