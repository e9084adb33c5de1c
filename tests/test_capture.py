"""Console capture with real children: the terminal sees exactly what the child printed (compared
byte for byte through a pseudo-terminal), the store keeps head and tail within the cap, a failed
run's show has its last lines, logs --follow keeps up, and secrets never reach the store files."""

from __future__ import annotations

import fcntl
import hashlib
import itertools
import json
import os
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

import tracklab
from tests.conftest import TRACKLAB, cli, run_tracklab, wait_until, write_script
from tracklab.wrapper.console_store import MAX_LINE, final_segment, tidy


def run_in_pty(args: list[str], rows: int = 31, cols: int = 101, timeout: float = 120
               ) -> tuple[bytes, int]:
    """Run ``args`` with a pseudo-terminal of ``rows`` x ``cols`` as stdin, stdout and stderr;
    return everything written to it and the exit code."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    out = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 1 << 16)
            except OSError:  # EIO: every process holding the terminal has gone
                break
            if not data:
                break
            out += data
        return bytes(out), proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)


def console_rows(run_id: str) -> list[dict]:
    from tracklab.read.console import console_lines

    view = tracklab.open_run(run_id)
    try:
        return console_lines(view)
    finally:
        view.close()


FANCY = r"""
import os, sys
out = open(sys.argv[1], "wb")
def emit(b):
    sys.stdout.buffer.write(b)
    sys.stdout.buffer.flush()
    out.write(b)
emit(f"tty={sys.stdout.isatty()},{sys.stderr.isatty()} size={tuple(os.get_terminal_size())}\n"
     .encode())
for pct in range(0, 101, 10):
    emit(f"\rtraining |{'#' * (pct // 10):<10}| {pct:3d}%".encode())
emit(b"\n")
emit(b"\x1b[1;31mred bold\x1b[0m and \x1b[32mgreen\x1b[0m\n")
emit("h\u00e9llo \u2713 \u4e2d\u6587\n".encode())
emit(b"crlf line\r\n")
emit(b"L" * 100_000 + b"\n")
emit(b"no newline at the end")
"""


def test_terminal_sees_exactly_what_the_child_printed(tmp_path: Path) -> None:
    script = write_script(tmp_path, FANCY)
    expected_file = tmp_path / "expected.bin"
    captured, rc = run_in_pty([*TRACKLAB, "run", "-q", "--run-id", "fancy", "--", sys.executable,
                               str(script), str(expected_file)])
    assert rc == 0, captured[-2000:]
    child_bytes = expected_file.read_bytes()
    # the outer terminal turns \n into \r\n once (ONLCR), exactly as for an uncaptured child
    assert captured == child_bytes.replace(b"\n", b"\r\n")
    assert child_bytes.startswith(b"tty=True,True size=(101, 31)\n")

    plain, rc = run_in_pty([*TRACKLAB, "run", "-q", "--no-capture", "--", sys.executable,
                            str(script), str(tmp_path / "plain.bin")])
    assert rc == 0
    assert plain == captured  # the same bytes as without capture

    rows = console_rows("fancy")
    lines = [r["line"] for r in rows]
    assert lines[0] == "tty=True,True size=(101, 31)"
    assert lines[1] == "training |##########| 100%"  # the progress bar's last state
    assert lines[2] == "\x1b[1;31mred bold\x1b[0m and \x1b[32mgreen\x1b[0m"  # colours kept
    assert lines[3] == "h\u00e9llo \u2713 \u4e2d\u6587"
    assert lines[4] == "crlf line"
    assert "".join(lines[5:-1]) == "L" * 100_000 and len(lines[5:-1]) == 2  # in 64 KiB pieces
    assert lines[-1] == "no newline at the end"
    assert {r["stream"] for r in rows} == {"output"}  # stdout and stderr shared the terminal
    summary = tracklab.open_run("fancy").info["summary"]["console"]
    assert summary["terminal"] == ["output"] and summary["dropped"] == 0


INTERLEAVED = r"""
import sys
# tqdm.write's pattern: clear the bar on stderr, the message on stdout, the bar again on stderr
for i in range(200):
    sys.stderr.write("\r\x1b[K"); sys.stderr.flush()
    sys.stdout.write(f"epoch {i} done\n"); sys.stdout.flush()
    sys.stderr.write(f"\r[{'#' * (i % 20):<20}] {i}"); sys.stderr.flush()
sys.stderr.write("\n")
"""


def _interleaved_expected() -> bytes:
    out = []
    for i in range(200):
        out += ["\r\x1b[K", f"epoch {i} done\n", f"\r[{'#' * (i % 20):<20}] {i}"]
    return ("".join(out) + "\n").encode()


def test_stdout_and_stderr_to_one_terminal_keep_their_order(tmp_path: Path) -> None:
    script = write_script(tmp_path, INTERLEAVED)
    plain, rc = run_in_pty([*TRACKLAB, "run", "-q", "--no-capture", "--", sys.executable,
                            str(script)])
    assert rc == 0
    captured, rc = run_in_pty([*TRACKLAB, "run", "-q", "--run-id", "tqdm", "--",
                               sys.executable, str(script)])
    assert rc == 0
    assert captured == plain == _interleaved_expected().replace(b"\n", b"\r\n")
    lines = [r["line"] for r in console_rows("tqdm")]
    # each line as it was left on screen (the erase-line code is kept, as colours are)
    assert lines == [f"\x1b[Kepoch {i} done" for i in range(200)] + ["[################### ] 199"]
    res = cli("logs", "tqdm", "--stream", "stderr", "--tail", "1")
    assert res.stdout == "[################### ] 199\n"
    assert "captured together" in res.stderr


def test_stdout_and_stderr_into_one_pipe_keep_their_order(tmp_path: Path) -> None:
    script = write_script(tmp_path, INTERLEAVED)
    res = subprocess.run([*TRACKLAB, "run", "-q", "--run-id", "joined", "--", sys.executable,
                          str(script)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         timeout=60)
    assert res.returncode == 0
    assert res.stdout == _interleaved_expected()
    rows = console_rows("joined")
    assert {r["stream"] for r in rows} == {"output"}
    assert rows[-1]["line"] == "[################### ] 199"


def test_stdout_and_stderr_stay_apart_and_in_order(tmp_path: Path) -> None:
    script = write_script(tmp_path, """
import sys
for i in range(300):
    print(f"out {i}", flush=True)
    print(f"err {i}", file=sys.stderr, flush=True)
""")
    res = run_tracklab("run", "-q", "--run-id", "both", "--", sys.executable, str(script))
    assert res.returncode == 0
    assert res.stdout == "".join(f"out {i}\n" for i in range(300))
    assert res.stderr == "".join(f"err {i}\n" for i in range(300))
    rows = console_rows("both")
    assert [r["line"] for r in rows if r["stream"] == "stdout"] == [f"out {i}" for i in range(300)]
    assert [r["line"] for r in rows if r["stream"] == "stderr"] == [f"err {i}" for i in range(300)]
    assert all(a["time"] <= b["time"] for a, b in itertools.pairwise(rows))
    res = cli("logs", "both", "--stream", "stderr", "--tail", "2")
    assert res.stdout == "err 298\nerr 299\n"


BIG = r"""
import sys
n = int(sys.argv[1])
w = sys.stdout.write
for i in range(n):
    w("line %08d %s\n" % (i, "x" * 86))
sys.stdout.flush()
"""
BIG_LINES = 500_000  # 100 bytes a line: 50 MB


def _big_expected() -> bytes:
    return "".join(f"line {i:08d} {'x' * 86}\n" for i in range(BIG_LINES)).encode()


def _check_head_and_tail(run_id: str, limit: int) -> None:
    rows = console_rows(run_id)
    marks = [i for i, r in enumerate(rows) if r["stream"] == "tracklab"]
    assert len(marks) == 1, [rows[i] for i in marks]
    head, tail = rows[:marks[0]], rows[marks[0] + 1:]
    assert "left out here" in rows[marks[0]]["line"]
    numbers = [int(r["line"].split()[1]) for r in head]
    assert numbers == list(range(len(numbers)))  # the head: from the first line, no gap
    numbers = [int(r["line"].split()[1]) for r in tail]
    assert numbers == list(range(BIG_LINES - len(numbers), BIG_LINES))  # the tail: to the end
    stored = sum(len(r["line"].encode()) + 1 for r in head + tail)
    assert limit * 0.9 <= stored <= limit
    info = tracklab.open_run(run_id).info["summary"]["console"]
    assert info["dropped"] == 0 and info["complete"]
    assert info["lines"] == len(head) + len(tail)
    assert info["trimmed"] == BIG_LINES - len(head) - len(tail)


@pytest.mark.slow
def test_50mb_through_pipes_head_and_tail_within_cap(tmp_path: Path) -> None:
    script = write_script(tmp_path, BIG)
    out = tmp_path / "out.bin"
    with out.open("wb") as f:
        rc = subprocess.run([*TRACKLAB, "run", "-q", "--run-id", "big", "--capture-limit", "4MiB",
                             "--", sys.executable, str(script), str(BIG_LINES)],
                            stdout=f, stderr=subprocess.PIPE, timeout=300).returncode
    assert rc == 0
    assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(_big_expected()).digest()
    _check_head_and_tail("big", 4 * 1024 * 1024)


@pytest.mark.slow
def test_50mb_through_a_terminal_is_exact(tmp_path: Path) -> None:
    script = write_script(tmp_path, BIG)
    captured, rc = run_in_pty([*TRACKLAB, "run", "-q", "--run-id", "bigtty", "--", sys.executable,
                               str(script), str(BIG_LINES)], timeout=300)
    assert rc == 0
    assert len(captured) == len(_big_expected()) + BIG_LINES
    assert hashlib.sha256(captured).digest() == \
        hashlib.sha256(_big_expected().replace(b"\n", b"\r\n")).digest()
    _check_head_and_tail("bigtty", 10 * 1024 * 1024)  # the documented default limit


def test_failed_and_killed_runs_show_their_last_lines(tmp_path: Path) -> None:
    script = write_script(tmp_path, """
import os, signal, sys
for i in range(40):
    print(f"step {i}", flush=True)
print("fatal: out of patience", file=sys.stderr, flush=True)
if sys.argv[1] == "kill":
    os.kill(os.getpid(), signal.SIGKILL)
sys.exit(3)
""")
    for how, status in (("fail", "failed"), ("kill", "killed")):
        res = run_tracklab("run", "-q", "--run-id", how, "--", sys.executable, str(script), how)
        assert res.returncode in (3, 137)
        data = json.loads(cli("show", how, "--json").stdout)
        assert data["info"]["status"] == status
        last = [r["line"] for r in data["last_lines"]]
        assert last == [f"step {i}" for i in range(21, 40)] + ["fatal: out of patience"]
        text = cli("show", how).stdout
        assert "last 20 lines of output" in text and "fatal: out of patience" in text
        assert "step 21" in text and "step 20\n" not in text
    ok = run_tracklab("run", "-q", "--run-id", "ok", "--", sys.executable, "-c", "print('fine')")
    assert ok.returncode == 0
    assert json.loads(cli("show", "ok", "--json").stdout)["last_lines"] == []


def test_logs_follow_prints_new_lines_within_a_second(tmp_path: Path) -> None:
    release = tmp_path / "release"
    script = write_script(tmp_path, f"""
import os, time
i = 0
while not os.path.exists({str(release)!r}) and i < 600:
    print(f"tick {{i}} {{time.time():.6f}}", flush=True)
    i += 1
    time.sleep(0.1)
""")
    wrapper = subprocess.Popen([*TRACKLAB, "run", "-q", "--run-id", "live", "--", sys.executable,
                                str(script)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    follow: subprocess.Popen[str] | None = None
    try:
        deadline = time.monotonic() + 60
        while not console_rows_safe("live") and time.monotonic() < deadline:
            time.sleep(0.1)
        follow = subprocess.Popen([*TRACKLAB, "logs", "live", "--follow", "--tail", "0"],
                                  stdout=subprocess.PIPE, text=True)
        assert follow.stdout is not None
        delays = []
        while len(delays) < 15:
            line = follow.stdout.readline()
            assert line, "logs --follow ended while the run was live"
            delays.append(time.time() - float(line.split()[2]))
        release.touch()
        rest = follow.stdout.read()  # ends by itself once the run has ended
        assert follow.wait(timeout=60) == 0
        assert wrapper.wait(timeout=60) == 0, wrapper.stderr.read()  # type: ignore[union-attr]
    finally:
        release.touch()
        for p in (wrapper, follow):
            if p is not None and p.poll() is None:
                p.kill()
    delays.sort()
    assert delays[len(delays) // 2] < 1.0, delays  # the median line shows within a second
    assert all(line.startswith("tick ") for line in rest.splitlines())


def console_rows_safe(run_id: str) -> list[dict]:
    try:
        return console_rows(run_id)
    except tracklab.RunNotFound:
        return []


def test_secret_command_line_values_never_reach_the_store(tmp_path: Path,
                                                          store_dir: Path) -> None:
    script = write_script(tmp_path, """
import os, sys, tracklab
run = tracklab.init()
print("argv:", sys.argv[1:], flush=True)
print("env:", os.environ["MY_SERVICE_TOKEN"], file=sys.stderr, flush=True)
tracklab.log({"loss": 1.0})
run.finish()
""")
    env = dict(os.environ, MY_SERVICE_TOKEN="ENVSECRET77")
    res = run_tracklab("run", "-q", "--run-id", "secret", "--", sys.executable, str(script),
                       "--api-key=SECRET123", "--token", "SECRET123", "--lr", "0.1", env=env)
    assert res.returncode == 0, res.stderr
    assert "SECRET123" in res.stdout and "ENVSECRET77" in res.stderr  # the terminal: unchanged
    info = tracklab.open_run("secret").info
    assert info["command"][-5:] == ["--api-key=***", "--token", "***", "--lr", "0.1"]
    lines = [r["line"] for r in console_rows("secret")]
    assert "argv: ['--api-key=***', '--token', '***', '--lr', '0.1']" in lines
    assert "env: ***" in lines
    files = [p for p in store_dir.iterdir() if p.is_file()]  # the shard, its -wal and -shm
    assert files
    for p in files:
        raw = p.read_bytes()
        assert b"SECRET123" not in raw and b"ENVSECRET77" not in raw, p.name


def test_a_secret_across_a_long_lines_cut_never_reaches_the_store(tmp_path: Path,
                                                                   store_dir: Path) -> None:
    """Lines longer than MAX_LINE are stored in pieces: a secret where a piece ends is redacted
    whole, for a line printed at once and for one still arriving when its first piece is cut."""
    script = write_script(tmp_path, f"""
import sys, time
secret = sys.argv[1].partition("=")[2]
w = sys.stdout.write
w("a" * ({MAX_LINE} - 5) + secret + "b" * 100 + "\\n")  # one write; the cut inside the secret
sys.stdout.flush()
w("c" * ({MAX_LINE} - 5) + secret[:3])  # the cut falls in the secret's first half...
sys.stdout.flush()
time.sleep(0.8)  # ...which the writer sees (and must not store) before the rest arrives
w(secret[3:] + "d" * {MAX_LINE})
sys.stdout.flush()
time.sleep(0.8)
w("\\n")
""")
    res = run_tracklab("run", "-q", "--run-id", "longsecret", "--", sys.executable, str(script),
                       "--api-key=LONGSECRET4242")
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("LONGSECRET4242") == 2  # the terminal: unchanged
    text = "".join(r["line"] for r in console_rows("longsecret"))
    assert text.count("***") == 2 and "SECRET" not in text
    assert len(text) == 2 * (MAX_LINE - 5 + 3) + 100 + MAX_LINE  # every other byte is kept
    for p in (p for p in store_dir.iterdir() if p.is_file()):
        raw = p.read_bytes()
        assert b"LONGSECRET4242" not in raw and b"SECRET4242" not in raw, p.name


def test_no_capture_leaves_the_streams_to_the_child(tmp_path: Path) -> None:
    res = run_tracklab("run", "-q", "--no-capture", "--run-id", "raw", "--", sys.executable,
                       "-c", "import sys; print('hi'); print(sys.stdout.isatty())")
    assert res.returncode == 0 and res.stdout == "hi\nFalse\n"
    assert console_rows("raw") == []
    assert tracklab.open_run("raw").info["summary"]["console"] == {"captured": False}
    logs = cli("logs", "raw")
    assert logs.returncode == 0 and logs.stdout == ""
    assert logs.stderr == ("note: run raw's output was not captured (it ran with --no-capture "
                           "or --capture-limit 0)\n")
    # live: `logs --follow` says so at once instead of waiting for lines that cannot come
    live = subprocess.Popen([*TRACKLAB, "run", "-q", "--no-capture", "--run-id", "live", "--",
                             sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        wait_until(lambda: any(r["id"] == "live" for r in tracklab.list_runs()),
                   "the live run to be recorded")
        logs = cli("logs", "live", "--follow", timeout=20)
        assert logs.returncode == 0 and "output was not captured" in logs.stderr
    finally:
        live.kill()
        live.wait()
    res = run_tracklab("run", "--capture-limit", "lots", "--", sys.executable, "-c", "pass")
    assert res.returncode == 2 and "--capture-limit" in res.stderr


def test_a_stuck_store_drops_captured_lines_never_the_output(tmp_path: Path,
                                                             store_dir: Path) -> None:
    """The store is locked while the child prints: the terminal gets every byte at full speed,
    the lines that did not fit in the queue are counted, and a marker shows where they were."""
    harness = write_script(tmp_path, """
import sqlite3, subprocess, sys, time
import tracklab.wrapper.capture as capture
from tracklab.store import open_shard

capture.QUEUE_BYTES = 256 * 1024
shard = open_shard(sys.argv[1], "n")
num = shard.insert_run({"id": "stuck", "status": "running", "started_at": time.time()})
blocker = sqlite3.connect(shard.path, isolation_level=None)
blocker.execute("BEGIN IMMEDIATE")  # nobody else can write until we commit
cap = capture.ConsoleCapture(shard.path, num, 10 * 1024 * 1024)
child = subprocess.Popen([sys.executable, "-c",
                          "for i in range(20000): print('row %06d' % i + 'y' * 60)"],
                         **cap.popen_kwargs())
cap.start(child)
t = time.monotonic()
child.wait()
took = time.monotonic() - t
blocker.execute("COMMIT")
stats = cap.stop(timeout=30)
print("STATS", stats["dropped"], stats["lines"], took, file=sys.stderr)
""", name="harness.py")
    res = subprocess.run([sys.executable, str(harness), str(store_dir)], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout == "".join(f"row {i:06d}{'y' * 60}\n" for i in range(20000))
    _, dropped, lines, _took = res.stderr.split()
    assert int(dropped) > 0 and int(lines) > 0
    stored = console_rows("stuck")
    gaps = [r["line"] for r in stored if "not stored here" in r["line"]]
    assert gaps and all(g.startswith("[tracklab: ") for g in gaps)
    assert sum(int(g.split()[1].replace(",", "")) for g in gaps) == int(dropped)


def test_final_segment_of_rewritten_lines() -> None:
    assert final_segment(b"plain") == b"plain"
    assert final_segment(b"a\rbb\rccc") == b"ccc"
    assert final_segment(b"done\r") == b"done"
    assert final_segment(b"\r 50%\r100%\r\r") == b"100%"
    assert final_segment(b"\r") == b""
    # a block of lines: each rewritten line as its last segment, long lines in pieces, in
    # linear time (a regex over a 64 KiB line with a \r elsewhere in the block was quadratic)
    long = b"Z" * (MAX_LINE + 10)
    assert tidy(b"a\rb\nplain\n" + long + b"\nx\r\ry\r") == \
        b"b\nplain\n" + long[:MAX_LINE] + b"\n" + long[MAX_LINE:] + b"\ny"
    assert tidy(b"\r\n\n") == b"\n\n"


def test_lines_written_together_are_stored_and_read_back_line_by_line(tmp_path: Path) -> None:
    # One write of many lines (one chunk through a pipe), progress-bar rewrites and CRLF inside
    # it, a line split across two writes, and a line far over the piece size: what is read back
    # is each line, in order, as it was left on screen.
    script = write_script(tmp_path, r"""
import sys, time
w = sys.stdout.buffer
w.write(b"first\n 10%\r 50%\r100%\nwin\r\nhalf a ")
w.flush()
time.sleep(0.3)
w.write(b"line\n" + b"Z" * 150_000 + b"\nlast\n")
w.flush()
""")
    res = run_tracklab("run", "-q", "--run-id", "chunks", "--", sys.executable, str(script))
    assert res.returncode == 0, res.stderr
    lines = [r["line"] for r in console_rows("chunks")]
    assert lines[:4] == ["first", "100%", "win", "half a line"]
    assert [len(x) for x in lines[4:-1]] == [65536, 65536, 150_000 - 2 * 65536]
    assert lines[-1] == "last"
    assert cli("logs", "chunks", "--tail", "2").stdout.splitlines() == \
        ["Z" * (150_000 - 2 * 65536), "last"]
    info = tracklab.open_run("chunks").info["summary"]["console"]
    assert info["lines"] == len(lines) == 8 and info["trimmed"] == 0


def test_follow_of_a_finished_run_prints_and_returns() -> None:
    run_tracklab("run", "-q", "--run-id", "done", "--", sys.executable, "-c", "print('a')")
    res = cli("logs", "done", "-f", timeout=30)
    assert res.returncode == 0 and res.stdout == "a\n"
    assert cli("logs", "nope").returncode == 1


def test_sigwinch_updates_the_childs_terminal_size(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    script = write_script(tmp_path, f"""
import os, signal, sys, time
seen = []
signal.signal(signal.SIGWINCH, lambda *a: seen.append(tuple(os.get_terminal_size())))
open({str(ready)!r}, "w").close()
deadline = time.time() + 30
while (120, 40) not in seen and time.time() < deadline:
    time.sleep(0.05)
print("sizes", seen[-1] if seen else None, flush=True)
""")
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    proc = subprocess.Popen([*TRACKLAB, "run", "-q", "--", sys.executable, str(script)],
                            stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    out = b""
    try:
        deadline = time.monotonic() + 60
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        next_signal = 0.0
        while proc.poll() is None or select.select([master], [], [], 0)[0]:
            if proc.poll() is None and time.monotonic() >= next_signal:
                os.killpg(proc.pid, signal.SIGWINCH)  # what the terminal does on a resize
                next_signal = time.monotonic() + 1.0
            if select.select([master], [], [], 0.2)[0]:
                try:
                    out += os.read(master, 4096)
                except OSError:
                    break
            if time.monotonic() > deadline:
                break
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    assert b"sizes (120, 40)" in out, out


def test_a_grandchild_holding_the_stream_does_not_hold_the_wrapper(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    script = write_script(tmp_path, f"""
import subprocess, sys
p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
open({str(pid_file)!r}, "w").write(str(p.pid))
print("leaving a sleeper behind", flush=True)
""")
    start = time.monotonic()
    try:
        res = run_tracklab("run", "-q", "--run-id", "orphan", "--", sys.executable, str(script),
                           timeout=60)
        took = time.monotonic() - start
    finally:
        if pid_file.exists():
            try:
                os.kill(int(pid_file.read_text()), signal.SIGKILL)
            except ProcessLookupError:
                pass
    assert res.returncode == 0 and res.stdout == "leaving a sleeper behind\n"
    assert took < 30  # bounded by the capture's stop timeout, not by the sleeper
    assert [r["line"] for r in console_rows("orphan")] == ["leaving a sleeper behind"]


def test_without_a_store_the_output_still_flows(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the store folder should be")
    res = run_tracklab("run", "--dir", str(blocker / "store"), "--", sys.executable, "-c",
                       "import sys; print('still here'); print('err', file=sys.stderr)")
    assert res.returncode == 0 and res.stdout == "still here\n"
    assert "err\n" in res.stderr and "without recording it" in res.stderr


@pytest.mark.parametrize("merged", [False, True])
def test_a_closed_reader_of_the_output_ends_the_child_as_without_us(merged: bool) -> None:
    # `tracklab run -- CMD | head -1`: once head exits, CMD must get SIGPIPE as it would alone,
    # not print forever into a wrapper that swallows it
    code = "import signal, sys\nsignal.signal(signal.SIGPIPE, signal.SIG_DFL)\nwhile True: print('y')"
    err = subprocess.STDOUT if merged else subprocess.PIPE
    wrapper = subprocess.Popen([*TRACKLAB, "run", "-q", "--run-id", "piped", "--",
                                sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=err)
    try:
        assert wrapper.stdout is not None
        assert wrapper.stdout.readline() == b"y\n"
        wrapper.stdout.close()  # what head does after its first line
        rc = wrapper.wait(timeout=30)
    finally:
        if wrapper.poll() is None:
            wrapper.kill()
            wrapper.wait()
    assert rc == 128 + signal.SIGPIPE
    info = tracklab.open_run("piped").info
    assert info["status"] == "failed" and info["exit_code"] == 128 + signal.SIGPIPE
    assert console_rows("piped")[0]["line"] == "y"
