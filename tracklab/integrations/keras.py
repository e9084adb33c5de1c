"""Keras 3: ``model.fit(..., callbacks=[TracklabCallback()])``, with any backend (JAX,
TensorFlow, PyTorch): only the ``keras`` API is used.

Epoch logs (``loss``, ``val_loss``, metrics, the learning rate) are stored as ``epoch/<name>`` at
step = the epoch (Keras's own count, from 0), batch logs as ``batch/<name>`` at step = the batch
across epochs; ``log_freq`` says which: ``"epoch"`` (the default), ``"batch"`` (both), or a number
N (both, batches every N). The fit's params (epochs, steps) and the optimizer's config are the
run's config.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any

from tracklab.integrations._common import join_run, missing

try:
    import keras
except ImportError:
    raise missing("keras", "keras") from None

__all__ = ["TracklabCallback"]


class TracklabCallback(keras.callbacks.Callback):  # type: ignore[misc]
    """A Keras callback writing to the tracklab run (the wrapper's, under ``tracklab run``).

    Args:
        log_freq: ``"epoch"``, ``"batch"``, or log batches every N.
        project, name: as :func:`tracklab.init`; init_kwargs: its other arguments.
    """

    def __init__(self, log_freq: str | int = "epoch", project: str | None = None,
                 name: str | None = None, **init_kwargs: Any) -> None:
        super().__init__()
        if log_freq == "batch":
            log_freq = 1
        if log_freq != "epoch" and not (isinstance(log_freq, int) and log_freq >= 1):
            raise ValueError(f"log_freq is 'epoch', 'batch' or a number of batches >= 1, "
                             f"not {log_freq!r}")
        self.log_freq = log_freq
        self._init = {"project": project, "name": name, **init_kwargs}
        self._run: Any = None
        self._batch_step = 0

    @property
    def run(self) -> Any:
        if self._run is None or self._run._closed:
            self._run = join_run(**self._init)
        return self._run

    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        config: dict[str, Any] = {k: v for k, v in (self.params or {}).items()
                                  if isinstance(v, (int, float, str, bool))}
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is not None and hasattr(optimizer, "get_config"):
            try:
                config["optimizer"] = optimizer.get_config()
            except Exception:  # noqa: BLE001 - a custom optimizer's config is optional here
                pass
        self.run.config.update(config)

    def on_train_batch_end(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        step = self._batch_step
        self._batch_step += 1
        if self.log_freq == "epoch" or step % int(self.log_freq):
            return
        self.run.log({f"batch/{k}": v for k, v in _numbers(logs).items()}, step=step)

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        values = {f"epoch/{k}": v for k, v in _numbers(logs).items()}
        lr = _learning_rate(self.model)
        if lr is not None and "epoch/learning_rate" not in values:
            values["epoch/learning_rate"] = lr
        self.run.log(values, step=epoch)

    def on_train_end(self, logs: Mapping[str, Any] | None = None) -> None:
        if self._run is not None:
            self._run.flush(timeout=2.0)  # as long as finish() gives the store, no longer


def _numbers(logs: Mapping[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (logs or {}).items()
            if isinstance(v, numbers.Number) or hasattr(v, "item")}


def _learning_rate(model: Any) -> float | None:
    try:
        lr = model.optimizer.learning_rate
        return float(keras.ops.convert_to_numpy(lr))
    except Exception:  # noqa: BLE001 - no optimizer, or a schedule without a value yet
        return None
