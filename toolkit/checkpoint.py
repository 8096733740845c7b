"""Checkpoint files of a job folder, written so that a crash never corrupts one.

Per save at step S the job folder gets:
- `<name>_<S:09d>.safetensors`: the LoRA in the chosen format, with metadata;
- `<name>_<S:09d>.state.pt`: exact fp32 LoRA weights, optimizer, LR scheduler, step,
  RNG states and EMA, so resuming continues the same run.
The last save also writes `<name>.safetensors`. Each file is written to a temp name,
fsynced, then renamed (os.replace is atomic), so a file under a final name is whole.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import torch

from toolkit.errors import ToolkitError

log = logging.getLogger(__name__)


class CheckpointError(ToolkitError):
    pass


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
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise CheckpointError(f"could not write '{path}': {exc}. The previous checkpoint is untouched") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
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
