"""Stopped and continued: a wrapper suspended by SIGSTOP, SIGTSTP or Ctrl-Z in a shell gives back
its child's exit code and output, and job control works as it would without the wrapper."""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import time
from pathlib import Path

import psutil

import tracklab
from tests.conftest import TRACKLAB, python_child, wait_until
from tests.reliability.helpers import start_wrapper, wait_for_file

TICKING_CHILD = """
import os, sys, time
open(sys.argv[1], "w").write(str(os.getpid()))
for i in range(int(sys.argv[2])):
    print(f"tick {i}", flush=True)
    time.sleep(0.1)
print("done", flush=True)
sys.exit(7)
"""


def _state(pid: int) -> str:
    return str(psutil.Process(pid).status())


def test_sigstop_then_sigcont_keeps_exit_code_and_output(tmp_path: Path) -> None:
    """Stopped longer than its poll interval: the wrapper came back with EINVAL and exit 126."""
    ready = tmp_path / "ready"
    cmd = python_child(tmp_path, TICKING_CHILD)
    proc = start_wrapper("--interval", "0.2", "--", *cmd, str(ready), "30")
    child = int(wait_for_file(ready))
    for _ in range(4):  # what a wrapper does when woken depends on chance: try a few times
        os.kill(proc.pid, signal.SIGSTOP)
        wait_until(lambda: _state(proc.pid) == psutil.STATUS_STOPPED, "wrapper stopped")
        time.sleep(0.6)  # past the wrapper's wait for a signal
        os.kill(proc.pid, signal.SIGCONT)
        time.sleep(0.2)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 7, err
    assert "cannot execute" not in err and "Traceback" not in err
    assert "done" in out and all(f"tick {i}\n" in out for i in range(30))
    info = tracklab.open_run("latest").info
    assert info["status"] == "failed" and info["exit_code"] == 7
    assert psutil.pid_exists(child) is False or _state(child) == psutil.STATUS_ZOMBIE


def test_sigtstp_to_wrapper_suspends_the_child_and_sigcont_resumes_it(tmp_path: Path) -> None:
    """`kill -TSTP` (or a scheduler's suspend) of the wrapper alone stops the job, as it would
    the command without tracklab; `kill -CONT` resumes both."""
    ready = tmp_path / "ready"
    cmd = python_child(tmp_path, TICKING_CHILD)
    proc = start_wrapper("--interval", "0.2", "--", *cmd, str(ready), "20")
    child = int(wait_for_file(ready))
    os.kill(proc.pid, signal.SIGTSTP)
    wait_until(lambda: _state(child) == psutil.STATUS_STOPPED, "child stopped")
    wait_until(lambda: _state(proc.pid) == psutil.STATUS_STOPPED, "wrapper stopped")
    time.sleep(1.0)
    assert _state(child) == psutil.STATUS_STOPPED  # nobody resumed it behind our back
    os.kill(proc.pid, signal.SIGCONT)
    wait_until(lambda: _state(child) != psutil.STATUS_STOPPED, "child resumed")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 7, err
    assert "done" in out and "Traceback" not in err
    assert tracklab.open_run("latest").info["exit_code"] == 7


def _read_until(fd: int, pattern: bytes, timeout: float, seen: bytearray) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if re.search(pattern, bytes(seen)):
            return True
        r, _, _ = select.select([fd], [], [], 0.1)
        if r:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                return False
            if not chunk:
                return False
            seen.extend(chunk)
    return bool(re.search(pattern, bytes(seen)))


def test_ctrl_z_and_fg_in_an_interactive_shell(tmp_path: Path) -> None:
    """A real shell with job control in a pty: Ctrl-Z stops the job, `fg` resumes it, every
    line the child printed reaches the terminal and the exit code is the child's."""
    ready = tmp_path / "ready"
    cmd = python_child(tmp_path, TICKING_CHILD)
    line = " ".join([*TRACKLAB, "run", "--interval", "0.2", "--", *cmd, str(ready), "30"])
    env = dict(os.environ, PS1="$ ", TERM="dumb", HISTFILE="/dev/null")
    pid, fd = pty.fork()
    if pid == 0:
        os.execvpe("bash", ["bash", "--norc", "--noprofile", "-i"], env)
    seen = bytearray()
    try:
        assert _read_until(fd, rb"\$ ", 30, seen)
        os.write(fd, line.encode() + b"\n")
        child = int(wait_for_file(ready, timeout=60))
        assert _read_until(fd, rb"tick 3", 30, seen)
        os.write(fd, b"\x1a")  # Ctrl-Z
        assert _read_until(fd, rb"Stopped", 30, seen), bytes(seen)
        assert _state(child) == psutil.STATUS_STOPPED
        time.sleep(1.0)
        os.write(fd, b"fg\n")
        assert _read_until(fd, rb"done", 60, seen), bytes(seen)
        os.write(fd, b"echo rc=$?\n")
        assert _read_until(fd, rb"rc=\d+", 60, seen), bytes(seen)
        text = bytes(seen).decode(errors="replace")
        assert "rc=7" in text, text
        assert all(f"tick {i}\r\n" in text for i in range(30)), text
        assert "cannot execute" not in text and "Traceback" not in text
    finally:
        os.write(fd, b"exit\n")
        try:
            os.waitpid(pid, 0)
        finally:
            os.close(fd)
    info = tracklab.open_run("latest").info
    assert info["status"] == "failed" and info["exit_code"] == 7
