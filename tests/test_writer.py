"""The queue between log() and the writer thread, and what the writer makes of it."""

from __future__ import annotations

import math
import sqlite3
import struct
import threading
import time
import warnings
from pathlib import Path

import pytest

import tracklab
from tracklab.errors import TracklabWarning
from tracklab.sdk import run as sdk
from tracklab.sdk import writer
from tracklab.sdk.pointqueue import HEADER, SEGMENT_BYTES, PointQueue
from tracklab.store.shard import ROWS_PER_INSERT


def _record(step: int, *vals: float) -> bytes:
    return HEADER.pack(step, 0.0) + struct.pack(f"<{len(vals)}d", *vals)


def _drain(q: PointQueue) -> list[tuple]:
    out = []
    while (seg := q.take()) is not None:
        out.append(seg)
    return out


# -- the queue itself -----------------------------------------------------------------------------


def test_calls_sharing_keys_and_layout_share_a_segment_in_order() -> None:
    q = PointQueue(limit=1 << 30)
    a, b = ("x", "y"), ("z",)
    for i in range(3):
        q.put(a, None, _record(i, 1.0, 2.0))
    q.put(b, None, _record(3, 3.0))
    q.put(b, "q", _record(4, 4.0))  # same keys, another format
    q.put(a, None, _record(5, 5.0, 6.0))
    assert q.nbytes == 4 * 32 + 2 * 24
    segs = _drain(q)
    assert [(keys, fmt, size, len(buf) // size) for keys, fmt, size, buf in segs] == [
        (a, None, 32, 3), (b, None, 24, 1), (b, "q", 24, 1), (a, None, 32, 1)]
    assert [HEADER.unpack_from(buf, i * size)[0] for _k, _f, size, buf in segs
            for i in range(len(buf) // size)] == [0, 1, 2, 3, 4, 5]
    assert q.nbytes == 0 and q.take() is None


def test_segments_are_capped_and_the_open_one_is_taken_too() -> None:
    q = PointQueue(limit=1 << 30)
    keys = ("k",)
    rec = _record(0, 1.0)
    n = SEGMENT_BYTES // len(rec) * 3
    for _ in range(n):
        q.put(keys, None, rec)
    segs = _drain(q)
    assert len(segs) == 3 and all(len(s[3]) <= SEGMENT_BYTES + len(rec) for s in segs)
    assert sum(len(s[3]) for s in segs) == n * len(rec)
    last = bytes(segs[-1][3])
    q.put(keys, None, rec)  # the open segment was taken: this goes to a new one
    assert bytes(segs[-1][3]) == last and [len(s[3]) for s in _drain(q)] == [len(rec)]


def test_a_full_queue_refuses_new_segments() -> None:
    q = PointQueue(limit=100)
    assert q.put(("a",), None, _record(0, 1.0)) == 24
    for i in range(10):  # the open segment still takes calls of its own layout
        q.put(("a",), None, _record(i, 1.0))
    assert q.put(("b",), None, _record(0, 1.0)) == -1
    _drain(q)
    assert q.put(("b",), None, _record(0, 1.0)) == 24


def test_threads_logging_while_the_writer_takes_lose_and_mix_nothing() -> None:
    q = PointQueue(limit=1 << 30)
    per_thread, n_threads = 20_000, 4
    taken: list[tuple] = []
    done = threading.Event()

    def produce(t: int) -> None:
        keys = (f"thread{t}",)
        for i in range(per_thread):
            q.put(keys, None, _record(i, float(t)))

    def consume() -> None:
        while not done.is_set() or q.nbytes:
            seg = q.take()
            if seg is None:
                time.sleep(0)
            else:
                taken.append(seg)

    consumer = threading.Thread(target=consume)
    consumer.start()
    producers = [threading.Thread(target=produce, args=(t,)) for t in range(n_threads)]
    for p in producers:
        p.start()
    for p in producers:
        p.join()
    done.set()
    consumer.join()
    seen: dict[int, list[int]] = {t: [] for t in range(n_threads)}
    for keys, _fmt, size, buf in taken:
        t = int(keys[0].removeprefix("thread"))
        for i in range(len(buf) // size):
            step, _time = HEADER.unpack_from(buf, i * size)
            (value,) = struct.unpack_from("<d", buf, i * size + HEADER.size)
            assert value == t  # every record sits in a segment of its own keys
            seen[t].append(step)
    assert all(steps == list(range(per_thread)) for steps in seen.values())


# -- through log() and the writer -----------------------------------------------------------------


def test_interleaved_key_sets_and_types_are_stored_in_order_exactly() -> None:
    run = tracklab.init()
    expect = []
    for i in range(2 * ROWS_PER_INSERT + 8):  # several inserts, the last one short
        a = {"loss": i / 3, "lr": 1e-3}
        b = {"tokens": i, "ok": i % 2 == 0, "huge": 2**64 + i * 10**(i % 5)}  # JSON, sizes vary
        c = {"loss": float("nan") if i % 7 == 0 else -i * 0.5}
        for d in (a, b, c):
            tracklab.log(d, step=i)
            expect += [(i, k, v) for k, v in d.items()]
    run.finish()
    got = [(p["step"], p["key"], p["value"]) for p in tracklab.open_run(run.id).metrics()]
    assert len(got) == len(expect)
    for (gs, gk, gv), (es, ek, ev) in zip(got, expect):
        assert (gs, gk, type(gv)) == (es, ek, type(ev))
        assert gv == ev or (math.isnan(gv) and math.isnan(ev))
    summary = tracklab.open_run(run.id).metric_summary()
    assert summary["tokens"]["count"] == 2 * ROWS_PER_INSERT + 8
    assert summary["loss"]["last"] == -(2 * ROWS_PER_INSERT + 7) * 0.5


def test_refused_names_leave_the_other_values_whatever_their_types() -> None:
    run = tracklab.init()
    long = "k" * (writer.MAX_KEY_LENGTH + 1)
    values = [1.5, 7, True, 2**70, -(2**63)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(600):
            tracklab.log({long: 1.0, "v": values[i % len(values)], "i": i})
    run.finish()
    pts = tracklab.open_run(run.id).metrics()
    got = [p["value"] for p in pts if p["key"] == "v"]
    assert got == [values[i % len(values)] for i in range(600)]
    assert [type(v) for v in got[:5]] == [float, int, bool, int, int]
    assert [p["value"] for p in pts if p["key"] == "i"] == list(range(600))
    assert long not in {p["key"] for p in pts}


def test_a_step_beyond_64_bits_is_replaced_with_a_warning() -> None:
    run = tracklab.init()
    tracklab.log({"x": 1.0}, step=5)
    with pytest.warns(TracklabWarning, match="2\\*\\*63"):
        tracklab.log({"x": 2.0}, step=2**63)
    run.finish()
    assert [p["step"] for p in tracklab.open_run(run.id).metrics()] == [5, 6]


def test_a_stuck_store_caps_the_queue_warns_and_never_blocks(
        store_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(writer, "MAX_QUEUED_BYTES", 256 * 1024)
    run = tracklab.init()
    tracklab.log({"x": 0.0})
    assert run.flush()
    db = next(store_dir.glob("node-*.db"))
    blocker = sqlite3.connect(db, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # the writer's transactions now wait on the lock
    try:
        t0 = time.monotonic()
        with pytest.warns(TracklabWarning, match="not keeping up"):
            for i in range(20_000):  # 1.6 MB of records
                tracklab.log({"x": float(i), "y": 1.0})
        assert time.monotonic() - t0 < 5.0
        assert run.queue.nbytes <= 256 * 1024 + SEGMENT_BYTES
        assert run._writer.dropped > 0
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    run.finish()


@pytest.mark.slow
def test_a_flat_out_burst_is_written_while_it_is_logged(monkeypatch: pytest.MonkeyPatch) -> None:
    """The writer keeps up with a loop that never lets go of the GIL: the backlog stays near
    YIELD_AT_BYTES instead of growing with the burst (here 60,000 calls, 4.3 MB of records)."""
    monkeypatch.setattr(sdk, "WAKE_AT_BYTES", 256 * 1024)
    monkeypatch.setattr(sdk, "YIELD_AT_BYTES", 512 * 1024)
    run = tracklab.init()
    backlog = 0
    for i in range(60_000):
        run.log({"a": i * 0.5, "b": 1.0, "c": 2.0, "d": 3.0, "e": 4.0, "f": 5.0, "g": 6.0})
        if i % 500 == 0:
            backlog = max(backlog, run.queue.nbytes)
    run.finish()
    assert backlog < 3 * 512 * 1024
    assert tracklab.open_run(run.id).metric_summary()["a"]["count"] == 60_000
