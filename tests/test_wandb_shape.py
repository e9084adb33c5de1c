"""`import tracklab as wandb`: the calls typical wandb scripts and callbacks make work, and what
they give is in the store (tags, notes, group, config, summary, steps), or said once and dropped."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

import tracklab
import tracklab as wandb
from tests.conftest import run_tracklab, write_script
from tracklab.errors import TracklabWarning, UsageError


@pytest.fixture(autouse=True)
def _say_again() -> None:
    """Each test sees the once-per-process warnings afresh."""
    from tracklab.sdk import compat

    compat._said.clear()


def _steps(run_id: str) -> list[tuple[str, int]]:
    return [(p["key"], p["step"]) for p in tracklab.open_run(run_id).metrics()]


def test_a_wandb_script_runs_and_keeps_what_it_gave(capsys: pytest.CaptureFixture[str]) -> None:
    run = wandb.init(project="p", name="n", config={"lr": 0.1}, tags=["a", "b", "a"],
                     notes="first try", group="sweep-1", job_type="train", dir=None,
                     mode="online", reinit=True, resume=None)
    assert wandb.run is run and wandb.config is run.config and wandb.summary is run.summary
    assert wandb.config.lr == 0.1 and run.id and run.name == "n"
    wandb.config.batch = 32
    wandb.config.update({"lr": 0.2, "opt": {"name": "adam"}}, allow_val_change=True)
    wandb.define_metric("val/acc", summary="max", step_metric="epoch")
    wandb.watch(object(), log="all")
    wandb.watch(object())
    assert capsys.readouterr().err.count("watch() records nothing") == 1
    wandb.log({"a": 1.0}, commit=False)
    wandb.log({"b": 2.0})
    wandb.log({"a": 3.0}, step=5)
    wandb.log({"a": 4.0})
    with pytest.warns(TracklabWarning, match="Image objects are accepted and not stored") as w:
        img = wandb.Image([[0, 1]], caption="x")
        wandb.log({"sample": img, "c": 1.0})
        wandb.log({"sample": wandb.Image(None)})
        wandb.log({"examples": [wandb.Image(None), wandb.Image(None)]})  # a batch of them
    assert len(w) == 1
    with pytest.warns(TracklabWarning, match="Table objects"):
        table = wandb.Table(columns=["x"])
    table.add_data(1)
    wandb.summary["best"] = 0.9
    run.summary.final = 1
    wandb.finish(exit_code=3)
    info = tracklab.open_run(run.id).info
    assert info["status"] == "failed" and info["exit_code"] == 3
    assert info["config"] == {"lr": 0.2, "batch": 32, "opt": {"name": "adam"}}
    assert "allow_val_change" not in info["config"]
    assert info["tags"] == ["a", "b"] and info["notes"] == "first try"
    assert info["context"]["group"] == "sweep-1" and info["context"]["job_type"] == "train"
    assert info["context"]["metrics"] == {"val/acc": {"step_metric": "epoch", "summary": "max"}}
    assert info["summary"]["user"] == {"best": 0.9, "final": 1}
    assert _steps(run.id) == [("a", 0), ("b", 0), ("a", 5), ("a", 6), ("c", 7)]  # as wandb
    assert wandb.run is None


def test_config_reads_as_attributes_and_missing_ones_are_attribute_errors() -> None:
    run = tracklab.init(config={"lr": 0.1})
    with pytest.raises(AttributeError):
        _ = run.config.nope
    del run.config.lr
    run.config.setdefaults({"lr": 1.0, "wd": 0.0})
    run.config.setdefaults({"lr": 2.0})
    run.finish()
    assert tracklab.open_run(run.id).info["config"] == {"lr": 1.0, "wd": 0.0}


@pytest.mark.parametrize(("env", "value"), [("WANDB_MODE", "disabled"), (None, None)])
def test_disabled_by_wandb_mode_or_the_argument(monkeypatch: pytest.MonkeyPatch,
                                                store_dir: Path, env: str | None,
                                                value: str | None) -> None:
    if env:
        monkeypatch.setenv(env, value)
    run = wandb.init(config={"a": 1}, mode=None if env else "disabled")
    wandb.log({"x": 1.0}, commit=False)
    wandb.config.b = 2
    assert wandb.config.a == 1 and wandb.config.b == 2
    wandb.define_metric("x", summary="min")
    wandb.log({"img": wandb.Image(None)})  # no warning: nothing is recorded anyway
    run.finish()
    assert not store_dir.exists()


def test_tracklab_mode_wins_over_wandb_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setenv("TRACKLAB_MODE", "online")
    run = wandb.init()
    wandb.log({"x": 1.0})
    run.finish()
    assert _steps(run.id) == [("x", 0)]


def test_bad_arguments_are_clear_errors_and_wandb_only_ones_are_accepted(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(TypeError, match="'colour'"):
        wandb.init(colour="red")
    with pytest.raises(UsageError, match="mode is one of"):
        wandb.init(mode="cloud")
    with pytest.raises(UsageError, match="reinit"):
        wandb.init(reinit="sometimes")
    run = wandb.init(entity="team", settings=wandb.Settings(start_method="thread"),
                     save_code=True)
    assert "ignores entity, save_code, settings" in capsys.readouterr().err
    assert wandb.login() is True
    run.finish()


def test_reinit_return_previous_and_create_new() -> None:
    first = wandb.init()
    assert wandb.init(reinit="return_previous") is first
    assert wandb.init(reinit=False) is first
    second = wandb.init(reinit="create_new")
    assert second is not first and not first._closed  # the first runs on
    third = wandb.init()
    assert second._closed and third is wandb.run
    third.finish()
    first.finish()


def test_resume_appends_to_the_run_and_its_steps_go_on() -> None:
    with pytest.raises(UsageError, match="no such run"):
        wandb.init(id="resumable", resume="must")
    run = wandb.init(id="resumable", tags=["x"])
    wandb.log({"loss": 1.0})
    wandb.log({"loss": 0.5})
    run.finish()
    with pytest.raises(UsageError, match="exists already"):
        wandb.init(id="resumable", resume="never")
    again = wandb.init(id="resumable", resume="allow", tags=["y"])
    assert tracklab.open_run("resumable").info["status"] == "running"
    wandb.log({"loss": 0.25})
    again.finish()
    info = tracklab.open_run("resumable").info
    assert info["status"] == "finished" and info["tags"] == ["x", "y"]
    assert _steps("resumable") == [("loss", 0), ("loss", 1), ("loss", 2)]


def test_under_the_wrapper_tags_join_and_dir_does_not_split_the_store(tmp_path: Path) -> None:
    script = write_script(tmp_path, f"""
import tracklab as wandb
run = wandb.init(project="p", tags=["from-script"], notes="script note", group="sweep-7",
                 dir={str(tmp_path / "wandb")!r})
wandb.log({{"loss": 1.0}})
wandb.finish()
""")
    res = run_tracklab("run", "-q", "--tag", "cli", "--notes", "cli note", "--", sys.executable,
                       str(script))
    assert res.returncode == 0, res.stderr
    assert "not in" not in res.stderr  # attached, not created in a second store
    assert not (tmp_path / "wandb").exists()
    shown = json.loads(run_tracklab("show", "latest", "--json").stdout)
    info = shown.get("info", shown)
    assert info["status"] == "finished"
    assert info["tags"] == ["cli", "from-script"]
    assert info["notes"] == "cli note\nscript note"
    run = tracklab.open_run("latest")
    assert run.info["context"]["group"] == "sweep-7"
    assert "sweep-7" in run_tracklab("show", "latest").stdout
    assert [(p["key"], p["step"]) for p in run.metrics()] == [("loss", 0)]
