"""`job: extension`: each process type is provided by an extension (e.g. sd_trainer)."""

from jobs.BaseJob import BaseJob


class ExtensionJob(BaseJob):
    pass
