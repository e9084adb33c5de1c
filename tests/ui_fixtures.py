"""Stores for the dashboard's tests, benchmark and screenshot, written through tracklab's own
SDK (points, rollups, statistics) and shard API (system samples), on a made-up clock so that a
run of a thousand steps spans an hour of wall time."""

from __future__ import annotations

import json
import math
import os
import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

SAMPLE_PATHS = ["cpu.overall", "memory.usage", "memory.used", "process.cpu", "process.rss",
                "disk.ioRead", "disk.ioWrite", "network.bytesIn", "network.bytesOut",
                "accelerators.0.utilization", "accelerators.0.memory.used",
                "accelerators.0.power"]


class Clock:
    """Stands in for the SDK's clock: each call gives the time of the step being logged."""

    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@contextmanager
def sdk_clock(clock: Clock) -> Iterator[Clock]:
    """The SDK's points dated by ``clock`` while the block runs."""
    from tracklab.sdk import run as sdk

    saved = sdk._time
    sdk._time = clock
    try:
        yield clock
    finally:
        sdk._time = saved


def make_run(store: str, name: str, *, project: str = "vision", steps: int = 1000,
             tags: list[str] | None = None, config: dict[str, Any] | None = None,
             seed: int = 0, started: float | None = None, step_s: float = 3.6,
             keys: int = 4, samples: bool = True, finish: bool = True,
             spike_at: int | None = None, val: bool = True) -> Any:
    """One run of ``steps`` logged steps (``keys`` training keys each, plus ``val/*`` every 50
    steps) and a system sample every 10 steps. Returns the SDK run (still open unless
    ``finish``)."""
    import tracklab

    rng = random.Random(seed)
    t0 = (started if started is not None else 1_780_000_000.0 + seed * 7200)
    clock = Clock(t0)
    with sdk_clock(clock):
        run = tracklab.init(project=project, name=name, config=config or {"lr": 3e-4 * (1 + seed),
                                                                           "batch_size": 64},
                            dir=store)
        log_steps(run, clock, 0, steps, rng, seed, keys, t0, step_s, spike_at, val)
        if finish:
            run.finish()
        else:
            run.flush()
    from tracklab import store as tstore
    from tracklab.store.codec import dumps_exact

    shard = tstore.open_shard(store, os.environ.get("TRACKLAB_NODE_ID") or _node())
    try:
        num = shard.run_num(run.id)
        assert num is not None
        fields: dict[str, Any] = {"started_at": t0, "tags": dumps_exact(tags or [])}
        if finish:
            fields["ended_at"] = t0 + steps * step_s
            fields["heartbeat_at"] = t0 + steps * step_s
        shard.update_run(num, **fields)
        if samples:
            write_samples(shard, num, t0, steps * step_s, rng, seed)
    finally:
        shard.close()
    return run


def _node() -> str:
    from tracklab import _env

    return _env.node_id()


def log_steps(run: Any, clock: Clock, first: int, last: int, rng: random.Random, seed: int,
              keys: int, t0: float, step_s: float, spike_at: int | None = None,
              val: bool = True) -> None:
    names = ["train/loss", "train/acc", "train/lr", "train/grad_norm", "perf/throughput",
             "perf/step_time", "train/weight_norm", "train/entropy"][:keys]
    rate = 0.004 * (1 + 0.3 * seed)
    for step in range(first, last):
        clock.t = t0 + step * step_s
        loss = 2.3 * math.exp(-rate * step) + 0.1 + rng.gauss(0, 0.03)
        if step == spike_at:
            loss = 50.0
        row = {"train/loss": loss, "train/acc": 1 - loss / 2.5 + rng.gauss(0, 0.01),
               "train/lr": 3e-4 * (1 + seed) * min(1.0, step / 100) * math.cos(step / last),
               "train/grad_norm": abs(rng.gauss(1.5, 0.4)) * math.exp(-step / 800),
               "perf/throughput": 1200 + 80 * seed + rng.gauss(0, 25),
               "perf/step_time": 0.05 + abs(rng.gauss(0, 0.004)),
               "train/weight_norm": 10 + step / 100, "train/entropy": 2 * math.exp(-step / 500)}
        run.log({k: row[k] for k in names}, step=step)
        if val and step % 50 == 49:
            run.log({"val/loss": loss * 1.1 + 0.05, "val/acc": 1 - loss / 2.4}, step=step)


def write_samples(shard: Any, num: int, t0: float, span: float, rng: random.Random,
                  seed: int, every: float = 36.0) -> None:
    """System samples every ``every`` seconds over ``span``, with their running statistics."""
    from tracklab.store.codec import encode_sample

    layout = shard.layout(tuple(SAMPLE_PATHS))
    stats: dict[str, list[float]] = {}
    n = int(span / every) + 1
    for i in range(n):
        t = t0 + i * every
        busy = 0.2 < i / n < 0.95
        vals = [min(100.0, 35 + 10 * seed + rng.gauss(0, 4)), 40 + 5 * seed + rng.gauss(0, 1),
                8e9 + seed * 1e9 + i * 1e6, 180 + rng.gauss(0, 15), 3.2e9 + seed * 4e8 + i * 2e5,
                abs(rng.gauss(2e7, 5e6)), abs(rng.gauss(8e6, 2e6)), abs(rng.gauss(1e6, 3e5)),
                abs(rng.gauss(4e5, 1e5)),
                min(100.0, (88 - 6 * seed if busy else 5) + rng.gauss(0, 3)),
                (18e9 + seed * 2e9) if busy else 1e9, (260 - 10 * seed if busy else 60) + rng.gauss(0, 8)]
        for p, v in zip(SAMPLE_PATHS, vals):
            s = stats.setdefault(p, [v, v, 0.0, 0, v])
            s[0], s[1] = min(s[0], v), max(s[1], v)
            s[2] += v
            s[3] += 1
            s[4] = v
        shard.write_sample(num, t, layout, encode_sample(vals), os.getpid(), i + 1,
                           json.dumps(stats), False)


def demo_store(store: str, runs: int = 6, steps: int = 1000, keys: int = 4,
               val: bool = True) -> list[str]:
    """A store of ``runs`` finished runs, like a small sweep. Returns their ids."""
    names = ["resnet50-baseline", "resnet50-lr3e-4", "resnet50-cosine", "vit-small-warmup",
             "vit-small-mixup", "resnet50-bs128", "vit-base", "convnext-tiny", "resnet18-fast",
             "vit-small-long"]
    ids = []
    for i in range(runs):
        run = make_run(store, names[i % len(names)] + ("" if i < len(names) else f"-{i}"),
                       project="vision" if i % 3 else "sweep", steps=steps, seed=i, keys=keys,
                       val=val,
                       tags=["baseline"] if i == 0 else ["sweep", f"lr{i}"])
        ids.append(run.id)
    return ids
