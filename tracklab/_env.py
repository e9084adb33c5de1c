"""Configuration read at call time: the environment contract, store folder, node id, redaction."""

from __future__ import annotations

import os
import re  # loaded already by the interpreter's start-up

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
        else:  # a token in any word (`--header "Authorization: Bearer ..."`), as in output
            out.append(redact_text(word.encode(errors="surrogateescape")).decode(
                errors="surrogateescape"))
    return out


# Secrets in free text (a child's console output): well-known token shapes, whose recognisable
# prefix is kept (ghp_***), then values given to secret-looking names. A name is one as code and
# shells spell it (GITHUB_TOKEN, api_key, --api-key, "password", clientSecret): ending in token,
# secret, password, passwd, credential(s), apikey or authorization, or in key or auth after a
# qualifier (AWS_ACCESS_KEY, x-auth); so "tokens/s: 9", "tokenizer=bert", "sort key: epoch" and
# "num_keys=10" are left alone.
# (pattern, replacement, a literal every match holds: the pattern runs only where it occurs);
# compiled on first use, so that `import tracklab` does not pay for it
_SHAPES = [(p, r, t) for p, r, t in (
    (rb"(?<![A-Za-z0-9_])(gh[pousr]_)[A-Za-z0-9]{30,}", rb"\1***", b"gh"),
    (rb"(?<![A-Za-z0-9_])(github_pat_)[A-Za-z0-9_]{20,}", rb"\1***", b"github_pat_"),
    (rb"(?<![A-Za-z0-9_-])(sk-)(?:[A-Za-z0-9]+-)?[A-Za-z0-9_-]{16,}", rb"\1***", b"sk-"),
    (rb"(?<![A-Z0-9])(AKIA|ASIA)[A-Z0-9]{16}(?![A-Z0-9])", rb"\1***", b"IA"),
    (rb"(?<![A-Za-z0-9_])(hf_)[A-Za-z0-9]{30,}", rb"\1***", b"hf_"),
    (rb"(?<![A-Za-z0-9_])(xox[abprs]-)[A-Za-z0-9-]{10,}", rb"\1***", b"xox"),
    (rb"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}", rb"***", b"eyJ"),
    (rb"((?i:bearer)\s+)[A-Za-z0-9._~+/=-]{8,}", rb"\1***", b"earer"),
    (rb"(://[^/\s:@]+:)[^/\s@]+@", rb"\1***@", b"://"),
)]
_NAMED = (
    rb"(?P<name>(?<![\w.-])(?P<dash>--?)?(?:"
    rb"(?:[A-Za-z0-9]+[_.-])*(?i:token|secret|password|passwd|credentials?|apikey|authorization)"
    rb"|(?:[A-Za-z0-9]+[_.-])+(?i:key|auth)"
    rb"|[a-z][a-z0-9]*(?:Token|Secret|Password|Key|Auth)))"
    rb"(?P<sep>[\"']?[ \t]*[:=][ \t]*[\"']?|(?(dash)[ \t]+|(?!)))"
    rb"(?P<val>(?i:(?:bearer|basic|token)[ \t]+)?[^\s\"',;]+)")
# every secret name holds one of these (lower case): _NAMED is tried only at the names around them
_NAME_WORDS = (b"token", b"secret", b"passw", b"credential", b"key", b"auth")
_NAME_START = rb"[A-Za-z0-9_.-]{0,80}\Z"
_NAME_END = rb"(?:orization|ord|d|s)?[\"' \t:=]"  # what may follow the word


_Compiled = tuple[list[tuple[re.Pattern[bytes], bytes, bytes]], re.Pattern[bytes],
                  re.Pattern[bytes], re.Pattern[bytes]]
_compiled_once: list[_Compiled] = []


def _compiled() -> _Compiled:
    if not _compiled_once:
        _compiled_once.append(([(re.compile(p), r, t) for p, r, t in _SHAPES], re.compile(_NAMED),
                               re.compile(_NAME_START), re.compile(_NAME_END)))
    return _compiled_once[0]


def redact_text(data: bytes) -> bytes:
    """``data`` with secret-looking values replaced by ``***`` (see above). Whole blocks of
    output at a time, at well over 50 MB/s for ordinary training logs: each pattern runs only
    where its literal occurs."""
    shapes, named, name_start, name_end = _compiled()
    for pattern, repl, literal in shapes:
        if literal in data:
            data = pattern.sub(repl, data)
    low = data.lower()
    starts = set()
    for word in _NAME_WORDS:
        i = low.find(word)
        while i >= 0:
            if name_end.match(low, i + len(word)):
                m = name_start.search(data, max(0, i - 80), i)
                if m is not None:
                    starts.add(m.start())
            i = low.find(word, i + len(word))
    if not starts:
        return data
    out, done = [], 0
    for start in sorted(starts):
        if start < done:
            continue
        m = named.match(data, start)
        if m is not None:
            out += [data[done:m.start("val")], b"***"]
            done = m.end()
    return b"".join(out) + data[done:] if out else data


def redact_env(env: dict[str, str]) -> dict[str, str]:
    return {k: (REDACTED if is_secret_name(k) else v) for k, v in env.items()}


def process_start() -> float | None:
    """This process's start time (s since epoch): with the pid, it tells a reader whether the
    process that owns a run is still the one running (pids are reused)."""
    if os.path.exists("/proc/self/stat"):
        # what psutil's create_time() reads on Linux: the start in clock ticks after boot,
        # plus the boot time; read here, a training process need not import psutil for it
        try:
            with open("/proc/self/stat", "rb") as f:
                ticks = int(f.read().rpartition(b")")[2].split()[19])
            with open("/proc/stat", "rb") as f:
                btime = next(float(line.split()[1]) for line in f if line.startswith(b"btime"))
            return ticks / os.sysconf("SC_CLK_TCK") + btime
        except (OSError, ValueError, IndexError, StopIteration):
            pass
    import psutil  # not at import time: `import tracklab` stays light

    try:
        return float(psutil.Process().create_time())
    except psutil.Error:
        return None
