"""What every command shares: one line on stderr and an exit code for a failure, and the
library's exceptions turned into such a line (0 ok, 1 not found / store error, 2 usage)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from tracklab.errors import AmbiguousRun, RunNotFound, StoreError

if TYPE_CHECKING:  # imported when needed: the fast paths (fastrun, fastread) run without Typer
    import typer


def fail(message: str, code: int = 1) -> typer.Exit:
    import typer

    sys.stderr.write(f"tracklab: {message}\n")
    return typer.Exit(code)


def error_message(exc: BaseException) -> str | None:
    """The line a library exception is told in (after ``tracklab: ``), None for any other."""
    if isinstance(exc, AmbiguousRun):
        lines = "\n".join(f"  {c}" for c in exc.candidates[:20])
        return (f"{exc.ref!r} matches {len(exc.candidates)} runs; use a longer prefix:\n"
                f"{lines}")
    if isinstance(exc, (RunNotFound, StoreError)):
        return str(exc)
    return None


@contextmanager
def library_errors() -> Iterator[None]:
    """Turn the library's exceptions into one line on stderr and exit code 1."""
    try:
        yield
    except (AmbiguousRun, RunNotFound, StoreError) as exc:
        raise fail(error_message(exc) or str(exc)) from None
