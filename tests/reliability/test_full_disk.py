"""A disk that fills in the middle of a run, for real: a size-limited tmpfs as the store. The
child's exit code comes back, one warning line says so, and the run's end is still recorded."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import tracklab
from tests.conftest import python_child, run_tracklab
from tests.reliability.helpers import env_with

CHILD = """
import sys, time, tracklab
run = tracklab.init()
for i in range(150_000):
    tracklab.log({"a": float(i), "b": float(i), "c": float(i), "d": float(i)})
    if i % 10_000 == 0:
        print("line", i, "y" * 2000, flush=True)
run.finish()
time.sleep(1.5)
print("trained", flush=True)
sys.exit(3)
"""


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    where = tmp_path / "small"
    where.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(where)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {res.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_full_disk_mid_run_one_warning_and_the_end_recorded(tmp_path: Path,
                                                             small_disk: Path) -> None:
    store = small_disk / "store"
    cmd = python_child(tmp_path, CHILD)
    res = run_tracklab("run", "--interval", "0.1", "--dir", str(store), "--", *cmd,
                       env=env_with(TRACKLAB_DIR=str(store)), timeout=180)
    assert res.returncode == 3 and "trained" in res.stdout, res.stderr
    assert "Traceback" not in res.stderr, res.stderr
    warnings = [line for line in res.stderr.splitlines() if "warning" in line.lower()]
    assert len(warnings) == 1, warnings
    assert "full" in warnings[0]
    info = tracklab.open_run("latest", str(store)).info
    assert info["status"] == "failed" and info["exit_code"] == 3, info
    assert info["duration"] is not None and info["duration"] >= 1.5
    assert info["ended_at"] is not None
    # what was written before the disk filled stays readable
    view = tracklab.open_run("latest", str(store))
    try:
        assert view.metric_summary()["a"]["count"] > 0
    finally:
        view.close()
    assert not list(store.glob(".*reserve*"))  # the space held back is given back
