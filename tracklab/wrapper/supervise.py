"""The wrapper's watch over its child: signals taken synchronously and forwarded once, a SIGKILL
deadline after a termination request, and job control (SIGTSTP, SIGCONT) passed on.

The signals are waited for with ``sigtimedwait``, but not CPython's: when the process is stopped
(SIGSTOP, Ctrl-Z) and continued after its timeout has passed, the call is interrupted (EINTR),
CPython sees the deadline gone and returns a ``struct_siginfo`` filled from an uninitialised
buffer: a random signal number (``os.kill`` then fails with EINVAL) or, worse, a stale copy of an
earlier signal (a second Ctrl-C that nobody typed). On glibc the C function is called directly
with a zeroed buffer, so an interrupted wait is simply "no signal"; elsewhere the Python call is
used and its answer checked against the set asked for.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

# SIGTSTP and SIGCONT too, so that a stop sent to the wrapper alone also stops its child
HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD, signal.SIGTSTP,
           signal.SIGCONT)
_SI_KERNEL = 0x80  # si_code of a signal the terminal driver sent (Ctrl-C goes to the whole group)
_POLL_S = 0.25


class Received(NamedTuple):
    signo: int
    code: int  # si_code: who sent it (SI_USER for kill(2), SI_KERNEL for the terminal driver)


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


_SIGSET_WORDS = 1024 // (8 * ctypes.sizeof(ctypes.c_ulong))  # glibc's sigset_t
_SIGINFO_INTS = 128 // ctypes.sizeof(ctypes.c_int)  # siginfo_t is 128 bytes on Linux


class SignalWaiter:
    """``wait(timeout)`` returns a :class:`Received` or None (timed out, or interrupted)."""

    def __init__(self, signals: Iterable[int]) -> None:
        self.signals = frozenset(int(s) for s in signals)
        self._fn = None
        try:
            fn = ctypes.CDLL(None, use_errno=True).sigtimedwait
        except (OSError, AttributeError):
            return
        bits = 8 * ctypes.sizeof(ctypes.c_ulong)
        self._set = (ctypes.c_ulong * _SIGSET_WORDS)()
        for s in self.signals:
            self._set[(s - 1) // bits] |= 1 << ((s - 1) % bits)
        self._info = (ctypes.c_int * _SIGINFO_INTS)()
        fn.restype = ctypes.c_int
        self._fn = fn

    def wait(self, timeout: float | None) -> Received | None:
        """``timeout`` None: until a signal comes."""
        if self._fn is None:
            if timeout is None:
                info: Any = signal.sigwaitinfo(self.signals)
            else:
                info = signal.sigtimedwait(self.signals, timeout)
            if info is None or info.si_signo not in self.signals:
                return None
            return Received(info.si_signo, info.si_code)
        ctypes.memset(self._info, 0, ctypes.sizeof(self._info))
        if timeout is None:
            ts = None  # a NULL timeout: sigtimedwait waits as sigwaitinfo does
        else:
            whole = int(timeout)
            ts = ctypes.byref(_Timespec(whole, int((timeout - whole) * 1e9)))
        got = self._fn(ctypes.byref(self._set), ctypes.byref(self._info), ts)
        if got <= 0 or got not in self.signals:  # EAGAIN (timed out) or EINTR (stopped)
            return None
        return Received(got, self._info[2])  # si_signo, si_errno, si_code


def supervise(child: subprocess.Popen[bytes], kill_after: float,
              tick: Callable[[], None] | None = None,
              warn: Callable[[str], None] = lambda msg: None,
              ) -> tuple[bool, str | None, list[int]]:
    """Wait for the child, taking signals synchronously; ``tick`` runs every _POLL_S or so.
    Returns (killed, requested, seen). Nothing that fails here (a signal that cannot be
    forwarded, a tick that raises) ends the wait: the child is reaped whatever happens.

    Without a ``tick`` and a kill pending, the wait has no timeout: the child's exit (SIGCHLD)
    or a signal to forward wakes it, and a silent run costs the main thread nothing."""
    waiter = SignalWaiter(HANDLED)
    state = _Supervision(child, kill_after, warn)
    # SIGCHLD ignored (inherited so): children are reaped unseen and no signal comes; poll
    poll = tick is not None or signal.getsignal(signal.SIGCHLD) == signal.SIG_IGN
    while child.poll() is None:
        timeout = _POLL_S if poll else None
        if state.kill_at is not None:
            left = max(0.0, state.kill_at - time.monotonic())
            timeout = left if timeout is None else min(timeout, left)
        info = waiter.wait(timeout)
        try:
            if tick is not None:
                tick()
            state.step(info)
        except Exception as exc:  # noqa: BLE001 - a fault of our own: say it once, go on
            state.warn_once("supervise", f"monitoring the command failed ({exc}); still "
                            "waiting for it to end")
    return state.killed, state.requested, state.seen


class _Supervision:
    """What the wrapper decided while its child ran: forwarded signals, SIGKILL deadline."""

    def __init__(self, child: subprocess.Popen[bytes], kill_after: float,
                 warn: Callable[[str], None]) -> None:
        self.child = child
        self.kill_after = kill_after
        self.warn = warn
        self.killed = False
        self.requested: str | None = None
        self.seen: list[int] = []
        self.kill_at: float | None = None
        self.interrupts = 0
        self._warned: set[str] = set()

    def warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            self.warn(message)

    def send(self, sig: int) -> None:
        try:
            _signal_child(self.child, sig)
        except OSError as exc:
            self.warn_once(f"signal {sig}", f"could not pass {signal.Signals(sig).name} on to "
                           f"the command ({exc.strerror or exc})")

    def step(self, info: Any) -> None:
        child = self.child
        if self.kill_at is not None and time.monotonic() >= self.kill_at and child.poll() is None:
            self.send(signal.SIGKILL)
            self.killed, self.kill_at = True, None
        if info is None or info.signo == signal.SIGCHLD:
            return
        sig = info.signo
        from_terminal = info.code == _SI_KERNEL and _same_group(child)
        if sig == signal.SIGTSTP:  # job control: the job stops, then so do we
            if not from_terminal:
                self.send(sig)
            _stop_self()
            return
        if sig == signal.SIGCONT:  # `fg`, `bg`, `kill -CONT`: resume a child still stopped
            if _stopped(child.pid):
                self.send(sig)
            return
        self.seen.append(sig)
        if sig == signal.SIGINT:
            self.interrupts += 1
            self.requested = self.requested or "interrupted"
            if self.interrupts >= 2:
                self.send(signal.SIGKILL)
                self.killed = True
                return
            # Ctrl-C in a terminal already reached the child (same foreground group): don't
            # deliver it twice. A kill(2) from elsewhere reached only us: forward it.
            if not from_terminal:
                self.send(sig)
        else:
            self.requested = self.requested or "terminated"
            if not from_terminal:
                self.send(sig)
            if self.kill_at is None and not self.killed:
                self.kill_at = time.monotonic() + self.kill_after


def _stop_self() -> None:
    """Stop as SIGTSTP's default action would (the shell sees "Stopped"); the signal is blocked
    for sigtimedwait, so unblock it for the moment it takes."""
    old = signal.signal(signal.SIGTSTP, signal.SIG_DFL)
    try:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGTSTP])
        os.kill(os.getpid(), signal.SIGTSTP)  # returns once continued
    finally:
        signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGTSTP])
        signal.signal(signal.SIGTSTP, old)


def _stopped(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rpartition(b")")[2].split()[0] in (b"T", b"t")
    except (OSError, IndexError):
        return True  # cannot tell: a SIGCONT to a running process does no harm


def _same_group(child: subprocess.Popen[bytes]) -> bool:
    try:
        return os.getpgid(child.pid) == os.getpgrp()
    except OSError:
        return True


def _signal_child(child: subprocess.Popen[bytes], sig: int) -> None:
    """Send ``sig`` to the child's own process group when it has one, else to the child."""
    try:
        if _same_group(child):
            os.kill(child.pid, sig)
        else:
            os.killpg(os.getpgid(child.pid), sig)
    except ProcessLookupError:
        pass
