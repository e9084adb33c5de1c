"""``tracklab export``: a run's training points or sample values as flat rows, streamed to CSV,
JSON lines or Parquet (the last with the optional ``pyarrow``). Memory does not grow with the run.
"""

from __future__ import annotations

import csv
import heapq
import io
import json
import math
from collections.abc import Iterable, Iterator
from typing import IO, Any

from tracklab.errors import MissingExtra
from tracklab.read.runs import RunView
from tracklab.store import Shard
from tracklab.store.codec import decode_sample

EXPORT_FIELDS = ("run_id", "node", "rank", "time", "step", "key", "value")


def iter_export(view: RunView, what: str = "metrics",
                keys: list[str] | None = None) -> Iterator[dict[str, Any]]:
    """Every training point (``what="metrics"``) or every numeric sample value
    (``"samples"``), flat: ``{run_id, node, rank, time, step, key, value}``; ``step`` and
    ``rank`` are ``None`` for samples. Streams: memory does not grow with the run."""
    if what == "metrics":
        for m in view.iter_metrics(keys):
            yield {"run_id": view.id, "node": m["node"], "rank": m["rank"], "time": m["time"],
                   "step": m["step"], "key": m["key"], "value": m["value"]}
        return
    if what != "samples":
        raise ValueError(f"what must be 'metrics' or 'samples', not {what!r}")
    want = set(keys) if keys else None

    def node_rows(shard: Shard, row: dict[str, Any]) -> Iterator[tuple[float, str, list[Any]]]:
        names: dict[str, list[str]] = {}
        for t, paths_json, blob in shard.samples(row["num"]):
            ps = names.get(paths_json)
            if ps is None:
                ps = names[paths_json] = json.loads(paths_json)
            yield t, row["node"], list(zip(ps, decode_sample(blob)))

    for t, node, pairs in heapq.merge(*(node_rows(s, r) for s, r in view.parts),
                                      key=lambda x: x[0]):
        for p, v in pairs:
            if type(v) in (int, float) and (want is None or p in want) and _measure(p):
                yield {"run_id": view.id, "node": node, "rank": None, "time": t, "step": None,
                       "key": p, "value": v}


def _measure(path: str) -> bool:
    """False for identifiers inside a snapshot (``cpu.cores.0.id``, ``process.pids.3``)."""
    last = path.rsplit(".", 1)[-1]
    return last not in ("id", "pid") and ".pids." not in path and not path.startswith("pids.")


def _text(v: Any) -> Any:
    """A value for CSV: booleans as ``true``/``false``, as JSON writes them."""
    if isinstance(v, bool):
        return "true" if v else "false"
    return _json(v)


def _json(v: Any) -> Any:
    """A value for strict JSON, which has no NaN or infinities: those as text."""
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v


def write_export(rows: Iterable[dict[str, Any]], fmt: str, out: IO[bytes]) -> int:
    """Write export rows as ``csv``, ``jsonl`` or ``parquet`` to a binary stream; returns the
    number of rows. Raises MissingExtra when parquet is asked for without pyarrow."""
    count = 0
    if fmt == "parquet":
        return _write_parquet(rows, out)
    if fmt not in ("csv", "jsonl"):
        raise ValueError(f"format must be csv, jsonl or parquet, not {fmt!r}")
    # text is built in memory a batch at a time and written as bytes: no wrapper owns ``out``
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    if fmt == "csv":
        w.writerow(EXPORT_FIELDS)
    for r in rows:
        if fmt == "csv":
            v = r["value"]
            w.writerow((r["run_id"], r["node"], _blank(r["rank"]), repr(r["time"]),
                        _blank(r["step"]), r["key"], repr(v) if type(v) is float else _text(v)))
        else:
            buf.write(json.dumps({k: _json(r[k]) for k in EXPORT_FIELDS}) + "\n")
        count += 1
        if count % 4096 == 0:
            out.write(buf.getvalue().encode())
            buf.seek(0)
            buf.truncate()
    out.write(buf.getvalue().encode())
    return count


def _blank(v: Any) -> Any:
    return "" if v is None else v


def _double(v: Any) -> float:
    try:
        return float(v)
    except OverflowError:  # an int beyond float range: the float64 column's infinity
        return math.inf if v > 0 else -math.inf


def _write_parquet(rows: Iterable[dict[str, Any]], out: IO[bytes]) -> int:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise MissingExtra("pyarrow", "parquet") from None
    schema = pa.schema([("run_id", pa.string()), ("node", pa.string()), ("rank", pa.int64()),
                        ("time", pa.float64()), ("step", pa.int64()), ("key", pa.string()),
                        ("value", pa.float64())])
    count = 0
    with pq.ParquetWriter(out, schema) as writer:
        batch: dict[str, list[Any]] = {f: [] for f in EXPORT_FIELDS}

        def flush() -> None:
            writer.write_table(pa.table(batch, schema=schema))
            for col in batch.values():
                col.clear()

        for r in rows:
            for f in EXPORT_FIELDS:
                batch[f].append(_double(r[f]) if f == "value" else r[f])
            count += 1
            if len(batch["key"]) >= 65536:
                flush()
        flush()
    return count
