"""Shared fixtures: every test gets its own store folder and a clean tracklab environment."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

ROOT = Path(__file__).resolve().parent.parent
TRACKLAB = [sys.executable, "-m", "tracklab_cli"]
T = TypeVar("T")


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A fresh ``TRACKLAB_DIR`` per test; no inherited run, node or mode variables."""
    for name in ("TRACKLAB_RUN_ID", "TRACKLAB_PROJECT", "TRACKLAB_NODE_ID", "TRACKLAB_MODE",
                 "TRACKLAB_FAKE_NVML", "TRACKLAB_NVML_MODULE", "SLURM_JOB_ID", "SLURM_NODEID",
                 "SLURM_STEP_ID", "TORCHELASTIC_RUN_ID", "RANK", "LOCAL_RANK", "GROUP_RANK",
                 "NODE_RANK", "CUDA_VISIBLE_DEVICES", "SLURM_PROCID", "SLURM_LOCALID",
                 "TRACKLAB_PROMETHEUS_PORT", "TRACKLAB_PROMETHEUS_ADDR"):
        monkeypatch.delenv(name, raising=False)
    store = tmp_path / "store"
    monkeypatch.setenv("TRACKLAB_DIR", str(store))
    # subprocesses started by tests import this checkout, wherever pytest runs from
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
    return store


@pytest.fixture(autouse=True)
def _finish_sdk_state():
    """Finish any run or monitor a test left open, so tests do not leak into each other."""
    yield
    import tracklab.sdk.run as sdk

    for run in list(sdk._live):
        run.finish()
    sdk._cur.run = sdk._last = None
    sdk._exception.clear()
    if "tracklab.sdk.system_monitor" in sys.modules:
        sys.modules["tracklab.sdk.system_monitor"]._at_exit()


@pytest.fixture
def store_dir(isolated_env: Path) -> Path:
    return isolated_env


@pytest.fixture
def served(store_dir: Path) -> Iterator[Any]:
    """A dashboard (tracklab.ui) serving this test's store on a free loopback port."""
    import threading

    from tracklab.ui.server import Dashboard

    server = Dashboard(str(store_dir), "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def wait_until(cond: Callable[[], T], what: str = "the condition", timeout: float = 60.0,
               every: float = 0.05, ignore: tuple[type[BaseException], ...] = ()) -> T:
    """Poll ``cond`` until it returns something truthy, and return that; fail the test, naming
    ``what``, after ``timeout`` s (the machine is shared: never a fixed sleep). Exceptions of the
    ``ignore`` types mean "not yet" (a server still starting)."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            value = cond()
            if value:
                return value
        except ignore as exc:
            last = exc
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}"
                        + (f" (last error: {last})" if last else ""))
        time.sleep(every)


def run_tracklab(*args: str, timeout: float = 60, **kwargs) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a subprocess (``python -m tracklab_cli``)."""
    return subprocess.run([*TRACKLAB, *args], capture_output=True, text=True, timeout=timeout,
                          cwd=kwargs.pop("cwd", None), **kwargs)


def cli(*args: str, env: dict[str, str] | None = None,
        **_process_only: object) -> subprocess.CompletedProcess[str]:
    """Run a reading command (show, ls, logs...) in this process, through typer's CliRunner,
    where no real process is the point: same exit code, stdout and stderr as the subprocess,
    the library's warnings as the command line prints them (one line each on stderr)."""
    import warnings

    from typer.testing import CliRunner

    from tracklab.errors import TracklabWarning
    from tracklab_cli.app import app

    def one_line(message: Warning | str, *_: object, **__: object) -> None:
        sys.stderr.write(f"{message}\n")

    with warnings.catch_warnings():
        warnings.simplefilter("always", TracklabWarning)
        warnings.showwarning = one_line
        result = CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)
    return subprocess.CompletedProcess(list(args), result.exit_code, result.stdout, result.stderr)


def write_script(tmp_path: Path, body: str, name: str = "child.py") -> Path:
    """A Python script for a test's child process, written to ``tmp_path``."""
    path = tmp_path / name
    path.write_text(body)
    return path


def python_child(tmp_path: Path, body: str, name: str = "child.py") -> list[str]:
    """The command that runs :func:`write_script`'s script with this interpreter."""
    return [sys.executable, str(write_script(tmp_path, body, name))]
