"""The queue between ``log()`` and the writer thread: calls packed into bytes, not objects.

A ``log()`` call becomes one record, ``<qd`` (step, time) followed by its values packed as the
store keeps them (:mod:`tracklab.store.codec`): 80 bytes for 8 floats. Consecutive records with
the same keys, value format and size share one bytearray, a *segment*, so the usual case (the
same dict every step) costs its record and nothing more per call: no Python object per call,
nothing for the garbage collector to track, and the writer unpacks a segment with one
``Struct.iter_unpack``. A burst of 125,000 calls of 8 floats is 10 MB here, 24 MB as tuples.

Segments are capped at :data:`SEGMENT_BYTES`, so the writer takes and frees the queue a piece at
a time while the training thread keeps appending. One lock guards the appends and the writer's
take (``self._open = ...`` and ``extend`` are each atomic, but checking the open segment and
appending to it are not, and several threads may log): it is held for a few pointer operations
and one short copy, never for I/O.
"""

from __future__ import annotations

import struct
import threading
from collections import deque
from functools import lru_cache
from typing import Any

from tracklab.store.codec import JSON_FORMAT

HEADER = struct.Struct("<qd")  # step (a non-negative int64), time
SEGMENT_BYTES = 64 * 1024  # ~800 calls of 8 floats; the writer takes one segment at a time

# (keys, fmt, record size, records): the keys and values format (None: all doubles) of every
# record in ``records``, each ``size`` bytes
Segment = tuple[tuple[Any, ...], "str | None", int, bytearray]


class PointQueue:
    def __init__(self, limit: int) -> None:
        # bytes; past it put() starts no new segment (a store that does not keep up)
        self.limit = limit
        self.nbytes = 0
        self._lock = threading.Lock()
        self._segments: deque[Segment] = deque()
        self._open: Segment = ((), None, -1, bytearray())  # the segment put() appends to

    def put(self, keys: tuple[Any, ...], fmt: str | None, record: bytes) -> int:
        """Queue one call's record; returns the bytes now queued, or -1 if full (not queued).

        ``keys`` is compared by identity: the SDK passes the same tuple for a repeated key set,
        and a needless new segment costs memory, never correctness.
        """
        lock = self._lock
        lock.acquire()  # not `with`: this is the hot path, and try/finally costs nothing
        try:
            seg = self._open
            if (seg[0] is not keys or seg[1] != fmt or seg[2] != len(record)
                    or len(seg[3]) >= SEGMENT_BYTES):
                if self.nbytes >= self.limit:
                    return -1
                seg = self._open = (keys, fmt, len(record), bytearray())
                self._segments.append(seg)
            seg[3].extend(record)
            n = self.nbytes = self.nbytes + len(record)
        finally:
            lock.release()
        return n

    def take(self) -> Segment | None:
        """The oldest segment, no longer appended to; None when the queue is empty."""
        with self._lock:
            if not self._segments:
                return None
            seg = self._segments.popleft()
            if seg is self._open:  # the next put() starts a new one
                self._open = ((), None, -1, bytearray())
            self.nbytes -= len(seg[3])
            return seg


@lru_cache(maxsize=256)
def layouts(fmt: str | None, size: int) -> tuple[struct.Struct, struct.Struct | None]:
    """How the writer reads a segment's records: as ``(step, time, values blob)``, and as
    ``(step, time, *values)`` (None for JSON-packed values, which struct cannot read)."""
    n = size - HEADER.size
    whole = struct.Struct(f"<qd{n}s")
    if fmt is None:
        return whole, struct.Struct(f"<qd{n // 8}d")
    if fmt == JSON_FORMAT:
        return whole, None
    return whole, struct.Struct("<qd" + fmt)
