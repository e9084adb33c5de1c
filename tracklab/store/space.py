"""A full disk: said once, and never the reason a run's end goes unrecorded.

Once the store's filesystem is full, every writer fails (the wrapper's sampler, its console
capture, the SDK in each rank): the first failure in a process says so in one line and the rest
stay quiet. The SDK in a child of ``tracklab run`` leaves even that line to its wrapper (named in
:data:`ENV_WRAPPER`), which checks the free space itself when the child has ended. The wrapper
also holds back :data:`RESERVE_BYTES` in a hidden file of the store folder while the run lasts,
and gives them up when the run's end would not fit otherwise.
"""

from __future__ import annotations

import errno
import glob
import os
import threading

ENV_WRAPPER = "TRACKLAB_WRAPPER_PID"
RESERVE_BYTES = 256 * 1024  # the end of a run is a few pages of the shard and of its WAL
_PREFIX = ".tracklab-reserve-"
_FULL_ERRNOS = {errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}
_FULL_TEXTS = ("disk is full", "No space left", "File too large", "quota exceeded")

_lock = threading.Lock()
_reported = False


def is_full(exc: BaseException | str) -> bool:
    """Whether an error (a StoreError, sqlite3's, an OSError) says the disk or quota is full."""
    if isinstance(exc, OSError) and exc.errno in _FULL_ERRNOS:
        return True
    text = str(exc)
    return any(t in text for t in _FULL_TEXTS)


def under_wrapper() -> bool:
    """Whether this process runs under a live ``tracklab run``, which reports a full disk."""
    try:
        pid = int(os.environ.get(ENV_WRAPPER, ""))
        if pid <= 1:
            return False
        os.kill(pid, 0)
    except (ValueError, OSError):
        return False
    return True


def first_report() -> bool:
    """True the first time a full disk is to be reported in this process, False after."""
    global _reported
    with _lock:
        first, _reported = not _reported, True
    return first


def reported() -> bool:
    return _reported


def full_message(exc: BaseException | str) -> str:
    return (f"tracklab: warning: the store's disk is full ({exc}); samples, metrics and output "
            "are not recorded while it stays full, the job goes on")


def low(path: str) -> bool:
    """Whether the filesystem of ``path`` has less room than a few of a shard's pages."""
    try:
        st = os.statvfs(path)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < RESERVE_BYTES // 4


class Reserve:
    """``RESERVE_BYTES`` held back in ``store_dir`` for one wrapper, released for its run's end."""

    def __init__(self, store_dir: str) -> None:
        self.path = os.path.join(store_dir, f"{_PREFIX}{os.getpid()}")
        self.held = False

    def hold(self) -> None:
        _sweep(os.path.dirname(self.path))
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
        except OSError:
            return
        try:
            os.posix_fallocate(fd, 0, RESERVE_BYTES)
            self.held = True
        except (OSError, AttributeError):  # full already, or a filesystem without fallocate
            self.release()
        finally:
            os.close(fd)

    def release(self) -> None:
        self.held = False
        try:
            os.unlink(self.path)
        except OSError:
            pass


def _sweep(store_dir: str) -> None:
    """Remove the reserves of wrappers that died without releasing theirs (SIGKILL)."""
    for path in glob.glob(os.path.join(glob.escape(store_dir), _PREFIX + "*")):
        try:
            pid = int(path.rsplit("-", 1)[1])
            if pid == os.getpid():
                continue
            os.kill(pid, 0)
        except ProcessLookupError:
            try:
                os.unlink(path)
            except OSError:
                pass
        except (ValueError, OSError):
            continue
