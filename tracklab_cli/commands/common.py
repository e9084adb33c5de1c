"""What every command shares: one line on stderr and an exit code for a failure, and the
library's exceptions turned into such a line (0 ok, 1 not found / store error, 2 usage)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import typer

from tracklab.errors import AmbiguousRun, TracklabError
from tracklab.textfmt import visible


def fail(message: str, code: int = 1, *more: str) -> typer.Exit:
    """One line on stderr (then ``more``, one a line), with whatever came from a run, a store
    or a user shown as text, never as escape sequences; the exit to raise."""
    sys.stderr.write("".join(f"{visible(m)}\n" for m in (f"tracklab: {message}", *more)))
    return typer.Exit(code)


@contextmanager
def library_errors() -> Iterator[None]:
    """Turn the library's exceptions (any TracklabError) into one line on stderr and exit 1."""
    try:
        yield
    except AmbiguousRun as exc:
        raise fail(f"{exc.ref!r} matches {len(exc.candidates)} runs; use a longer prefix:", 1,
                   *(f"  {c}" for c in exc.candidates[:20])) from None
    except TracklabError as exc:
        raise fail(str(exc)) from None
