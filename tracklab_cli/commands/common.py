"""What every command shares: one line on stderr and an exit code for a failure, and the
library's exceptions turned into such a line (0 ok, 1 not found / store error, 2 usage)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from tracklab.errors import AmbiguousRun, TracklabError
from tracklab.textfmt import visible

if TYPE_CHECKING:  # imported when needed: the fast paths (fastrun, fastread) run without Typer
    import typer


def say(message: str, *more: str) -> None:
    """One line on stderr (then ``more``, one a line), with whatever came from a run, a store
    or a user shown as text, never as escape sequences."""
    sys.stderr.write("".join(f"{visible(m)}\n" for m in (f"tracklab: {message}", *more)))


def fail(message: str, code: int = 1, *more: str) -> typer.Exit:
    """:func:`say` it; the exit to raise."""
    import typer

    say(message, *more)
    return typer.Exit(code)


def tell_library_error(exc: BaseException) -> bool:
    """Say what a library exception (any TracklabError) tells; False for any other."""
    if isinstance(exc, AmbiguousRun):
        say(f"{exc.ref!r} matches {len(exc.candidates)} runs; use a longer prefix:",
            *(f"  {c}" for c in exc.candidates[:20]))
        return True
    if isinstance(exc, TracklabError):
        say(str(exc))
        return True
    return False


@contextmanager
def library_errors() -> Iterator[None]:
    """Turn the library's exceptions (any TracklabError) into one line on stderr and exit 1."""
    try:
        yield
    except TracklabError as exc:
        import typer

        tell_library_error(exc)
        raise typer.Exit(1) from None
