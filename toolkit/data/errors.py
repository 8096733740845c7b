"""Errors of the data pipeline (no heavy imports)."""

from __future__ import annotations

from toolkit.errors import ToolkitError


class DatasetError(ToolkitError):
    """A dataset problem the user fixes in the job file or the dataset folder.

    The message starts with the key path (``config.process[0].datasets[1].folder_path``)
    when there is one, and says what to change.
    """
