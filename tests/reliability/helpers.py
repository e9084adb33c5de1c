"""Helpers for fault-injection tests: real wrappers, real children, real signals."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

from tests.conftest import TRACKLAB, wait_until
from tests.conftest import python_child as python_child


def start_wrapper(*args: str, **kwargs: Any) -> subprocess.Popen[str]:
    return subprocess.Popen([*TRACKLAB, "run", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def wait_for_file(path: Path, timeout: float = 20.0) -> str:
    def read() -> str | None:
        try:
            text = path.read_text()
        except FileNotFoundError:
            return None
        return text or None

    return str(wait_until(read, f"{path}", timeout))


def pid_gone(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def env_with(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    return env
