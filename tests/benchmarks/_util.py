"""What every benchmark shares: the context, result rows, clean subprocesses and timing helpers.

Workloads run in fresh subprocesses (``python -m tests.benchmarks._worker NAME ARGS``) so that one
figure's imports, threads and garbage never bleed into another's, and the parent stays light.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable

# Inherited variables that would redirect or reshape a benchmark's run (as tests/conftest.py).
_SCRUB = ("TRACKLAB_RUN_ID", "TRACKLAB_PROJECT", "TRACKLAB_NODE_ID", "TRACKLAB_MODE",
          "TRACKLAB_FAKE_NVML", "TRACKLAB_FAKE_NVML_PIDS", "TRACKLAB_NVML_MODULE", "TRACKLAB_DIR",
          "SLURM_JOB_ID", "SLURM_NODEID", "SLURM_STEP_ID", "TORCHELASTIC_RUN_ID", "RANK",
          "LOCAL_RANK", "GROUP_RANK", "NODE_RANK", "CUDA_VISIBLE_DEVICES")

# Bytecode is cached like an installed package's (pip compiles on install), in a folder of its
# own: PYTHONDONTWRITEBYTECODE in the environment would otherwise make every start-up figure
# include compiling tracklab from source, while psutil's .pyc files ship with it.
PYCACHE = Path(tempfile.gettempdir()) / "tracklab-bench-cache" / "pycache"

# The full system sample of issue 5: eight GPUs behind the test suite's fake NVML.
FAKE_GPUS = {"TRACKLAB_NVML_MODULE": "tests.fakes", "TRACKLAB_FAKE_NVML": "eight_gpus"}


PROFILING: list[Any] = []  # the main thread's profiler while a worker is profiled (_worker.py)


@contextmanager
def window() -> Iterator[None]:
    """Marks a worker's timed section: when profiling, the main thread's profile covers only
    this section (the last one entered), not imports and set-up."""
    if not PROFILING:
        yield
        return
    import cProfile

    PROFILING[0].disable()
    PROFILING[0] = cProfile.Profile()
    PROFILING[0].enable()
    try:
        yield
    finally:
        PROFILING[0].disable()


@dataclass
class Row:
    """One line of the table. ``ok`` is True (pass), False (FAIL) or None (information only)."""

    bench: str
    figure: str
    value: str
    target: str = ""
    ok: bool | None = None
    data: dict[str, Any] = field(default_factory=dict)
    # how to show where the time goes when the target is missed: ("worker", name, args) or
    # ("cmd", argv, env_extra); see suite.profile()
    profile: tuple[Any, ...] | None = None


@dataclass
class Ctx:
    quick: bool
    reps: int
    tmp: Path
    cache: Path
    minutes: float = 10.0
    fresh_fixtures: bool = False
    drive_samples: int | None = None
    log: Callable[[str], None] = lambda msg: None
    _n: int = 0

    def scale(self, full: int, quick: int) -> int:
        return quick if self.quick else full

    def newdir(self, label: str) -> Path:
        self._n += 1
        d = self.tmp / f"{self._n:03d}-{label}"
        d.mkdir(parents=True)
        return d


def env(store: Path | str | None = None, **extra: str) -> dict[str, str]:
    """A clean environment for a child: this checkout first on the path, no inherited run."""
    e = {k: v for k, v in os.environ.items() if k not in _SCRUB}
    e.pop("PYTHONDONTWRITEBYTECODE", None)
    e["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    e["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    e["COLUMNS"] = "120"
    if store is not None:
        e["TRACKLAB_DIR"] = str(store)
    e.update(extra)
    return e


def run_worker(name: str, args: dict[str, Any] | None = None, *, store: Path | str | None = None,
               extra_env: dict[str, str] | None = None, timeout: float = 1800,
               profile: bool = False) -> dict[str, Any]:
    """Run ``module.worker_fn`` (``name`` = "module.fn") in a fresh interpreter; its result dict."""
    e = env(store, **(extra_env or {}))
    if profile:
        e["TRACKLAB_BENCH_PROFILE"] = "1"
    cmd = [PY, "-m", "tests.benchmarks._worker", name, json.dumps(args or {})]
    p = subprocess.run(cmd, cwd=ROOT, env=e, capture_output=True, text=True, timeout=timeout)
    lines = p.stdout.strip().splitlines()
    if p.returncode != 0 or not lines or not lines[-1].startswith("{"):
        raise RuntimeError(f"worker {name} failed (exit {p.returncode}):\n{p.stderr[-3000:]}")
    out: dict[str, Any] = json.loads(lines[-1])
    out.setdefault("_stderr", p.stderr)
    return out


def spawn_worker(name: str, args: dict[str, Any], *, store: Path | str | None = None,
                 extra_env: dict[str, str] | None = None, **popen: Any) -> subprocess.Popen[str]:
    """Start a worker without waiting; finish it with :func:`collect`."""
    cmd = [PY, "-m", "tests.benchmarks._worker", name, json.dumps(args)]
    popen.setdefault("stdout", subprocess.PIPE)
    popen.setdefault("stderr", subprocess.PIPE)
    return subprocess.Popen(cmd, cwd=ROOT, env=env(store, **(extra_env or {})), text=True,
                            **popen)


def collect(p: subprocess.Popen[str], timeout: float = 1800) -> dict[str, Any]:
    out, err = p.communicate(timeout=timeout)
    lines = (out or "").strip().splitlines()
    if p.returncode != 0 or not lines or not lines[-1].startswith("{"):
        raise RuntimeError(f"worker failed (exit {p.returncode}):\n{(err or '')[-3000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    result["_stderr"] = err or ""
    return result


def wall(cmd: Sequence[str], store: Path | str | None = None, extra_env: dict[str, str] | None = None,
         check: bool = True, timeout: float = 600) -> float:
    """Wall seconds of one command, output to pipes (not a terminal)."""
    e = env(store, **(extra_env or {}))
    t0 = time.perf_counter()
    p = subprocess.run(list(cmd), cwd=ROOT, env=e, capture_output=True,
                       timeout=timeout)
    t = time.perf_counter() - t0
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {p.returncode}: {p.stderr.decode()[-2000:]}")
    return t


def interleaved(cmds: dict[str, Callable[[], float]], reps: int) -> dict[str, list[float]]:
    """Call each timing function ``reps`` times, round robin, so drift hits all of them alike."""
    out: dict[str, list[float]] = {k: [] for k in cmds}
    for _ in range(reps):
        for k, fn in cmds.items():
            out[k].append(fn())
    return out


def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs))


def ratio_row(bench: str, figure: str, value: float, base: float, limit: float, unit: str = "s",
              base_label: str = "baseline", data: dict[str, Any] | None = None,
              profile: tuple[Any, ...] | None = None) -> Row:
    r = value / base if base > 0 else float("inf")
    return Row(bench, figure, f"{r:.2f}x  ({fmt(value, unit)} vs {base_label} {fmt(base, unit)})",
               f"<= {limit:g}x", r <= limit,
               dict(data or {}, value=value, baseline=base, ratio=r, limit=limit), profile)


def fmt(v: float | None, unit: str = "s") -> str:
    if v is None:
        return "-"
    if unit == "s":
        if v >= 1:
            return f"{v:.2f} s"
        if v >= 1e-3:
            return f"{v * 1e3:.1f} ms"
        return f"{v * 1e6:.1f} us"
    if unit == "B":
        for u, d in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
            if abs(v) >= d:
                return f"{v / d:.1f} {u}"
        return f"{v:.0f} B"
    return f"{v:.3g}{unit}"


def sources_hash(*parts: str) -> str:
    """A key for cached fixtures: changes when the code that decides what is on disk (the store,
    the writers) or the generator changes."""
    h = hashlib.sha1()
    for rel in ("tracklab/store", "tracklab/sdk/writer.py", "tracklab/sampling/recorder.py",
                "tests/benchmarks/fixtures.py"):
        p = ROOT / rel
        for f in sorted(p.rglob("*.py")) if p.is_dir() else [p]:
            h.update(f.read_bytes())
    for part in parts:
        h.update(part.encode())
    return h.hexdigest()[:12]


def checkpointed_size(db: Path | str) -> int:
    """The database file's size after folding its WAL back in (no VACUUM)."""
    import sqlite3

    c = sqlite3.connect(str(db))
    try:
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        c.close()
    wal = f"{db}-wal"  # empty after TRUNCATE unless a reader held it back: count what is left
    return os.path.getsize(db) + (os.path.getsize(wal) if os.path.exists(wal) else 0)


def shard_of(store: Path | str) -> Path:
    found = sorted(Path(store).glob("node-*.db"))
    if len(found) != 1:
        raise RuntimeError(f"expected one shard in {store}, found {found}")
    return found[0]


def default_tmp() -> Path:
    return Path(tempfile.gettempdir())


def rmtree(p: Path) -> None:
    shutil.rmtree(p, ignore_errors=True)
