"""What a training run reports besides its checkpoints: the step log (progress.jsonl, loss_log.csv), the
validation curve, the performance breakdown (``performance_log_every``) and, with ``logging.use_wandb``, the same
numbers and the samples in Weights & Biases. Only the main process writes (``progress.enabled``)."""

from __future__ import annotations

import logging
from pathlib import Path

from toolkit.train.timing import StepTimer, format_report

log = logging.getLogger(__name__)


class Reporter:
    def __init__(self, process_config, progress, job_name: str, job_config: dict, device=None):
        self.cfg = process_config
        self.progress = progress
        self.timer = StepTimer(process_config.performance_log_every, device)
        self.wandb = None
        if process_config.logging.use_wandb and progress.enabled:
            from toolkit.integrations.wandb_log import WandbLogger

            self.wandb = WandbLogger(process_config.logging, job_name, progress.folder, job_config)

    def step(self, step: int, total: int, loss: float, lr: float, seconds: float) -> None:
        """A logged step (1-based, of ``total``): the trainer reads the loss from the device only at each
        ``logging.log_every``, the last step and before a save, and calls this then. ``seconds``: per step
        since the previous logged one."""
        self.progress.loss(step, loss, lr)
        self.progress.event(
            "step", step=step, total_steps=total, loss=round(loss, 6), lr=lr, s_per_it=round(seconds, 4)
        )
        if self.wandb is not None:
            self.wandb.log({"loss": loss, "learning_rate": lr, "s_per_it": seconds}, step)

    def performance(self, step: int) -> None:
        """After every optimizer step: the timing breakdown every ``performance_log_every`` steps."""
        if self.timer.due(step):
            report = self.timer.report()
            if self.progress.enabled:
                log.info(format_report(step, report))
            self.progress.event("performance", step=step, **report)
            if self.wandb is not None:
                self.wandb.log({f"time/{k}": v for k, v in report["seconds"].items()}, step)

    def validation(self, step: int, loss: float) -> None:
        self.progress.validation(step, loss)
        self.progress.event("validation", step=step, loss=round(loss, 6))
        if self.wandb is not None:
            self.wandb.log({"val/loss": loss}, step)

    def samples(self, step: int, paths: list[str], prompts: list[str]) -> None:
        if self.wandb is not None and paths:
            self.wandb.images(step, [Path(self.progress.folder) / p for p in paths], prompts)

    def finish(self) -> None:
        if self.wandb is not None:
            self.wandb.finish()
            self.wandb = None
