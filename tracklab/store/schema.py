"""The shard schema and its migrations. The README's "Where data lives" section documents it.

Every migration is a function of a ``sqlite_utils.Database``; ``meta.schema_version`` records how
many have run. A shard written by a newer tracklab (a higher version) is refused, not guessed at.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any


def _v1(db: Any) -> None:
    db["runs"].create(
        {
            "num": int, "id": str, "name": str, "project": str, "status": str,
            "exit_code": int, "signal": int, "command": str, "cwd": str, "host": str,
            "node": str, "owner": str, "pid": int, "pid_start": float, "interval": float,
            "started_at": float, "ended_at": float, "heartbeat_at": float,
            "config": str, "system": str, "summary": str, "tags": str, "notes": str,
        },
        pk="num", not_null={"id", "status", "started_at"},
    )
    db["runs"].create_index(["id"], unique=True)
    db["runs"].create_index(["started_at"])
    db["runs"].create_index(["name"])
    db["procs"].create(
        {"num": int, "run": int, "pid": int, "rank": int, "local_rank": int,
         "host": str, "started_at": float},
        pk="num", not_null={"run", "pid"},
    )
    db["keysets"].create({"num": int, "keys": str}, pk="num", not_null={"keys"})
    db["keysets"].create_index(["keys"], unique=True)
    db["points"].create(
        {"run": int, "proc": int, "step": int, "time": float, "keyset": int,
         "fmt": str, "vals": bytes},
        not_null={"run", "proc", "step", "time", "keyset", "vals"},
    )
    db["points"].create_index(["run"])
    db["metric_stats"].create(
        {"run": int, "proc": int, "key": str, "count": int, "nans": int, "min": float,
         "max": float, "sum": float, "last": str, "last_step": int, "last_time": float},
        pk=("run", "proc", "key"),
    )
    db["layouts"].create({"num": int, "paths": str}, pk="num", not_null={"paths"})
    db["layouts"].create_index(["paths"], unique=True)
    db["samples"].create(
        {"num": int, "run": int, "time": float, "layout": int, "data": bytes},
        pk="num", not_null={"run", "time", "layout", "data"},
    )
    db["samples"].create_index(["run", "time"])
    db["sample_stats"].create(
        {"run": int, "pid": int, "count": int, "stats": str}, pk=("run", "pid"),
    )


def _v2(db: Any) -> None:
    db["console"].create(
        {"run": int, "time": float, "stream": str, "line": str},
        not_null={"run", "time", "stream", "line"},
    )
    db["console"].create_index(["run", "time"])


def _v3_clock_offset(db: Any) -> None:
    # seconds the shared store's clock is ahead of the node's (tracklab.read.fleet), null if unknown
    db["runs"].add_column("clock_offset", float)


def _v4_context(db: Any) -> None:
    # what the run was (tracklab.sampling.machine.run_context): code state, interpreter, packages (JSON)
    db["runs"].add_column("context", str)


def _v5_rollups(db: Any) -> None:
    # per key, the min, max and last value of every 64, 1,024... points (tracklab.store.rollups)
    db.execute(
        "CREATE TABLE metric_rollups (run INTEGER NOT NULL, proc INTEGER NOT NULL, "
        "key TEXT NOT NULL, level INTEGER NOT NULL, bucket INTEGER NOT NULL, n INTEGER, "
        "first REAL, min REAL, max REAL, last REAL, first_step INTEGER, last_step INTEGER, "
        "first_time REAL, last_time REAL, PRIMARY KEY (run, key, level, proc, bucket)) "
        "WITHOUT ROWID")


MIGRATIONS: list[Callable[[Any], None]] = [_v1, _v2, _v3_clock_offset, _v4_context,
                                           _v5_rollups]
VERSION = len(MIGRATIONS)


def current_version(conn: sqlite3.Connection) -> int:
    try:
        row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    except sqlite3.OperationalError:
        return 0
    return int(row[0]) if row else 0


def migrate(conn: sqlite3.Connection) -> None:
    """Bring a shard up to :data:`VERSION` inside one write transaction."""
    import sqlite_utils  # only paid when a shard is created or upgraded

    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
        have = current_version(conn)
        db = sqlite_utils.Database(conn)
        for step in MIGRATIONS[have:]:
            step(db)
        conn.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)", (str(VERSION),)
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


# The console table's stream names beside "stdout" and "stderr", for its writer and readers:
MARKER = "tracklab"  # the stream of the marker row where the middle of a long output was cut
BOTH = "output"  # the stream of stdout and stderr captured together (they went to one place)
