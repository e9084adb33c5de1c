"""Points 9-10: a broken store or machine never costs the child its run or its exit code."""

from __future__ import annotations

import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import tracklab
from tests.conftest import TRACKLAB, cli, run_tracklab
from tests.reliability.helpers import env_with, python_child
from tracklab.errors import StoreError, TracklabWarning


def _warning_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "warning" in line.lower()]


def test_store_folder_not_creatable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where the store folder should go")
    res = run_tracklab("run", "--dir", str(blocker / "store"), "--", sys.executable, "-c",
                       "print('trained'); raise SystemExit(5)")
    assert res.returncode == 5 and res.stdout == "trained\n"
    assert len(_warning_lines(res.stderr)) == 1 and "Traceback" not in res.stderr


@pytest.fixture
def corrupt_store(store_dir: Path) -> Path:
    run = tracklab.init()
    run.finish()
    db = next(store_dir.glob("node-*.db"))
    for extra in store_dir.glob("node-*.db-*"):
        extra.unlink()
    db.write_bytes(b"this is not an SQLite database" * 100)
    return db


def test_corrupt_store_child_still_runs(corrupt_store: Path) -> None:
    res = run_tracklab("run", "--", sys.executable, "-c", "raise SystemExit(4)")
    assert res.returncode == 4
    assert len(_warning_lines(res.stderr)) == 1 and "Traceback" not in res.stderr


@pytest.mark.parametrize("args", [["show", "latest"], ["ls"]])
def test_corrupt_store_readers_print_one_line(corrupt_store: Path, args: list[str]) -> None:
    res = run_tracklab(*args)
    assert res.returncode == 1
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr
    with pytest.raises(StoreError):
        tracklab.list_runs()


def test_one_corrupt_shard_leaves_the_other_nodes_readable(store_dir: Path) -> None:
    for node in ("good", "bad"):
        res = run_tracklab("run", "-q", "--node-id", node, "--run-id", f"run-{node}", "--",
                           sys.executable, "-c", "pass")
        assert res.returncode == 0, res.stderr
    bad = store_dir / "node-bad.db"
    for extra in store_dir.glob("node-bad.db-*"):
        extra.unlink()
    bad.write_bytes(b"this is not an SQLite database" * 100)
    for args in (["ls"], ["show", "run-good"], ["export", "run-good", "--what", "samples"]):
        res = run_tracklab(*args)
        assert res.returncode == 0, (args, res.stderr)
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and "node-bad.db" in lines[0] and "left out" in lines[0], lines
        assert "Traceback" not in res.stderr
    assert "run-good" in cli("ls").stdout


def test_corrupt_store_sdk_warns_once_and_never_raises(corrupt_store: Path) -> None:
    with pytest.warns(TracklabWarning, match="records nothing") as record:
        run = tracklab.init()
        for i in range(100):
            tracklab.log({"x": float(i)})
        run.finish()
    assert len(record) == 1


def _limit_file_size(nbytes: int):  # runs in the child between fork and exec
    def setup() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() then fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))

    return setup


def test_disk_full_wrapper_returns_the_childs_code(tmp_path: Path, store_dir: Path) -> None:
    run_tracklab("run", "-q", "--", sys.executable, "-c", "pass")  # the store exists
    cmd = python_child(tmp_path, """
import tracklab
tracklab.init()
for i in range(200_000):
    tracklab.log({"a": float(i), "b": float(i), "c": float(i), "d": float(i)})
tracklab.finish()
print("trained")
raise SystemExit(6)
""")
    size = sum(f.stat().st_size for f in store_dir.iterdir())
    res = subprocess.run([*TRACKLAB, "run", "--interval", "0.1", "--", *cmd],
                         capture_output=True, text=True, timeout=120,
                         preexec_fn=_limit_file_size(size + 64 * 1024))
    assert res.returncode == 6 and "trained" in res.stdout
    assert "Traceback" not in res.stderr
    assert 1 <= len(_warning_lines(res.stderr)) <= 3  # at most one per writer (SDK, sampler)


def test_disk_full_standalone_log_never_raises(tmp_path: Path, store_dir: Path) -> None:
    cmd = python_child(tmp_path, """
import tracklab
run = tracklab.init()
run.flush()
for i in range(300_000):
    tracklab.log({"a": float(i), "b": float(i), "c": float(i)})
run.finish()
print("done")
""")
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                         preexec_fn=_limit_file_size(200 * 1024))
    assert res.returncode == 0 and res.stdout == "done\n"
    assert "Traceback" not in res.stderr
    assert 1 <= len(_warning_lines(res.stderr)) <= 2


@pytest.mark.parametrize("scenario", ["no_driver", "not_supported"])
def test_nvml_faults_leave_null_and_the_rest(scenario: str) -> None:
    res = run_tracklab("run", "-q", "--interval", "0.2", "--", sys.executable, "-c",
                       "import time; time.sleep(0.5)",
                       env=env_with(TRACKLAB_NVML_MODULE="tests.fakes",
                                    TRACKLAB_FAKE_NVML=scenario))
    assert res.returncode == 0 and res.stderr == ""
    samples = tracklab.open_run("latest").samples()
    assert samples and all(s["memory"]["total"] for s in samples)
    gpus = samples[-1]["accelerators"]
    if scenario == "no_driver":
        assert gpus == []
    else:
        assert len(gpus) == 2
        assert gpus[0]["fanSpeed"] is None and gpus[0]["temperature"] is None
        assert gpus[0]["utilization"] is not None and gpus[0]["memory"]["used"] is not None
