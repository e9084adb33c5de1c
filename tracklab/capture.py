"""Console capture for ``tracklab run``: the child's output reaches the terminal unchanged, and a
copy reaches the run store, capped, in batches, never at the child's expense.

Two threads, so that the store can never slow the child:

* the **reader** waits on the child's stdout and stderr (a pseudo-terminal for each of the
  wrapper's streams that is a terminal, so the child still sees a TTY; a pipe otherwise), writes
  every chunk to the wrapper's own stdout/stderr first, byte for byte, then appends it to a queue
  bounded at :data:`QUEUE_BYTES`. When the queue is full the chunk is not stored, and its lines are
  counted as ``dropped``; the terminal still gets it.
* the **writer** wakes every :data:`WRITE_EVERY_S` (sooner when :data:`BATCH_BYTES` wait), cuts
  the chunks into lines and writes them in one transaction with its own connection.

What is stored, per line: the time it completed, its stream (``stdout``/``stderr``) and its text
(UTF-8, undecodable bytes replaced, ANSI colour codes kept). A line rewritten in place with ``\\r``
(a progress bar) is stored as its last non-empty segment, i.e. the state it was left in. A line
longer than :data:`MAX_LINE` bytes is stored in pieces. Values of secret-looking command-line
flags and environment variables (at least :data:`MIN_SECRET` characters) are replaced by
``***`` in the store, not on the terminal.

The cap (``--capture-limit``, default :data:`DEFAULT_LIMIT` bytes): the first half is kept as it
comes; after that the store holds a rolling tail of the last half, behind one marker row (stream
``tracklab``) that says how many lines were left out there. So a run's first and last lines are
always there, and ``tracklab logs --follow`` still sees new lines after the head is full.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import os
import select
import signal
import sqlite3
import termios
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

from .errors import StoreError

DEFAULT_LIMIT = 10 * 1024 * 1024  # bytes of line text stored per run (first half + last half)
QUEUE_BYTES = 16 * 1024 * 1024  # in flight between reader and writer before lines are dropped
BATCH_BYTES = 1024 * 1024  # wake the writer early when this much is waiting
WRITE_EVERY_S = 0.3  # one transaction per this interval at most (logs --follow sees it soon)
MAX_LINE = 64 * 1024  # a longer line (no newline) is stored in pieces of this size
MIN_SECRET = 6  # shorter secret values are not searched for (they would garble ordinary text)
SMALL_READ = 1024  # a read shorter than this means the reader is ahead of the child...
GATHER_S = 0.0002  # ...so it waits this long before the next (fewer wake-ups, less CPU)
MARKER = "tracklab"  # the stream of the marker row where the middle of a long output was cut
_READ = 1 << 16
_F_SETPIPE_SZ = 1031  # Linux: a larger pipe lets the child run ahead of a busy reader


class _Channel:
    """One of the child's output streams: where we read it and where we pass it on."""

    def __init__(self, stream: str, out_fd: int) -> None:
        self.stream = stream
        self.out_fd = out_fd
        self.pty = os.isatty(out_fd)
        if self.pty:
            self.read_fd, self.child_fd = os.openpty()
            _mirror_terminal(out_fd, self.child_fd)
        else:
            self.read_fd, self.child_fd = os.pipe()
            with contextlib.suppress(OSError):
                fcntl.fcntl(self.child_fd, _F_SETPIPE_SZ, 1 << 20)
        self.passthrough = True
        self.gap = 0  # lines dropped since the last chunk that made it into the queue


class _Line:
    """The unfinished line of one stream, with ``\\r`` rewrites collapsed as they come."""

    __slots__ = ("buf",)

    def __init__(self) -> None:
        self.buf = b""

    def feed(self, data: bytes) -> bytes | None:
        """Add bytes without a newline; returns a piece to store when the line grew too long."""
        buf = self.buf + data
        cr = buf.rfind(b"\r")
        if cr > 0:  # keep the last finished segment and what follows the last \r
            buf = final_segment(buf[:cr]) + buf[cr:]
        if len(buf) > MAX_LINE:
            self.buf = b""
            return final_segment(buf)
        self.buf = buf
        return None

    def end(self, data: bytes) -> bytes:
        buf, self.buf = self.buf + data, b""
        return final_segment(buf)


def final_segment(raw: bytes) -> bytes:
    """What a line that was rewritten with ``\\r`` shows last: its last non-empty segment."""
    if b"\r" not in raw:
        return raw
    raw = raw.rstrip(b"\r")  # CRLF endings
    for seg in reversed(raw.split(b"\r")):
        if seg:
            return seg
    return b""


class ConsoleCapture:
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
        self.secrets = sorted({s for s in secrets if len(s) >= MIN_SECRET}, key=len, reverse=True)
        self.channels: list[_Channel] = []
        self._queue: collections.deque[tuple[float, str, bytes, int]] = collections.deque()
        self._queued = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._final = threading.Event()
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
        self._tail: collections.deque[tuple[int, int]] = collections.deque()  # (rowid, size)
        self._tail_bytes = 0
        self._marker: tuple[int, str] | None = None  # (rowid, text) once written
        self._partial = {"stdout": _Line(), "stderr": _Line()}

    # -- the wrapper's side ---------------------------------------------------------------------

    def popen_kwargs(self) -> dict[str, Any]:
        """``stdout``/``stderr`` for ``subprocess.Popen``: a pty or pipe each, or ``{}``."""
        if not self.enabled:
            return {}
        try:
            for stream, fd in (("stdout", 1), ("stderr", 2)):
                self.channels.append(_Channel(stream, fd))
            self._wake_r, self._wake_w = os.pipe()
        except OSError:  # out of fds or ptys: run uncaptured rather than not at all
            self._close_fds(child_side=True)
            self.enabled = False
            return {}
        return {"stdout": self.channels[0].child_fd, "stderr": self.channels[1].child_fd}

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
            "lines": self._head_lines + len(self._tail),
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
                _copy_winsize(ch.out_fd, ch.read_fd)
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
                if small and drain_until is None:
                    # A trickle (a line per write): let a few lines gather instead of waking
                    # for each. A pty holds ~20 KB, so a flood meanwhile does not block the child.
                    time.sleep(GATHER_S)
        finally:
            for ch in self.channels:
                with contextlib.suppress(OSError):
                    os.close(ch.read_fd)
            self._wake.set()

    def _pass(self, ch: _Channel, data: bytes) -> None:
        if ch.passthrough:
            try:
                _write_all(ch.out_fd, data)
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
            if self._queued >= BATCH_BYTES:
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

    def _trim_front(self, items: collections.deque[tuple[float, str, bytes, int]]
                    ) -> dict[str, bool]:
        total = sum(len(it[2]) for it in items)
        cut = {}
        while items and total - len(items[0][2]) >= self._tail_cap:
            _t, stream, data, _gap = items.popleft()
            total -= len(data)
            self._trimmed[0] += data.count(b"\n")
            self._trimmed[1] += len(data)
            cut[stream] = not data.endswith(b"\n")
        return cut

    # -- writer thread --------------------------------------------------------------------------

    def _write_loop(self) -> None:
        from .store import Shard

        shard: Shard | None = None
        try:
            assert self.shard_path is not None
            shard = Shard(self.shard_path)
        except StoreError:
            shard = None
        try:
            while True:
                final = self._final.is_set()
                if not final:
                    self._wake.wait(WRITE_EVERY_S)
                    self._wake.clear()
                with self._lock:
                    items, self._queue = self._queue, collections.deque()
                    self._queued = 0
                    cut, self._cut = self._cut, {}
                if self._in_tail:  # only the batch's last tail_cap bytes can stay: skip the rest
                    cut.update(self._trim_front(items))
                if cut:  # the head is over; lines lost their beginning or their end
                    self._in_tail = True
                    for stream, mid_line in cut.items():
                        self._partial[stream].buf = b""
                        if mid_line:
                            self._resync.add(stream)
                if final:  # lines dropped after the last chunk that got through
                    with self._lock:
                        for ch in self.channels:
                            if ch.gap:
                                items.append((time.time(), ch.stream, b"", ch.gap))
                                ch.gap = 0
                raw = list(self._lines(items))
                if final:
                    raw.extend((time.time(), s, p.end(b"")) for s, p in self._partial.items()
                               if p.buf)
                took = time.monotonic()
                self._store(shard, raw, final)
                if final:
                    return
                took = time.monotonic() - took
                if self._in_tail and took * 2 > WRITE_EVERY_S:
                    # a flood past the head: rewriting the rolling tail is all the writer does,
                    # so it rests twice as long as it worked (less CPU taken from the training)
                    self._final.wait(took * 2)
        finally:
            if shard is not None:
                shard.close()

    def _lines(self, items: Iterable[tuple[float, str, bytes, int]]
               ) -> Iterator[tuple[float, str, bytes]]:
        for t, stream, data, gap in items:
            if stream in self._resync:  # skip the rest of a line whose start was cut
                nl = data.find(b"\n")
                self._trimmed[1] += len(data) if nl < 0 else nl + 1
                if nl < 0:
                    continue
                self._trimmed[0] += 1
                self._resync.discard(stream)
                data = data[nl + 1:]
            if gap:
                yield t, stream, (f"[tracklab: {gap:,} line(s) not stored here: the store did "
                                  "not keep up]").encode()
            part = self._partial[stream]
            lines = data.split(b"\n")
            last = lines.pop()
            if lines:
                yield t, stream, part.end(lines[0])
                for raw in lines[1:]:
                    yield t, stream, final_segment(raw) if b"\r" in raw else raw
            piece = part.feed(last)
            if piece is not None:
                yield t, stream, piece

    def _store(self, shard: Any, raw: list[tuple[float, str, bytes]], final: bool) -> None:
        """Write one batch: head rows, the marker (once), tail rows and the tail's evictions
        (rows by row id, so no statement scans the run's rows), in one transaction."""
        head, tail, evict = self._cap(raw)
        num = self.run_num
        rows = [(num, t, s, self._text(line)) for t, s, line in head]
        new_marker = self._in_tail and self._marker is None and bool(tail or self.trimmed)
        if new_marker:
            when = tail[0][0] if tail else time.time()
            rows.append((num, when, MARKER, self._marker_text()))
        rows += [(num, t, s, self._text(line)) for t, s, line in tail]
        marker = None
        if self._marker is not None:
            if final and not self.trimmed:
                marker = (self._marker[0], "")  # nothing was left out after all
            elif self.trimmed and self._marker[1] != self._marker_text():
                marker = (self._marker[0], self._marker_text())
        upto = max((rowid for rowid, _n in evict), default=None)
        if not (rows or marker or upto):
            return
        try:
            if shard is None:
                raise StoreError(str(self.shard_path), "not open")
            last = shard.write_console(
                rows, run=num, marker=marker,
                evict=None if upto is None or self._marker is None else (self._marker[0], upto))
        except (StoreError, sqlite3.Error):
            self._lost[1] += len(head) + len(tail)
            self._lost_bytes[1] += sum(len(r[2]) for r in head) + sum(len(r[2]) for r in tail)
            self._tail.extend((0, len(r[2]) + 1) for r in tail)  # sizes still count
            return
        first = last - len(rows) + 1
        if new_marker:
            self._marker = (first + len(head), rows[len(head)][3])
        elif marker is not None:
            self._marker = (marker[0], marker[1]) if marker[1] else None
        self._tail.extend((first + len(rows) - len(tail) + i, len(r[2]) + 1)
                          for i, r in enumerate(tail))

    def _marker_text(self) -> str:
        if not self.trimmed:
            return f"[tracklab: output from here on is kept as a rolling tail of " \
                   f"{self._tail_cap:,} bytes]"
        cut = self._trimmed[1] + self._skipped[1]
        return (f"[tracklab: {self.trimmed:,} line(s), {cut:,} bytes, left out here: a run "
                f"keeps the first and last {self.limit // 2:,} bytes of its output "
                "(--capture-limit)]")

    def _cap(self, raw: list[tuple[float, str, bytes]]) -> tuple[
            list[tuple[float, str, bytes]], list[tuple[float, str, bytes]], list[tuple[int, int]]]:
        """Split a batch into head rows and surviving tail rows; pop the stored tail rows
        (row id, size) that must go to keep the tail under its cap."""
        i = 0
        if not self._in_tail:
            left = self._head_left
            for _t, _s, line in raw:
                n = len(line) + 1
                if n > left:
                    self._in_tail = True
                    break
                left -= n
                i += 1
            self._head_left = left
            self._head_lines += i
        head, tail = raw[:i], raw[i:]
        if not tail:
            return head, tail, []
        keep, j = 0, len(tail)
        while j > 0 and keep + len(tail[j - 1][2]) + 1 <= self._tail_cap:
            j -= 1
            keep += len(tail[j][2]) + 1
        if j:
            self._trimmed[0] += j
            self._trimmed[1] += sum(len(r[2]) + 1 for r in tail[:j])
            tail = tail[j:]
        evict = []
        while self._tail and self._tail_bytes + keep > self._tail_cap:
            rowid, n = self._tail.popleft()
            self._tail_bytes -= n
            evict.append((rowid, n))
        self._trimmed[0] += len(evict)
        self._trimmed[1] += sum(n for _r, n in evict)
        self._tail_bytes += keep
        return head, tail, evict

    def _text(self, line: bytes) -> str:
        text = line.decode("utf-8", "replace")
        for s in self.secrets:
            if s in text:
                text = text.replace(s, "***")
        return text


def secret_values(argv: list[str], environ: dict[str, str] | None = None) -> list[str]:
    """Values that must not reach the store: those of secret-looking flags and variables."""
    from . import _env

    out = []
    redacted = _env.redact_argv(argv)
    for word, shown in zip(argv, redacted):
        if word != shown:
            out.append(word.partition("=")[2] if "=" in shown else word)
    for name, value in (environ or {}).items():
        if _env.is_secret_name(name):
            out.append(value)
    return [v for v in out if len(v) >= MIN_SECRET]


# -- terminals ---------------------------------------------------------------------------------


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BlockingIOError:  # someone made our terminal non-blocking: wait, don't drop
            select.select([], [fd], [], 1.0)
            continue
        view = view[n:]


def _mirror_terminal(outer: int, inner: int) -> None:
    """Give the child's pty the outer terminal's settings and size, minus output processing
    (the outer terminal does that, so bytes pass through exactly once, unchanged)."""
    try:
        attrs = termios.tcgetattr(outer)
    except termios.error:
        attrs = termios.tcgetattr(inner)
    attrs[1] &= ~termios.OPOST
    with contextlib.suppress(termios.error):
        termios.tcsetattr(inner, termios.TCSANOW, attrs)
    _copy_winsize(outer, inner)


def _copy_winsize(outer: int, inner: int) -> None:
    try:
        size = fcntl.ioctl(outer, termios.TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(inner, termios.TIOCSWINSZ, size)
    except OSError:
        pass
