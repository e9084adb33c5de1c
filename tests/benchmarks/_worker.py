"""Subprocess entry: ``python -m tests.benchmarks._worker MODULE.FN '{json args}'``.

Calls ``tests.benchmarks.MODULE.worker_FN(**args)`` and prints its result as one JSON line.
With ``TRACKLAB_BENCH_PROFILE=1`` every thread runs under cProfile and the result gains
``profile``: the top entries by cumulative time, one block per thread name.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from typing import Any

from tests.benchmarks import _util

TOP = 15


def _profiled(func: Any, args: dict[str, Any]) -> dict[str, Any]:
    import cProfile
    import io
    import pstats
    import threading

    profiles: list[tuple[str, cProfile.Profile]] = []
    started: list[threading.Thread] = []
    original = threading.Thread.run

    def run(self: threading.Thread) -> None:
        started.append(self)
        p = cProfile.Profile()
        p.enable()
        try:
            original(self)
        finally:
            p.disable()
            profiles.append((self.name, p))

    threading.Thread.run = run  # type: ignore[method-assign]
    _util.PROFILING.append(cProfile.Profile())
    _util.PROFILING[0].enable()
    try:
        result: dict[str, Any] = func(**args)
    finally:
        _util.PROFILING[0].disable()
        threading.Thread.run = original  # type: ignore[method-assign]
    main = _util.PROFILING.pop()
    blocks = []
    by_name: dict[str, list[cProfile.Profile]] = {"MainThread (the timed section)": [main]}
    for name, p in profiles:
        by_name.setdefault(name.split("(")[0].strip(), []).append(p)
    for name, ps in by_name.items():
        buf = io.StringIO()
        stats = pstats.Stats(ps[0], stream=buf)
        for p in ps[1:]:
            stats.add(p)
        stats.strip_dirs().sort_stats("cumulative").print_stats(TOP)
        text = buf.getvalue()
        # keep the table, drop pstats' preamble lines about ordering and restrictions
        lines = [ln for ln in text.splitlines() if ln.strip() and "Ordered by" not in ln
                 and "restriction" not in ln]
        blocks.append(f"-- thread {name} ({len(ps)} thread(s)) --\n" + "\n".join(lines))
    # A thread still running has its profiler installed; reading it from here is not safe.
    alive = sorted({t.name for t in started if t.is_alive()})
    if alive:
        blocks.append(f"(not profiled, still running at the end: {', '.join(alive)}; their CPU "
                      "is in the process CPU figures)")
    result["profile"] = "\n".join(blocks)
    return result


def main() -> None:
    name, raw = sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "{}"
    module, fn = name.rsplit(".", 1)
    func = getattr(importlib.import_module(f"tests.benchmarks.{module}"), f"worker_{fn}")
    args = json.loads(raw)
    profiled = bool(os.environ.get("TRACKLAB_BENCH_PROFILE"))
    result = _profiled(func, args) if profiled else func(**args)
    sys.stdout.write("\n" + json.dumps(result) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
