"""Console capture for ``tracklab run``: the child's output reaches the terminal unchanged, and a
copy reaches the run store, capped, in batches, never at the child's expense.

Two threads, so that the store can never slow the child:

* the **reader** waits on the child's output (a pseudo-terminal where the wrapper's stream is a
  terminal, so the child still sees a TTY; a pipe otherwise), writes every chunk to the wrapper's
  own stdout/stderr first, byte for byte, then appends it to a queue bounded at
  :data:`QUEUE_BYTES`. When the queue is full the chunk is not stored, and its lines are counted
  as ``dropped``; the terminal still gets it. Once it has drained its input it naps
  :data:`GATHER_S` (a pty holds ~20 KB, so a child printing even 10 MB/s never waits on it).
* the **writer** (:mod:`tracklab.wrapper.console_store`) wakes every
  :data:`~tracklab.wrapper.console_store.WRITE_EVERY_S` (sooner when :data:`BATCH_BYTES` of the head wait),
  cuts the chunks at newlines and writes them in one transaction with its own connection.

When the wrapper's stdout and stderr are one terminal, pipe or file (``2>&1``), the child gets one
pty or pipe for both, so their order is kept exactly (two would let the kernel reorder them); its
lines are stored with the stream ``output``. Otherwise each stream has its own.

What is stored: rows of the lines of one stream that arrived together (see
:mod:`tracklab.wrapper.console_store`), each with the time it was read and its stream (``stdout``,
``stderr`` or ``output``), as text (UTF-8, undecodable bytes replaced, ANSI colour codes kept).
A line rewritten in place with ``\\r`` (a progress bar) is stored as its last non-empty segment,
i.e. the state it was left in. A line longer than :data:`~tracklab.wrapper.console_store.MAX_LINE` bytes
is stored in pieces. Values of secret-looking command-line flags and environment variables (at
least :data:`MIN_SECRET` characters), token shapes and values of secret-looking names in the text
(:func:`tracklab._env.redact_text`) are replaced by ``***`` in the store, not on the terminal.

The cap (``--capture-limit``, default :data:`DEFAULT_LIMIT` bytes): the first half is kept as it
comes; after that the store holds a rolling tail of the last half, behind one marker row (stream
``tracklab``) that says how many lines were left out there. So a run's first and last lines are
there (a line, or a 64 KiB piece of a longer one, is kept whole or left out: a tiny cap keeps
none), and ``tracklab logs --follow`` still sees new lines after the head is full. While a
flood of output fills the tail, the tail is written once a second (each write replaces it).
"""

from __future__ import annotations

import collections
import contextlib
import os
import select
import signal
import threading
import time
from collections.abc import Iterable
from typing import Any

from tracklab.store.schema import BOTH
from tracklab.wrapper import defaults
from tracklab.wrapper.console_store import ConsoleStoreWriter, Line
from tracklab.wrapper.tty import Channel, copy_winsize, write_all

DEFAULT_LIMIT = defaults.CAPTURE_LIMIT  # bytes of line text stored per run (first half + last half)
QUEUE_BYTES = 16 * 1024 * 1024  # in flight between reader and writer before lines are dropped
BATCH_BYTES = 1024 * 1024  # wake the writer early when this much of the head waits
MIN_SECRET = 6  # shorter secret values are not searched for (they would garble ordinary text)
SMALL_READ = 4000  # a shorter read drained its pty (one returns at most 4 KB) or pipe...
GATHER_S = 0.001  # ...so the reader waits this long before the next (fewer wake-ups, less CPU)
_READ = 1 << 16


class ConsoleCapture(ConsoleStoreWriter):
    """Tee the child's stdout/stderr to the terminal and into run ``run_num`` of a shard.

    Use: ``kw = capture.popen_kwargs()`` (merged into ``Popen``), ``capture.start(child)`` right
    after it, ``capture.stop()`` once the child has exited. With ``enabled=False``, no store, or a
    ``limit`` of 0, every method is a no-op and the child inherits the wrapper's streams.
    """

    def __init__(self, shard_path: str | None, run_num: int | None, limit: int = DEFAULT_LIMIT,
                 enabled: bool = True, secrets: Iterable[str] = ()) -> None:
        self.enabled = bool(enabled and shard_path and run_num is not None and limit > 0)
        self.shard_path = shard_path
        self.run_num = run_num
        self.limit = int(limit)
        self.secrets = sorted({s.encode() for s in secrets if len(s) >= MIN_SECRET}, key=len,
                              reverse=True)  # longest first: one that holds another goes whole
        self.channels: list[Channel] = []
        self._queue: collections.deque[tuple[float, str, bytes, int]] = collections.deque()
        self._queued = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._final = threading.Event()
        self._pending = threading.Event()  # set while output waits for the writer
        self._wake_r = self._wake_w = -1
        self._reader: threading.Thread | None = None
        self._writer: threading.Thread | None = None
        self._child: Any = None
        self._old_winch: Any = None
        self._winch = False
        self._stopped = False
        # lines lost because the queue was full (reader) or a write failed (writer)
        self._lost = [0, 0]
        self._lost_bytes = [0, 0]
        self._trimmed = [0, 0]  # lines, bytes left out in the middle to stay under the limit
        self._skipped = [0, 0]  # the same, cut by the reader from a lagging writer's queue
        # streams whose queued output lost a piece to _skip_oldest -> it ended inside a line
        self._cut: dict[str, bool] = {}
        self._offset = 0  # bytes ever queued (the queue's oldest byte is at _offset - _queued)
        self._resync: set[str] = set()  # streams whose next chunk starts inside a cut line
        self._head_lines = 0
        self._head_left = self.limit // 2
        self._tail_cap = self.limit - self.limit // 2
        self._in_tail = False
        # the stored tail's rows: (rowid, bytes, lines)
        self._tail: collections.deque[tuple[int, int, int]] = collections.deque()
        self._tail_bytes = 0
        self._tail_lines = 0
        self._marker: tuple[int, str] | None = None  # (rowid, text) once written
        self._partial = {stream: Line(self.secrets) for stream in ("stdout", "stderr", BOTH)}

    # -- the wrapper's side ---------------------------------------------------------------------

    def popen_kwargs(self) -> dict[str, Any]:
        """``stdout``/``stderr`` for ``subprocess.Popen``: a pty or pipe each, or ``{}``."""
        if not self.enabled:
            return {}
        try:
            if same_place(1, 2):  # one terminal or pipe: one channel keeps the two in order
                self.channels.append(Channel(BOTH, 1))
            else:
                for stream, fd in (("stdout", 1), ("stderr", 2)):
                    self.channels.append(Channel(stream, fd))
            self._wake_r, self._wake_w = os.pipe()
        except OSError:  # out of fds or ptys: run uncaptured rather than not at all
            self._close_fds(child_side=True)
            self.enabled = False
            return {}
        return {"stdout": self.channels[0].child_fd, "stderr": self.channels[-1].child_fd}

    def start(self, child: Any) -> None:
        """Start the threads once ``child`` (a ``Popen``) holds its ends of the streams."""
        if not self.enabled or self._reader is not None:
            return
        self._child = child
        for ch in self.channels:
            os.close(ch.child_fd)
            ch.child_fd = -1
        self._writer = threading.Thread(target=self._write_loop, name="tracklab-console-writer",
                                        daemon=True)
        self._reader = threading.Thread(target=self._read_loop, name="tracklab-console-reader",
                                        daemon=True)
        self._writer.start()
        self._reader.start()
        if any(ch.pty for ch in self.channels) and \
                threading.current_thread() is threading.main_thread():
            self._old_winch = signal.signal(signal.SIGWINCH, self._on_winch)
            self._winch = True

    def stop(self, timeout: float = 2.0) -> dict[str, Any]:
        """Drain what the child wrote, store it, and stop (bounded by ``timeout`` seconds).

        Safe to call more than once, and without :meth:`start` (closes what was opened).
        """
        if not self.enabled or self._stopped:
            return self.stats()
        self._stopped = True
        deadline = time.monotonic() + timeout
        if self._winch:
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(signal.SIGWINCH, self._old_winch or signal.SIG_DFL)
        if self._reader is None:  # never started (Popen failed)
            self._close_fds(child_side=True)
            return self.stats()
        # EOF normally comes at once; a grandchild that still holds the stream delays it forever
        self._reader.join(max(0.0, timeout * 0.4))
        if self._reader.is_alive():
            with contextlib.suppress(OSError):
                os.write(self._wake_w, b"x")
            self._reader.join(max(0.0, deadline - time.monotonic() - timeout * 0.3))
        self._final.set()
        self._pending.set()
        self._wake.set()
        assert self._writer is not None
        self._writer.join(max(0.0, deadline - time.monotonic()))
        if not self._reader.is_alive():
            for fd in (self._wake_r, self._wake_w):
                with contextlib.suppress(OSError):
                    os.close(fd)
        return self.stats()

    @property
    def trimmed(self) -> int:
        """Lines left out of the middle of the output to stay under the limit."""
        return self._trimmed[0] + self._skipped[0]

    @property
    def dropped(self) -> int:
        """Lines the store did not get (queue full, slow disk, failed write); the terminal did."""
        return self._lost[0] + self._lost[1]

    def stats(self) -> dict[str, Any]:
        """For the run's summary: lines/bytes stored, dropped (lost) and trimmed (cap)."""
        if not self.enabled:
            return {"captured": False}
        return {
            "captured": True, "limit": self.limit,
            "lines": self._head_lines + self._tail_lines,
            "bytes": self.limit // 2 - self._head_left + self._tail_bytes,
            "dropped": self.dropped, "dropped_bytes": self._lost_bytes[0] + self._lost_bytes[1],
            "trimmed": self.trimmed, "trimmed_bytes": self._trimmed[1] + self._skipped[1],
            "terminal": [ch.stream for ch in self.channels if ch.pty],
            "complete": self._writer is not None and not self._writer.is_alive(),
        }

    def _close_fds(self, child_side: bool) -> None:
        for ch in self.channels:
            for fd in (ch.read_fd, ch.child_fd if child_side else -1):
                if fd >= 0:
                    with contextlib.suppress(OSError):
                        os.close(fd)
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)

    def _on_winch(self, signum: int, frame: Any) -> None:
        for ch in self.channels:
            if ch.pty:
                copy_winsize(ch.out_fd, ch.read_fd)
        child = self._child
        # the child got the terminal's SIGWINCH too, maybe before its pty had the new size
        if child is not None and child.returncode is None:
            with contextlib.suppress(OSError):
                os.kill(child.pid, signal.SIGWINCH)
        old = self._old_winch
        if callable(old):
            old(signum, frame)

    # -- reader thread --------------------------------------------------------------------------

    def _read_loop(self) -> None:
        poller = select.poll()
        by_fd = {ch.read_fd: ch for ch in self.channels}
        for fd in by_fd:
            poller.register(fd, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        drain_until: float | None = None
        try:
            while by_fd:
                if drain_until is not None and time.monotonic() > drain_until:
                    break
                events = poller.poll(None if drain_until is None else 0)
                if not events:
                    break  # draining after stop(): nothing more is waiting
                small = True
                for fd, _ev in events:
                    if fd == self._wake_r:
                        poller.unregister(fd)
                        drain_until = time.monotonic() + 0.5
                        continue
                    ch = by_fd[fd]
                    try:
                        data = os.read(fd, _READ)
                    except OSError:  # EIO: every holder of the pty's other end has closed it
                        data = b""
                    if not data:
                        poller.unregister(fd)
                        del by_fd[fd]
                        continue
                    self._pass(ch, data)
                    small = small and len(data) < SMALL_READ
                    if ch.broken:  # our reader is gone: so is the child's, as without us
                        poller.unregister(fd)
                        del by_fd[fd]
                        with contextlib.suppress(OSError):
                            os.close(fd)
                        ch.read_fd = -1
                if small and drain_until is None:
                    # A trickle (a line per write): let a few lines gather instead of waking
                    # for each. A pty holds ~20 KB, so a flood meanwhile does not block the child.
                    time.sleep(GATHER_S)
        finally:
            for ch in self.channels:
                if ch.read_fd >= 0:
                    with contextlib.suppress(OSError):
                        os.close(ch.read_fd)
            self._wake.set()

    def _pass(self, ch: Channel, data: bytes) -> None:
        if ch.passthrough:
            try:
                write_all(ch.out_fd, data)
            except BrokenPipeError:  # `tracklab run -- CMD | head`: head has exited. Stop
                ch.passthrough = False  # reading, so CMD gets SIGPIPE/EPIPE as it would alone
                ch.broken = not ch.pty
            except OSError:  # our own stdout went away: keep capturing, stop echoing
                ch.passthrough = False
        now = time.time()
        with self._lock:
            if self._queued + len(data) > QUEUE_BYTES:
                self._skip_oldest(len(data))
            if self._queued + len(data) > QUEUE_BYTES:
                n = data.count(b"\n") or 1
                ch.gap += n
                self._lost[0] += n
                self._lost_bytes[0] += len(data)
                return
            self._queue.append((now, ch.stream, data, ch.gap))
            ch.gap = 0
            self._queued += len(data)
            self._offset += len(data)
            if not self._pending.is_set():
                self._pending.set()
            if self._queued >= BATCH_BYTES and not self._in_tail:  # the head: store it all
                self._wake.set()

    def _skip_oldest(self, room: int) -> None:
        """Past the head, the oldest queued output would be cut from the middle anyway: cut it
        now (counted as trimmed), so a writer that lags behind costs neither head nor tail."""
        q = self._queue
        while q and self._queued + room > QUEUE_BYTES and \
                self._queued - len(q[0][2]) >= self._tail_cap and \
                (self._in_tail or self._offset - self._queued >= self.limit // 2):
            _t, stream, data, _gap = q.popleft()
            self._queued -= len(data)
            self._skipped[0] += data.count(b"\n")
            self._skipped[1] += len(data)
            self._cut[stream] = not data.endswith(b"\n")


def same_place(a: int, b: int) -> bool:
    """Whether descriptors ``a`` and ``b`` write to the same terminal, pipe or file."""
    try:
        return os.path.sameopenfile(a, b)
    except OSError:
        return False


def secret_values(argv: list[str], environ: dict[str, str] | None = None) -> list[str]:
    """Values that must not reach the store: those of secret-looking flags and variables."""
    from tracklab import _env

    out = []
    redacted = _env.redact_argv(argv)
    for word, shown in zip(argv, redacted):
        if word != shown:
            out.append(word.partition("=")[2] if "=" in shown else word)
    for name, value in (environ or {}).items():
        if _env.is_secret_name(name):
            out.append(value)
    return [v for v in out if len(v) >= MIN_SECRET]
