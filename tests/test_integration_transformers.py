"""Transformers' TracklabCallback under a real ``tracklab run``: a two-epoch CPU fine-tuning of a
tiny BERT made in the test keeps TrainingArguments and the model config, every on_log at its
global step, evaluation at each epoch's end, and the end-of-training figures in the summary."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration_support import steps, train

pytest.importorskip("transformers", reason="transformers is not installed")
pytest.importorskip("torch", reason="torch is not installed")
pytestmark = pytest.mark.integrations


@pytest.mark.parametrize("how", ["callback", "report_to"])
def test_a_two_epoch_fine_tuning_is_kept_at_its_global_steps(tmp_path: Path, how: str) -> None:
    run = train(tmp_path, "hf_train.py", how)
    info = run["info"]
    assert info["status"] == "finished"
    config = info["config"]
    assert config["learning_rate"] == 0.001 and config["num_train_epochs"] == 2
    assert config["model_config"]["hidden_size"] == 8
    points = run["points"]
    # 16 samples in batches of 4, two epochs, logging_steps=1; evaluation at each epoch's end
    assert steps(points["train/loss"]) == list(range(1, 9))
    assert steps(points["train/learning_rate"]) == list(range(1, 9))
    assert steps(points["eval/loss"]) == [4, 8]
    summary = run["summary"]
    for key in ("train_runtime", "train_loss", "total_flos"):
        assert isinstance(summary[key], float), key
    assert "train/train_runtime" not in points


def test_accelerate_tracker_by_name(tmp_path: Path) -> None:
    pytest.importorskip("accelerate", reason="accelerate is not installed")
    run = train(tmp_path, "accelerate_train.py")
    assert run["info"]["status"] == "finished" and run["info"]["config"] == {"lr": 0.5}
    assert steps(run["points"]["loss"]) == [0, 1, 2]
