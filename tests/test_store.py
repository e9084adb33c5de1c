"""The store's own contracts: migrations, exact encodings, flatten/unflatten."""

from __future__ import annotations

import math
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import tracklab
from tests.conftest import TRACKLAB, run_tracklab
from tracklab.store import codec, schema


def test_an_older_shard_is_upgraded_and_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "node-old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    monkeypatch.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:2])
    monkeypatch.setattr(schema, "VERSION", 2)
    schema.migrate(conn)
    conn.execute("INSERT INTO runs (id, name, status, started_at) VALUES ('r1', 'old', 'finished', 1.0)")
    conn.close()
    monkeypatch.undo()
    view = tracklab.open_run("old", dir=str(tmp_path))
    assert view.info["id"] == "r1" and view.info["status"] == "finished"
    assert schema.current_version(sqlite3.connect(path)) == schema.VERSION


def test_a_newer_shard_is_refused(tmp_path: Path) -> None:
    run = tracklab.init(dir=str(tmp_path))
    run.finish()
    db = next(tmp_path.glob("node-*.db"))
    sqlite3.connect(db, isolation_level=None).execute(
        "UPDATE meta SET value = '999' WHERE key = 'schema_version'")
    with pytest.raises(tracklab.StoreError, match="newer tracklab"):
        tracklab.list_runs(str(tmp_path))


@pytest.mark.parametrize("values", [
    (1.5, -0.0, math.inf, -math.inf, 5e-324),
    (1, True, False, -(2**63), 2**63 - 1),
    (2**64, 1.0),
    (),
])
def test_values_encode_exactly(values: tuple) -> None:
    fmt, blob = codec.encode_values(values)
    back = codec.decode_values(fmt, blob)
    assert back == values and [type(v) for v in back] == [type(v) for v in values]


def test_nan_survives_the_encoding() -> None:
    fmt, blob = codec.encode_values((math.nan,))
    assert fmt is None and math.isnan(codec.decode_values(fmt, blob)[0])


def test_flatten_round_trip_keeps_lists_and_empties() -> None:
    snap = {"cpu": {"overall": 1.0, "cores": [{"id": 0, "usage": 2.0}, {"id": 1, "usage": None}]},
            "accelerators": [], "process": None, "custom": {}}
    paths, values = codec.flatten(snap)
    assert codec.unflatten(paths, values) == snap
    blob = codec.encode_sample(values)
    assert codec.decode_sample(blob) == values


def test_a_store_that_cannot_be_written_is_still_read(tmp_path: Path) -> None:
    # A store on a read-only mount (or in a folder the reader may not write): SQLite cannot
    # create the WAL index (-shm) beside a shard. It read as empty: `ls` said "no runs".
    store = tmp_path / "archive"
    res = run_tracklab("run", "-q", "--dir", str(store), "--name", "kept", "--", sys.executable,
                       "-c", "import tracklab; tracklab.init(); tracklab.log({'loss': 0.5})")
    assert res.returncode == 0, res.stderr
    assert not list(store.glob("*-wal"))
    if os.geteuid() == 0:  # permissions do not bind root: a read-only bind mount, made private
        if not shutil.which("unshare"):
            pytest.skip("needs unshare(1) to make a read-only mount as root")
        ro = f"mount --bind {store} {store} && mount -o remount,bind,ro {store} && exec \"$@\""
        prefix = ["unshare", "-m", "sh", "-c", ro, "sh"]
        probe = subprocess.run([*prefix, "touch", str(store / "x")], capture_output=True)
        if probe.returncode == 0 or b"Read-only" not in probe.stderr:
            pytest.skip("cannot make a read-only mount here")
    else:
        prefix = []
        store.chmod(0o555)
    try:
        ls = subprocess.run([*prefix, *TRACKLAB, "ls", "--dir", str(store)], capture_output=True,
                            text=True, timeout=60)
        export = subprocess.run([*prefix, *TRACKLAB, "export", "kept", "--dir", str(store)],
                                capture_output=True, text=True, timeout=60)
    finally:
        store.chmod(0o755)
    assert ls.returncode == 0 and "kept" in ls.stdout, ls.stdout + ls.stderr
    assert export.returncode == 0 and ",loss,0.5" in export.stdout, export.stdout + export.stderr


def _master(conn: sqlite3.Connection) -> list[tuple]:
    return conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master "
                        "WHERE tbl_name != 'meta' ORDER BY name").fetchall()


def test_the_schema_is_what_sqlite_utils_makes_of_it(tmp_path: Path) -> None:
    """The stdlib driver creates a shard whose tables, indexes and columns are, to the text
    SQLite keeps, those sqlite-utils makes of the same definitions."""
    import sqlite_utils

    ours = sqlite3.connect(tmp_path / "ours.db", isolation_level=None)
    schema.migrate(ours)
    db = sqlite_utils.Database(sqlite3.connect(tmp_path / "theirs.db", isolation_level=None))
    for migration in schema.MIGRATIONS:
        for step in migration:
            if isinstance(step, schema.Table):
                db[step.name].create(step.columns, pk=step.pk, not_null=set(step.not_null))
            elif isinstance(step, schema.Index):
                db[step.table].create_index(list(step.columns), unique=step.unique)
            elif isinstance(step, schema.Sql):
                db.execute(step.text)
            else:
                db[step.table].add_column(step.name, step.type)
    assert _master(ours) == _master(db.conn)
    assert len(_master(ours)) == 20  # 10 tables, 8 indexes, 2 composite primary keys' own


def test_creating_a_shard_does_not_import_sqlite_utils(tmp_path: Path) -> None:
    """A training script's init() creates the store, describes the machine and finishes
    without sqlite-utils, and on Linux without psutil (it reads /proc for what it needs)."""
    code = ("import sys, tracklab; run = tracklab.init(); run._sysinfo._thread.join(10); "
            "run.finish(); print([m for m in ('sqlite_utils', 'psutil') if m in sys.modules])")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "TRACKLAB_DIR": str(tmp_path)}, timeout=60)
    assert res.returncode == 0, res.stderr
    linux = sys.platform.startswith("linux")
    assert res.stdout.strip() == ("[]" if linux else "['psutil']")
    info = tracklab.open_run("latest", dir=str(tmp_path)).info
    assert info["system"]["cpu_count"] and info["system"]["memory_total"]
    assert info["system"]["cpu_physical"] and info["context"]["python"]
