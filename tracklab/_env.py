"""Configuration read at call time: the environment contract, store folder, node id, redaction."""

from __future__ import annotations

import os

ENV_RUN_ID = "TRACKLAB_RUN_ID"
ENV_PROJECT = "TRACKLAB_PROJECT"
ENV_DIR = "TRACKLAB_DIR"
ENV_NODE_ID = "TRACKLAB_NODE_ID"
ENV_MODE = "TRACKLAB_MODE"

DEFAULT_DIR = ".tracklab"

# Names whose values are secrets wherever they appear (environment or --flag=value).
_SECRET_WORDS = ("TOKEN", "SECRET", "KEY", "PASSWORD", "PASSWD", "CREDENTIAL", "AUTH")
REDACTED = "***"


def store_dir(explicit: str | os.PathLike[str] | None = None) -> str:
    """The absolute store folder: ``explicit``, else ``$TRACKLAB_DIR``, else ``./.tracklab``."""
    chosen = explicit if explicit else os.environ.get(ENV_DIR) or DEFAULT_DIR
    return os.path.abspath(os.path.expanduser(os.fspath(chosen)))


def node_id(explicit: str | None = None) -> str:
    """The node's id: ``explicit``, ``$TRACKLAB_NODE_ID``, scheduler variables, then the host name."""
    if explicit:
        return explicit
    for name in (ENV_NODE_ID, "SLURM_NODEID", "GROUP_RANK", "NODE_RANK"):
        value = os.environ.get(name)
        if value:
            return value if name == ENV_NODE_ID else f"node-{value}"
    return hostname()


def hostname() -> str:
    import socket  # not at import time: `import tracklab` stays light

    return socket.gethostname() or "localhost"


def disabled() -> bool:
    """True when ``TRACKLAB_MODE=disabled``: every SDK call is a no-op. ``WANDB_MODE=disabled``
    counts too (a script run as ``import tracklab as wandb``), unless ``TRACKLAB_MODE`` is set."""
    mode = os.environ.get(ENV_MODE)
    if mode is None or not mode.strip():
        mode = os.environ.get("WANDB_MODE", "")
    return mode.strip().lower() in ("disabled", "off", "0")


def rank_env() -> tuple[int | None, int | None]:
    """``(RANK, LOCAL_RANK)`` from the environment, ``None`` where unset or not an integer.

    Under ``srun`` without torchrun, SLURM's ``SLURM_PROCID`` / ``SLURM_LOCALID`` stand in.
    """
    rank, local = _int_env("RANK"), _int_env("LOCAL_RANK")
    if rank is None:
        rank = _int_env("SLURM_PROCID")
    if local is None:
        local = _int_env("SLURM_LOCALID")
    return rank, local


def _int_env(name: str) -> int | None:
    try:
        return int(os.environ[name])
    except (KeyError, ValueError):
        return None


def is_secret_name(name: str) -> bool:
    upper = name.upper()
    return any(word in upper for word in _SECRET_WORDS)


def redact_argv(argv: list[str]) -> list[str]:
    """A copy of ``argv`` with values of secret-looking flags replaced by ``***``.

    Handles ``--api-key=VALUE``, ``--api-key VALUE`` and ``NAME=VALUE`` words (env-style).
    """
    out: list[str] = []
    hide_next = False
    for word in argv:
        if hide_next:
            out.append(REDACTED)
            hide_next = False
            continue
        name, eq, _value = word.partition("=")
        if eq and is_secret_name(name.lstrip("-")):
            out.append(f"{name}={REDACTED}")
        elif word.startswith("-") and not eq and is_secret_name(word.lstrip("-")):
            out.append(word)
            hide_next = True
        else:
            out.append(word)
    return out


def redact_env(env: dict[str, str]) -> dict[str, str]:
    return {k: (REDACTED if is_secret_name(k) else v) for k, v in env.items()}


def process_start() -> float | None:
    """This process's start time (s since epoch): with the pid, it tells a reader whether the
    process that owns a run is still the one running (pids are reused)."""
    import psutil  # not at import time: `import tracklab` stays light

    try:
        return float(psutil.Process().create_time())
    except psutil.Error:
        return None
