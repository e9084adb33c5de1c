"""A shard that still opens but is damaged in the middle: readers say which file and what failed
in one line (StoreError in the library), and `show` shows what can still be read."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

import tracklab
from tests.conftest import python_child, run_tracklab
from tracklab.errors import StoreError

CHILD = """
import sys, tracklab
run = tracklab.init()
for i in range(20000):
    tracklab.log({"loss": 1.0 / (i + 1), "acc": i / 20000})
    if i % 500 == 0:
        print("line", i, "x" * 200, flush=True)
run.finish()
sys.exit(3)
"""


@pytest.fixture
def damaged(tmp_path: Path, store_dir: Path) -> Path:
    cmd = python_child(tmp_path, CHILD)
    res = run_tracklab("run", "-q", "--interval", "0.1", "--run-id", "dmg", "--", *cmd)
    assert res.returncode == 3, res.stderr
    db = next(store_dir.glob("node-*.db"))
    conn = sqlite3.connect(db)  # everything into the main file, as a long-closed store is
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    size = db.stat().st_size
    assert size > 200_000
    with open(db, "r+b") as f:  # the back half overwritten: the file still opens
        f.seek(size // 2)
        f.write(b"\xa5" * (size - size // 2))
    return db


def test_show_of_a_damaged_shard_shows_what_it_can_with_one_warning(damaged: Path) -> None:
    res = run_tracklab("show", "dmg")
    assert "Traceback" not in res.stderr, res.stderr
    assert res.returncode == 0, res.stderr
    assert "dmg" in res.stdout and "failed" in res.stdout  # the run's record is readable
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and damaged.name in lines[0] and "warning" in lines[0], lines
    data = __import__("json").loads(run_tracklab("show", "dmg", "--json").stdout)
    assert data["info"]["exit_code"] == 3 and data["unreadable"]


@pytest.mark.parametrize("args", [["export", "dmg", "--what", "metrics"],
                                  ["export", "dmg", "--what", "samples"],
                                  ["logs", "dmg"], ["compare", "dmg", "dmg"],
                                  ["watch", "dmg", "--once"], ["plot", "dmg", "-o", "x.svg"]])
def test_other_readers_of_a_damaged_shard_fail_in_one_line(damaged: Path, args: list[str],
                                                           tmp_path: Path) -> None:
    res = run_tracklab(*args, cwd=tmp_path)
    assert "Traceback" not in res.stderr, res.stderr
    assert res.returncode in (0, 1), res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) <= 1, lines
    if res.returncode == 1:
        assert damaged.name in lines[0] or "matplotlib" in lines[0], lines


def test_library_reads_of_a_damaged_shard_raise_store_error(damaged: Path) -> None:
    view = tracklab.open_run("dmg")
    raised = []
    try:
        for read in (view.metrics, view.samples, view.metric_summary, view.system_summary):
            try:
                read()
            except Exception as exc:  # noqa: BLE001 - which exception is what is tested
                raised.append(exc)
    finally:
        view.close()
    assert raised  # the damage is in the middle of what these read
    for exc in raised:
        assert isinstance(exc, StoreError), repr(exc)
        assert exc.path == str(damaged)
        assert "cannot read" in exc.reason and "malformed" in exc.reason
