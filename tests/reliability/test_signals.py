"""Point 1-3: signals reach the child once, the wrapper's death takes the child with it, and
every ending gets an honest status."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import sys
import time
from pathlib import Path

import pytest

import tracklab
from tests.conftest import TRACKLAB, cli, run_tracklab, wait_until
from tests.reliability.helpers import (
    pid_gone,
    python_child,
    start_wrapper,
    wait_for_file,
)

COUNTING_CHILD = """
import os, signal, sys, time
SIG = getattr(signal, sys.argv[1])
seen = []
signal.signal(SIG, lambda s, f: seen.append(s))
open(sys.argv[2], "w").write(str(os.getpid()))
deadline = time.time() + 30
while not seen and time.time() < deadline:
    time.sleep(0.02)
time.sleep(1.0)  # a second delivery would land now
open(sys.argv[3], "w").write(str(len(seen)))
sys.exit(int(sys.argv[4]))
"""


@pytest.mark.parametrize(("name", "status"), [("SIGINT", "interrupted"),
                                              ("SIGTERM", "terminated"),
                                              ("SIGHUP", "terminated")])
def test_signal_to_wrapper_reaches_child_once(tmp_path: Path, name: str, status: str) -> None:
    ready, count = tmp_path / "ready", tmp_path / "count"
    cmd = python_child(tmp_path, COUNTING_CHILD)
    proc = start_wrapper("--interval", "0.2", "--", *cmd, name, str(ready), str(count), "7")
    wait_for_file(ready)
    proc.send_signal(getattr(signal, name))
    proc.communicate(timeout=30)
    assert proc.returncode == 7  # the child's own exit code comes back unchanged
    assert count.read_text() == "1"
    info = tracklab.open_run("latest").info
    assert info["status"] == status and info["exit_code"] == 7


def test_ctrl_c_in_a_terminal_is_delivered_once(tmp_path: Path) -> None:
    """The terminal sends SIGINT to the whole foreground group: wrapper and child both get it;
    the wrapper must not forward a second one."""
    ready, count = tmp_path / "ready", tmp_path / "count"
    cmd = python_child(tmp_path, COUNTING_CHILD)
    argv = [*TRACKLAB, "run", "--interval", "0.2", "--", *cmd, "SIGINT", str(ready), str(count),
            "0"]
    pid, fd = pty.fork()
    if pid == 0:  # the wrapper, in a new session whose controlling terminal is the pty
        os.execvpe(argv[0], argv, dict(os.environ))
    output = b""
    try:
        wait_for_file(ready)
        os.write(fd, b"\x03")  # Ctrl-C typed at the terminal
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            r, _, _ = select.select([fd], [], [], 0.2)
            if r:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                output += chunk
            if os.waitpid(pid, os.WNOHANG) != (0, 0):
                pid = 0
                break
    finally:
        if pid:
            os.waitpid(pid, 0)
        os.close(fd)
    assert count.read_text() == "1", output.decode(errors="replace")
    assert tracklab.open_run("latest").info["status"] == "interrupted"


def test_child_dying_of_the_forwarded_signal_gives_128_plus_n(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    cmd = python_child(tmp_path, f"""
import time
open({str(ready)!r}, "w").write("x")
time.sleep(30)
""")
    proc = start_wrapper("--interval", "0.2", "--", *cmd)
    wait_for_file(ready)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    assert proc.returncode == 143
    info = tracklab.open_run("latest").info
    assert (info["status"], info["exit_code"], info["signal"]) == ("terminated", 143, 15)


def test_second_sigint_kills(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    cmd = python_child(tmp_path, f"""
import signal, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
open({str(ready)!r}, "w").write("x")
time.sleep(30)
""")
    proc = start_wrapper("--interval", "0.2", "--", *cmd)
    wait_for_file(ready)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=30)
    assert proc.returncode == 137
    assert tracklab.open_run("latest").info["status"] == "killed"


def test_child_ignoring_sigterm_is_killed_after_grace(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    cmd = python_child(tmp_path, f"""
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
open({str(ready)!r}, "w").write("x")
time.sleep(60)
""")
    proc = start_wrapper("--interval", "0.2", "--kill-after", "1", "--", *cmd)
    wait_for_file(ready)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    assert proc.returncode == 137
    assert 0.9 <= time.monotonic() - t0 < 10
    assert tracklab.open_run("latest").info["status"] == "killed"


def test_sigkilled_wrapper_takes_the_child_along_and_reads_as_crashed(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    cmd = python_child(tmp_path, f"""
import os, time
open({str(ready)!r}, "w").write(str(os.getpid()))
time.sleep(60)
""")
    proc = start_wrapper("--interval", "0.2", "--", *cmd)
    child_pid = int(wait_for_file(ready))
    proc.kill()
    proc.communicate(timeout=30)
    wait_until(lambda: pid_gone(child_pid), "the orphaned child to die", 10)
    assert tracklab.open_run("latest").info["status"] == "crashed"
    res = cli("ls", "--json")
    assert json.loads(res.stdout.splitlines()[0])["status"] == "crashed"
    assert "crashed" in cli("show", "latest").stdout


def test_child_sigkill_keeps_every_sample(tmp_path: Path) -> None:
    cmd = python_child(tmp_path, """
import os, signal, time
time.sleep(1.5)
os.kill(os.getpid(), signal.SIGKILL)
""")
    res = run_tracklab("run", "-q", "--interval", "0.2", "--", *cmd)
    assert res.returncode == 137
    view = tracklab.open_run("latest")
    info = view.info
    assert (info["status"], info["exit_code"]) == ("killed", 137)
    samples = view.samples()
    assert len(samples) >= 6  # start, ~7 in 1.5 s at 0.2 s, and the final one
    assert samples[-1]["timestamp"] / 1000 >= info["started_at"] + 1.4


def test_oom_kill_counter_turns_killed_into_oom_killed(monkeypatch: pytest.MonkeyPatch) -> None:
    from tracklab.wrapper import verdict

    monkeypatch.setattr(verdict, "oom_kills", lambda pid: 4)  # the cgroup's counter, read now
    assert verdict.verdict(-signal.SIGKILL, False, None, oom_before=3)[0] == "oom-killed"
    assert verdict.verdict(-signal.SIGKILL, False, None, oom_before=4)[0] == "killed"
    assert verdict.verdict(-signal.SIGKILL, False, None, oom_before=None)[0] == "killed"


def test_wrapper_exit_status_is_recorded_even_for_signal_deaths(tmp_path: Path) -> None:
    res = run_tracklab("run", "-q", "--", sys.executable, "-c",
                       "import os, signal; os.kill(os.getpid(), signal.SIGINT)")
    assert res.returncode == 130
    assert tracklab.open_run("latest").info["status"] == "interrupted"
