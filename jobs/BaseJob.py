"""A job runs its processes in order; processes do the work."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


class BaseJob:
    """Holds the validated JobConfig and the process instances built from it."""

    def __init__(self, job_config, process_classes: list[type]):
        self.job_config = job_config
        self.name = job_config.config.name
        self.meta = job_config.meta
        self.processes = [
            cls(index, self, process_config)
            for index, (cls, process_config) in enumerate(zip(process_classes, job_config.config.process))
        ]

    def run(self) -> None:
        # Every process is checked before the first one starts: a later process's missing dataset
        # must not surface after the first one trained for hours.
        for process in self.processes[1:]:
            preflight = getattr(process, "preflight", None)
            if preflight is not None:
                preflight()
        for process in self.processes:
            log.info("job '%s': running process %d (%s)", self.name, process.index, process.config.type)
            process.run()

    def cleanup(self) -> None:
        for process in self.processes:
            process.cleanup()
