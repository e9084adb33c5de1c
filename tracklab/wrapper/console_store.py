"""The writer half of :class:`~tracklab.wrapper.capture.ConsoleCapture`: what reaches the run store.

The writer thread sleeps until output comes, gathers more of it for :data:`WRITE_EVERY_S`, cuts
the queued chunks at their last newline (a line rewritten with ``\\r`` becomes its last non-empty
segment, one longer than :data:`MAX_LINE` is stored in pieces), keeps the stored text under the
cap (the first half as it comes, then a rolling tail behind one :data:`MARKER` row) and writes
each batch in one transaction with its own connection.

A stored row holds the lines of one stream that arrived together: up to :data:`ROW_BYTES`, read
within :data:`ROW_SPAN_S` of each other, joined by ``\\n``, with the time the last of them was
read. Every step works on whole chunks with bytes methods, never line by line in Python, so a
flood of short lines costs the wrapper (and the training beside it) little CPU.
"""

from __future__ import annotations

import collections
import sqlite3
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from tracklab._env import redact_text
from tracklab.errors import StoreError
from tracklab.store.schema import MARKER

if TYPE_CHECKING:
    import threading

    from tracklab.wrapper.tty import Channel

WRITE_EVERY_S = 0.3  # one transaction per this interval at most (logs --follow sees it soon)
TAIL_EVERY_S = 1.0  # ...and per this one while a flood past the head fills the rolling tail
FLOOD_BYTES = 1024 * 1024  # a batch this large past the head is a flood
MAX_LINE = 64 * 1024  # a longer line (no newline) is stored in pieces of this size
ROW_BYTES = 64 * 1024  # the most text one stored row holds (whole lines, joined by \n)
ROW_SPAN_S = 0.1  # lines read further apart than this go to separate rows (their own times)

Row = tuple[float, str, bytes, int]  # time, stream, text (lines joined by \n), number of lines


class Line:
    """The unfinished line of one stream, with ``\\r`` rewrites collapsed as they come."""

    __slots__ = ("buf", "hold", "secrets")

    def __init__(self, secrets: Iterable[bytes] = ()) -> None:
        self.buf = b""
        self.secrets = list(secrets)
        # a piece is cut this far before the end at least, where a secret may still be arriving
        self.hold = max(map(len, self.secrets), default=1) - 1

    def feed(self, data: bytes) -> bytes | None:
        """Add bytes without a newline; returns a piece to store when the line grew too long
        (redacted: a secret is never cut in two, which would hide it from the redaction)."""
        buf = self.buf + data
        cr = buf.rfind(b"\r")
        if cr > 0:  # keep the last finished segment and what follows the last \r
            buf = final_segment(buf[:cr]) + buf[cr:]
        if len(buf) > MAX_LINE + self.hold:  # whole pieces go; the rest waits for more
            buf = redact(buf, self.secrets)
            n = len(buf) - self.hold
            n -= n % MAX_LINE
            if n > 0:
                self.buf = buf[n:]
                return final_segment(buf[:n])
        self.buf = buf
        return None

    def end(self, data: bytes) -> bytes:
        buf, self.buf = self.buf + data, b""
        return final_segment(buf)


def redact(block: bytes, secrets: Iterable[bytes]) -> bytes:
    """``block`` with each secret replaced by ``***`` (longest first, as given): the values of
    the wrapper's secret-looking flags and variables, then whatever looks secret in the text
    itself (token shapes, values of secret-looking names: :func:`tracklab._env.redact_text`)."""
    for secret in secrets:
        if secret in block:
            block = block.replace(secret, b"***")
    return redact_text(block)


def final_segment(raw: bytes) -> bytes:
    """What a line that was rewritten with ``\\r`` shows last: its last non-empty segment."""
    if b"\r" not in raw:
        return raw
    raw = raw.rstrip(b"\r")  # CRLF endings
    for seg in reversed(raw.split(b"\r")):
        if seg:
            return seg
    return b""


def tidy(block: bytes) -> bytes:
    """Whole lines (joined by ``\\n``) as they are stored: each rewritten line as its last
    segment, each line longer than :data:`MAX_LINE` in pieces (one per line of the result)."""
    if b"\r" in block:
        block = _collapse(block)
    if len(block) > MAX_LINE:
        lines = block.split(b"\n")
        if max(map(len, lines)) > MAX_LINE:
            block = b"\n".join(line[i:i + MAX_LINE] if line else line
                               for line in lines for i in range(0, len(line) or 1, MAX_LINE))
    return block


def _collapse(block: bytes) -> bytes:
    """Each line of ``block`` with a ``\\r`` in it replaced by its final segment (linear)."""
    out, pos = [], 0
    while (cr := block.find(b"\r", pos)) >= 0:
        start = block.rfind(b"\n", 0, cr) + 1
        end = block.find(b"\n", cr)
        end = len(block) if end < 0 else end
        out += [block[pos:start], final_segment(block[start:end])]
        pos = end
    out.append(block[pos:])
    return b"".join(out)


def lines_in(text: bytes) -> int:
    return text.count(b"\n") + 1


def split_rows(t: float, stream: str, block: bytes) -> Iterator[Row]:
    """Cut tidy lines into rows of at most :data:`ROW_BYTES` (at newlines)."""
    while len(block) > ROW_BYTES:
        cut = block.rfind(b"\n", 0, ROW_BYTES + 1)
        if cut <= 0:  # not after tidy(); keeps the loop finite anyway
            cut = ROW_BYTES
        yield t, stream, block[:cut], lines_in(block[:cut])
        block = block[cut + 1:]
    yield t, stream, block, lines_in(block)


class ConsoleStoreWriter:
    """Mixin of :class:`~tracklab.wrapper.capture.ConsoleCapture` with its writer thread
    (:meth:`_write_loop`) and the cap; the state is ConsoleCapture's, set in its ``__init__``."""

    # ConsoleCapture's state that the methods here use, declared for the type checker only
    # (annotations without a value: nothing is set on the class).
    shard_path: str | None
    run_num: int | None
    limit: int
    secrets: list[bytes]
    channels: list[Channel]
    _queue: collections.deque[tuple[float, str, bytes, int]]
    _queued: int
    _lock: threading.Lock
    _wake: threading.Event
    _final: threading.Event
    _pending: threading.Event
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
    _tail: collections.deque[tuple[int, int, int]]
    _tail_bytes: int
    _tail_lines: int
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
        from tracklab.store import Shard

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
                    # a silent child costs no wake-up: wait for output, then gather more of it
                    self._pending.wait()
                    self._wake.wait(WRITE_EVERY_S)
                    self._wake.clear()
                    final = self._final.is_set()
                with self._lock:
                    items, self._queue = self._queue, collections.deque()
                    self._pending.clear()
                    arrived, self._queued = self._queued, 0
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
                blocks = list(self._blocks(items))
                if final:
                    blocks.extend((time.time(), s, self._tidy(p.end(b""))) for s, p in
                                  self._partial.items() if p.buf)
                self._store(shard, list(self._rows(blocks)), final)
                if final:
                    return
                if self._in_tail and arrived >= FLOOD_BYTES:
                    # a flood past the head: every write replaces the rolling tail, so write it
                    # once every TAIL_EVERY_S (the reader keeps only the newest tail meanwhile)
                    self._final.wait(TAIL_EVERY_S - WRITE_EVERY_S)
        finally:
            if shard is not None:
                shard.close()

    def _blocks(self, items: Iterable[tuple[float, str, bytes, int]]
                ) -> Iterator[tuple[float, str, bytes]]:
        """Each chunk's complete lines, tidied, as one block (the unfinished last line waits
        in the stream's :class:`Line` for the next chunk)."""
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
            last = data.rfind(b"\n")
            if last >= 0:
                first = data.find(b"\n")
                yield t, stream, self._tidy(part.end(data[:first]) + data[first:last])
                data = data[last + 1:]
            piece = part.feed(data) if data else None
            if piece is not None:
                yield t, stream, tidy(piece)

    @staticmethod
    def _rows(blocks: Iterable[tuple[float, str, bytes]]) -> Iterator[Row]:
        """Merge consecutive blocks of a stream into rows (:data:`ROW_BYTES`,
        :data:`ROW_SPAN_S`), each with the time of its last block."""
        parts: list[bytes] = []
        size, since, until, stream = 0, 0.0, 0.0, ""
        for t, s, block in blocks:
            if parts and (s != stream or t - since > ROW_SPAN_S or
                          size + len(block) + 1 > ROW_BYTES):
                yield from split_rows(until, stream, b"\n".join(parts))
                parts = []
            if not parts:
                size, since, stream = -1, t, s
            parts.append(block)
            size += len(block) + 1
            until = t
        if parts:
            yield from split_rows(until, stream, b"\n".join(parts))

    def _store(self, shard: Any, rows: list[Row], final: bool) -> None:
        """Write one batch: head rows, the marker (once), tail rows and the tail's evictions
        (rows by row id, so no statement scans the run's rows), in one transaction."""
        head, tail, evict = self._cap(rows)
        num = self.run_num
        out = [(num, t, s, self._text(text)) for t, s, text, _n in head]
        new_marker = self._in_tail and self._marker is None and bool(tail or self.trimmed)
        if new_marker:
            when = tail[0][0] if tail else time.time()
            out.append((num, when, MARKER, self._marker_text()))
        out += [(num, t, s, self._text(text)) for t, s, text, _n in tail]
        marker = None
        if self._marker is not None:
            if final and not self.trimmed:
                marker = (self._marker[0], "")  # nothing was left out after all
            elif self.trimmed and self._marker[1] != self._marker_text():
                marker = (self._marker[0], self._marker_text())
        upto = max((rowid for rowid, _size, _n in evict), default=None)
        if not (out or marker or upto):
            return
        try:
            if shard is None:
                raise StoreError(str(self.shard_path), "not open")
            last = shard.write_console(
                out, run=num, marker=marker,
                evict=None if upto is None or self._marker is None else (self._marker[0], upto))
        except (StoreError, sqlite3.Error):
            head_lines = sum(r[3] for r in head)
            self._head_lines -= head_lines
            self._lost[1] += head_lines + sum(r[3] for r in tail)
            self._lost_bytes[1] += sum(len(r[2]) + 1 for r in head) + \
                sum(len(r[2]) + 1 for r in tail)
            self._tail.extend((0, len(r[2]) + 1, 0) for r in tail)  # sizes still count
            return
        first = last - len(out) + 1
        if new_marker:
            self._marker = (first + len(head), out[len(head)][3])
        elif marker is not None:
            self._marker = (marker[0], marker[1]) if marker[1] else None
        start = first + len(out) - len(tail)
        self._tail.extend((start + i, len(r[2]) + 1, r[3]) for i, r in enumerate(tail))
        self._tail_lines += sum(r[3] for r in tail)

    def _marker_text(self) -> str:
        if not self.trimmed:
            return f"[tracklab: output from here on is kept as a rolling tail of " \
                   f"{self._tail_cap:,} bytes]"
        cut = self._trimmed[1] + self._skipped[1]
        return (f"[tracklab: {self.trimmed:,} line(s), {cut:,} bytes, left out here: a run "
                f"keeps the first and last {self.limit // 2:,} bytes of its output "
                "(--capture-limit)]")

    def _cap(self, rows: list[Row]) -> tuple[list[Row], list[Row], list[tuple[int, int, int]]]:
        """Split a batch into head rows and surviving tail rows (a row is cut at a newline where
        the head ends or the tail begins); pop the stored tail rows ``(row id, size, lines)``
        that must go to keep the tail under its cap."""
        head: list[Row] = []
        if not self._in_tail:
            left = self._head_left
            for i, (t, s, text, n) in enumerate(rows):
                if len(text) + 1 <= left:
                    head.append(rows[i])
                    left -= len(text) + 1
                    continue
                self._in_tail = True
                cut = text.rfind(b"\n", 0, left)  # the lines before it fit in what is left
                if cut >= 0:
                    head.append((t, s, text[:cut], lines_in(text[:cut])))
                    left -= cut + 1
                    rows = [(t, s, text[cut + 1:], n - head[-1][3]), *rows[i + 1:]]
                else:
                    rows = rows[i:]
                break
            else:
                rows = []
            self._head_left = left
            self._head_lines += sum(r[3] for r in head)
        tail = rows
        if not tail:
            return head, tail, []
        keep, j = 0, len(tail)
        while j > 0 and keep + len(tail[j - 1][2]) + 1 <= self._tail_cap:
            j -= 1
            keep += len(tail[j][2]) + 1
        if j:  # the rows before j do not fit: keep the last lines of row j - 1 that do
            t, s, text, n = tail[j - 1]
            k = text.find(b"\n", len(text) - (self._tail_cap - keep))
            gone = tail[:j - 1] if k >= 0 else tail[:j]
            self._trimmed[0] += sum(r[3] for r in gone)
            self._trimmed[1] += sum(len(r[2]) + 1 for r in gone)
            if k >= 0:
                kept = (t, s, text[k + 1:], lines_in(text[k + 1:]))
                self._trimmed[0] += n - kept[3]
                self._trimmed[1] += k + 1
                keep += len(kept[2]) + 1
                tail = [kept, *tail[j:]]
            else:
                tail = tail[j:]
        evict = []
        while self._tail and self._tail_bytes + keep > self._tail_cap:
            rowid, size, n = self._tail.popleft()
            self._tail_bytes -= size
            self._tail_lines -= n
            evict.append((rowid, size, n))
        self._trimmed[0] += sum(e[2] for e in evict)
        self._trimmed[1] += sum(e[1] for e in evict)
        self._tail_bytes += keep
        return head, tail, evict

    def _tidy(self, block: bytes) -> bytes:
        """Whole lines, redacted before :func:`tidy` cuts a long one into pieces."""
        return tidy(redact(block, self.secrets))

    @staticmethod
    def _text(raw: bytes) -> str:
        return raw.decode("utf-8", "replace")
