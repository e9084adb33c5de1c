"""The core promise, end to end with real processes: run, attach, store, show, ls, exit codes."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

import tracklab
from tests.conftest import TRACKLAB, cli, run_tracklab, write_script

CHILD = """
import os, sys, time, tracklab
run = tracklab.init()
print("RUN_ID", run.id, os.environ["TRACKLAB_DIR"], os.environ["TRACKLAB_NODE_ID"],
      os.environ["TRACKLAB_PROJECT"], flush=True)
for step in range(50):
    tracklab.log({"loss": 1.0 / (step + 1), "acc": step / 50})
    time.sleep(0.01)
run.finish()
"""


@pytest.fixture
def demo_run(tmp_path: Path, store_dir: Path) -> tuple[str, object]:
    script = write_script(tmp_path, CHILD)
    # the fake NVML's no-driver case, whatever this machine has: the test means "no GPU"
    env = {**os.environ, "TRACKLAB_NVML_MODULE": "tests.fakes", "TRACKLAB_FAKE_NVML": "no_driver"}
    res = run_tracklab("run", "--interval", "0.2", "--project", "demo", "--name", "demo-run",
                       "--", sys.executable, str(script), env=env)
    assert res.returncode == 0, res.stderr
    words = next(line for line in res.stdout.splitlines() if line.startswith("RUN_ID")).split()
    return words[1], (res, words)


def test_attached_script_lands_in_the_wrappers_run(demo_run: tuple[str, object],
                                                   store_dir: Path) -> None:
    run_id, (res, words) = demo_run
    assert words[2] == str(store_dir) and os.path.isabs(words[2])
    assert words[4] == "demo"
    runs = tracklab.list_runs()
    assert [r["id"] for r in runs] == [run_id]  # one run: the attach created no second one
    view = tracklab.open_run(run_id)
    info = view.info
    assert info["status"] == "finished" and info["exit_code"] == 0
    assert info["project"] == "demo" and info["name"] == "demo-run"
    points = view.metrics()
    for key in ("loss", "acc"):
        mine = [p for p in points if p["key"] == key]
        assert [p["step"] for p in mine] == list(range(50))
    assert [p["value"] for p in points if p["key"] == "loss"] == [1.0 / (s + 1) for s in range(50)]
    samples = view.samples()
    assert len(samples) >= 2  # one at start, one at the end at least
    first = samples[0]
    assert set(first) >= {"nodeId", "timestamp", "cpu", "memory", "disk", "network",
                          "accelerators"}
    assert 0 <= first["cpu"]["overall"] <= 100
    assert first["memory"]["total"] >= first["memory"]["used"] > 0
    assert first["accelerators"] == []  # no NVIDIA driver: empty, no error
    assert "run " + run_id in res.stderr  # the start line


@pytest.mark.parametrize("ref", ["prefix", "name", "latest"])
def test_show_by_prefix_name_latest(demo_run: tuple[str, object], ref: str) -> None:
    run_id = demo_run[0]
    arg = {"prefix": run_id[:5], "name": "demo-run", "latest": "latest"}[ref]
    res = cli("show", arg)
    assert res.returncode == 0, res.stderr
    assert run_id in res.stdout and "loss" in res.stdout and "CPU" in res.stdout
    data = json.loads(cli("show", arg, "--json").stdout)
    assert data["info"]["id"] == run_id
    assert data["metrics"]["loss"]["count"] == 50 and data["metrics"]["loss"]["last_step"] == 49


def test_ls_lists_newest_first(tmp_path: Path) -> None:
    for name in ("first", "second"):
        assert run_tracklab("run", "-q", "--name", name, "--", sys.executable, "-c",
                            "pass").returncode == 0
    res = cli("ls")
    assert res.returncode == 0
    assert res.stdout.index("second") < res.stdout.index("first")
    lines = cli("ls", "--json", "--limit", "1").stdout.splitlines()
    assert [json.loads(x)["name"] for x in lines] == ["second"]


@pytest.mark.parametrize(("code", "expect_rc", "status"), [
    ("import sys; sys.exit(0)", 0, "finished"),
    ("import sys; sys.exit(3)", 3, "failed"),
    ("raise SystemExit('boom')", 1, "failed"),
    ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", 137, "killed"),
    ("import os, signal; os.kill(os.getpid(), signal.SIGTERM)", 143, "terminated"),
    ("import os, signal; os.kill(os.getpid(), signal.SIGSEGV)", 139, "failed"),
])
def test_exit_codes_and_statuses(code: str, expect_rc: int, status: str) -> None:
    res = run_tracklab("run", "-q", "--interval", "0.5", "--", sys.executable, "-c", code)
    assert res.returncode == expect_rc
    info = tracklab.open_run("latest").info
    assert info["status"] == status and info["exit_code"] == expect_rc


def test_command_not_found_and_not_executable(tmp_path: Path) -> None:
    res = run_tracklab("run", "--", "definitely-not-a-command-xyz")
    assert res.returncode == 127
    assert res.stderr.strip().splitlines()[-1] == \
        "tracklab: command not found: definitely-not-a-command-xyz"
    assert tracklab.open_run("latest").info["status"] == "failed"
    plain = tmp_path / "data.txt"
    plain.write_text("not a program")
    res = run_tracklab("run", "--", str(plain))
    assert res.returncode == 126 and "Traceback" not in res.stderr


@pytest.mark.parametrize("kind", ["exec-format", "name-too-long", "symlink-loop"])
def test_command_that_exec_rejects_is_126_not_a_traceback(tmp_path: Path, kind: str) -> None:
    if kind == "exec-format":  # executable bit, but neither ELF nor #! script: ENOEXEC
        cmd = tmp_path / "garbage"
        cmd.write_bytes(b"\x00\x01\x02 not a program")
        cmd.chmod(0o755)
    elif kind == "name-too-long":  # ENAMETOOLONG
        cmd = tmp_path / ("a" * 5000)
    else:  # ELOOP
        cmd = tmp_path / "loop1"
        cmd.symlink_to(tmp_path / "loop2")
        (tmp_path / "loop2").symlink_to(cmd)
    res = run_tracklab("run", "--", str(cmd))
    assert res.returncode == 126, res.stderr
    assert "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines()[-1].startswith(f"tracklab: cannot execute: {cmd}")
    info = tracklab.open_run("latest").info
    assert info["status"] == "failed" and info["exit_code"] == 126


def test_quiet_prints_nothing_and_stdio_is_untouched() -> None:
    res = run_tracklab("run", "-q", "--", sys.executable, "-c",
                       "import sys; print('out'); print('err', file=sys.stderr)")
    assert res.stdout == "out\n" and res.stderr == "err\n"


@pytest.mark.parametrize("closed", ["1", "2"])
def test_a_closed_stdout_or_stderr_does_not_harm_the_child(tmp_path: Path, closed: str) -> None:
    # `tracklab run ... 2>&-` (as from some daemons): the child still runs to its own end
    done = tmp_path / "done"
    code = (f"import sys; print('out'); print('err', file=sys.stderr); "
            f"open({str(done)!r}, 'w').write('ok'); sys.exit(7)")
    res = subprocess.run(["sh", "-c", f'exec "$@" {closed}>&-', "sh", *TRACKLAB, "run",
                          "--run-id", "closed", "--", sys.executable, "-c", code],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 7, res.stderr
    assert done.read_text() == "ok"
    info = tracklab.open_run("closed").info
    assert info["status"] == "failed" and info["exit_code"] == 7
    assert (res.stdout if closed == "2" else res.stderr).startswith(
        "out\n" if closed == "2" else "tracklab: run closed")


def test_child_options_after_double_dash_are_not_swallowed(tmp_path: Path) -> None:
    res = run_tracklab("run", "-q", "--", sys.executable, "-c",
                       "import sys; print(sys.argv[1:])", "--interval", "7", "--quiet")
    assert res.stdout.strip() == "['--interval', '7', '--quiet']"


def test_store_is_wal_versioned_and_private(store_dir: Path) -> None:
    run = tracklab.init()
    tracklab.log({"x": 1.0})
    run.finish()
    assert stat.S_IMODE(store_dir.stat().st_mode) == 0o700
    files = list(store_dir.iterdir())
    assert any(f.name.endswith(".db") for f in files)
    for f in files:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    db = next(f for f in files if f.name.endswith(".db"))
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    from tracklab.store.schema import VERSION

    assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == \
        str(VERSION)


def test_store_dir_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    explicit = tmp_path / "explicit"
    run = tracklab.init(dir=str(explicit))
    run.finish()
    assert list(explicit.glob("node-*.db"))
    monkeypatch.delenv("TRACKLAB_DIR")
    monkeypatch.chdir(tmp_path)
    run = tracklab.init()
    run.finish()
    assert list((tmp_path / ".tracklab").glob("node-*.db"))


def test_run_dir_option_and_node_id(tmp_path: Path) -> None:
    d = tmp_path / "elsewhere"
    res = run_tracklab("run", "-q", "--dir", str(d), "--node-id", "n7", "--", sys.executable,
                       "-c", "import os; print(os.environ['TRACKLAB_NODE_ID'])")
    assert res.stdout.strip() == "n7"
    assert (d / "node-n7.db").exists()
    assert tracklab.open_run("latest", dir=str(d)).info["nodes"] == ["n7"]


def test_one_second_run_still_has_samples() -> None:
    res = run_tracklab("run", "-q", "--interval", "5", "--", sys.executable, "-c", "pass")
    assert res.returncode == 0
    view = tracklab.open_run("latest")
    assert len(view.samples()) >= 2  # at start and at the end, interval notwithstanding
