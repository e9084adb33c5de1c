"""tracklab: what your hardware did during a training run, next to what your model did.

``import tracklab`` is light: the store, collectors and monitoring API load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tracklab._version import __version__
from tracklab.errors import (
    AmbiguousRun,
    RunNotFound,
    StoreError,
    TracklabError,
    TracklabWarning,
    UsageError,
)

# raised by the optional extras (plot, parquet, ui); importable here, outside the SDK's __all__
from tracklab.errors import MissingExtra as MissingExtra
from tracklab.sdk.run import Run, current_run, finish, init, log

_LAZY = {
    "open_run": "read.runs", "list_runs": "read.runs", "RunView": "read.runs",
    "get_run_system_monitor": "sdk.system_monitor", "cleanup_run_monitor": "sdk.system_monitor",
    "RunSystemMonitor": "sdk.system_monitor",
    "monitor_cpu": "sdk.monitors", "monitor_memory": "sdk.monitors", "monitor_gpu": "sdk.monitors",
    "monitor_hardware": "sdk.monitors", "integrate_with_run": "sdk.monitors",
    **{name: "sdk.compat" for name in (
        "Image", "Table", "Histogram", "Artifact", "Video", "Audio", "Html", "Object3D",
        "Settings", "login", "define_metric", "watch", "unwatch", "log_artifact",
        "use_artifact", "save", "alert")},
}
# `import tracklab as wandb`: wandb.run, wandb.config and wandb.summary are the current run's,
# looked up on every access (never cached: the current run changes)
_CURRENT = {"run": None, "config": "config", "summary": "summary"}

__all__ = [
    "AmbiguousRun",
    "Artifact",
    "Audio",
    "Histogram",
    "Html",
    "Image",
    "Object3D",
    "Run",
    "RunNotFound",
    "RunSystemMonitor",
    "RunView",
    "Settings",
    "StoreError",
    "Table",
    "TracklabError",
    "TracklabWarning",
    "UsageError",
    "Video",
    "__version__",
    "alert",
    "cleanup_run_monitor",
    "current_run",
    "define_metric",
    "finish",
    "get_run_system_monitor",
    "init",
    "integrate_with_run",
    "list_runs",
    "log",
    "log_artifact",
    "login",
    "monitor_cpu",
    "monitor_gpu",
    "monitor_hardware",
    "monitor_memory",
    "open_run",
    "save",
    "unwatch",
    "use_artifact",
    "watch",
]


def __getattr__(name: str) -> Any:
    if name in _CURRENT:
        from tracklab.sdk import current

        run = current.run
        attr = _CURRENT[name]
        if attr is None:
            return run
        if run is None:  # before init(): an empty one that keeps nothing, as wandb's
            from tracklab.sdk.config import Config, Summary

            return Config(None) if name == "config" else Summary()
        return getattr(run, attr)
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tracklab' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from tracklab.read.runs import RunView, list_runs, open_run
    from tracklab.sdk.compat import (
        Artifact,
        Audio,
        Histogram,
        Html,
        Image,
        Object3D,
        Settings,
        Table,
        Video,
        alert,
        define_metric,
        log_artifact,
        login,
        save,
        unwatch,
        use_artifact,
        watch,
    )
    from tracklab.sdk.monitors import (
        integrate_with_run,
        monitor_cpu,
        monitor_gpu,
        monitor_hardware,
        monitor_memory,
    )
    from tracklab.sdk.system_monitor import (
        RunSystemMonitor,
        cleanup_run_monitor,
        get_run_system_monitor,
    )
