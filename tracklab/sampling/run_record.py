"""A run's row as every writer creates it, and the one thread that describes the run's machine
and code into it.

Three writers create runs (``tracklab run``, ``tracklab.init()``, a monitor's first write for a
run id no one created) and two describe them; they share these definitions, so a run reads the
same whoever started it.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from typing import Any

from tracklab import _env


def create_run(shard: Any, run_id: str, *, name: str, project: str, owner: str, node: str,
               command: list[str], started: float | None = None, **fields: Any) -> int:
    """Insert the row of a running run into ``shard`` (a :class:`~tracklab.store.Shard`) and
    return its number; a row of that id already there is kept as it is (``INSERT OR IGNORE``).

    Every run gets its id, name, project, ``owner`` (``wrapper`` or ``sdk``), status, start and
    heartbeat times, the command line (secret-looking values redacted), cwd, host, node and this
    process's pid; ``fields`` adds the writer's own columns (``pid_start``, ``config`` as JSON,
    ``interval``...).

    Raises:
        StoreError: the store refused the write.
    """
    from tracklab.store.codec import dumps_exact

    now = time.time() if started is None else started
    return int(shard.insert_run({
        "id": run_id, "name": name, "project": project, "status": "running",
        "started_at": now, "heartbeat_at": now,
        "command": dumps_exact(_env.redact_argv(command)), "cwd": os.getcwd(),
        "host": _env.hostname(), "node": node, "owner": owner, "pid": os.getpid(),
        **fields,
    }))


class Description:
    """The run's ``system`` (this machine: platform, CPUs, memory, GPUs) and ``context`` (git
    state, interpreter, packages) columns, computed in one daemon thread and stored as each is
    known. Describing reads NVML and runs git, either of which can hang: the run waits for it
    at most :meth:`end`'s ``wait``, after which it writes nothing more.

    Args:
        shard_path, num: the run's shard and row (``num`` None: not made yet, see
            :meth:`row_created`).
        store_dir: the store folder (its filesystem and path are part of ``system``).
        command, cwd, environ, save_diff: what :func:`tracklab.sampling.machine.run_context`
            describes.
        collectors: a :class:`~tracklab.collectors.SystemCollectors` to read the GPUs through
            (the wrapper's sampler's), else ``system_info`` opens its own.
    """

    def __init__(self, shard_path: str, num: int | None, *, store_dir: str, command: list[str],
                 cwd: str, environ: Mapping[str, str] | None = None, save_diff: bool = False,
                 collectors: Any = None, collectors_later: bool = False) -> None:
        self.shard_path = shard_path
        self.num = num
        self._args = (store_dir, command, cwd, environ, save_diff)
        self._collectors = collectors
        self._lock = threading.Lock()  # held while a result is written
        self._late = False
        self._row = threading.Event()  # the run's row exists (num is known)
        if num is not None:
            self._row.set()
        self._ready = threading.Event()  # the collectors to read the GPUs through are known
        if not collectors_later:
            self._ready.set()
        self._thread = threading.Thread(target=self._work, name="tracklab-sysinfo", daemon=True)

    def row_created(self, num: int) -> None:
        """The run's row, for a description started before it was created (it then describes
        while the row is made, and stores once it is)."""
        self.num = num
        self._row.set()

    def collectors_ready(self, collectors: Any) -> None:
        """The collectors, for a description started before they were made (``collectors_later``:
        it describes the code meanwhile, then the machine through them)."""
        self._collectors = collectors
        self._ready.set()

    def start(self) -> Description:
        self._thread.start()
        return self

    def end(self, wait: float) -> None:
        """Give the description ``wait`` seconds to be stored (0 when the store has just failed
        to respond); past that it is not stored, unless its write has begun (it would otherwise
        land after the run's end, in a store the process may no longer own)."""
        if wait > 0:
            self._thread.join(wait)
        if self._lock.acquire(timeout=wait):
            self._late = True
            self._lock.release()
        self._row.set()  # a description still waiting for a row that never came: let it end
        self._ready.set()

    def _work(self) -> None:
        from tracklab.sampling.machine import run_context, system_info
        from tracklab.store.codec import dumps_exact

        store_dir, command, cwd, environ, save_diff = self._args
        try:
            # the code first: its git calls run while the caller makes the collectors
            ctx = run_context(command, cwd, environ, save_diff)
            self._store(lambda shard, num: shard.edit_run_json(
                num, "context", lambda old: {**(old or {}), **ctx}))
        except Exception:  # noqa: BLE001 - an optional description: the run goes on without it
            _debug("run context not recorded")
        self._ready.wait()
        try:
            info = dumps_exact(system_info(store_dir, self._collectors))
            self._store(lambda shard, num: shard.update_run(num, system=info))
        except Exception:  # noqa: BLE001 - likewise (logged at debug level with its traceback)
            _debug("system information not recorded")

    def _store(self, write: Any) -> None:
        from tracklab.store import Shard

        self._row.wait()
        with self._lock:
            if self._late or self.num is None:
                return  # the run has ended meanwhile: its store is no longer ours
            shard = Shard(self.shard_path)
            try:
                write(shard, self.num)
            finally:
                shard.close()


def _debug(what: str) -> None:
    import logging

    logging.getLogger("tracklab.sampling.machine").debug(what, exc_info=True)
