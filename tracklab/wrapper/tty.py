"""The streams a captured child writes to: a pseudo-terminal for each of the wrapper's streams
that is a terminal (so the child still sees a TTY, with the outer terminal's settings and size,
kept in step on SIGWINCH), a pipe otherwise; and the write that passes output on unchanged.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import termios

_F_SETPIPE_SZ = 1031  # Linux: a larger pipe lets the child run ahead of a busy reader


class Channel:
    """One of the child's output streams: where we read it and where we pass it on."""

    def __init__(self, stream: str, out_fd: int) -> None:
        self.stream = stream
        self.out_fd = out_fd
        self.pty = os.isatty(out_fd)
        if self.pty:
            self.read_fd, self.child_fd = os.openpty()
            mirror_terminal(out_fd, self.child_fd)
        else:
            self.read_fd, self.child_fd = os.pipe()
            with contextlib.suppress(OSError):
                fcntl.fcntl(self.child_fd, _F_SETPIPE_SZ, 1 << 20)
        self.passthrough = True
        self.broken = False  # passing on failed with EPIPE: the reader closes read_fd
        self.gap = 0  # lines dropped since the last chunk that made it into the queue


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BlockingIOError:  # someone made our terminal non-blocking: wait, don't drop
            select.select([], [fd], [], 1.0)
            continue
        view = view[n:]


def mirror_terminal(outer: int, inner: int) -> None:
    """Give the child's pty the outer terminal's settings and size, minus output processing
    (the outer terminal does that, so bytes pass through exactly once, unchanged)."""
    try:
        attrs = termios.tcgetattr(outer)
    except termios.error:
        attrs = termios.tcgetattr(inner)
    attrs[1] &= ~termios.OPOST
    with contextlib.suppress(termios.error):
        termios.tcsetattr(inner, termios.TCSANOW, attrs)
    copy_winsize(outer, inner)


def copy_winsize(outer: int, inner: int) -> None:
    try:
        size = fcntl.ioctl(outer, termios.TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(inner, termios.TIOCSWINSZ, size)
    except OSError:
        pass
