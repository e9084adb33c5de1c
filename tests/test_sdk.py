"""The SDK's behaviour: values, steps, warnings, modes and how a standalone run ends."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tracklab
from tracklab.errors import TracklabWarning, UsageError
from tracklab.writer import MAX_KEY_LENGTH
from tests.conftest import write_script


def _points(run_id: str, key: str) -> list[dict]:
    return [p for p in tracklab.open_run(run_id).metrics() if p["key"] == key]


def test_values_round_trip_exactly() -> None:
    run = tracklab.init()
    values = {"nan": math.nan, "inf": math.inf, "ninf": -math.inf, "huge": 2**70,
              "neg": -(2**63), "t": True, "f": False, "int": 7, "tiny": 5e-324,
              "np32": np.float32(0.1), "np64": np.float64(1 / 3), "npint": np.int64(2**40),
              "npbool": np.bool_(True)}
    tracklab.log(values)
    run.finish()
    got = {p["key"]: p["value"] for p in tracklab.open_run(run.id).metrics()}
    assert math.isnan(got.pop("nan"))
    expect = dict(values, np32=float(np.float32(0.1)), np64=1 / 3, npint=2**40, npbool=True)
    expect.pop("nan")
    assert got == expect
    assert type(got["t"]) is bool and type(got["huge"]) is int and type(got["int"]) is int


def test_nan_and_inf_in_summary() -> None:
    run = tracklab.init()
    for v in (1.0, math.nan, math.inf, -2.0):
        tracklab.log({"x": v})
    run.finish()
    s = tracklab.open_run(run.id).metric_summary()["x"]
    assert s["count"] == 4 and s["nans"] == 1
    assert s["min"] == -2.0 and s["max"] == math.inf and s["last"] == -2.0


def test_non_numeric_value_warns_with_its_name_and_keeps_the_rest() -> None:
    run = tracklab.init()
    with pytest.warns(TracklabWarning, match="'label'"):
        tracklab.log({"loss": 0.5, "label": "cat", "acc": 0.9})
    with pytest.warns(TracklabWarning, match="'none'"):
        tracklab.log({"none": None, "loss": 0.4})
    run.finish()
    assert [p["value"] for p in _points(run.id, "loss")] == [0.5, 0.4]
    assert [p["value"] for p in _points(run.id, "acc")] == [0.9]
    assert not _points(run.id, "label")


def test_metric_names_are_stored_as_given() -> None:
    names = ["損失/训练", "it's \"quoted\"", "x'); DROP TABLE points; --", "a.b c", "😀"]
    run = tracklab.init()
    tracklab.log({n: float(i) for i, n in enumerate(names)})
    run.finish()
    got = {p["key"]: p["value"] for p in tracklab.open_run(run.id).metrics()}
    assert got == {n: float(i) for i, n in enumerate(names)}


def test_too_long_name_is_refused_clearly(caplog: pytest.LogCaptureFixture) -> None:
    run = tracklab.init()
    tracklab.log({"k" * (MAX_KEY_LENGTH + 1): 1.0, "ok": 2.0})
    run.finish()
    assert "longer than 256" in caplog.text
    assert {p["key"] for p in tracklab.open_run(run.id).metrics()} == {"ok"}


def test_nested_dicts_flatten_and_steps_auto_increment() -> None:
    run = tracklab.init()
    tracklab.log({"train": {"loss": 1.0, "inner": {"lr": 0.1}}})
    tracklab.log({"train": {"loss": 0.5}})
    tracklab.log({"val": 0.3}, step=10)
    tracklab.log({"val": 0.2})
    run.finish()
    pts = tracklab.open_run(run.id).metrics()
    assert [(p["key"], p["step"]) for p in pts] == [
        ("train.loss", 0), ("train.inner.lr", 0), ("train.loss", 1), ("val", 10), ("val", 11)]


def test_log_before_init_is_an_actionable_error() -> None:
    with pytest.raises(UsageError, match=r"Call tracklab.init\(\) before tracklab.log\(\)"):
        tracklab.log({"x": 1})


def test_disabled_mode_writes_nothing(monkeypatch: pytest.MonkeyPatch, store_dir: Path) -> None:
    monkeypatch.setenv("TRACKLAB_MODE", "disabled")
    run = tracklab.init(project="p", config={"a": 1})
    tracklab.log({"x": 1.0})
    run.log({"y": 2.0})
    run.finish()
    assert not store_dir.exists()


def test_context_manager_marks_failure_and_finish_is_idempotent() -> None:
    with pytest.raises(RuntimeError), tracklab.init() as run:
        tracklab.log({"x": 1.0})
        raise RuntimeError("boom")
    run.finish()
    info = tracklab.open_run(run.id).info
    assert info["status"] == "failed" and info["exit_code"] == 1
    assert len(_points(run.id, "x")) == 1
    with pytest.warns(TracklabWarning, match="after finish"):
        run.log({"x": 2.0})


def test_config_kinds_are_stored() -> None:
    import argparse
    import dataclasses

    @dataclasses.dataclass
    class Opt:
        lr: float = 0.1
        layers: tuple[int, ...] = (1, 2)

    run = tracklab.init(config=Opt())
    run.config.update(argparse.Namespace(batch=32), nested={"a": {"b": 1}})
    run.finish()
    assert tracklab.open_run(run.id).info["config"] == {
        "lr": 0.1, "layers": [1, 2], "batch": 32, "nested": {"a": {"b": 1}}}


@pytest.mark.parametrize(("ending", "status"), [
    ("pass", "finished"),
    ("raise ValueError('boom')", "failed"),
])
def test_standalone_run_ends_honestly_and_loses_nothing(tmp_path: Path, ending: str,
                                                        status: str) -> None:
    script = write_script(tmp_path, f"""
import tracklab
run = tracklab.init(name="s")
for i in range(1000):
    tracklab.log({{"i": i}})
{ending}
""")
    subprocess.run([sys.executable, str(script)], capture_output=True, timeout=60)
    view = tracklab.open_run("s")
    assert view.info["status"] == status
    assert [p["value"] for p in view.metrics()] == list(range(1000))


def test_points_reach_the_store_within_about_a_second() -> None:
    import time

    run = tracklab.init()
    tracklab.log({"x": 1.0})
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline and not _points(run.id, "x"):
        time.sleep(0.05)
    assert _points(run.id, "x")
    run.finish()
