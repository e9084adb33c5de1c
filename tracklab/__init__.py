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
}

__all__ = [
    "AmbiguousRun", "Run", "RunNotFound", "RunSystemMonitor", "RunView", "StoreError",
    "TracklabError", "TracklabWarning", "UsageError", "__version__", "cleanup_run_monitor",
    "current_run", "finish", "get_run_system_monitor", "init", "integrate_with_run",
    "list_runs", "log", "monitor_cpu", "monitor_gpu", "monitor_hardware", "monitor_memory",
    "open_run",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tracklab' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from tracklab.read.runs import RunView, list_runs, open_run
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
