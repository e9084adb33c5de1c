"""The store side of :class:`~tracklab.sdk.run.Run`, mixed into it: opening the run (its row, created
or joined when attached, this process's row, the point writer, the machine's description in its
own thread, the optional system monitor), saving its config, and writing its end and summary.
The training path, ``log()`` and ``finish()``, stays in :mod:`tracklab.sdk.run`."""

from __future__ import annotations

import os
import sys
import time
from typing import TYPE_CHECKING, Any

from tracklab import _env
from tracklab.errors import StoreError
from tracklab.sdk.values import Warn

if TYPE_CHECKING:
    from tracklab.sdk.config import Config


def _logger() -> Any:
    import logging  # on first use only: `import tracklab` stays light

    return logging.getLogger("tracklab.sdk.run")  # the SDK's one logger, for all of Run



class RunStoreMixin:
    """What :class:`~tracklab.sdk.run.Run` writes to its store besides points; ``Run.__init__`` sets
    the attributes below before calling :meth:`_open`."""

    id: str
    dir: str
    node: str
    attached: bool
    project: str
    name: str
    config: Config
    summary: dict[str, Any]
    queue: Any
    _monitor: Any
    _writer: Any
    _run_num: int | None
    _shard_path: str | None
    _sysinfo: Any
    _held: Any
    _warn: Warn
    _meta: dict[str, Any]
    _resume: Any
    _rank: tuple[int | None, int | None] | None
    _step: int

    def _open(self, system_monitor: bool) -> None:
        from tracklab import store
        from tracklab.sampling.run_record import create_run
        from tracklab.sdk.pointqueue import HEADER
        from tracklab.sdk.writer import PAGE_CACHE_KIB, PointWriter
        from tracklab.store import space
        from tracklab.store.codec import dumps_exact, encode_values

        if not space.under_wrapper():  # the wrapper has said it for this folder
            for problem in store.folder_warnings(self.dir):
                self._warn(f"folder:{problem}", f"tracklab: warning: {problem}")
        description = None
        if not self.attached:
            from tracklab.sampling.run_record import Description

            # started first, so that it describes while the run's row is made (a fresh store
            # creates its tables meanwhile); finish() waits for it at most SYSINFO_WAIT_S
            description = Description(
                os.path.join(self.dir, store.shard_name(self.node)), None, store_dir=self.dir,
                command=[sys.executable, *sys.argv], cwd=os.getcwd()).start()
        try:
            shard = store.open_shard(self.dir, self.node)
        except BaseException:
            if description is not None:
                description.end(0.0)
            raise
        self._shard_path = shard.path
        now = time.time()
        try:
            existing = shard.run_rows("id = ?", (self.id,))
            if self.attached:
                self._check_attach(existing)
            else:
                self._check_resume(existing)
            if existing:
                num = existing[0]["num"]
                if self.attached:
                    row = existing[0]
                    self.project = row["project"] or self.project
                    self.name = row["name"] or self.name
                else:  # resumed: it runs again, its steps go on from its last one
                    shard.update_run(num, status="running", exit_code=None, signal=None,
                                     ended_at=None, pid=os.getpid(), owner="sdk",
                                     pid_start=_env.process_start(), heartbeat_at=now)
                    last = [s[8] for s in shard.metric_stats(num) if s[8] is not None]
                    self._step = max(last) + 1 if last else 0
                self._save_meta(shard, num)
            else:
                num = create_run(shard, self.id, name=self.name, project=self.project,
                                 owner="wrapper" if self.attached else "sdk", node=self.node,
                                 command=[sys.executable, *sys.argv], started=now,
                                 pid_start=_env.process_start(),
                                 config=dumps_exact(dict(self.config)),
                                 tags=dumps_exact(self._meta.get("tags") or []),
                                 notes=self._meta.get("notes"))
                self._save_meta(shard, num, context_only=True)
            rank, local_rank = self._rank or _env.rank_env()
            proc = shard.add_proc(num, os.getpid(), rank, local_rank, _env.hostname(), now)
            if self.config and existing:
                self._run_num = num
                self._save_config(shard)
        except BaseException:
            shard.close()
            if description is not None:
                description.end(0.0)
            raise
        # held until finish(): closing a shard's last connection checkpoints and deletes its
        # WAL, which the writer and the description would each create again
        self._held = shard
        self._run_num = num
        path = self._shard_path
        self._writer = PointWriter(lambda: store.Shard(path, cache_kib=PAGE_CACHE_KIB), num, proc,
                                   heartbeat=not self.attached, shard_path=path)
        self.queue = self._writer.queue
        self._encode = encode_values
        self._header = HEADER.pack
        if description is not None:
            description.row_created(num)
            self._sysinfo = description
        if system_monitor and not self.attached:
            from tracklab.sdk.system_monitor import get_run_system_monitor

            self._monitor = get_run_system_monitor(self.id, self.project, _run=self)
            self._monitor.start()

    def _check_attach(self, existing: list[dict[str, Any]]) -> None:
        if not existing:
            self._warn("attach", f"tracklab: run {self.id} (from {_env.ENV_RUN_ID}) is not in "
                       f"{self.dir}; created it and logging there")
            return
        from tracklab.read.liveness import resolve_status

        status = resolve_status(existing[0])
        if status != "running":
            self._warn("attach", f"tracklab: run {self.id} (from {_env.ENV_RUN_ID}) is "
                       f"{status}, not running; appending this process's metrics to it anyway")

    def _check_resume(self, existing: list[dict[str, Any]]) -> None:
        from tracklab.errors import UsageError

        if existing and self._resume == "never":
            raise UsageError(f"init(id={self.id!r}, resume='never'): that run exists already")
        if not existing and self._resume == "must":
            raise UsageError(f"init(id={self.id!r}, resume='must'): there is no such run in "
                             f"{self.dir}")

    def _save_meta(self, shard: Any, num: int, context_only: bool = False) -> None:
        """init()'s tags and notes join the run's own (the wrapper's ``--tag``/``--notes``);
        group and job_type go to its context."""
        meta = self._meta
        tags = meta.get("tags") or []
        if tags and not context_only:
            shard.edit_run_json(num, "tags", lambda old: [
                *(old if isinstance(old, list) else []),
                *(t for t in tags if not isinstance(old, list) or t not in old)])
        notes = meta.get("notes")
        if notes and not context_only:
            row = shard.run_rows("num = ?", (num,))[0]
            have = row["notes"]
            if not have or notes not in have:
                shard.update_run(num, notes=f"{have}\n{notes}" if have else str(notes))
        extra = {k: str(meta[k]) for k in ("group", "job_type") if meta.get(k)}
        if extra:
            shard.edit_run_json(num, "context", lambda old: {**(old or {}), **extra})

    def _edit_context(self, patch: dict[str, Any]) -> None:
        """Merge ``patch`` into the run's context (dict values one level down)."""
        from tracklab import store
        from tracklab.sdk.plain import to_plain

        if self._run_num is None or self._shard_path is None:
            return
        patch = to_plain(patch)

        def edit(old: Any) -> dict[str, Any]:
            new = dict(old) if isinstance(old, dict) else {}
            for k, v in patch.items():
                new[k] = {**new[k], **v} if isinstance(v, dict) and isinstance(
                    new.get(k), dict) else v
            return new

        try:
            shard = store.Shard(self._shard_path)
            try:
                shard.edit_run_json(self._run_num, "context", edit)
            finally:
                shard.close()
        except StoreError as exc:
            self._warn("context", f"tracklab: could not store the run's context ({exc})")

    def _save_config(self, shard: Any = None) -> None:
        from tracklab import store
        from tracklab.store.codec import dumps_exact

        if self._run_num is None or self._shard_path is None:
            return
        own = shard is None
        try:
            shard = shard or store.Shard(self._shard_path)
            shard.update_run(self._run_num, config=dumps_exact(dict(self.config)))
        except StoreError as exc:
            self._warn("config", f"tracklab: could not save config ({exc})")
        finally:
            if own and shard is not None:
                shard.close()

    def _end_sysinfo(self, wait: float) -> None:
        if self._sysinfo is not None:
            self._sysinfo.end(wait)

    def _release(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            held.close()

    def _set_final(self, status: str | None, exit_code: int | None) -> None:
        """Write the end of an owned run, and ``summary`` merged into the run's ``user``
        summary (an attached process passes None: only its summary, merged with other ranks')."""
        from tracklab import store
        from tracklab.sdk.plain import to_plain
        from tracklab.store.edits import merge_summary

        assert self._shard_path is not None and self._run_num is not None
        try:
            shard = store.Shard(self._shard_path, timeout=store.FINAL_TIMEOUT_S)
            try:
                fields: dict[str, Any] = {} if status is None else {
                    "status": status, "exit_code": exit_code, "ended_at": time.time()}
                user = to_plain(self.summary) if self.summary else {}
                if user:
                    merge_summary(shard, self._run_num, {"user": user}, **fields)
                elif fields:
                    shard.update_run(self._run_num, **fields)
            finally:
                shard.close()
        except StoreError as exc:
            _logger().warning("tracklab: warning: could not record the run's end (%s)", exc)
