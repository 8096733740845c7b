"""Base class of every process: one entry of `config.process`."""

from __future__ import annotations


class BaseProcess:
    def __init__(self, index: int, job, config):
        self.index = index
        self.job = job
        self.config = config
        self.key = f"config.process[{index}]"

    def run(self) -> None:
        raise NotImplementedError

    def cleanup(self) -> None:
        """Release what run() held (models, files); called even after a failure."""
