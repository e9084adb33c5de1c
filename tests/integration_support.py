"""Running a framework's real training script under a real ``tracklab run`` and reading back
what the store has: the integrations tests (``-m integrations``) share this."""

from __future__ import annotations

import json
import os
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import tracklab
from tests.conftest import ROOT, run_tracklab

SCRIPTS = ROOT / "tests" / "integrations"


def train(tmp_path: Path, script: str, *args: str, options: tuple[str, ...] = (),
          timeout: float = 300, env: dict[str, str] | None = None) -> dict[str, Any]:
    """``tracklab run -- python SCRIPT ARGS`` in ``tmp_path``; returns ``show --json`` of it,
    with ``points``: key -> [(rank, step, value)] from the store."""
    res = run_tracklab("run", "-q", "--interval", "0.5", *options, "--", sys.executable,
                       str(SCRIPTS / script), *args, cwd=str(tmp_path), timeout=timeout,
                       env={**os.environ, **(env or {})})
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    shown = run_tracklab("show", "latest", "--json")
    assert shown.returncode == 0, shown.stderr
    data: dict[str, Any] = json.loads(shown.stdout)
    points: dict[str, list[tuple[Any, int, Any]]] = defaultdict(list)
    view = tracklab.open_run("latest")
    try:
        for p in view.metrics():
            points[p["key"]].append((p["rank"], p["step"], p["value"]))
        data["view_info"] = view.info
    finally:
        view.close()
    data["points"] = dict(points)
    data["output"] = res.stdout + res.stderr
    return data


def steps(points: list[tuple[Any, int, Any]], rank: Any = ...) -> list[int]:
    return [s for r, s, _ in points if rank is ... or r == rank]
