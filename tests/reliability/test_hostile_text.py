"""Text from a run is untrusted: a run's name, tags, notes, config, metric names and console lines
reach a reader's terminal as text, never as escape sequences; and every view fits 80 columns."""

from __future__ import annotations

import os
import pty
import select
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import TRACKLAB, python_child, run_tracklab
from tests.reliability.helpers import env_with

TITLE = "\x1b]0;pwned\x07"  # sets the terminal's title
CLEAR = "\x1b[2J"  # clears the screen
EVIL = f"evil{TITLE}\x1b[31m"
RAW = ("\x1b]", "\x07", "\x1b[2J", "\x1b[31m", "\x9b", "\u202e")

CHILD = """
import sys, tracklab
run = tracklab.init()
tracklab.log({"loss" + "\\x1b[2J": 1.0, "acc\\u202e": 2.0})
run.finish()
print("plain line")
print("title \\x1b]0;pwned\\x07 and \\x1b[32mgreen\\x1b[0m and csi \\x9b2J", flush=True)
sys.exit(int(sys.argv[1]))
"""


def _hostile_run(tmp_path: Path, name: str, code: int = 1) -> None:
    cmd = python_child(tmp_path, CHILD)
    res = run_tracklab("run", "-q", "--name", name, "--tag", EVIL, "--notes", f"n{CLEAR}",
                       "--config", f"k{CLEAR}=v{TITLE}", "--", *cmd, str(code),
                       env=env_with(COLUMNS="80"))
    assert res.returncode == code, res.stderr


def _assert_inert(text: str) -> None:
    for seq in RAW:
        assert seq not in text, (seq, text)


def test_show_ls_compare_watch_print_run_text_visibly(tmp_path: Path) -> None:
    _hostile_run(tmp_path, EVIL)
    _hostile_run(tmp_path, f"second{CLEAR}", 0)
    env = env_with(COLUMNS="80")
    show = run_tracklab("show", "latest", env=env)
    first = run_tracklab("ls", "--json", env=env).stdout.splitlines()[-1]
    ref = __import__("json").loads(first)["id"]
    outputs = {
        "show": run_tracklab("show", ref, env=env),
        "show-latest": show,
        "ls": run_tracklab("ls", env=env),
        "compare": run_tracklab("compare", ref, "latest", env=env),
        "watch": run_tracklab("watch", ref, "--once", env=env),
    }
    for what, res in outputs.items():
        assert res.returncode == 0, (what, res.stderr)
        _assert_inert(res.stdout + res.stderr)
    shown = outputs["show"].stdout
    assert "\\x1b]0;pwned\\x07" in shown  # the name (and the tag), visibly
    assert "k\\x1b[2J" in shown and "loss\\x1b[2J" in shown and "acc\\u202e" in shown
    assert "title \\x1b]0;pwned\\x07 and green and csi \\x9b2J" in shown  # show's console tail
    assert "\\x1b[2J" in outputs["compare"].stdout
    assert "evil\\x1b" in outputs["ls"].stdout


def test_errors_quoting_run_text_are_inert(tmp_path: Path) -> None:
    """Run ids come from `--run-id` (any text): an ambiguous prefix lists them; `rm` lists the
    runs it is about to delete."""
    for rid in (f"ab{TITLE}", f"ab{CLEAR}"):
        res = run_tracklab("run", "-q", "--run-id", rid, "--name", f"n{CLEAR}", "--", "true")
        assert res.returncode == 0, res.stderr
    res = run_tracklab("show", "ab")
    assert res.returncode == 1
    _assert_inert(res.stderr)
    assert "ab\\x1b[2J" in res.stderr and "ab\\x1b]0;pwned\\x07" in res.stderr
    res = run_tracklab("rm", f"ab{CLEAR}", input="n\n")
    _assert_inert(res.stderr)
    assert "n\\x1b[2J" in res.stderr
    res = run_tracklab("show", f"nope{CLEAR}{TITLE}")
    assert res.returncode == 1 and len(res.stderr.strip().splitlines()) == 1
    _assert_inert(res.stderr)


def test_logs_escapes_unless_raw(tmp_path: Path) -> None:
    """Piped, `logs` shows escape sequences as text; `--raw` replays the bytes as stored."""
    _hostile_run(tmp_path, "logs-run")
    piped = run_tracklab("logs", "logs-run")
    assert piped.returncode == 0, piped.stderr
    _assert_inert(piped.stdout)
    assert "title \\x1b]0;pwned\\x07 and \\x1b[32mgreen" in piped.stdout
    raw = run_tracklab("logs", "logs-run", "--raw")
    assert "title \x1b]0;pwned\x07 and \x1b[32mgreen\x1b[0m" in raw.stdout


def _in_pty(argv: list[str], env: dict[str, str]) -> bytes:
    pid, fd = pty.fork()
    if pid == 0:
        os.execvpe(argv[0], argv, env)
    out = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], 0.2)
        if r:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
    os.waitpid(pid, 0)
    os.close(fd)
    return out


def test_in_a_terminal_show_is_inert_and_own_logs_keep_colours(tmp_path: Path) -> None:
    """In a real terminal rich adds its own colours; the run's sequences still never pass.
    `logs` of one's own run, to a terminal, replays its colours."""
    _hostile_run(tmp_path, EVIL)
    env = env_with(COLUMNS="80", TERM="xterm-256color")
    shown = _in_pty([*TRACKLAB, "show", "latest"], env).decode(errors="replace")
    assert "\x1b]0;" not in shown and "\x1b[2J" not in shown and "\x07" not in shown
    assert "pwned" in shown
    own = _in_pty([*TRACKLAB, "logs", "latest"], env)
    assert b"\x1b[32mgreen\x1b[0m" in own


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to own a run as another user")
def test_logs_of_another_users_run_in_a_terminal_are_escaped(tmp_path: Path,
                                                              store_dir: Path) -> None:
    _hostile_run(tmp_path, "theirs")
    for path in store_dir.iterdir():
        os.chown(path, 65534, 65534)
    env = env_with(COLUMNS="80", TERM="xterm-256color")
    out = _in_pty([*TRACKLAB, "logs", "theirs"], env).decode(errors="replace")
    assert "\x1b]0;" not in out and "\\x1b]0;pwned" in out


def test_show_at_80_columns_keeps_process_tree_labels_apart(tmp_path: Path) -> None:
    cmd = [sys.executable, "-c", "import time; time.sleep(1.5)"]
    res = run_tracklab("run", "-q", "--interval", "0.2", "--", *cmd)
    assert res.returncode == 0, res.stderr
    shown = run_tracklab("show", "latest", env=env_with(COLUMNS="80")).stdout
    assert max(len(line) for line in shown.splitlines()) <= 80
    labels = [line.split("│")[1].strip() for line in shown.splitlines()
              if line.startswith("│") and "process" in line]
    assert len(labels) >= 2
    assert len(set(labels)) == len(labels), labels  # no two rows look alike
