"""The shard schema and its migrations. The README's "Where data lives" section documents it.

Each migration is a list of tables, indexes and columns, rendered here to the SQL that
``sqlite-utils`` writes for the same definitions (tests/test_store.py compares the two), and run
through the stdlib driver: a training process that creates a shard does not pay for importing
sqlite-utils. ``meta.schema_version`` records how many migrations have run. A shard written by a
newer tracklab (a higher version) is refused, not guessed at.
"""

from __future__ import annotations

import sqlite3

_TYPES = {int: "INTEGER", str: "TEXT", float: "REAL", bytes: "BLOB"}


class Table:
    """A table: its columns (name -> Python type), primary key and NOT NULL columns. (Plain
    classes, not NamedTuples: every process that opens a shard imports this module.)"""

    __slots__ = ("columns", "name", "not_null", "pk")

    def __init__(self, name: str, columns: dict[str, type],
                 pk: str | tuple[str, ...] | None = None,
                 not_null: frozenset[str] = frozenset()) -> None:
        self.name, self.columns, self.pk, self.not_null = name, columns, pk, not_null


class Index:
    __slots__ = ("columns", "table", "unique")

    def __init__(self, table: str, columns: tuple[str, ...], unique: bool = False) -> None:
        self.table, self.columns, self.unique = table, columns, unique


class Column:
    """A column added to an existing table."""

    __slots__ = ("name", "table", "type")

    def __init__(self, table: str, name: str, type: type) -> None:
        self.table, self.name, self.type = table, name, type


class Sql:
    """A statement run as written (what sqlite-utils' ``db.execute`` runs): a table its
    ``create()`` cannot describe (``WITHOUT ROWID``)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


Step = Table | Index | Column | Sql

_V1: list[Step] = [
    Table("runs", {
        "num": int, "id": str, "name": str, "project": str, "status": str,
        "exit_code": int, "signal": int, "command": str, "cwd": str, "host": str,
        "node": str, "owner": str, "pid": int, "pid_start": float, "interval": float,
        "started_at": float, "ended_at": float, "heartbeat_at": float,
        "config": str, "system": str, "summary": str, "tags": str, "notes": str,
    }, pk="num", not_null=frozenset({"id", "status", "started_at"})),
    Index("runs", ("id",), unique=True),
    Index("runs", ("started_at",)),
    Index("runs", ("name",)),
    Table("procs", {"num": int, "run": int, "pid": int, "rank": int, "local_rank": int,
                    "host": str, "started_at": float},
          pk="num", not_null=frozenset({"run", "pid"})),
    Table("keysets", {"num": int, "keys": str}, pk="num", not_null=frozenset({"keys"})),
    Index("keysets", ("keys",), unique=True),
    Table("points", {"run": int, "proc": int, "step": int, "time": float, "keyset": int,
                     "fmt": str, "vals": bytes},
          not_null=frozenset({"run", "proc", "step", "time", "keyset", "vals"})),
    Index("points", ("run",)),
    Table("metric_stats", {"run": int, "proc": int, "key": str, "count": int, "nans": int,
                           "min": float, "max": float, "sum": float, "last": str,
                           "last_step": int, "last_time": float},
          pk=("run", "proc", "key")),
    Table("layouts", {"num": int, "paths": str}, pk="num", not_null=frozenset({"paths"})),
    Index("layouts", ("paths",), unique=True),
    Table("samples", {"num": int, "run": int, "time": float, "layout": int, "data": bytes},
          pk="num", not_null=frozenset({"run", "time", "layout", "data"})),
    Index("samples", ("run", "time")),
    Table("sample_stats", {"run": int, "pid": int, "count": int, "stats": str},
          pk=("run", "pid")),
]

_V2: list[Step] = [
    Table("console", {"run": int, "time": float, "stream": str, "line": str},
          not_null=frozenset({"run", "time", "stream", "line"})),
    Index("console", ("run", "time")),
]

# seconds the shared store's clock is ahead of the node's (tracklab.read.fleet), null if unknown
_V3_CLOCK_OFFSET: list[Step] = [Column("runs", "clock_offset", float)]

# what the run was (tracklab.sampling.machine.run_context): code state, interpreter, packages (JSON)
_V4_CONTEXT: list[Step] = [Column("runs", "context", str)]

# per key, the min, max and last value of every 256, 4,096... points (tracklab.store.rollups)
_V5_ROLLUPS: list[Step] = [Sql(
    "CREATE TABLE metric_rollups (run INTEGER NOT NULL, proc INTEGER NOT NULL, "
    "key TEXT NOT NULL, level INTEGER NOT NULL, bucket INTEGER NOT NULL, n INTEGER, "
    "first REAL, min REAL, max REAL, last REAL, first_step INTEGER, last_step INTEGER, "
    "first_time REAL, last_time REAL, PRIMARY KEY (run, key, level, proc, bucket)) "
    "WITHOUT ROWID")]

MIGRATIONS: list[list[Step]] = [_V1, _V2, _V3_CLOCK_OFFSET, _V4_CONTEXT, _V5_ROLLUPS]
VERSION = len(MIGRATIONS)


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def sql(step: Step) -> str:
    """The statement that makes ``step``, as sqlite-utils words it (the text SQLite keeps)."""
    if isinstance(step, Table):
        lines = []
        for col, kind in step.columns.items():
            line = f"   {_q(col)} {_TYPES[kind]}"
            if step.pk == col:
                line += " PRIMARY KEY"
            if col in step.not_null:
                line += " NOT NULL"
            lines.append(line)
        if isinstance(step.pk, tuple):
            lines.append(f"   PRIMARY KEY ({', '.join(_q(c) for c in step.pk)})")
        return f"CREATE TABLE {_q(step.name)} (\n" + ",\n".join(lines) + "\n)"
    if isinstance(step, Index):
        name = f"idx_{step.table}_{'_'.join(step.columns)}"
        return (f"CREATE {'UNIQUE ' if step.unique else ''}INDEX {_q(name)}\n"
                f"    ON {_q(step.table)} ({', '.join(_q(c) for c in step.columns)})")
    if isinstance(step, Sql):
        return step.text
    return f"ALTER TABLE {_q(step.table)} ADD COLUMN {_q(step.name)} {_TYPES[step.type]}"


def current_version(conn: sqlite3.Connection) -> int:
    try:
        row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    except sqlite3.OperationalError:
        return 0
    return int(row[0]) if row else 0


def migrate(conn: sqlite3.Connection) -> None:
    """Bring a shard up to :data:`VERSION` inside one write transaction."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
        have = current_version(conn)
        for migration in MIGRATIONS[have:]:
            for step in migration:
                conn.execute(sql(step))
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
