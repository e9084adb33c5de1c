"""The writer half of :class:`~tracklab.capture.ConsoleCapture`: what reaches the run store.

The writer thread wakes every :data:`WRITE_EVERY_S`, cuts the queued chunks into lines (a line
rewritten with ``\\r`` becomes its last non-empty segment, one longer than :data:`MAX_LINE` is
stored in pieces), keeps the stored text under the cap (the first half as it comes, then a rolling
tail behind one :data:`MARKER` row) and writes each batch in one transaction with its own
connection.
"""

from __future__ import annotations

import collections
import sqlite3
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from .errors import StoreError

if TYPE_CHECKING:
    import threading

    from .tty import Channel

WRITE_EVERY_S = 0.3  # one transaction per this interval at most (logs --follow sees it soon)
MAX_LINE = 64 * 1024  # a longer line (no newline) is stored in pieces of this size
MARKER = "tracklab"  # the stream of the marker row where the middle of a long output was cut


class Line:
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


class ConsoleStoreWriter:
    """Mixin of :class:`~tracklab.capture.ConsoleCapture` with its writer thread
    (:meth:`_write_loop`) and the cap; the state is ConsoleCapture's, set in its ``__init__``."""

    # ConsoleCapture's state that the methods here use, declared for the type checker only
    # (annotations without a value: nothing is set on the class).
    shard_path: str | None
    run_num: int | None
    limit: int
    secrets: list[str]
    channels: list[Channel]
    _queue: collections.deque[tuple[float, str, bytes, int]]
    _queued: int
    _lock: threading.Lock
    _wake: threading.Event
    _final: threading.Event
    _lost: list[int]
    _lost_bytes: list[int]
    _trimmed: list[int]
    _skipped: list[int]
    _cut: dict[str, bool]
    _resync: set[str]
    _head_lines: int
    _head_left: int
    _tail_cap: int
    _in_tail: bool
    _tail: collections.deque[tuple[int, int]]
    _tail_bytes: int
    _marker: tuple[int, str] | None
    _partial: dict[str, Line]

    if TYPE_CHECKING:
        @property
        def trimmed(self) -> int:
            """Lines left out in the middle (ConsoleCapture's property)."""

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
