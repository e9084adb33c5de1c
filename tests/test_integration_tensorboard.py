"""``tracklab run`` picks up the TensorBoard event files and Lightning CSVLogger files a script
writes, with no tracklab line in it: their scalars at their steps, nothing counted twice, an
earlier run's files left alone, ``--no-tensorboard`` honoured."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.integration_support import steps, train

pytest.importorskip("tensorboard", reason="tensorboard is not installed (tracklab[tensorboard])")
pytestmark = pytest.mark.integrations


def _lightning() -> None:
    pytest.importorskip("lightning", reason="lightning is not installed")


def test_lightnings_default_tensorboard_logger_is_picked_up(tmp_path: Path) -> None:
    _lightning()
    before = time.time()
    run = train(tmp_path, "lightning_default_logger.py")
    assert list(tmp_path.glob("lightning_logs/version_0/events.out.tfevents.*"))
    assert run["info"]["status"] == "finished"
    assert steps(run["points"]["train_loss"]) == list(range(8))
    assert steps(run["points"]["epoch"]) == list(range(8))
    assert before <= run["metrics"]["train_loss"]["last_time"] <= time.time()


def test_lightnings_csv_logger_is_picked_up(tmp_path: Path) -> None:
    _lightning()
    run = train(tmp_path, "lightning_default_logger.py", "csv")
    assert steps(run["points"]["train_loss"]) == list(range(8))
    assert run["metrics"]["epoch"]["last"] == 1


def test_a_value_the_script_logs_itself_is_not_stored_twice(tmp_path: Path) -> None:
    _lightning()
    run = train(tmp_path, "lightning_default_logger.py", "twice")
    assert run["metrics"]["train_loss"]["count"] == 8  # the script's, not also the file's
    assert steps(run["points"]["epoch"]) == list(range(8))  # the file's own, still taken


def test_transformers_tensorboard_and_tracklab_together_count_once(tmp_path: Path) -> None:
    pytest.importorskip("transformers", reason="transformers is not installed")
    run = train(tmp_path, "hf_train.py", "report_to,tensorboard")
    assert list(tmp_path.glob("out/runs/*/events.out.tfevents.*"))
    assert steps(run["points"]["train/loss"]) == list(range(1, 9))
    assert steps(run["points"]["eval/loss"]) == [4, 8]


def test_no_tensorboard_turns_it_off(tmp_path: Path) -> None:
    _lightning()
    run = train(tmp_path, "lightning_default_logger.py", options=("--no-tensorboard",))
    assert run["points"] == {}


def test_split_folders_are_named_as_tensorboard_shows_them_and_old_files_are_left(
        tmp_path: Path) -> None:
    pytest.importorskip("tensorboardX", reason="tensorboardX is not installed")
    train(tmp_path, "tbx_writer.py", "plain")
    for old in tmp_path.rglob("events.out.tfevents.*"):  # an earlier run's file, in the folder
        os.utime(old, (time.time() - 3600, time.time() - 3600))
    run = train(tmp_path, "tbx_writer.py")
    points = run["points"]
    assert set(points) == {"train/epoch_loss", "validation/epoch_loss"}
    assert [(s, v) for _, s, v in points["validation/epoch_loss"]] == [(0, 0.5), (1, 1.5)]
    assert [(s, v) for _, s, v in points["train/epoch_loss"]] == [(0, 0.0), (1, 1.0)]


def test_without_the_tensorboard_package_one_warning_and_the_run_goes_on(tmp_path: Path) -> None:
    pytest.importorskip("tensorboardX", reason="tensorboardX is not installed")
    shadow = tmp_path / "shadow" / "tensorboard"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('not installed here')\n")
    path = os.pathsep.join([str(tmp_path / "shadow"), os.environ["PYTHONPATH"]])
    run = train(tmp_path, "tbx_writer.py", "plain", env={"PYTHONPATH": path})
    assert run["output"].count("install tracklab[tensorboard]") == 1, run["output"]
    assert run["info"]["status"] == "finished" and run["points"] == {}


def test_files_of_another_process_or_machine_in_the_folder_are_not_this_runs(
        tmp_path: Path) -> None:
    # a sweep: two runs in one folder, or a shared filesystem: only the command's own process
    # tree, on this host, writes this run's event files
    import json
    import subprocess
    import sys

    from tests.conftest import run_tracklab
    from tests.integration_support import SCRIPTS
    from tests.integrations.tb_own_writer import write

    done = tmp_path / "done"
    wrapper = subprocess.Popen(
        [sys.executable, "-m", "tracklab_cli", "run", "-q", "--", sys.executable,
         str(SCRIPTS / "tb_own_writer.py"), str(done)], cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        while not list(tmp_path.glob("runs/mine/events.out.tfevents.*")):
            assert time.monotonic() < deadline and wrapper.poll() is None
            time.sleep(0.1)
        write(str(tmp_path / "runs" / "other"), "other", 2.0)  # this test's pid: not the run's
        (foreign,) = write_foreign(tmp_path / "runs" / "remote")
        assert foreign.exists()
        time.sleep(3)  # a scan or two sees them
        done.touch()
        assert wrapper.wait(timeout=60) == 0
    finally:
        if wrapper.poll() is None:
            wrapper.kill()
    shown = json.loads(run_tracklab("show", "latest", "--json").stdout)
    assert set(shown["metrics"]) == {"mine"}


def write_foreign(folder: Path) -> list[Path]:
    """An event file as another machine's writer names it."""
    from tests.integrations.tb_own_writer import write

    write(str(folder), "remote", 3.0)
    (path,) = folder.glob("events.out.tfevents.*")
    stamp = path.name.split(".")[3]
    other = folder / f"events.out.tfevents.{stamp}.some-other-host.1.1"
    path.rename(other)
    return [other]
