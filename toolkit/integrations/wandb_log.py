"""``logging.use_wandb``: the run's curves and samples in Weights & Biases, through the wandb client.

``project_name`` and ``run_name`` (default: the job name) name the run; the resolved job config is its config.
The run directory is the job folder (``<job folder>/wandb/``). Credentials and modes are wandb's own
(``wandb login`` / ``WANDB_API_KEY``; ``WANDB_MODE=offline`` writes the run locally for a later
``wandb sync``). Only the main process logs.
"""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)


class WandbLogger:
    def __init__(self, logging_config, job_name: str, folder: Path, config: dict):
        import wandb

        self._wandb = wandb
        self.run = wandb.init(
            project=logging_config.project_name,
            name=logging_config.run_name or job_name,
            dir=str(folder),
            config=config,
        )
        log.info("wandb: logging to project %s, run %s", logging_config.project_name, self.run.name)

    def log(self, values: dict, step: int) -> None:
        self.run.log(values, step=step)

    def images(self, step: int, paths: list[Path], captions: list[str]) -> None:
        images = [self._wandb.Image(str(p), caption=c) for p, c in zip(paths, captions)]
        self.run.log({"samples": images}, step=step)

    def finish(self) -> None:
        self.run.finish()
