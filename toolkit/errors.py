"""Errors a user can fix by editing a job file.

Kept free of heavy imports: the config loader and every front end raise and
catch these without touching torch.
"""

from __future__ import annotations

Problem = tuple[str, str]
"""(key path in ai-toolkit style such as ``config.process[0].model.quantize``, message)."""


class ToolkitError(Exception):
    """An error the user can fix; its message says how. run.py prints it without a traceback."""


class ConfigError(ToolkitError):
    """One or more problems in a job config, each with its key path.

    ``problems`` lists every problem found (not only the first), so a user fixes
    the whole file in one pass. ``source`` names the file when there is one.
    ``str(error)`` is a readable multi-line report.
    """

    def __init__(self, problems: list[Problem] | str, source: str | None = None):
        if isinstance(problems, str):
            problems = [("", problems)]
        self.problems: list[Problem] = [(str(path), str(message)) for path, message in problems]
        self.source = source
        super().__init__(self._format())

    @staticmethod
    def format_problem(path: str, message: str) -> str:
        """``path: message``, or ``path is required`` when the message reads on from the path."""
        if not path:
            return message
        return f"{path} {message}" if message.startswith("is ") else f"{path}: {message}"

    def _format(self) -> str:
        where = f" {self.source}" if self.source else ""
        lines = [self.format_problem(path, message) for path, message in self.problems]
        if len(lines) == 1:
            return f"Invalid config{where}: {lines[0]}"
        return "\n".join([f"Invalid config{where} ({len(lines)} problems):"] + [f"  - {line}" for line in lines])

    def __reduce__(self):
        # Exception pickling replays __init__ with self.args; ours differ, so say how.
        return (type(self), (self.problems, self.source))
