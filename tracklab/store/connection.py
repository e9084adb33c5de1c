"""The shard's sqlite3 connection, wrapped so that no caller ever sees sqlite3's exceptions:
every error, on execute or on a later fetch, becomes a StoreError naming the file and what failed.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable, Iterator
from typing import Any

from tracklab.errors import StoreError

_TABLE = re.compile(r"\b(?:FROM|INTO|UPDATE)\s+(\w+)", re.IGNORECASE)


class Cursor:
    """A cursor whose reads raise StoreError, not sqlite3's errors (a page found corrupt only
    when a row on it is reached fails the fetch, long after the query started)."""

    __slots__ = ("_conn", "_cur", "_sql")

    def __init__(self, cur: sqlite3.Cursor, conn: Connection, sql: str) -> None:
        self._cur, self._conn, self._sql = cur, conn, sql

    @property
    def lastrowid(self) -> int | None:
        return self._cur.lastrowid

    def fetchone(self) -> Any:
        try:
            return self._cur.fetchone()
        except sqlite3.Error as exc:
            raise self._conn.failure(self._sql, exc) from None

    def fetchall(self) -> list[Any]:
        try:
            return self._cur.fetchall()
        except sqlite3.Error as exc:
            raise self._conn.failure(self._sql, exc) from None

    def __iter__(self) -> Iterator[Any]:
        try:
            yield from self._cur
        except sqlite3.Error as exc:
            raise self._conn.failure(self._sql, exc) from None


class Connection:
    """The shard's sqlite3 connection, for the SQL of this package only: every sqlite3 error
    becomes a StoreError naming the file and what failed ("cannot read samples: database disk
    image is malformed"), so no caller ever sees sqlite3's exceptions."""

    __slots__ = ("path", "raw")

    def __init__(self, raw: sqlite3.Connection, path: str) -> None:
        self.raw, self.path = raw, path

    def failure(self, sql: str, exc: sqlite3.Error) -> StoreError:
        m = _TABLE.search(sql)
        verb = "read" if sql.lstrip()[:6].upper() in ("SELECT", "WITH") else "write"
        return StoreError(self.path, f"cannot {verb}{f' {m.group(1)}' if m else ''}: {exc}")

    def execute(self, sql: str, params: Any = ()) -> Cursor:
        try:
            return Cursor(self.raw.execute(sql, params), self, sql)
        except sqlite3.Error as exc:
            raise self.failure(sql, exc) from None

    def executemany(self, sql: str, params: Iterable[Any]) -> Cursor:
        try:
            return Cursor(self.raw.executemany(sql, params), self, sql)
        except sqlite3.Error as exc:
            raise self.failure(sql, exc) from None

    def __getattr__(self, name: str) -> Any:  # the rest of sqlite3's API, as it is
        return getattr(self.raw, name)

    @property
    def in_transaction(self) -> bool:
        return self.raw.in_transaction

    def close(self) -> None:
        self.raw.close()
