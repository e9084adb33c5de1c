"""The sampling thread: calls the collectors on a drift-free schedule and hands snapshots on.

Sinks are plain callables taking a snapshot dict. A sink that raises is logged (with traceback,
once per sink) and sampling goes on. ``stop()`` returns within its timeout even when a reading
hangs (a wedged NVML call): the thread is a daemon and is abandoned, never waited on forever.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from tracklab.collectors import SystemCollectors

log = logging.getLogger("tracklab.sampling.sampler")
Sink = Callable[[dict[str, Any]], None]


def seconds(value: Any, what: str = "interval") -> float:
    """``value`` as a sampling interval; ValueError unless it is a finite positive number
    (a string such as "5", a bool or an infinity is refused, not half-taken)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not 0 < value < float("inf"):
        raise ValueError(f"{what} must be a positive number of seconds, not {value!r}")
    return float(value)


class Sampler:
    def __init__(self, collectors: SystemCollectors, interval: float,
                 sinks: list[Sink] | None = None, name: str = "tracklab-sampler") -> None:
        self.collectors = collectors
        self.interval = seconds(interval)
        self.sinks: list[Sink] = list(sinks or [])
        self.latest: dict[str, Any] | None = None
        self.count = 0
        self._name = name
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._final = True
        self._failed_sinks: set[int] = set()
        self._lock = threading.Lock()  # one take() at a time: collectors keep rate state
        self._gen = 0  # the sampling thread's generation: restart() abandons the current one

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._stop.is_set()

    def take(self, families: tuple[str, ...] | None = None, _gen: int | None = None
             ) -> dict[str, Any]:
        """Take one snapshot now (all families, or the named ones) and hand it to every sink."""
        with self._lock:
            t0 = time.perf_counter()
            snap = self.collectors.snapshot(families)
            if _gen is not None and _gen != self._gen:
                return snap  # its thread was abandoned while it was stuck: too late to store
            if families is None:
                self.latest = snap
            self.count += 1
            for sink in list(self.sinks):
                try:
                    sink(snap)
                except Exception:
                    if id(sink) not in self._failed_sinks:
                        self._failed_sinks.add(id(sink))
                        log.warning("tracklab: warning: sample callback %r raised; sampling goes on", sink,
                                    exc_info=True)
            log.debug("sample %d taken in %.2f ms", self.count, (time.perf_counter() - t0) * 1e3)
        return snap

    def start(self, first: bool = True) -> None:
        """Start the thread (idempotent). ``first`` takes a sample immediately."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self.collectors.prime()
        self._spawn(first)

    def restart(self) -> None:
        """Abandon the sampling thread, stuck in a reading that never returns (a hung driver),
        and carry on in a new one; the old thread, a daemon, stores nothing if it ever returns.
        """
        if self._thread is None or self._stop.is_set():
            return
        self._gen += 1
        self._lock = threading.Lock()  # the stuck thread holds the old one
        self._spawn(first=True)
        log.debug("sampling thread restarted (generation %d)", self._gen)

    def _spawn(self, first: bool) -> None:
        self._thread = threading.Thread(target=self._loop, args=(first, self._gen),
                                        name=self._name, daemon=True)
        self._thread.start()

    def _loop(self, first: bool, gen: int) -> None:
        next_at = time.monotonic()
        if not first:
            next_at += self.interval
        # an interval past what a wait takes (TIMEOUT_MAX, ~292 years) killed the thread with
        # an OverflowError; waking that early and waiting again is the same schedule
        while not self._stop.wait(min(max(0.0, next_at - time.monotonic()),
                                      threading.TIMEOUT_MAX)):
            if time.monotonic() < next_at:
                continue
            if gen != self._gen:
                return
            self._safe_take(gen)
            next_at += self.interval
            now = time.monotonic()
            if next_at < now:  # fell behind (suspended machine, slow disk): skip, don't burst
                next_at = now + self.interval
        if self._final and gen == self._gen:
            self._safe_take(gen)

    def _safe_take(self, gen: int) -> None:
        try:
            self.take(_gen=gen)
        except Exception:
            log.warning("tracklab: warning: sampling failed; trying again next interval", exc_info=True)

    def stop(self, timeout: float = 2.0, final: bool = True) -> bool:
        """Stop the thread, taking one last sample when ``final``. Idempotent.

        Returns False when the thread did not end within ``timeout`` seconds (it is abandoned).
        """
        thread = self._thread
        if thread is None:
            return True
        self._final = final
        self._stop.set()
        if thread is threading.current_thread():
            return True
        thread.join(timeout)
        if thread.is_alive():
            hung_gpu = getattr(self.collectors, "gpu_hung", None)
            if hung_gpu is not None and hung_gpu():
                # an unguarded GPU reading hung (and was reported): GPU readings are off now,
                # so the last sample is taken here, without them
                self._gen += 1
                self._lock = threading.Lock()
                if final:
                    self._safe_take(self._gen)
                self._thread = None
                return True
            log.warning("tracklab: warning: sampler did not stop within %.1f s (a reading hangs); abandoning it",
                        timeout)
            return False
        self._thread = None
        return True
