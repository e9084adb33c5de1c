"""The rest of wandb's shape, so that ``import tracklab as wandb`` runs the calls typical scripts
and framework callbacks make: ``define_metric`` (stored), ``watch`` (nothing to record, said
once), media and artifact objects (accepted, said once per kind, not stored), ``login`` and
``Settings`` (nothing to do). README's "wandb shape" section lists exactly what is kept."""

from __future__ import annotations

import os
import sys
import warnings
from typing import Any

from tracklab.errors import TracklabWarning

_said: set[str] = set()


def _once(what: str, message: str, *, info: bool = False) -> None:
    if what in _said:
        return
    _said.add(what)
    if info:
        sys.stderr.write(message + "\n")
    else:
        warnings.warn(message, TracklabWarning, stacklevel=_user_level())


_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def _user_level() -> int:
    """``stacklevel`` naming the first frame outside tracklab: the user's line."""
    frame, level = sys._getframe(1), 1
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame, level = frame.f_back, level + 1
    return level


class _Media:
    """A wandb media or data object: takes any arguments, keeps nothing, and ``log()`` drops it
    without a second warning (``_tracklab_media``)."""

    _tracklab_media = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        from tracklab import _env
        from tracklab.sdk import current

        if _env.disabled() or getattr(current.run, "_noop", False):
            return  # nothing is recorded anyway (disabled, or no store): nothing to say
        kind = type(self).__name__
        _once(f"media:{kind}", f"tracklab: {kind} objects are accepted and not stored "
              "(tracklab records numbers only)")

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return _nothing  # artifact.add_file(...), table.add_data(...): nothing to keep


def _nothing(*args: Any, **kwargs: Any) -> None:
    return None


class Image(_Media):
    pass


class Table(_Media):
    pass


class Histogram(_Media):
    pass


class Artifact(_Media):
    pass


class Video(_Media):
    pass


class Audio(_Media):
    pass


class Html(_Media):
    pass


class Object3D(_Media):
    pass


class Settings(dict[str, Any]):
    """wandb's ``Settings(...)``: accepted for ``init(settings=...)``; none applies here."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)


class WandbRunMixin:
    """Methods of a wandb run that tracklab has no use for, or keeps in the run's context."""

    id: str
    _step: int

    @property
    def step(self) -> int:
        """The step the next ``log()`` without ``step=`` gets."""
        return self._step

    @property
    def url(self) -> None:
        return None  # a local store has no page to link to

    def define_metric(self, name: str, step_metric: str | None = None,
                      summary: str | None = None, goal: str | None = None,
                      hidden: bool | None = None, step_sync: bool | None = None,
                      **_: Any) -> None:
        """Stored in the run's context (``metrics``), for readers; ``show`` is unchanged."""
        spec = {k: v for k, v in (("step_metric", step_metric), ("summary", summary),
                                  ("goal", goal), ("hidden", hidden)) if v is not None}
        self._edit_context({"metrics": {str(name): spec}})

    def watch(self, *args: Any, **kwargs: Any) -> None:
        _once("watch", "tracklab: watch() records nothing (gradients and parameters are not "
              "tracked); training goes on", info=True)

    def unwatch(self, *args: Any, **kwargs: Any) -> None:
        return None

    def log_artifact(self, artifact: Any, *args: Any, **kwargs: Any) -> Any:
        _once("artifact", "tracklab: log_artifact() is accepted and stores nothing")
        return artifact

    def use_artifact(self, artifact: Any, *args: Any, **kwargs: Any) -> Any:
        _once("artifact", "tracklab: use_artifact() is accepted and fetches nothing")
        return artifact if isinstance(artifact, Artifact) else Artifact()

    def save(self, *args: Any, **kwargs: Any) -> bool:
        _once("save", "tracklab: save() is accepted and copies no file")
        return True

    def log_code(self, *args: Any, **kwargs: Any) -> None:
        return None  # the code's git state is in the run's context already

    def alert(self, *args: Any, **kwargs: Any) -> None:
        _once("alert", "tracklab: alert() is accepted and sends nothing")

    def mark_preempting(self) -> None:
        return None

    def _edit_context(self, patch: dict[str, Any]) -> None:
        return None  # the store side (sdk_store) writes it


def login(*args: Any, **kwargs: Any) -> bool:
    """wandb's ``login()``: a local store needs none."""
    return True


def _run_or_none() -> Any:
    from tracklab.sdk import current

    return current.run


def define_metric(name: str, *args: Any, **kwargs: Any) -> None:
    run = _run_or_none()
    if run is not None:
        run.define_metric(name, *args, **kwargs)


def watch(*args: Any, **kwargs: Any) -> None:
    WandbRunMixin.watch(None, *args, **kwargs)  # type: ignore[arg-type]


def unwatch(*args: Any, **kwargs: Any) -> None:
    return None


def log_artifact(artifact: Any, *args: Any, **kwargs: Any) -> Any:
    return WandbRunMixin.log_artifact(None, artifact)  # type: ignore[arg-type]


def use_artifact(artifact: Any, *args: Any, **kwargs: Any) -> Any:
    return WandbRunMixin.use_artifact(None, artifact)  # type: ignore[arg-type]


def save(*args: Any, **kwargs: Any) -> bool:
    return WandbRunMixin.save(None)  # type: ignore[arg-type]


def alert(*args: Any, **kwargs: Any) -> None:
    WandbRunMixin.alert(None)  # type: ignore[arg-type]


NAMES = ("Image", "Table", "Histogram", "Artifact", "Video", "Audio", "Html", "Object3D",
         "Settings", "login", "define_metric", "watch", "unwatch", "log_artifact",
         "use_artifact", "save", "alert")
