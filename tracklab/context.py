"""What a run was: configuration made plain, and a description of the machine it ran on."""

from __future__ import annotations

import dataclasses
import os
import platform
import sys
from collections.abc import Mapping
from typing import Any


def to_plain(config: Any) -> dict[str, Any]:
    """A JSON-ready dict from a dict, dataclass, argparse namespace or OmegaConf config."""
    if config is None:
        return {}
    if type(config).__module__.startswith("omegaconf"):
        from omegaconf import OmegaConf  # only when the user already uses it

        config = OmegaConf.to_container(config, resolve=True)
    elif dataclasses.is_dataclass(config) and not isinstance(config, type):
        config = dataclasses.asdict(config)
    elif not isinstance(config, Mapping) and hasattr(config, "__dict__"):
        config = vars(config)
    if not isinstance(config, Mapping):
        raise TypeError(f"config must be a dict-like object, not {type(config).__name__}")
    return {str(k): _plain_value(v) for k, v in config.items()}


def _plain_value(v: Any) -> Any:
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, Mapping) or dataclasses.is_dataclass(v) or hasattr(v, "__dict__"):
        try:
            return to_plain(v)
        except TypeError:
            return repr(v)
    if isinstance(v, (list, tuple, set, frozenset)):
        return [_plain_value(x) for x in v]
    item = getattr(v, "item", None)
    if callable(item):
        try:
            return item()
        except (ValueError, RuntimeError, TypeError):
            pass
    return str(v)


def system_info(store_dir: str = ".", gpus: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Static facts about this machine: platform, CPU, memory (bytes), Python, GPUs, drivers."""
    import psutil

    from .collectors.cpu import cpu_model

    if gpus is None:
        from .collectors.gpu import GpuCollector

        g = GpuCollector()
        try:
            gpus = g.info()
        finally:
            g.close()
    driver = next((x.get("driverVersion") for x in gpus if x.get("driverVersion")), None)
    cuda = next((x.get("cudaVersion") for x in gpus if x.get("cudaVersion")), None)
    return {
        "platform": platform.platform(),
        "system": platform.system(),
        "hostname": platform.node(),
        "cpu_model": cpu_model(),
        "cpu_count": psutil.cpu_count(logical=True),
        "cpu_physical": psutil.cpu_count(logical=False),
        "memory_total": psutil.virtual_memory().total,
        "python": sys.version.split()[0],
        "python_executable": sys.executable,
        "gpu_count": len(gpus),
        "gpu_info": [f"{x.get('name')}" for x in gpus],
        "gpus": gpus,
        "driver_version": driver,
        "cuda_version": cuda,
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "store": os.path.abspath(store_dir),
    }
