"""``run.config`` and ``run.summary``: dicts that also read and write as attributes, the way
wandb's do (``config.lr``, ``summary.best = x``), so that scripts and framework callbacks written
for wandb run unchanged."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class AttrDict(dict[str, Any]):
    """A dict whose keys are attributes too; names starting with ``_`` stay real attributes."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)  # copy/pickle probe dunders: never a key
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"{type(self).__name__} has no key {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_"):
            object.__setattr__(self, name, value)
        else:
            self[name] = value

    def __delattr__(self, name: str) -> None:
        if name.startswith("_"):
            object.__delattr__(self, name)
            return
        try:
            del self[name]
        except KeyError:
            raise AttributeError(name) from None


class Config(AttrDict):
    """The run's configuration; ``update()``, ``config[key] = value`` and ``config.key = value``
    write through to the store. ``update(d, allow_val_change=True)`` is wandb's signature: the
    flag is accepted (a value may always change) and is not a key."""

    def __init__(self, run: Any, initial: Mapping[str, Any] | None = None) -> None:
        super().__init__(initial or {})
        self._run = run

    def update(self, *args: Any, allow_val_change: bool | None = None,
               **kwargs: Any) -> None:
        from tracklab.sdk.plain import to_plain

        for a in args:
            if a is not None:
                super().update(to_plain(a))
        super().update(to_plain(kwargs))
        self._save()

    def setdefaults(self, d: Mapping[str, Any]) -> None:
        """wandb's: set the keys of ``d`` that are not set yet."""
        self.update({k: v for k, v in dict(d).items() if k not in self})

    def as_dict(self) -> dict[str, Any]:
        return dict(self)

    def __setitem__(self, key: str, value: Any) -> None:
        self.update({key: value})

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key)
        self._save()

    def _save(self) -> None:
        if self._run is not None:
            self._run._save_config()


class Summary(AttrDict):
    """The run's summary: final values by key (each metric's last value where not set here),
    written when the run finishes."""
