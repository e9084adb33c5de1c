"""Accelerate's tracking API, with the tracker named as Accelerate's own are."""

from accelerate import Accelerator

import tracklab.integrations.transformers  # noqa: F401 - registers log_with="tracklab"

accelerator = Accelerator(log_with="tracklab", cpu=True)
accelerator.init_trackers("demo", config={"lr": 0.5})
for step in range(3):
    accelerator.log({"loss": 1.0 / (step + 1)}, step=step)
accelerator.end_training()
