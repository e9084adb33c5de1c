"""One exception tree for tracklab, plus the warning category the SDK uses.

Public exceptions carry their fields (run reference, path, candidates) so callers can act on them
without parsing messages, and survive pickling with them (they cross DataLoader workers and
process pools): each one whose constructor takes its fields rebuilds itself from them.
"""

from __future__ import annotations


class TracklabError(Exception):
    """Base of every error tracklab raises on purpose."""

    __module__ = "tracklab"


class RunNotFound(TracklabError):
    """No run matches a reference (id, id prefix, name or ``latest``)."""

    __module__ = "tracklab"

    def __init__(self, ref: str, store: str) -> None:
        self.ref = ref
        self.store = store
        super().__init__(f"no run matches {ref!r} in {store}")

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        return type(self), (self.ref, self.store)


class AmbiguousRun(TracklabError):
    """A reference matches more than one run; ``candidates`` lists their ids."""

    __module__ = "tracklab"

    def __init__(self, ref: str, candidates: list[str]) -> None:
        self.ref = ref
        self.candidates = candidates
        shown = ", ".join(candidates[:10]) + (" ..." if len(candidates) > 10 else "")
        super().__init__(f"{ref!r} matches {len(candidates)} runs: {shown}")

    def __reduce__(self) -> tuple[type, tuple[str, list[str]]]:
        return type(self), (self.ref, self.candidates)


class StoreError(TracklabError):
    """The run store cannot be created, opened or read (corrupt file, permissions, disk full)."""

    __module__ = "tracklab"

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"run store {path}: {reason}")

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        return type(self), (self.path, self.reason)


class UsageError(TracklabError):
    """The library was called the wrong way (for example ``log()`` before ``init()``)."""

    __module__ = "tracklab"


class MissingExtra(TracklabError):
    """An optional dependency is missing; ``hint`` is the command that installs it."""

    __module__ = "tracklab"

    def __init__(self, package: str, extra: str) -> None:
        self.package = package
        self.extra = extra
        self.hint = f"pip install 'tracklab[{extra}]'"
        super().__init__(f"{package} is not installed; install it with: {self.hint}")

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        return type(self), (self.package, self.extra)


class TracklabWarning(UserWarning):
    """Warnings about dropped values, unavailable stores and monitoring that degraded."""

    __module__ = "tracklab"
