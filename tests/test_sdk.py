"""The SDK's behaviour: values, steps, warnings, modes and how a standalone run ends."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import tracklab
from tests.conftest import write_script
from tracklab.errors import TracklabWarning, UsageError


def _points(run_id: str, key: str) -> list[dict]:
    return [p for p in tracklab.open_run(run_id).metrics() if p["key"] == key]


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
    # the module's log() after finish() warns the same, rather than raise into the loop
    tracklab.init()
    tracklab.finish()
    with pytest.warns(TracklabWarning, match="after finish"):
        tracklab.log({"x": 3.0})


def test_warnings_name_the_line_in_the_users_script() -> None:
    run = tracklab.init()
    with pytest.warns(TracklabWarning) as caught:
        tracklab.log({"x": "text", "y": 1.0})  # a value that is not a number
        run.log({"z": 1.0}, step=-1)  # a bad step
        run.log([1.0])  # not a dict
    assert len(caught) == 3
    assert [w.filename for w in caught] == [__file__] * 3, [str(w.message) for w in caught]


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


def test_config_item_assignment_is_stored() -> None:
    run = tracklab.init(config={"lr": 0.1})
    run.config["batch"] = 64  # as with wandb.config: a plain assignment, no update() after it
    run.finish()
    assert tracklab.open_run(run.id).info["config"] == {"lr": 0.1, "batch": 64}


def test_config_with_enums_and_cycles_is_stored_not_raised() -> None:
    # an Enum (it refers to its class, which lists its members) or an object that refers back
    # to its owner sent init() into a RecursionError
    import enum

    class Precision(enum.Enum):
        FP16 = "fp16"

    class Node:
        def __init__(self) -> None:
            self.size = 3
            self.parent = self

    cyclic: list[Any] = [1]
    cyclic.append(cyclic)
    run = tracklab.init(config={"precision": Precision.FP16, "node": Node(), "list": cyclic})
    run.summary["precision"] = Precision.FP16
    run.finish()
    info = tracklab.open_run(run.id).info
    assert info["config"]["precision"] == "fp16" and info["summary"]["user"]["precision"] == "fp16"
    assert info["config"]["node"]["size"] == 3
    assert info["config"]["node"]["parent"].startswith("<")  # the cycle, as its repr
    assert info["config"]["list"][0] == 1 and info["config"]["list"][1] == "[1, [...]]"


def test_config_arrays_classes_and_functions_are_stored_as_users_read_them() -> None:
    import math
    import os

    np = pytest.importorskip("numpy")

    class Net:
        pass

    run = tracklab.init(config={
        "mean": np.array([0.485, 0.456, 0.406]), "grid": np.zeros((2, 2), dtype=np.int64),
        "scale": np.float32(0.5), "big": np.arange(5000),
        "model": Net, "act": math.tanh, "init": lambda w: w, "module": os})
    run.finish()
    config = tracklab.open_run(run.id).info["config"]
    assert config["mean"] == [0.485, 0.456, 0.406] and config["grid"] == [[0, 0], [0, 0]]
    assert config["scale"] == 0.5
    assert isinstance(config["big"], str) and "..." in config["big"]  # numpy's own summary
    assert config["model"].endswith("Net") and config["model"].startswith(__name__)
    assert config["act"] == "math.tanh" and config["module"] == "os"
    assert config["init"].endswith("<lambda>")


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


def test_finish_leaves_the_machines_description_stored() -> None:
    """The description (system, git state, packages) is read off the training thread; finish()
    gives it a moment, so a finished run has it."""
    run = tracklab.init()
    run.finish()
    info = tracklab.open_run(run.id).info
    assert info["system"] and info["system"].get("cpu_count")
    assert info["context"] and "python" in info["context"]
