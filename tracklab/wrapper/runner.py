"""``tracklab run``: start a command as a child, sample while it runs, report how it ended.

The wrapper must never harm the job it watches. It blocks the signals it handles and takes them
synchronously with ``sigtimedwait`` (so nothing is handled in a half-finished state), forwards
them once to the child, passes the child's exit code back unchanged, and carries on without a
store when the store cannot be used. The child gets a parent-death signal (Linux), so killing the
wrapper with SIGKILL does not leave an orphaned training job behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any, NamedTuple

from tracklab import _env
from tracklab.errors import StoreError
from tracklab.store import space
from tracklab.wrapper import defaults
from tracklab.wrapper.supervise import HANDLED, supervise
from tracklab.wrapper.verdict import oom_kills, verdict, verdict_to_keep


class RunOptions(NamedTuple):
    """What ``tracklab run`` was asked to do. (NamedTuples: importing ``dataclasses`` would
    cost every ``tracklab run`` ~14 ms of start-up.)"""

    command: list[str]
    interval: float = defaults.INTERVAL_S
    project: str | None = None
    name: str | None = None
    dir: str | None = None
    node_id: str | None = None
    run_id: str | None = None
    kill_after: float = defaults.KILL_AFTER_S
    quiet: bool = False
    tags: tuple[str, ...] | list[str] = ()
    notes: str | None = None
    config: dict[str, Any] | None = None
    prometheus_port: int | None = None  # serve /metrics for Prometheus on this port
    prometheus_addr: str = defaults.PROMETHEUS_ADDR
    no_capture: bool = False  # console capture (tracklab.wrapper.capture), on by default
    capture_limit: int = defaults.CAPTURE_LIMIT  # bytes of output stored per run (head + tail)
    save_diff: bool = False  # store the text of `git diff HEAD` in the run context
    carbon_intensity: float | None = None  # gCO2e/kWh; the summary gets grams CO2e
    no_tensorboard: bool = False  # scalars of TensorBoard/CSVLogger files stay out of the run


class RunResult(NamedTuple):
    run_id: str
    status: str
    exit_code: int
    signal: int | None
    duration: float
    store: str | None
    peaks: dict[str, Any]
    samples: int


def derive_run_id(explicit: str | None = None) -> str:
    """``--run-id``, else one shared by every node of a scheduler job, else a new random id."""
    if explicit:
        return explicit
    job = os.environ.get("SLURM_JOB_ID")
    if job:
        step = os.environ.get("SLURM_STEP_ID")
        return f"slurm-{job}" + (f"-{step}" if step else "")
    elastic = os.environ.get("TORCHELASTIC_RUN_ID")
    if elastic and elastic != "none":
        return f"torchrun-{elastic}"
    from tracklab.ids import new_run_id

    return new_run_id()


def run(opts: RunOptions, on_start: Callable[[str, str | None], None] | None = None,
        on_warning: Callable[[str], None] | None = None) -> RunResult:
    """Run ``opts.command`` to completion under monitoring and return how it ended.

    Raises:
        FileNotFoundError / other OSError: the command cannot be started (callers map these
            to exit codes 127 / 126, as a shell does). Nothing after the exec raises: a fault
            of tracklab's own is one ``on_warning`` line and the child's status is returned.
    """
    warn = _once_when_full(on_warning or (lambda msg: None))
    if not opts.interval > 0:
        raise ValueError("interval must be positive")
    store_dir = _env.store_dir(opts.dir)
    node = _env.node_id(opts.node_id)
    run_id = derive_run_id(opts.run_id)
    project = opts.project or os.environ.get(_env.ENV_PROJECT) or "default"
    started = time.time()
    record = _Record(store_dir, node, run_id, warn)
    record.create(opts, project, started)

    env = dict(os.environ)
    env.update({_env.ENV_RUN_ID: run_id, _env.ENV_PROJECT: project, _env.ENV_DIR: store_dir,
                _env.ENV_NODE_ID: node, space.ENV_WRAPPER: str(os.getpid())})
    # the child's output is teed into the store (tracklab.wrapper.capture)
    from tracklab.wrapper.capture import ConsoleCapture, secret_values

    capture = ConsoleCapture(record.shard_path, record.num, opts.capture_limit,
                             enabled=not opts.no_capture, secrets=secret_values(opts.command, env))
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED)
    try:
        try:
            child = subprocess.Popen(opts.command, env=env, preexec_fn=_child_setup(os.getpid()),
                                     **capture.popen_kwargs())
        except OSError as exc:  # ENOEXEC, ENAMETOOLONG, ELOOP, E2BIG...: 126, as a shell says
            capture.stop()
            record.finish("failed", 127 if isinstance(exc, FileNotFoundError) else 126, None,
                          started, {})
            raise
        sampler = oom_before = files = description = None
        try:
            description = record.describe(opts, env)
            capture.start(child)
            if on_start:
                on_start(run_id, record.shard_path)
            oom_before = oom_kills(child.pid)
            sampler = record.start_sampler(child.pid, opts.interval)
            if description is not None:
                description.collectors_ready(sampler.collectors if sampler is not None else None)
            files = None if opts.no_tensorboard else record.watch_files(started, child.pid)
        except Exception as exc:  # noqa: BLE001 - the command is running: it runs on, unwatched
            warn(f"monitoring could not start ({exc}); the command runs on")
        # a GPU reading that may hang is watched from here; without one nothing needs a tick
        watch = (lambda: watch_sampler(sampler)) if sampler is not None and \
            sampler.collectors.gpu_may_hang() else None
        killed, requested, _seen = supervise(child, opts.kill_after, watch, warn)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
    status, exit_code, sig = verdict(child.returncode, killed, requested, oom_before)
    peaks: dict[str, Any] = {}
    try:
        console = capture.stop(timeout=2.0)  # the last lines are stored before the verdict
        if description is not None:
            description.end(2.0)
        record.make_room()  # the disk filled: what was held back takes the last stats and the end
        if sampler is not None:
            sampler.stop(timeout=2.0 + min(opts.interval, 5.0), final=True)
        if files is not None:  # the script's last TensorBoard/CSVLogger values, before the end
            files.stop()
        peaks = record.finish(status, exit_code, sig, started,
                              record.peaks(opts.carbon_intensity), console)
    except Exception as exc:  # noqa: BLE001 - after the exec, only the child's status counts
        warn(f"could not finish recording the run ({exc}); the command's exit code is kept")
    return RunResult(run_id, status, exit_code, sig, time.time() - started,
                     record.shard_path, peaks, record.sample_count())


def watch_sampler(sampler: Any) -> None:
    """Move sampling to a new thread once a GPU reading has hung in the current one."""
    try:
        if sampler is not None and sampler.collectors.gpu_hung():
            sampler.restart()
    except Exception:  # the child's supervision must go on whatever monitoring does
        import logging

        logging.getLogger("tracklab.wrapper.runner").warning(
            "tracklab: warning: could not restart sampling after a hung GPU reading",
            exc_info=True)


def _child_setup(parent: int) -> Callable[[], None]:
    """Runs in the child between fork and exec: default signal mask, die with the wrapper."""
    prctl = None
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            prctl = ctypes.CDLL(None, use_errno=True).prctl
        except (OSError, AttributeError):
            prctl = None

    def setup() -> None:
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        if prctl is not None:
            prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
            if os.getppid() != parent:  # the wrapper died before prctl took effect
                os._exit(137)

    return setup


class _Record:
    """The run's row and samples; every method degrades to a no-op when the store failed."""

    def __init__(self, store_dir: str, node: str, run_id: str,
                 warn: Callable[[str], None]) -> None:
        self.store_dir = store_dir
        self.node = node
        self.run_id = run_id
        self.warn = warn
        self.shard_path: str | None = None
        self.num: int | None = None
        self.recorder: Any = None
        # (port, addr, project)
        self.prometheus: tuple[int | None, str | None, str | None] = (None, None, None)
        self.exporter: Any = None
        self.held: Any = None  # the shard connection create() opened
        self.reserve = space.Reserve(store_dir)

    def create(self, opts: RunOptions, project: str, started: float) -> None:
        self.prometheus = (opts.prometheus_port, opts.prometheus_addr, project)
        from tracklab import store
        from tracklab.ids import new_run_id
        from tracklab.read.fleet import measure_clock_offset
        from tracklab.sampling.run_record import create_run
        from tracklab.store.codec import dumps_exact

        name = opts.name or f"{_stem(opts.command)}-{new_run_id(4)}"
        try:
            for problem in store.folder_warnings(self.store_dir):
                self.warn(problem)
            shard = store.open_shard(self.store_dir, self.node)
            try:
                self.num = create_run(
                    shard, self.run_id, name=name, project=project, owner="wrapper",
                    node=self.node, command=opts.command, started=started,
                    pid_start=_env.process_start(), interval=opts.interval,
                    config=dumps_exact(opts.config or {}), tags=dumps_exact(list(opts.tags)),
                    notes=opts.notes,
                    # known now, so that `logs` on the live run can say so
                    summary=dumps_exact({"console": {"captured": False}})
                    if opts.no_capture or opts.capture_limit <= 0 else None,
                    # multi-node: lines this node's times up with the other nodes'
                    clock_offset=measure_clock_offset(self.store_dir),
                )
                was = shard.run_rows("num = ?", (self.num,))[0]
                if was["status"] != "running":  # `--run-id` of an ended run: it runs again
                    shard.update_run(self.num, status="running", exit_code=None, signal=None,
                                     ended_at=None, pid=os.getpid(),
                                     pid_start=_env.process_start(), heartbeat_at=started)
                self.shard_path = shard.path
                self.reserve.hold()  # room for the run's end, should the disk fill meanwhile
            except BaseException:
                shard.close()
                raise
            # held until the run ends: closing the shard's last connection checkpoints and
            # removes its WAL, which each writer of the run (sampler, console, description)
            # would then create again
            self.held = shard
        except StoreError as exc:
            self.warn(f"{exc}; running the command without recording it")

    def start_sampler(self, child_pid: int, interval: float) -> Any:
        if self.num is None or self.shard_path is None:
            return None
        from tracklab.collectors import SystemCollectors
        from tracklab.sampling.recorder import SampleRecorder
        from tracklab.sampling.sampler import Sampler

        self.recorder = SampleRecorder(self.shard_path, self.num, heartbeat=True)
        # GPU readings run in the sampling thread itself, watched from the main loop
        # (watch_sampler): a hung driver costs one thread, not a hand-off on every sample
        collectors = SystemCollectors(self.node, disk_path=self.store_dir, root_pid=child_pid,
                                      guard_gpu=False)
        sinks: list[Any] = [self.recorder]
        port, addr, project = self.prometheus
        if port is not None:  # Prometheus exposition
            from tracklab.sampling.prometheus import start_for_wrapper

            self.exporter = start_for_wrapper(self.run_id, self.node, port, addr, project,
                                              store=(self.shard_path, self.num), warn=self.warn)
            if self.exporter is not None:
                sinks.append(self.exporter)
        sampler = Sampler(collectors, interval, sinks, name="tracklab-wrapper-sampler")
        sampler.start(first=True)
        return sampler

    def describe(self, opts: RunOptions, env: dict[str, str]) -> Any:
        """The command's code, interpreter and packages, then the machine (GPUs through the
        sampler's collectors, handed over once made), described off the main thread; None
        without a store."""
        if self.num is None or self.shard_path is None:
            return None
        from tracklab.sampling.run_record import Description

        return Description(self.shard_path, self.num, store_dir=self.store_dir,
                           command=opts.command, cwd=os.getcwd(), environ=env,
                           save_diff=opts.save_diff, collectors_later=True).start()

    def watch_files(self, started: float, child_pid: int) -> Any:
        """Pick up the TensorBoard and CSVLogger files the command writes (tensorboard_watch)."""
        if self.num is None or self.shard_path is None:
            return None
        from tracklab.wrapper.tensorboard_watch import MetricFilesWatcher

        watcher = MetricFilesWatcher(self.shard_path, self.num, os.getcwd(), started,
                                     [self.store_dir], self.warn, child_pid)
        watcher.start()
        return watcher

    def peaks(self, carbon_intensity: float | None = None) -> dict[str, Any]:
        if self.recorder is None:
            return {}
        from tracklab.sampling.stats import peaks

        return peaks(self.recorder.stats, self.recorder.last_energy, carbon_intensity)

    def make_room(self) -> None:
        if self.reserve.held and (space.reported() or space.low(self.store_dir)):
            self.reserve.release()

    def sample_count(self) -> int:
        return self.recorder.count if self.recorder is not None else 0

    def finish(self, status: str, exit_code: int, sig: int | None, started: float,
               peaks: dict[str, Any], console: dict[str, Any] | None = None) -> dict[str, Any]:
        if self.num is None or self.shard_path is None:
            return peaks
        from tracklab.store import FINAL_TIMEOUT_S, Shard
        from tracklab.store.edits import merge_summary

        for attempt in (1, 2):
            try:
                shard = Shard(self.shard_path, timeout=FINAL_TIMEOUT_S)
                try:
                    # merged, so the attached processes' run.summary["user"] survives
                    merge_summary(shard, self.num, {"peaks": peaks, "console": console or {}},
                                  fields_from=lambda row: verdict_to_keep(
                                      row, started, status, exit_code, sig),
                                  ended_at=time.time())
                finally:
                    shard.close()
                break
            except StoreError as exc:
                if attempt == 1 and space.is_full(exc) and self.reserve.held:
                    self.reserve.release()  # what it was held back for
                    continue
                self.warn(f"{exc}; the run's end was not recorded")
                break
        if not space.reported() and space.low(self.store_dir):
            # the child's SDK leaves a full disk to us to say (space.under_wrapper)
            self.warn(f"the store's disk is full ({self.store_dir}); metrics and output the run "
                      "wrote may be missing")
        self.reserve.release()
        if self.recorder is not None:
            self.recorder.close()
        if self.exporter is not None:
            self.exporter.close()
        if self.held is not None:
            self.held.close()
        return peaks


def _once_when_full(warn: Callable[[str], None]) -> Callable[[str], None]:
    """``warn``, except for a full disk already reported in this process (by the sampler)."""
    def say(message: str) -> None:
        if space.is_full(message) and not space.first_report():
            return
        warn(message)

    return say


def _stem(command: list[str]) -> str:
    if "-m" in command[:-1]:  # python -m package.module: the module's last part
        return command[command.index("-m") + 1].rsplit(".", 1)[-1] or "run"
    if "-c" in command[:-1]:  # python -c CODE: the code is no name
        return os.path.basename(command[0]) or "run"
    words = [w for w in command if not w.startswith("-")]
    pick = words[1] if len(words) > 1 and os.path.basename(words[0]).startswith("python") \
        else (words[0] if words else "run")
    return os.path.splitext(os.path.basename(pick))[0] or "run"
