"""Helpers for fault-injection tests: real wrappers, real children, real signals."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.conftest import TRACKLAB


def start_wrapper(*args: str, **kwargs: Any) -> subprocess.Popen[str]:
    return subprocess.Popen([*TRACKLAB, "run", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def wait_for(predicate: Any, timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def wait_for_file(path: Path, timeout: float = 20.0) -> str:
    def read() -> str | None:
        try:
            text = path.read_text()
        except FileNotFoundError:
            return None
        return text or None

    return str(wait_for(read, timeout, f"{path}"))


def pid_gone(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def python_child(tmp_path: Path, body: str, name: str = "child.py") -> list[str]:
    script = tmp_path / name
    script.write_text(body)
    return [sys.executable, str(script)]


def env_with(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    return env
