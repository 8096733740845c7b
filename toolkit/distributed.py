"""Data-parallel training through accelerate (`accelerate launch run.py CONFIG`).

Every process holds the whole (frozen) model and an identical copy of the LoRA.
Each global batch (`train.batch_size` x processes) is cut into one shard per
process; after backward the LoRA gradients are summed across processes (each
shard's loss is pre-scaled by its share of the batch, so the sum is the mean over
the global batch, exactly what one process would compute on the whole batch).
Identical gradients give identical optimizer steps, so no weights are broadcast.
Only the main process writes files.

A plain `python run.py` is the single-process case of the same code.

FSDP (`accelerate launch --config_file config/accelerate/fsdp2.yaml run.py CONFIG`) shards the
frozen base transformer across the processes with torch's FSDP2 (`fully_shard`), one unit per
transformer block the model declares: each process keeps 1/N of every block and gathers a block only
while it runs. The LoRA parameters stay whole and replicated (FSDP's `ignored_params`), so the data
parallel scheme above is unchanged: same shards, same gradient sum, same optimizer step, same
checkpoint files. Sampling runs on every process (a sharded forward needs them all); only the main
process writes the images.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from toolkit.errors import ToolkitError

log = logging.getLogger(__name__)


class DistributedConfigError(ToolkitError):
    pass


@dataclass(frozen=True)
class FsdpSettings:
    """The parts of accelerate's FSDP config (`fsdp_config:` of an accelerate config file) we honour."""

    reshard_after_forward: bool = True
    offload_params: bool = False
    activation_checkpointing: bool = False

    @classmethod
    def from_accelerate_env(cls) -> "FsdpSettings | None":
        """Read what `accelerate launch` put in the environment; None when FSDP is not on."""
        from accelerate.utils import FullyShardedDataParallelPlugin
        from accelerate.utils.environment import parse_flag_from_env
        from torch.distributed.fsdp import CPUOffloadPolicy

        if not parse_flag_from_env("ACCELERATE_USE_FSDP"):
            return None
        plugin = FullyShardedDataParallelPlugin()
        if plugin.fsdp_version != 2:
            raise DistributedConfigError(
                f"accelerate config: fsdp_config.fsdp_version is {plugin.fsdp_version}; this trainer shards with "
                "FSDP2 (torch's fully_shard). Set fsdp_version: 2 (see config/accelerate/fsdp2.yaml)"
            )
        reshard = plugin.reshard_after_forward
        return cls(
            reshard_after_forward=reshard if isinstance(reshard, bool) else True,
            offload_params=isinstance(plugin.cpu_offload, CPUOffloadPolicy),
            activation_checkpointing=bool(plugin.activation_checkpointing),
        )


class Distributed:
    """Process topology and the few collectives the trainer needs (no-ops with one process)."""

    def __init__(self):
        from accelerate import PartialState

        # Without CUDA, accelerate only forms a (gloo) process group when told to use the CPU.
        self.state = PartialState(cpu=not torch.cuda.is_available())
        self.rank = self.state.process_index
        self.world = self.state.num_processes
        self.is_main = self.state.is_main_process
        self.fsdp = FsdpSettings.from_accelerate_env()

    @property
    def shards_model(self) -> bool:
        """FSDP is on: the trainer hands the transformer to `shard_model` instead of moving it whole."""
        return self.fsdp is not None

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

    def shard_model(
        self, module: torch.nn.Module, blocks: list[torch.nn.Module], replicated: list[torch.nn.Parameter]
    ) -> None:
        """Shard `module` (on the CPU) across the processes with FSDP2, one unit per block plus the root.

        `replicated` (the LoRA parameters) stay whole on every process's device; everything else is cut
        into one shard per process and moved there. Call after the adapter is attached and before the
        optimizer is built.
        """
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import CPUOffloadPolicy, OffloadPolicy, fully_shard

        if self.fsdp is None:
            raise DistributedConfigError("shard_model needs FSDP on (accelerate launch with an FSDP config)")
        keep = set(replicated)
        for param in keep:
            param.data = param.data.to(self.device)
        mesh = init_device_mesh(self.device.type, (self.world,))
        options = {
            "mesh": mesh,
            "reshard_after_forward": self.fsdp.reshard_after_forward,
            "offload_policy": CPUOffloadPolicy() if self.fsdp.offload_params else OffloadPolicy(),
        }
        for block in blocks:
            fully_shard(block, ignored_params={p for p in block.parameters() if p in keep}, **options)
        fully_shard(module, ignored_params=keep, **options)
        total = sum(p.numel() for p in module.parameters() if p not in keep)
        local = sum(p.to_local().numel() for p in module.parameters() if p not in keep)
        log.info(
            "FSDP: transformer sharded over %d process(es) in %d block units: this process holds %d of its "
            "%d frozen parameters (%.1f%%)",
            self.world,
            len(blocks),
            local,
            total,
            100.0 * local / max(total, 1),
        )

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
            param.grad = flat[offset : offset + n].view_as(grad).to(grad.dtype)
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
