"""PyTorch Lightning: ``Trainer(logger=TracklabLogger())``.

Every rank logs its own metrics (the run records which rank each point came from), not rank
zero alone; hyperparameters are stored once, from rank zero. Under ``tracklab run`` every rank
attaches to the wrapper's one run; without it each process starts a run of its own, as
``tracklab.init()`` does (and a run the script already started is the one used). Built on ``lightning.pytorch`` when installed, else on
``pytorch_lightning``.
"""

from __future__ import annotations

from argparse import Namespace
from collections.abc import Mapping
from typing import Any

from tracklab.integrations._common import join_run, missing

try:
    from lightning.pytorch.loggers.logger import Logger
    from lightning.pytorch.utilities import rank_zero_only
except ImportError:  # the older package name
    try:
        from pytorch_lightning.loggers.logger import Logger
        from pytorch_lightning.utilities import rank_zero_only
    except ImportError:
        raise missing("lightning", "lightning") from None

__all__ = ["TracklabLogger"]

FINALIZE_FLUSH_S = 2.0  # as long as finish() gives the store, no longer


class TracklabLogger(Logger):  # type: ignore[misc]
    """A Lightning logger writing to the tracklab run.

    Args:
        project, name, config, tags, notes, group: as :func:`tracklab.init` (used when this
            logger starts the run; under ``tracklab run`` the wrapper's run keeps its own).
        save_dir: where Lightning puts this logger's checkpoints (``save_dir/name/version``);
            by default the Trainer's ``default_root_dir``.
        prefix: put before every metric name (``prefix-train_loss``, Lightning's separator).
        init_kwargs: any other :func:`tracklab.init` argument.
    """

    LOGGER_JOIN_CHAR = "-"

    def __init__(self, project: str | None = None, name: str | None = None,
                 config: Any = None, save_dir: str | None = None, prefix: str = "",
                 **init_kwargs: Any) -> None:
        super().__init__()
        self._init = {"project": project, "name": name, "config": config, **init_kwargs}
        self._save_dir = save_dir
        self._prefix = prefix
        self._run: Any = None

    # -- what Lightning asks -----------------------------------------------------------------------

    @property
    def experiment(self) -> Any:
        """The :class:`tracklab.Run` (on every rank: each one logs)."""
        if self._run is None or self._run._closed:
            self._run = join_run(rank=_global_rank(), **self._init)
        return self._run

    @property
    def name(self) -> str:
        # the project, as wandb's and MLflow's loggers give theirs: checkpoints then go to
        # <default_root_dir>/<project>/<run id>/checkpoints, not one folder per run name
        return str(self.experiment.project)

    @property
    def version(self) -> str:
        return str(self.experiment.id)

    @property
    def save_dir(self) -> str | None:
        return self._save_dir

    def log_hyperparams(self, params: Mapping[str, Any] | Namespace, *args: Any,
                        **kwargs: Any) -> None:
        if _global_rank() != 0:
            return  # once: every rank has the same
        if isinstance(params, Namespace):
            params = vars(params)
        self.experiment.config.update(dict(params or {}))

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        if self._prefix:
            metrics = {f"{self._prefix}{self.LOGGER_JOIN_CHAR}{k}": v for k, v in metrics.items()}
        self.experiment.log(dict(metrics), step=step)

    def finalize(self, status: str) -> None:
        # The run stays open (trainer.test() may log after fit()); what was logged is written
        # now, bounded as finish() is. The run ends with the process, or with finish().
        if self._run is not None:
            self._run.flush(timeout=FINALIZE_FLUSH_S)


def _global_rank() -> int:
    return int(getattr(rank_zero_only, "rank", 0) or 0)
