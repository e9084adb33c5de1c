"""Hugging Face Transformers: ``Trainer(..., callbacks=[TracklabCallback()])``, or
``TrainingArguments(report_to="tracklab")`` once this module is imported; and, when Accelerate is
installed, ``Accelerator(log_with=TracklabTracker())`` (or ``log_with="tracklab"``: Accelerate has
a public ``register_tracker_class``, which importing this module calls).

What is kept: TrainingArguments and the model's config as the run's config (the model's under
``model_config``); every ``on_log`` as points at ``state.global_step``, named as Transformers'
own TensorBoard and wandb callbacks name them (``train/loss``, ``eval/loss``), so a TensorBoard
file of the same run is not counted twice; train_runtime, total_flos, train_loss and the other
end-of-training figures in the run's summary. Only the main process (``is_world_process_zero``)
logs: Transformers gathers the values over processes before ``on_log`` already.

``report_to="tracklab"``: Transformers has no public way for a third party to add a
``report_to`` name; it looks names up in its ``INTEGRATION_TO_CALLBACK`` table when the Trainer
is made, so importing this module adds ``"tracklab"`` there (and nothing else changes).
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any

from tracklab.integrations._common import join_run, missing

try:
    from transformers import TrainerCallback
except ImportError:
    raise missing("transformers", "transformers") from None

__all__ = ["TracklabCallback", "TracklabTracker"]

SUMMARY_KEYS = frozenset(("train_runtime", "train_samples_per_second", "train_steps_per_second",
                          "train_loss", "total_flos"))


def rewrite_logs(logs: Mapping[str, Any]) -> dict[str, Any]:
    """``eval_loss`` -> ``eval/loss``, ``test_x`` -> ``test/x``, others ``train/...``: the names
    Transformers' TensorBoard callback writes."""
    out: dict[str, Any] = {}
    for k, v in logs.items():
        for prefix in ("eval", "test"):
            if k.startswith(prefix + "_"):
                out[f"{prefix}/{k[len(prefix) + 1:]}"] = v
                break
        else:
            out[f"train/{k}"] = v
    return out


class TracklabCallback(TrainerCallback):  # type: ignore[misc]
    """A ``TrainerCallback`` writing to the tracklab run (the wrapper's, under ``tracklab run``).

    Args:
        project, name: as :func:`tracklab.init` (``name`` defaults to ``args.run_name``).
        init_kwargs: any other :func:`tracklab.init` argument.
    """

    def __init__(self, project: str | None = None, name: str | None = None,
                 **init_kwargs: Any) -> None:
        self._init = {"project": project, "name": name, **init_kwargs}
        self._run: Any = None

    def _setup(self, args: Any, state: Any, model: Any) -> Any:
        if self._run is not None and not self._run._closed:
            return self._run
        init = dict(self._init)
        if init.get("name") is None and getattr(args, "run_name", None) not in (
                None, getattr(args, "output_dir", None)):
            init["name"] = args.run_name
        self._run = join_run(**init)
        config: dict[str, Any] = dict(args.to_dict()) if hasattr(args, "to_dict") else {}
        model_config = getattr(model, "config", None)
        if model_config is not None:
            config["model_config"] = (model_config if isinstance(model_config, dict)
                                      else model_config.to_dict())
        self._run.config.update(config)
        return self._run

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None,
                       **kwargs: Any) -> None:
        if state.is_world_process_zero:
            self._setup(args, state, model)

    def on_log(self, args: Any, state: Any, control: Any, model: Any = None,
               logs: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        if not state.is_world_process_zero or not logs:
            return
        run = self._setup(args, state, model)
        points = {}
        for k, v in logs.items():
            if k in SUMMARY_KEYS:
                run.summary[k] = v
            elif isinstance(v, numbers.Number) or hasattr(v, "item"):
                points[k] = v
        if points:
            run.log(rewrite_logs(points), step=state.global_step)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._run is not None:
            self._run.flush(timeout=2.0)  # as long as finish() gives the store, no longer


try:
    from transformers.integrations import integration_utils as _hf

    _hf.INTEGRATION_TO_CALLBACK.setdefault("tracklab", TracklabCallback)
except (ImportError, AttributeError):  # a Transformers without that table: callbacks= still works
    pass

try:
    from accelerate.tracking import GeneralTracker, on_main_process
except ImportError:
    TracklabTracker: Any = None
else:
    class TracklabTracker(GeneralTracker):  # type: ignore[no-redef,misc]
        """Accelerate's tracker interface: ``Accelerator(log_with=TracklabTracker())``, then
        ``accelerator.init_trackers(...)``, ``accelerator.log(values, step=)``,
        ``accelerator.end_training()``."""

        name = "tracklab"
        requires_logging_directory = False

        def __init__(self, run_name: str | None = None, **init_kwargs: Any) -> None:
            # Accelerate passes init_trackers()'s project_name as run_name, as to wandb's
            super().__init__(_blank=True)
            self._init = {"project": run_name, **init_kwargs}
            self._run: Any = None

        @property
        def tracker(self) -> Any:
            if self._run is None or self._run._closed:
                self._run = join_run(**self._init)
            return self._run

        @on_main_process  # type: ignore[untyped-decorator]
        def store_init_configuration(self, values: Mapping[str, Any]) -> None:
            self.tracker.config.update(dict(values))

        @on_main_process  # type: ignore[untyped-decorator]
        def log(self, values: Mapping[str, Any], step: int | None = None,
                **kwargs: Any) -> None:
            self.tracker.log(dict(values), step=step)

        @on_main_process  # type: ignore[untyped-decorator]
        def finish(self) -> None:
            if self._run is not None:
                self._run.finish()

    try:
        from accelerate.tracking import register_tracker_class
    except ImportError:  # an Accelerate before it: log_with=TracklabTracker() still works
        pass
    else:
        register_tracker_class(TracklabTracker)
