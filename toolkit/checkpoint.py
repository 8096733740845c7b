"""Checkpoint files of a job folder, written so that a crash never corrupts one.

Per save at step S the job folder gets:
- `<name>_<S:09d>.safetensors`: the LoRA in the chosen format, with metadata;
- `<name>_<S:09d>.state.pt`: exact fp32 LoRA weights, optimizer, LR scheduler, step,
  RNG states and EMA, so resuming continues the same run.
The last save also writes `<name>.safetensors`. Each file is written to a temp name,
fsynced, then renamed (os.replace is atomic), so a file under a final name is whole.

A full disk (whatever the writer raises: OSError 28, safetensors' own error, torch's
"file write failed") is one :class:`DiskFullError`: "disk full writing <path>: N MB free; the last
complete checkpoint is step S", the temp file removed, and a step LoRA whose training state could
not be written removed too, so every LoRA on disk has its state (:func:`save_step`).
"""

from __future__ import annotations

import errno
import logging
import os
import re
import shutil
from pathlib import Path

import torch

from toolkit.errors import ToolkitError

log = logging.getLogger(__name__)


class CheckpointError(ToolkitError):
    pass


class DiskFullError(CheckpointError):
    """No space left while writing ``path``; the message says how much is free."""

    def __init__(self, path: Path, detail: str = ""):
        self.path = Path(path)
        super().__init__(f"disk full writing {self.path}: {free_mb(self.path.parent)} MB free{detail}")


def free_mb(folder: Path) -> int:
    try:
        return shutil.disk_usage(folder).free // (1024 * 1024)
    except OSError:
        return 0


def _is_disk_full(exc: BaseException, folder: Path) -> bool:
    """Writers report a full disk in their own words; errno 28 where there is one, else the message."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(exc).lower()
    if any(words in text for words in ("no space left", "errno 28", "enospc", "disk quota")):
        return True
    # torch.save says only "file write failed"; with (almost) nothing free that is the reason.
    return "write" in text and "fail" in text and free_mb(folder) < 64


def step_file(folder: Path, name: str, step: int, suffix: str = ".safetensors") -> Path:
    return Path(folder) / f"{name}_{step:09d}{suffix}"


def atomic_write(path: Path, write) -> None:
    """Call write(tmp_path), fsync, then rename onto `path`; the old file survives any failure."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # some writers create 0600 files; checkpoints are shared artefacts
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, Exception) and _is_disk_full(exc, path.parent):
            raise DiskFullError(path) from None
        if isinstance(exc, OSError):
            raise CheckpointError(f"could not write '{path}': {exc}. The previous checkpoint is untouched") from exc
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def save_safetensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    from safetensors.torch import save_file

    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def save_state(path: Path, state: dict) -> None:
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def save_step(
    folder: Path,
    name: str,
    step: int,
    tensors: dict[str, torch.Tensor],
    metadata: dict[str, str],
    state: dict,
    final: bool = False,
) -> list[str]:
    """One save at ``step``: the LoRA, then its training state, then (``final``) ``<name>.safetensors``.

    LoRA first, state last: a step counts as saved (for resume) only once both exist. On a full disk
    the step's LoRA is removed unless its state was written, and the DiskFullError names the last
    complete checkpoint. Returns the file names written.
    """
    folder = Path(folder)
    step_path, state_path = step_file(folder, name, step), step_file(folder, name, step, ".state.pt")
    try:
        save_safetensors(step_path, tensors, metadata)
        save_state(state_path, state)
        if final:
            save_safetensors(folder / f"{name}.safetensors", tensors, metadata)
    except DiskFullError as exc:
        if not state_path.exists():  # written atomically: whole or absent
            step_path.unlink(missing_ok=True)
        steps = saved_steps(folder, name)
        last = f"step {steps[-1]}" if steps else "none yet"
        raise DiskFullError(
            exc.path,
            f"; the last complete checkpoint is {last}. Free some space and run the "
            "same config again to resume from it",
        ) from None
    return [step_path.name] + ([f"{name}.safetensors"] if final else [])


def saved_steps(folder: Path, name: str) -> list[int]:
    """Steps with both a LoRA file and a training state, oldest first."""
    pattern = re.compile(rf"^{re.escape(name)}_(\d{{9}})\.safetensors$")
    steps = []
    for path in Path(folder).glob(f"{name}_*.safetensors"):
        match = pattern.match(path.name)
        if match and step_file(folder, name, int(match.group(1)), ".state.pt").exists():
            steps.append(int(match.group(1)))
    return sorted(steps)


def load_latest_state(folder: Path, name: str) -> dict | None:
    """The newest readable training state; an unreadable one is skipped with a warning."""
    for step in reversed(saved_steps(folder, name)):
        path = step_file(folder, name, step, ".state.pt")
        try:
            return torch.load(path, map_location="cpu", weights_only=False)
        except Exception as exc:  # a truncated file from another tool; fall back to the previous save
            log.warning("skipping unreadable training state %s: %s", path, exc)
    return None


def prune(folder: Path, name: str, keep: int) -> None:
    """Keep the newest `keep` step saves (LoRA + state); the final file is never pruned."""
    steps = saved_steps(folder, name)
    for step in steps[: max(len(steps) - keep, 0)]:
        for suffix in (".safetensors", ".state.pt"):
            step_file(folder, name, step, suffix).unlink(missing_ok=True)


def clean_temp_files(folder: Path) -> None:
    """Remove temp files a killed run left behind (never a file under a final name)."""
    for tmp in Path(folder).glob(".*.tmp-*"):
        tmp.unlink(missing_ok=True)
