"""`job: generate`: `to_folder` processes that write images for a list of prompts."""

from jobs.BaseJob import BaseJob


class GenerateJob(BaseJob):
    pass
