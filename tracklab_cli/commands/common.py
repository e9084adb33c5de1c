"""What every command shares: one line on stderr and an exit code for a failure, and the
library's exceptions turned into such a line (0 ok, 1 not found / store error, 2 usage)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import typer

from tracklab.errors import AmbiguousRun, RunNotFound, StoreError


def fail(message: str, code: int = 1) -> typer.Exit:
    sys.stderr.write(f"tracklab: {message}\n")
    return typer.Exit(code)


@contextmanager
def library_errors() -> Iterator[None]:
    """Turn the library's exceptions into one line on stderr and exit code 1."""
    try:
        yield
    except AmbiguousRun as exc:
        lines = "\n".join(f"  {c}" for c in exc.candidates[:20])
        raise fail(f"{exc.ref!r} matches {len(exc.candidates)} runs; use a longer prefix:\n"
                   f"{lines}") from None
    except RunNotFound as exc:
        raise fail(str(exc)) from None
    except StoreError as exc:
        raise fail(str(exc)) from None
