"""tracklab's own short-lived subprocesses (git, a package probe; see ``context._helper``): never
part of a measured process tree, though the SDK measures the tree of the process that starts
them. Apart from the tree walks (:mod:`._tree`), which import psutil: the process that starts
them need not."""

from __future__ import annotations

HELPER_PIDS: set[int] = set()
