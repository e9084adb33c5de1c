"""Lightning's TracklabLogger under a real ``tracklab run``: a two-epoch CPU training logs at the
steps Lightning's own CSVLogger gives, hyperparameters once, both ranks of a ddp run in one run."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from tests.integration_support import steps, train

pytest.importorskip("lightning", reason="lightning is not installed (pip install lightning)")
pytestmark = pytest.mark.integrations


def _csv_steps(tmp_path: Path, key: str) -> list[int]:
    (path,) = (tmp_path / "csv").rglob("metrics.csv")
    with path.open() as f:
        return [int(row["step"]) for row in csv.DictReader(f) if row[key]]


def test_a_two_epoch_training_lands_at_lightnings_steps(tmp_path: Path) -> None:
    # --no-tensorboard: the CSVLogger beside it is the reference here, not a second source
    run = train(tmp_path, "lightning_train.py", options=("--no-tensorboard",))
    info = run["info"]
    assert info["status"] == "finished"
    assert info["config"] == {"lr": 0.1, "hidden": 4}
    points = run["points"]
    assert steps(points["train_loss"]) == _csv_steps(tmp_path, "train_loss") == list(range(8))
    assert steps(points["val_loss"]) == _csv_steps(tmp_path, "val_loss") == [3, 7]
    assert run["metrics"]["epoch"]["last"] == 1
    assert {r for r, _, _ in points["train_loss"]} == {0}


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_stores_both_ranks_in_one_run(tmp_path: Path) -> None:
    run = train(tmp_path, "lightning_train.py", "ddp", options=("--no-tensorboard",))
    assert run["info"]["status"] == "finished"
    assert run["info"]["config"] == {"lr": 0.1, "hidden": 4}
    points = run["points"]["train_loss"]
    # 16 samples, batches of 4, split over 2 ranks: 2 steps an epoch on each
    assert steps(points, rank=0) == steps(points, rank=1) == [0, 1, 2, 3]
