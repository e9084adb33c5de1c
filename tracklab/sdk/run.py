"""``tracklab.init()`` / ``log()`` / ``finish()``: the training-side SDK.

``log()`` is the hot path: it packs the call's step, time and values into one record of bytes,
appends it to a :class:`~tracklab.sdk.pointqueue.PointQueue` and returns. Anything that is not a plain
int, float or bool (nested dicts, numpy and torch scalars, bad values) takes a slower path that
flattens, converts and warns; the record packer and that cleaning live in
:mod:`tracklab.sdk.values`. A background :class:`~tracklab.sdk.writer.PointWriter` does the rest.

Fork safety: a process forked after ``init()`` (a DataLoader worker) inherits the run object but
not its writer thread or a usable connection, so in the child every ``log()`` is a cheap no-op.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import time
import warnings
from collections.abc import Mapping
from typing import Any

from tracklab import _env
from tracklab.errors import StoreError, TracklabWarning, UsageError
from tracklab.sdk import current as _cur
from tracklab.sdk.compat import WandbRunMixin
from tracklab.sdk.config import Config, Summary
from tracklab.sdk.run_store import RunStoreMixin
from tracklab.sdk.values import FLOATS, PLAIN, STEP_MAX, clean, clean_step, float_record

# A backlog this large (~26,000 calls of 8 floats) wakes the writer before its tick: in a long
# burst it then writes while the training thread logs. Not much sooner: a writer awake shares the
# GIL with the training thread, which a burst that fits in a few MB is better off without.
WAKE_AT_BYTES = 2 * 1024 * 1024
# Past this backlog the writer is awake and still behind (a loop logging flat out), and log()
# yields the GIL once every YIELD_EVERY calls. A loop that never lets go of the GIL otherwise
# leaves the writer a turn only once per switch interval (5 ms) per statement, and the backlog
# grows as fast as the loop logs. A yield is no wait on I/O: the writer does its I/O with the GIL
# released, and holds it only for the Python between two statements.
YIELD_AT_BYTES = 4 * 1024 * 1024
YIELD_EVERY = 128
SYSINFO_WAIT_S = 1.0  # finish() waits this long for the machine's description (git, NVML)


_time = time.time
_sleep = time.sleep

_last: Run | None = None  # the current run once it finished: log() then warns, as run.log()
_live: list[Run] = []
_lock = threading.Lock()
_exception: list[BaseException] = []


class Run(RunStoreMixin, WandbRunMixin):
    """One training run as seen from the process that called :func:`init`.

    Attributes:
        id: the run id (shared with the wrapper when attached).
        name, project: as given, or derived.
        config: a dict of the training configuration.
        summary: final values; by default each metric's last value, overridable by assignment.
        attached: True when this process joined a run started by ``tracklab run``.

    Opening the run and its writes to the store other than points (config, machine description,
    end) come from :class:`~tracklab.sdk.run_store.RunStoreMixin`.
    """

    def __init__(self, *, project: str | None, name: str | None, config: Any,
                 system_monitor: bool, dir: str | None, meta: Mapping[str, Any] | None = None,
                 run_id: str | None = None, resume: Any = None,
                 rank: tuple[int | None, int | None] | None = None) -> None:
        from tracklab.ids import new_run_id
        from tracklab.sdk.plain import to_plain

        env_id = os.environ.get(_env.ENV_RUN_ID)
        self.attached = bool(env_id)
        # attached, the run lives in the wrapper's store: a `dir=` meant for a wandb script's
        # files must not split it into a second one
        self.dir = _env.store_dir(None if self.attached else dir)
        self.node = _env.node_id()
        self.id = env_id or (str(run_id) if run_id else new_run_id())
        self.project = project or os.environ.get(_env.ENV_PROJECT) or "default"
        self.name = name or _default_name(self.id)
        self.summary = Summary()
        self._meta = dict(meta or {})  # tags, notes, group, job_type
        self._resume = resume
        self._rank = rank
        self.config = Config(self, to_plain(config) if config is not None else None)
        self._step = 0
        self._keys: tuple[Any, ...] = ()
        self._behind = 0  # calls logged with the writer behind, since the last yield
        self._closed = False
        self._noop = False
        self._pid = os.getpid()
        self._warned: set[str] = set()
        self._monitor: Any = None
        self._writer: Any = None
        self._run_num: int | None = None
        self._shard_path: str | None = None
        self._sysinfo: threading.Thread | None = None
        self._sysinfo_lock = threading.Lock()
        self._sysinfo_late = False
        self.queue: Any = None  # a PointQueue once the store is open
        try:
            self._open(system_monitor)
        except StoreError as exc:
            warnings.warn(f"tracklab: {exc}; this run records nothing, training goes on",
                          TracklabWarning, stacklevel=_caller_level())
            self._closed = True
            self._noop = True  # warned once above; log() is now a silent no-op

    # -- logging ---------------------------------------------------------------------------------

    def log(self, data: Mapping[str, Any], step: int | None = None,
            commit: bool | None = None) -> None:
        """Record training metrics. Never blocks on disk and never raises for a bad value.

        Args:
            data: metric name -> number (int, float, bool, numpy or torch scalar). Nested dicts are
                flattened with dots (``{"train": {"loss": x}}`` -> ``train.loss``).
            step: the step of these values; by default one past this process's previous step.
            commit: ``False`` keeps the step: the next call without ``step`` logs at the same
                one (wandb's accumulate-then-commit).
        """
        if self._closed:
            if not self._noop:
                self._warn("closed", "tracklab: log() after finish() is ignored")
            return
        try:
            vals = tuple(data.values())
        except AttributeError:
            self._warn("type", f"tracklab: log() takes a dict of metrics, not "
                       f"{type(data).__name__}; ignored")
            return
        if step is None or type(step) is not int or not 0 <= step <= STEP_MAX:
            step = self._step if step is None else clean_step(step, self._step, self._warn)
        self._step = step if commit is False else step + 1
        # Packed here, into one record of bytes (see pointqueue): the queue holds no object per
        # call, so a burst costs little memory and a long queue never lengthens a GC pass.
        if FLOATS.issuperset(map(type, vals)):
            fmt, record = None, float_record(len(vals))(step, _time(), *vals)
        else:
            if not PLAIN.issuperset(map(type, vals)):
                data = clean(data, self._warn)
                vals = tuple(data.values())
            fmt, blob = self._encode(vals)
            record = self._header(step, _time()) + blob
        keys = tuple(data)
        if keys == self._keys:
            keys = self._keys  # one shared tuple per key set: the queue's segments compare it
        else:
            self._keys = keys
        queued = self.queue.put(keys, fmt, record)
        if queued >= WAKE_AT_BYTES:
            self._writer.wake()
            if queued >= YIELD_AT_BYTES:
                self._behind += 1
                if self._behind == YIELD_EVERY:
                    self._behind = 0
                    _sleep(0)
        elif queued < 0:
            self._writer.dropped += 1
            self._warn("full", f"tracklab: the store is not keeping up ({self.queue.limit >> 20} "
                       "MB of metrics waiting); new metrics are dropped until it does")

    def _warn(self, what: str, message: str) -> None:
        if what not in self._warned:
            self._warned.add(what)
            warnings.warn(message, TracklabWarning, stacklevel=_caller_level())

    # -- ending ----------------------------------------------------------------------------------

    def flush(self, timeout: float = 5.0) -> bool:
        """Write every logged point now. False when the store did not keep up within timeout."""
        if self._writer is None or self._noop:
            return True
        return bool(self._writer.flush(timeout))

    def finish(self, exit_code: int | None = None) -> None:
        """Flush and close the run (idempotent, bounded to about 2 s plus one interval).

        A run this process created gets status ``finished`` (``failed`` after an uncaught
        exception or a non-zero ``exit_code``); an attached run's status is the wrapper's to set.
        """
        global _last
        with _lock:
            if self._closed and self._writer is None:
                return
            self._closed = True
            if self in _live:
                _live.remove(self)
            if _cur.run is self:
                _cur.run, _last = None, self
        if self._noop:
            return
        if self._monitor is not None:
            from tracklab.sdk.system_monitor import cleanup_run_monitor

            cleanup_run_monitor(self.id, self.project)
        writer, self._writer = self._writer, None
        responsive = writer.close(timeout=2.0) if writer is not None else True
        self._end_sysinfo(SYSINFO_WAIT_S if responsive else 0.0)
        if not self.attached and self._run_num is not None:
            failed = bool(_exception) or bool(exit_code)
            self._set_final("failed" if failed else "finished",
                            1 if failed and exit_code is None else (exit_code or 0))
        elif self.summary and self._run_num is not None:  # the wrapper owns the rest
            self._set_final(None, None)

    def __enter__(self) -> Run:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.finish(exit_code=1 if exc_type is not None else None)

    def __repr__(self) -> str:
        return f"<tracklab.Run {self.id} {self.name!r} project={self.project!r}>"


class _DisabledRun(Run):
    """What ``init()`` returns under ``TRACKLAB_MODE=disabled`` (or ``WANDB_MODE=disabled``, or
    ``mode="disabled"``): every method does nothing."""

    def __init__(self, project: str | None = None, name: str | None = None,
                 config: Any = None, **_: Any) -> None:
        from tracklab.ids import new_run_id

        self.id = new_run_id()
        self.project = project or "default"
        self.name = name or self.id
        self.config = Config(None, config if isinstance(config, Mapping) else {})
        self.summary = Summary()
        self.attached = False
        self._step = 0
        self._closed = True
        self._noop = True  # silences the log-after-finish warning
        self._writer = None
        self._run_num = None
        self._shard_path = None
        self._monitor = None

    def log(self, data: Mapping[str, Any], step: int | None = None,
            commit: bool | None = None) -> None:
        return None

    def finish(self, exit_code: int | None = None) -> None:
        return None

    def _save_config(self, shard: Any = None) -> None:
        return None


MODES = ("online", "offline", "shared", "disabled")
REINIT = (None, True, False, "default", "return_previous", "finish_previous", "create_new")
# wandb.init() arguments a local store has no use for: accepted, said once, not kept
IGNORED_INIT = frozenset((
    "entity", "settings", "save_code", "anonymous", "sync_tensorboard", "monitor_gym",
    "config_exclude_keys", "config_include_keys", "allow_val_change", "force", "magic",
    "fork_from", "resume_from", "tensorboard", "id_prefix"))


def init(project: str | None = None, name: str | None = None, config: Any = None,
         system_monitor: bool = False, dir: str | None = None, *,
         tags: Any = None, notes: str | None = None, group: str | None = None,
         job_type: str | None = None, mode: str | None = None, reinit: Any = None,
         resume: Any = None, id: str | None = None,
         _rank: tuple[int | None, int | None] | None = None, **ignored: Any) -> Run:
    """Start a run, or attach to the one ``tracklab run`` started (``$TRACKLAB_RUN_ID``).

    wandb's arguments work too (README, "The wandb shape"): ``tags``, ``notes``, ``group`` and
    ``job_type`` are stored with the run; ``mode="disabled"`` is ``TRACKLAB_MODE=disabled``;
    ``reinit="return_previous"`` (or ``False``) returns the live run instead of starting one;
    ``id`` with ``resume`` appends to that run (``"must"``: it has to exist, ``"never"``: it must
    not). Never raises because of the store: if it cannot be opened, a warning says so and the
    returned run records nothing. Example::

        run = tracklab.init(project="demo", config={"lr": 1e-3}, tags=["baseline"])
        tracklab.log({"loss": 0.5})
        run.finish()
    """
    unknown = sorted(set(ignored) - IGNORED_INIT)
    if unknown:
        raise TypeError(f"init() got an unexpected keyword argument {unknown[0]!r}")
    if mode is not None and mode not in MODES:
        raise UsageError(f"init(mode={mode!r}): mode is one of {', '.join(MODES)}")
    if reinit not in REINIT:
        raise UsageError(f"init(reinit={reinit!r}): reinit is a bool or one of "
                         "'default', 'return_previous', 'finish_previous', 'create_new'")
    if ignored:
        from tracklab.sdk.compat import _once

        _once("init-ignored", f"tracklab: init() ignores {', '.join(sorted(ignored))} (no use "
              "for them in a local store)", info=True)
    if mode == "disabled" or _env.disabled():
        run: Run = _DisabledRun(project=project, name=name, config=config)
        _cur.run = run
        return run
    if _cur.run is not None:
        if reinit in (False, "return_previous"):
            live: Run = _cur.run
            return live
        if reinit != "create_new":
            _cur.run.finish()
    _install_hooks()
    meta = {"tags": _tag_list(tags), "notes": notes, "group": group, "job_type": job_type}
    run = Run(project=project, name=name, config=config, system_monitor=system_monitor, dir=dir,
              meta=meta, run_id=id, resume=resume, rank=_rank)
    with _lock:
        _cur.run = run
        _live.append(run)
    return run


def _tag_list(tags: Any) -> list[str]:
    if tags is None:
        return []
    if isinstance(tags, str):
        tags = [tags]
    return [t for t in dict.fromkeys(str(t) for t in tags) if t.strip()]


def log(data: Mapping[str, Any], step: int | None = None, commit: bool | None = None) -> None:
    """Log metrics to the current run (see :meth:`Run.log`)."""
    run = _cur.run or _last
    if run is None:
        if _env.disabled():
            return
        raise UsageError("Call tracklab.init() before tracklab.log().")
    run.log(data, step, commit)


def finish(exit_code: int | None = None, quiet: bool | None = None) -> None:
    """Finish the current run, if any (``exit_code``: as :meth:`Run.finish`; ``quiet`` is
    wandb's and changes nothing: tracklab prints nothing at finish)."""
    run = _cur.run
    if run is not None:
        run.finish(exit_code)


def current_run() -> Run | None:
    run: Run | None = _cur.run
    return run


# -- process hooks ---------------------------------------------------------------------------------

_hooks_installed = False


def _install_hooks() -> None:
    global _hooks_installed
    if _hooks_installed:
        return
    _hooks_installed = True
    atexit.register(_at_exit)
    previous = sys.excepthook

    def hook(tp: Any, value: Any, tb: Any) -> None:
        _exception.append(value)
        previous(tp, value, tb)

    sys.excepthook = hook
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_after_fork)


def _at_exit() -> None:
    for run in list(_live):
        run.finish()


def _after_fork() -> None:
    for run in list(_live):
        run._noop = True
        run._closed = True
        run.queue = None  # the parent's points are the parent's to write; log() is a no-op
    _live.clear()


# -- helpers -------------------------------------------------------------------------------------

_HERE = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _caller_level() -> int:
    """``stacklevel`` for a warning raised here that names the user's line: the first frame
    outside this package (``init``, ``log`` and ``run.log`` reach a warning at depths of
    their own)."""
    frame, level = sys._getframe(1), 1
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_HERE):
        frame, level = frame.f_back, level + 1
    return level


def _default_name(run_id: str) -> str:
    script = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    stem = os.path.splitext(script)[0] if script and script != "-c" else "run"
    return f"{stem}-{run_id[:4]}"
