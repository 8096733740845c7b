"""A job runs its processes in order; processes do the work."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


class BaseJob:
    """Holds the validated JobConfig and the process instances built from it."""

    def __init__(self, job_config, process_classes: list[type], plans: list | None = None):
        self.job_config = job_config
        # What toolkit/validate.py found checking each process before the first started (TrainPlan /
        # GeneratePlan per process); None when the job was built without it (each process then checks itself).
        self.plans = plans
        self.name = job_config.config.name
        self.meta = job_config.meta
        self.processes = [
            cls(index, self, process_config)
            for index, (cls, process_config) in enumerate(zip(process_classes, job_config.config.process))
        ]

    def run(self) -> None:
        for process in self.processes:
            log.info("job '%s': running process %d (%s)", self.name, process.index, process.config.type)
            process.run()

    def cleanup(self) -> None:
        for process in self.processes:
            process.cleanup()
