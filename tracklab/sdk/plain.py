"""Configuration and summary values made plain for the store (JSON): dicts, dataclasses,
argparse namespaces, OmegaConf configs, numpy arrays and tensors, enums, classes and functions,
as a user reads them back, and never an error or an endless walk."""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from types import BuiltinFunctionType, FunctionType, MethodType, ModuleType
from typing import Any


def to_plain(config: Any, _within: tuple[int, ...] = ()) -> dict[str, Any]:
    """A JSON-ready dict from a dict, dataclass, argparse namespace or OmegaConf config.

    ``_within``: the ids of the objects being made plain around this one (an object met again
    inside itself is stored as its repr, not followed forever)."""
    if config is None:
        return {}
    within = (*_within, id(config))
    if type(config).__module__.startswith("omegaconf"):
        from omegaconf import OmegaConf  # only when the user already uses it

        config = OmegaConf.to_container(config, resolve=True)
    elif _is_dataclass(config):
        import dataclasses  # only for dataclass configs: the wrapper never pays for it

        config = dataclasses.asdict(config)
    elif not isinstance(config, Mapping) and hasattr(config, "__dict__"):
        config = vars(config)
    if not isinstance(config, Mapping):
        raise TypeError(f"config must be a dict-like object, not {type(config).__name__}")
    return {str(k): _plain_value(v, within) for k, v in config.items()}


_NAMED = (type, ModuleType, FunctionType, BuiltinFunctionType, MethodType)  # kept by name
ARRAY_ITEMS = 1000  # a numpy array or tensor up to this size is stored as a list, else as text


def _plain_value(v: Any, within: tuple[int, ...] = ()) -> Any:
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, Enum):  # its __dict__ leads to its class, which lists it again
        return _plain_value(v.value, within)
    if id(v) in within:  # an object that refers back to its owner
        return repr(v)
    if isinstance(v, _NAMED):  # a model class, an activation function, a module
        name = getattr(v, "__qualname__", None) or getattr(v, "__name__", None) or repr(v)
        module = getattr(v, "__module__", None)
        return f"{module}.{name}" if module and module != "builtins" else name
    tolist = getattr(v, "tolist", None)  # numpy arrays, torch tensors: their values
    if callable(tolist) and _size(v) <= ARRAY_ITEMS:
        try:
            return _plain_value(tolist(), within)
        except (ValueError, RuntimeError, TypeError):
            pass
    if isinstance(v, Mapping) or _is_dataclass(v) or hasattr(v, "__dict__"):
        try:
            return to_plain(v, within)
        except TypeError:
            return repr(v)
    if isinstance(v, (list, tuple, set, frozenset)):
        return [_plain_value(x, (*within, id(v))) for x in v]
    item = getattr(v, "item", None)
    if callable(item):
        try:
            return item()
        except (ValueError, RuntimeError, TypeError):
            pass
    return str(v)


def _size(v: Any) -> float:
    """How many values an array holds (numpy ``size``, torch ``numel()``); inf when unknown."""
    n = getattr(v, "size", None)
    if callable(n):
        numel = getattr(v, "numel", None)
        n = numel() if callable(numel) else None
    return n if isinstance(n, int) else float("inf")


def _is_dataclass(obj: Any) -> bool:
    """``dataclasses.is_dataclass`` for instances, without importing ``dataclasses``."""
    return hasattr(type(obj), "__dataclass_fields__") and not isinstance(obj, type)
