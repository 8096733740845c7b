"""Data-parallel training through accelerate (`accelerate launch run.py CONFIG`).

Every process holds the whole (frozen) model and an identical copy of the LoRA.
Each global batch (`train.batch_size` x processes) is cut into one shard per
process; after backward the LoRA gradients are summed across processes (each
shard's loss is pre-scaled by its share of the batch, so the sum is the mean over
the global batch, exactly what one process would compute on the whole batch).
Identical gradients give identical optimizer steps, so no weights are broadcast.
Only the main process writes files.

A plain `python run.py` is the single-process case of the same code.
"""

from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)


class Distributed:
    """Process topology and the few collectives the trainer needs (no-ops with one process)."""

    def __init__(self):
        from accelerate import PartialState

        # Without CUDA, accelerate only forms a (gloo) process group when told to use the CPU.
        self.state = PartialState(cpu=not torch.cuda.is_available())
        self.rank = self.state.process_index
        self.world = self.state.num_processes
        self.is_main = self.state.is_main_process

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def device(self) -> torch.device:
        return self.state.device

    def barrier(self) -> None:
        if self.enabled:
            self.state.wait_for_everyone()

    def shard(self, size: int) -> tuple[int, int]:
        """[lo, hi) of a global batch of `size` for this process (shards differ by at most one)."""
        bounds = [round(i * size / self.world) for i in range(self.world + 1)]
        return bounds[self.rank], bounds[self.rank + 1]

    def sum_gradients(self, params: list[torch.nn.Parameter]) -> None:
        """All-reduce (sum) the gradients of `params` in one flat buffer."""
        if not self.enabled:
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1).float() for g in grads])
        torch.distributed.all_reduce(flat, op=torch.distributed.ReduceOp.SUM)
        offset = 0
        for param, grad in zip(params, grads):
            n = grad.numel()
            param.grad = flat[offset:offset + n].view_as(grad).to(grad.dtype)
            offset += n

    def sum_scalar(self, value: float) -> float:
        if not self.enabled:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=self._collective_device())
        torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.SUM)
        return float(tensor.item())

    def any(self, flag: bool) -> bool:
        """True on every process if it is True on any (e.g. a stop request)."""
        if not self.enabled:
            return flag
        return self.sum_scalar(1.0 if flag else 0.0) > 0

    def _collective_device(self) -> torch.device:
        return self.device if torch.distributed.get_backend() == "nccl" else torch.device("cpu")
