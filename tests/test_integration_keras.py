"""Keras 3's TracklabCallback under a real ``tracklab run`` (with the torch and the jax backend:
the callback uses only the keras API): epoch logs at the epoch as Keras's History has them, batch logs every
N batches across epochs, the fit's params and optimizer as config."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.integration_support import steps, train

pytest.importorskip("torch", reason="torch is not installed (the tests use the torch backend)")
os.environ.setdefault("KERAS_BACKEND", "torch")  # keras imports its backend on import
pytest.importorskip("keras", reason="keras is not installed")
pytestmark = pytest.mark.integrations
BACKEND = {"KERAS_BACKEND": "torch"}


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_epoch_logs_are_keras_history_at_the_epochs(tmp_path: Path, backend: str) -> None:
    pytest.importorskip(backend, reason=f"{backend} is not installed (a Keras backend)")
    run = train(tmp_path, "keras_train.py", env={"KERAS_BACKEND": backend})
    assert run["info"]["status"] == "finished"
    config = run["info"]["config"]
    assert config["epochs"] == 2 and config["optimizer"]["name"] == "adam"
    history = json.loads((tmp_path / "history.json").read_text())
    points = run["points"]
    for key in ("loss", "mae", "val_loss", "val_mae"):
        assert [(s, v) for _, s, v in points[f"epoch/{key}"]] == list(enumerate(history[key]))
    assert steps(points["epoch/learning_rate"]) == [0, 1]
    assert not any(k.startswith("batch/") for k in points)


def test_batch_logs_every_n_batches_across_epochs(tmp_path: Path) -> None:
    run = train(tmp_path, "keras_train.py", "2", env=BACKEND)
    # 24 training samples in batches of 8: 3 batches an epoch, 6 in all, every 2nd kept
    assert steps(run["points"]["batch/loss"]) == [0, 2, 4]
    assert steps(run["points"]["epoch/loss"]) == [0, 1]


def test_a_bad_log_freq_is_a_clear_error() -> None:
    from tracklab.integrations.keras import TracklabCallback

    with pytest.raises(ValueError, match="log_freq is 'epoch', 'batch' or a number"):
        TracklabCallback(log_freq=0)
