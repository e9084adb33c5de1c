"""One node's SQLite file: the only place tracklab speaks SQL, through a connection
(:mod:`.connection`) on which every sqlite3 error, reading or writing, is a StoreError.

A shard is written by the processes of one node only (the wrapper's sampler, the SDK's writer
threads of every rank there). WAL lets readers work while they write; ``BEGIN IMMEDIATE`` takes the
write lock up front so concurrent writers queue on the busy timeout instead of failing.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import Any

from tracklab.errors import StoreError
from tracklab.store import schema
from tracklab.store.codec import dumps_exact
from tracklab.store.connection import Connection, Cursor
from tracklab.store.rollups import INSERT as ROLLUPS_INSERT

BUSY_TIMEOUT_S = 10.0
FINAL_TIMEOUT_S = 1.5  # the last status write of a run must not hold up its exit
MAX_ROWS = 2**63 - 1  # SQLite's largest LIMIT: a larger one (`ls --limit 1e20`) means all rows
RUN_COLUMNS = (
    "num", "id", "name", "project", "status", "exit_code", "signal", "command", "cwd", "host",
    "node", "owner", "pid", "pid_start", "interval", "started_at", "ended_at", "heartbeat_at",
    "config", "system", "summary", "tags", "notes", "clock_offset", "context",
)


# Points go in up to this many rows to a statement (see write_points): 773 parameters, within the
# 999 of SQLite builds before 3.32. Short batches are padded with NULL rows that LIMIT leaves out,
# so that one statement is prepared (and cached by sqlite3) once, whatever the batch sizes.
ROWS_PER_INSERT = 256
_INSERT_POINTS = (
    "INSERT INTO points (run, proc, keyset, fmt, step, time, vals) "
    "SELECT ?1, ?2, ?3, ?4, column1, column2, column3 FROM (VALUES "
    + ", ".join(f"(?{i}, ?{i + 1}, ?{i + 2})" for i in range(6, 6 + 3 * ROWS_PER_INSERT, 3))
    + ") LIMIT ?5"
)
_PADDING = (None,) * (3 * ROWS_PER_INSERT)


_INT_COLUMNS = ("num", "exit_code", "signal", "pid")
_REAL_COLUMNS = ("pid_start", "interval", "started_at", "ended_at", "heartbeat_at",
                 "clock_offset")


def _clean(row: dict[str, Any]) -> dict[str, Any]:
    """A run row as readers expect its types, whoever wrote the file: a number column that
    holds text reads as None, a text column that holds a number or bytes as text."""
    for k in _INT_COLUMNS:
        v = row[k]
        if v is not None and (type(v) is not int):
            row[k] = int(v) if type(v) is float and v.is_integer() else None
    for k in _REAL_COLUMNS:
        v = row[k]
        if v is not None and (type(v) not in (int, float) or not -1e11 < v < 1e11):
            row[k] = None  # text, NaN, infinity or past the year 5000: no time at all
    if row["started_at"] is None:  # every reader sorts and subtracts by it
        row["started_at"] = row["heartbeat_at"] or row["ended_at"] or 0.0
    for k, v in row.items():
        if k not in _INT_COLUMNS and k not in _REAL_COLUMNS and v is not None and \
                type(v) is not str:
            row[k] = v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
    return row


def _create_private(path: str) -> None:
    """Create the database file 0600 before SQLite does (its -wal/-shm copy that mode); 0660 in
    a team's folder (group-writable and setgid), whose members all write and read it."""
    mode = 0o600
    try:
        folder = os.stat(os.path.dirname(path) or ".").st_mode
        if folder & 0o020 and folder & 0o2000:
            mode = 0o660
    except OSError:
        pass
    fd = os.open(path, os.O_CREAT | os.O_RDWR, mode)
    try:
        if mode != 0o600:
            os.fchmod(fd, mode)  # past the umask: the group must be able to write it
    finally:
        os.close(fd)


def _needs_immutable(conn: sqlite3.Connection, path: str) -> bool:
    """True when a WAL shard cannot be read because its ``-shm`` file cannot be created (a
    read-only mount, a folder the reader may not write): with no ``-wal`` beside it, no writer
    has it open and the file itself is all there is to read, so it is opened immutable."""
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return False
    except sqlite3.OperationalError as exc:
        if "unable to open" not in str(exc) or os.path.exists(path + "-wal"):
            raise
        return True


class Shard:
    """A connection to one shard file. Use one instance per thread."""

    def __init__(self, path: str, *, create: bool = True, readonly: bool = False,
                 timeout: float = BUSY_TIMEOUT_S, cache_kib: int | None = None) -> None:
        self.path = path
        self._keysets: dict[tuple[str, ...], int] = {}
        self._layouts: dict[tuple[str, ...], int] = {}
        self._lock = threading.Lock()
        self.empty = False
        raw: sqlite3.Connection | None = None
        try:
            if create and not os.path.exists(path):
                _create_private(path)
            if readonly:
                uri = "file:" + path.replace("?", "%3f").replace("#", "%23") + "?mode=ro"
                raw = sqlite3.connect(
                    uri, uri=True, timeout=timeout, isolation_level=None,
                    check_same_thread=False,
                )
                if _needs_immutable(raw, path):
                    raw.close()
                    raw = sqlite3.connect(
                        uri + "&immutable=1", uri=True, timeout=timeout, isolation_level=None,
                        check_same_thread=False,
                    )
            else:
                raw = sqlite3.connect(
                    path, timeout=timeout, isolation_level=None, check_same_thread=False
                )
                raw.execute("PRAGMA journal_mode=WAL")
                raw.execute("PRAGMA synchronous=NORMAL")
                if cache_kib is not None:  # SQLite's default is 2,000 KiB
                    raw.execute(f"PRAGMA cache_size = -{int(cache_kib)}")
            version = schema.current_version(raw)
            if version > schema.VERSION:
                raise StoreError(path, f"written by a newer tracklab (schema {version})")
            self.empty = version == 0
            if version < schema.VERSION:
                if not readonly:
                    schema.migrate(raw)
                elif version > 0 and os.access(path, os.W_OK):
                    # written by an older tracklab: upgrade it once so readers see every column
                    upgrade = sqlite3.connect(path, timeout=timeout, isolation_level=None)
                    try:
                        schema.migrate(upgrade)
                    finally:
                        upgrade.close()
                # version 0: being created right now; readers skip it (see runs._open_shards)
        except (sqlite3.Error, OSError, StoreError) as exc:
            if raw is not None:
                raw.close()  # not left to the garbage collector (a ResourceWarning, later)
            if isinstance(exc, StoreError):
                raise
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise StoreError(path, reason) from None
        self.conn = Connection(raw, path)

    def close(self) -> None:
        try:
            self.conn.close()
        except sqlite3.Error:
            pass

    def __enter__(self) -> Shard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transactions ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Connection]:
        """One write transaction (``BEGIN IMMEDIATE``: the write lock up front, so concurrent
        writers queue on the busy timeout). Raises StoreError (locked, full, corrupt)."""
        with self._lock:
            c = self.conn
            try:
                c.execute("BEGIN IMMEDIATE")
                try:
                    yield c
                    c.execute("COMMIT")
                except BaseException:
                    if c.in_transaction:
                        c.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:  # COMMIT and ROLLBACK come as StoreError already
                raise StoreError(self.path, str(exc)) from None

    def _write(self, statements: Iterable[tuple[str, Any]]) -> Cursor | None:
        """Run statements in one write transaction; returns the last cursor. ``statements`` may
        be a generator: it is consumed inside the transaction."""
        cur = None
        with self._transaction() as c:
            for sql, params in statements:
                if isinstance(params, list):
                    cur = c.executemany(sql, params)
                else:
                    cur = c.execute(sql, params)
        return cur

    # -- runs -------------------------------------------------------------------------------------

    def insert_run(self, fields: dict[str, Any]) -> int:
        cols = [c for c in fields if c in RUN_COLUMNS]
        sql = (
            f"INSERT OR IGNORE INTO runs ({', '.join(cols)}) "
            f"VALUES ({', '.join('?' for _ in cols)})"
        )
        self._write([(sql, tuple(fields[c] for c in cols))])
        num = self.run_num(fields["id"])
        assert num is not None
        return num

    def run_num(self, run_id: str) -> int | None:
        row = self.conn.execute("SELECT num FROM runs WHERE id = ?", (run_id,)).fetchone()
        return row[0] if row else None

    def update_run(self, num: int, **fields: Any) -> None:
        cols = [c for c in fields if c in RUN_COLUMNS and c != "num"]
        sql = f"UPDATE runs SET {', '.join(f'{c} = ?' for c in cols)} WHERE num = ?"
        self._write([(sql, (*(fields[c] for c in cols), num))])

    def edit_run_json(self, num: int, column: str, edit: Callable[[Any], Any],
                      fields_from: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
                      **fields: Any) -> Any:
        """Replace the JSON in a run's ``column`` by ``edit(old)`` (``old`` is None when empty),
        read and written in one transaction, so concurrent writers (the wrapper, attached ranks,
        ``tracklab tag``) do not lose each other's changes; ``fields`` are set in the same
        statement, and those ``fields_from(row)`` returns for the run's row as it was read.
        Returns the new value."""
        if column not in RUN_COLUMNS or column == "num":
            raise ValueError(f"not a run column: {column!r}")
        with self._transaction() as c:
            row = c.execute(f"SELECT {', '.join(RUN_COLUMNS)} FROM runs WHERE num = ?",
                            (num,)).fetchone()
            was = dict(zip(RUN_COLUMNS, row)) if row is not None else {}
            if fields_from is not None:
                fields = {**fields, **fields_from(was)}
            cols = [k for k in fields if k in RUN_COLUMNS and k not in ("num", column)]
            new = edit(None if was.get(column) is None else json.loads(was[column]))
            sets = "".join(f", {k} = ?" for k in cols)
            c.execute(f"UPDATE runs SET {column} = ?{sets} WHERE num = ?",
                      (dumps_exact(new), *(fields[k] for k in cols), num))
        return new

    def add_proc(self, run: int, pid: int, rank: int | None, local_rank: int | None,
                 host: str, started_at: float) -> int:
        cur = self._write([(
            "INSERT INTO procs (run, pid, rank, local_rank, host, started_at) "
            "VALUES (?, ?, ?, ?, ?, ?)", (run, pid, rank, local_rank, host, started_at),
        )])
        assert cur is not None and cur.lastrowid is not None
        return cur.lastrowid

    def run_rows(self, where: str = "", params: tuple[Any, ...] = (), order: str = "started_at DESC",
                 limit: int | None = None) -> list[dict[str, Any]]:
        sql = f"SELECT {', '.join(RUN_COLUMNS)} FROM runs"
        if where:
            sql += f" WHERE {where}"
        sql += f" ORDER BY {order}"
        if limit is not None:
            sql += f" LIMIT {min(int(limit), MAX_ROWS)}"
        return [_clean(dict(zip(RUN_COLUMNS, r))) for r in self.conn.execute(sql, params)]

    def find_runs(self, ref: str) -> list[dict[str, Any]]:
        """Runs whose id equals or starts with ``ref``, or whose name equals it."""
        esc = ref.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return self.run_rows("id LIKE ? ESCAPE '\\' OR name = ?", (esc + "%", ref))

    def delete_run(self, num: int) -> None:
        self._write([
            (f"DELETE FROM {t} WHERE run = ?", (num,))
            for t in ("points", "metric_stats", "metric_rollups", "samples", "sample_stats",
                      "procs", "console")
        ] + [("DELETE FROM runs WHERE num = ?", (num,))])

    # -- training points ----------------------------------------------------------------------------

    def keyset(self, keys: tuple[str, ...]) -> int:
        num = self._keysets.get(keys)
        if num is None:
            num = self._keysets[keys] = self._intern("keysets", "keys", dumps_exact(list(keys)))
        return num

    def layout(self, paths: tuple[str, ...]) -> int:
        num = self._layouts.get(paths)
        if num is None:
            num = self._layouts[paths] = self._intern("layouts", "paths", dumps_exact(list(paths)))
        return num

    def _intern(self, table: str, column: str, text: str) -> int:
        sql_get = f"SELECT num FROM {table} WHERE {column} = ?"
        row = self.conn.execute(sql_get, (text,)).fetchone()
        if row is None:
            self._write([(f"INSERT OR IGNORE INTO {table} ({column}) VALUES (?)", (text,))])
            row = self.conn.execute(sql_get, (text,)).fetchone()
        return int(row[0])

    def write_points(self, batches: Iterable[tuple[int, int, int, str | None, Iterable[Any]]],
                     stats: list[tuple[Any, ...]],
                     heartbeat: tuple[float, int] | None = None,
                     rollups: list[tuple[Any, ...]] | None = None) -> None:
        """Insert points and replace key stats and rollups, in one transaction.

        ``batches``: ``(run, proc, keyset, fmt, flat)``, ``flat`` yielding the rows' ``step,
        time, vals`` one after the other; it is consumed as it is inserted.

        Rows go in ``ROWS_PER_INSERT`` to a statement, not one: each statement releases and
        retakes the GIL, and retaking it from a training loop that never lets go of it costs the
        writer thread up to the interpreter's switch interval (5 ms), whatever the statement's
        size. Also, one multi-row INSERT is about 2.5 times faster than executemany's rows.
        """
        def statements() -> Iterator[tuple[str, Any]]:
            for run, proc, keyset, fmt, flat in batches:
                rows = iter(flat)
                while part := tuple(islice(rows, 3 * ROWS_PER_INSERT)):
                    yield _INSERT_POINTS, (run, proc, keyset, fmt, len(part) // 3, *part,
                                           *_PADDING[len(part):])
            if stats:
                yield (
                    "INSERT OR REPLACE INTO metric_stats (run, proc, key, count, nans, min, max, "
                    "sum, last, last_step, last_time) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    stats,
                )
            if rollups:
                yield ROLLUPS_INSERT, rollups
            if heartbeat:
                yield "UPDATE runs SET heartbeat_at = ? WHERE num = ?", heartbeat

        self._write(statements())

    def points(self, run: int) -> Iterator[tuple[Any, ...]]:
        """``(proc, step, time, keys_json, fmt, vals)`` in insertion order."""
        return iter(self.conn.execute(
            "SELECT p.proc, p.step, p.time, k.keys, p.fmt, p.vals FROM points p "
            "JOIN keysets k ON k.num = p.keyset WHERE p.run = ? ORDER BY p.rowid", (run,),
        ))

    def metric_stats(self, run: int) -> list[tuple[Any, ...]]:
        return self.conn.execute(
            "SELECT proc, key, count, nans, min, max, sum, last, last_step, last_time "
            "FROM metric_stats WHERE run = ?", (run,),
        ).fetchall()

    def procs(self, run: int) -> dict[int, tuple[int, int | None, int | None]]:
        rows = self.conn.execute(
            "SELECT num, pid, rank, local_rank FROM procs WHERE run = ?", (run,)
        )
        return {num: (pid, rank, lrank) for num, pid, rank, lrank in rows}

    # -- system samples -------------------------------------------------------------------------

    def write_sample(self, run: int, time: float, layout: int, blob: bytes, pid: int,
                     count: int, stats: str | None, heartbeat: bool) -> None:
        """One sample, its writer's sample count, and (when ``stats`` is given) its running
        statistics, in one transaction. Without ``stats`` the row of statistics must exist."""
        todo: list[tuple[str, Any]] = [
            ("INSERT INTO samples (run, time, layout, data) VALUES (?, ?, ?, ?)",
             (run, time, layout, blob)),
            ("INSERT OR REPLACE INTO sample_stats (run, pid, count, stats) VALUES (?, ?, ?, ?)",
             (run, pid, count, stats)) if stats is not None else
            ("UPDATE sample_stats SET count = ? WHERE run = ? AND pid = ?", (count, run, pid)),
        ]
        if heartbeat:
            todo.append(("UPDATE runs SET heartbeat_at = ? WHERE num = ?", (time, run)))
        self._write(todo)

    def write_sample_stats(self, run: int, pid: int, count: int, stats: str) -> None:
        self._write([("INSERT OR REPLACE INTO sample_stats (run, pid, count, stats) "
                      "VALUES (?, ?, ?, ?)", (run, pid, count, stats))])

    def samples(self, run: int, since: float | None = None) -> Iterator[tuple[Any, ...]]:
        """``(time, paths_json, data)`` in time order."""
        sql = ("SELECT s.time, l.paths, s.data FROM samples s JOIN layouts l ON l.num = s.layout "
               "WHERE s.run = ?")
        params: tuple[Any, ...] = (run,)
        if since is not None:
            sql += " AND s.time > ?"
            params = (run, since)
        return iter(self.conn.execute(sql + " ORDER BY s.time", params))

    def sample_stats(self, run: int) -> list[tuple[int, int, str]]:
        return self.conn.execute(
            "SELECT pid, count, stats FROM sample_stats WHERE run = ?", (run,)
        ).fetchall()

    def sample_count(self, run: int) -> int:
        return int(self.conn.execute(
            "SELECT coalesce(sum(count), 0) FROM sample_stats WHERE run = ?", (run,)
        ).fetchone()[0])

    # -- console ---------------------------------------------------------------------------------

    def write_console(self, rows: list[tuple[int, float, str, str]], *, run: int | None = None,
                      marker: tuple[int, str] | None = None,
                      evict: tuple[int, int] | None = None) -> int:
        """Insert ``(run, time, stream, line)`` rows in one transaction; returns the row id of
        the last (rows get consecutive ids), 0 without rows.

        The console capture's cap (tracklab.wrapper.capture) uses the keywords, for run ``run``:
        ``marker=(rowid, text)`` sets that row's text (deletes the row when text is ""), and
        ``evict=(after, upto)`` deletes the run's rows with ``after < rowid <= upto``.
        """
        todo: list[tuple[str, Any]] = []
        if rows:
            todo.append(("INSERT INTO console (run, time, stream, line) VALUES (?, ?, ?, ?)", rows))
        if evict is not None:
            todo.append(("DELETE FROM console WHERE run = ? AND rowid > ? AND rowid <= ?",
                         (run, *evict)))
        if marker is not None:
            todo.append(("UPDATE console SET line = ? WHERE rowid = ? AND run = ?",
                         (marker[1], marker[0], run)) if marker[1] else
                        ("DELETE FROM console WHERE rowid = ? AND run = ?", (marker[0], run)))
        if not todo:
            return 0
        todo.append(("SELECT last_insert_rowid()", ()))
        cur = self._write(todo)
        assert cur is not None  # todo is not empty
        return int(cur.fetchone()[0]) if rows else 0

    def console(self, run: int, streams: Iterable[str] | None = None, tail: int | None = None,
                after_rowid: int = 0) -> list[tuple[int, float, str, str]]:
        """The run's console rows ``(rowid, time, stream, text)`` after ``after_rowid``, oldest
        first, of ``streams`` only if given; with ``tail``, the last ``tail`` rows."""
        sql = "SELECT rowid, time, stream, line FROM console WHERE run = ? AND rowid > ?"
        params: list[Any] = [run, after_rowid]
        if streams is not None:
            names = list(streams)
            sql += f" AND stream IN ({', '.join('?' * len(names))})"
            params += names
        if tail is not None:
            sql = f"SELECT * FROM ({sql} ORDER BY rowid DESC LIMIT {min(int(tail), MAX_ROWS)})"
        return self.conn.execute(sql + " ORDER BY rowid", params).fetchall()
