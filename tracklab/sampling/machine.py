"""What a run was: the machine it ran on, the code, interpreter and packages it ran with (the run
context), its summary and tags. Its configuration is made plain by :mod:`tracklab.sdk.plain`, its
console output read back by :mod:`tracklab.read.console`."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterable, Mapping
from typing import Any


def system_info(store_dir: str = ".", collectors: Any = None) -> dict[str, Any]:
    """Static facts about this machine: platform, CPU, memory (bytes), Python, GPUs, drivers.

    The GPUs are read through ``collectors`` (a :class:`~tracklab.collectors.SystemCollectors`),
    else through collectors of its own, given GPU_DEADLINE_S: when NVML does not answer in
    time, ``gpu_count`` is ``None`` and the GPU lists are empty; the rest is recorded anyway.
    """
    import platform

    import psutil

    from tracklab.collectors import SystemCollectors
    from tracklab.collectors.cpu import cpu_model

    own = collectors is None
    if own:
        collectors = SystemCollectors("", disk_path=store_dir, families=("accelerators",),
                                      guard_gpu=False)
    try:
        found = collectors.gpu_info()
    finally:
        if own:
            collectors.close()
    gpus: list[dict[str, Any]] = found or []
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
        "gpu_count": None if found is None else len(gpus),
        "gpu_info": [f"{x.get('name')}" for x in gpus],
        "gpus": gpus,
        "driver_version": driver,
        "cuda_version": cuda,
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "store": os.path.abspath(store_dir),
    }


# -- run context: code state, interpreter, packages ------------------------------------------------

GIT_TIMEOUT_S = 10.0  # each git call; a huge or network-mounted repo must not hold a run up
DIFF_MAX = 1024 * 1024  # a saved diff (--save-diff) larger than this is hashed, not kept
DEFAULT_PACKAGES = ("torch", "numpy", "tracklab")
ENV_PACKAGES = "TRACKLAB_PACKAGES"  # more package names to record, comma or space separated

_GIT_ENV = {"GIT_OPTIONAL_LOCKS": "0", "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}


def _helper(argv: list[str], **popen: Any) -> tuple[int, bytes]:
    """``(exit code, stdout)`` of one of tracklab's own short commands (git, a package probe),
    killed after GIT_TIMEOUT_S. Its pid is in HELPER_PIDS meanwhile, so that a run measuring
    this process's own tree (the SDK's monitor) does not count it as the user's.

    Raises:
        OSError, subprocess.SubprocessError: it could not start, or timed out.
    """
    import subprocess

    from tracklab.collectors._tree import HELPER_PIDS

    with subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, **popen) as p:
        HELPER_PIDS.add(p.pid)
        try:
            out, _ = p.communicate(timeout=GIT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            p.kill()
            p.communicate()
            raise
        finally:
            HELPER_PIDS.discard(p.pid)
    return p.returncode, out


def _git(cwd: str, *args: str) -> bytes | None:
    """Output of one git command, or None when git is missing, fails or times out."""
    import subprocess

    env = dict(os.environ, **_GIT_ENV)
    try:
        code, out = _helper(["git", *args], cwd=cwd, env=env)
    except (OSError, subprocess.SubprocessError):
        return None
    return out if code == 0 else None


def code_state(cwd: str, save_diff: bool = False) -> dict[str, Any]:
    """The git state of the repository holding ``cwd``: three git calls, made once per run.

    Returns ``{repo, commit, branch, dirty, diff_sha256, diff_bytes, untracked}``, and ``diff``
    (the text of ``git diff HEAD``, at most :data:`DIFF_MAX` bytes) only with ``save_diff``.
    ``dirty`` means tracked files differ from the commit; untracked files are counted apart.
    Every field is None when git is missing or ``cwd`` is not in a repository; ``commit`` and the
    diff fields are None in a repository without commits; ``branch`` is None on a detached HEAD.
    """
    import hashlib

    state: dict[str, Any] = dict.fromkeys(
        ("repo", "commit", "branch", "dirty", "diff_sha256", "diff_bytes", "untracked"))
    out = _git(cwd, "rev-parse", "--show-toplevel", "HEAD", "--abbrev-ref", "HEAD")
    if out is None:  # no git, no repository, or a repository without commits
        top = _git(cwd, "rev-parse", "--show-toplevel")
        if top is None:
            return state
        state["repo"] = top.decode(errors="replace").strip()
        branch = _git(cwd, "symbolic-ref", "--short", "-q", "HEAD")
        state["branch"] = branch.decode(errors="replace").strip() if branch else None
        return state
    words = out.decode(errors="replace").split("\n")
    state["repo"], state["commit"] = words[0], words[1]
    state["branch"] = words[2] if len(words) > 2 and words[2] not in ("", "HEAD") else None
    diff = _git(cwd, "diff", "HEAD", "--no-ext-diff", "--no-textconv", "--no-color", "--binary")
    if diff is not None:
        state["dirty"] = bool(diff)
        state["diff_bytes"] = len(diff)
        state["diff_sha256"] = hashlib.sha256(diff).hexdigest() if diff else None
        if save_diff:
            state["diff"] = diff.decode(errors="replace") if len(diff) <= DIFF_MAX else None
    others = _git(cwd, "ls-files", "--others", "--exclude-standard", "-z")
    if others is not None:
        state["untracked"] = others.count(b"\0")
    return state


def package_versions(names: Iterable[str]) -> dict[str, str | None]:
    """Installed versions from package metadata (nothing is imported); None when not installed.

    Reads the ``<name>-<version>.dist-info`` folder names on ``sys.path`` directly: importing
    ``importlib.metadata`` costs ~50 ms, paid by every ``tracklab run``. ``.egg-info`` folders
    count too; a package installed some other way reads as not installed."""
    wanted = {_canonical(n): n for n in names}
    out: dict[str, str | None] = {n: None for n in wanted.values()}
    left = set(wanted)
    for entry in sys.path:
        if not left:
            break
        try:
            listing = os.listdir(entry or ".")
        except OSError:
            continue
        for folder in listing:
            if folder.endswith(".dist-info"):
                stem = folder[: -len(".dist-info")]
            elif folder.endswith(".egg-info"):
                stem = folder[: -len(".egg-info")]
            else:
                continue
            dist, _, version = stem.partition("-")
            key = _canonical(dist)
            if key in left and version:
                out[wanted[key]] = version
                left.discard(key)
    return out


def _canonical(name: str) -> str:
    return name.lower().replace("-", "_").replace(".", "_")


def package_names(environ: Mapping[str, str] | None = None) -> list[str]:
    """:data:`DEFAULT_PACKAGES` plus those named in ``$TRACKLAB_PACKAGES``."""
    import re

    extra = (environ if environ is not None else os.environ).get(ENV_PACKAGES, "")
    names = list(DEFAULT_PACKAGES)
    names += [n for n in re.split(r"[\s,]+", extra) if n and n not in names]
    return names


_PROBE = """import json, platform, sys
from importlib import metadata
pk = {}
for n in json.loads(sys.argv[1]):
    try:
        pk[n] = metadata.version(n)
    except Exception:
        pk[n] = None
print(json.dumps({"version": platform.python_version(), "executable": sys.executable,
                  "implementation": platform.python_implementation(), "packages": pk}))
"""


def interpreter(command: list[str], environ: Mapping[str, str] | None = None) -> str | None:
    """The Python that runs ``command``: its first word when that is a Python, or the one named
    by the shebang of a console script (``torchrun``, ``accelerate``); else None."""
    import shutil

    if not command:
        return None
    path = (environ or os.environ).get("PATH")
    exe = shutil.which(command[0], path=path)
    if exe is None:
        return None
    if os.path.basename(exe).startswith("python"):
        return os.path.abspath(exe)
    try:
        with open(exe, "rb") as f:
            first = f.readline(512)
    except OSError:
        return None
    if not first.startswith(b"#!") or b"python" not in first:
        return None
    words = first[2:].decode(errors="replace").split()
    if words and os.path.basename(words[0]) == "env":
        words = [w for w in words[1:] if not w.startswith("-")]
        return shutil.which(words[0], path=path) if words else None
    return words[0] if words else None


def python_info(command: list[str] | None = None, environ: Mapping[str, str] | None = None,
                names: Iterable[str] = DEFAULT_PACKAGES) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(python, packages)`` of the interpreter that runs ``command``.

    This process's own interpreter is described in-process; another one (a different venv) is
    asked with one short subprocess that reads metadata only. A command that is not Python is
    described by this process's interpreter, with ``source: "wrapper"``.
    """
    import json
    import subprocess

    names = list(names)
    exe = interpreter(command or [sys.executable], environ)
    if exe is not None and os.path.abspath(exe) != os.path.abspath(sys.executable):
        try:
            code, out = _helper([exe, "-c", _PROBE, json.dumps(names)],
                                env=dict(environ) if environ is not None else None)
            if code != 0:
                raise ValueError(f"the probe exited {code}")
            data = json.loads(out)
            packages = data.pop("packages")
            return dict(data, source="command"), packages
        except (OSError, subprocess.SubprocessError, ValueError, KeyError, TypeError):
            pass  # fall back to describing ourselves
    import platform

    py = {"version": platform.python_version(), "executable": sys.executable,
          "implementation": platform.python_implementation(),
          "source": "command" if exe is not None else "wrapper"}
    return py, package_versions(names)


def _script_dir(command: list[str], cwd: str) -> str | None:
    """The folder of the script a ``python script.py`` command runs, if any."""
    for word in command[1:4]:
        if word.endswith(".py"):
            path = os.path.join(cwd, word)
            if os.path.isfile(path):
                return os.path.dirname(os.path.abspath(path))
    return None


def run_context(command: list[str], cwd: str, environ: Mapping[str, str] | None = None,
                save_diff: bool = False) -> dict[str, Any]:
    """What a run needs to be reproduced: ``{code, python, packages}`` (see :func:`code_state`,
    :func:`python_info`). Takes some tens of milliseconds (git, metadata): call it off the
    critical path. The command line itself is stored, redacted, in the run's ``command``."""
    code = code_state(cwd, save_diff)
    if code["repo"] is None:  # run from elsewhere: the script's own repository
        where = _script_dir(command, cwd)
        if where is not None:
            code = code_state(where, save_diff)
    py, packages = python_info(command, environ, package_names(environ))
    return {"code": code, "python": py, "packages": packages}


def record_context(shard_path: str | None, num: int | None, command: list[str], cwd: str,
                   environ: Mapping[str, str] | None = None,
                   save_diff: bool = False) -> threading.Thread | None:
    """Compute :func:`run_context` in a daemon thread and store it in the run's ``context``.

    Returns the started thread (join it, with a timeout, before the run's end is written), or
    None without a store. Failures are logged at debug level: context is a nice-to-have.
    """
    if shard_path is None or num is None:
        return None

    def work() -> None:
        from tracklab.errors import StoreError
        from tracklab.store import Shard

        try:
            ctx = run_context(command, cwd, environ, save_diff)
            shard = Shard(shard_path)
            try:
                shard.edit_run_json(num, "context", lambda old: {**(old or {}), **ctx})
            finally:
                shard.close()
        except (StoreError, OSError, ValueError) as exc:
            import logging

            logging.getLogger("tracklab.sampling.machine").debug("run context not recorded: %s", exc)

    t = threading.Thread(target=work, name="tracklab-context", daemon=True)
    t.start()
    return t


