"""Endless streams of this process's share of each global batch, resumable from a checkpoint.

The trainer keeps one stream for the training datasets and, when some dataset has ``is_reg: true``, a second
one for the regularisation datasets (ai-toolkit draws them from a loader of their own, on alternate steps).
"""

from __future__ import annotations

from toolkit.errors import ToolkitError


class BatchStream:
    """``next(stream)`` -> (shard, lo, hi, size): this process's slice [lo, hi) of the next global batch of
    ``size`` (a :class:`~toolkit.data.dataset.TrainBatch`). ``state`` is where it resumes (None: at the start).

    An empty shard (a short last batch split over more processes than items) still gets one item: its shape
    sizes the random draws and a sharded model needs every process in each forward.
    """

    def __init__(self, loader, dist, state: dict | None = None, what: str = "datasets"):
        self.loader, self.dist, self.state, self.what = loader, dist, state, what
        self._iter = None

    def __iter__(self):
        return self

    def __next__(self):
        if self._iter is None:
            self._iter = self._batches()
        return next(self._iter)

    def _batches(self):
        if self.state is not None:
            self.loader.batch_sampler.load_state_dict(self.state)
        while True:
            yielded = False
            for batch in self.loader:
                yielded = True
                self.state = batch.resume_state()
                size = len(batch.indices)
                lo, hi = self.dist.shard(size)
                yield batch.slice(lo, hi) if hi > lo else batch.slice(0, 1), lo, hi, size
            if not yielded:
                raise ToolkitError(f"the {self.what} gave no batch (batch_size larger than every bucket?)")


def is_reg_step(step: int, saves_or_samples_after: bool) -> bool:
    """Whether training step ``step`` (1-based) draws its batches from the regularisation datasets.

    As in ai-toolkit: every other step (steps 1, 3, 5...), except a step right after which the trainer saves
    or samples (ai-toolkit keeps those on the training data).
    """
    return step % 2 == 1 and not saves_or_samples_after


class TrainingBatches:
    """The batch streams of a run: the training datasets and, when some have ``is_reg: true``, the regularisation
    ones, which serve the steps :func:`is_reg_step` picks. ``states``: where each resumes (for the checkpoint)."""

    def __init__(self, process_config, dist, loader, reg_loader=None, state=None, reg_state=None):
        self.cfg = process_config
        self.train = BatchStream(loader, dist, state)
        self.reg = BatchStream(reg_loader, dist, reg_state, "is_reg datasets") if reg_loader is not None else None

    def next(self, step: int):
        """The next (shard, lo, hi, size) for training step ``step`` (1-based)."""
        train, sample = self.cfg.train, self.cfg.sample
        samples_after = (
            not train.disable_sampling and step >= sample.sample_start_step and step % sample.sample_every == 0
        )
        saves_after = step % self.cfg.save.save_every == 0
        reg = self.reg is not None and is_reg_step(step, saves_after or samples_after)
        return next(self.reg if reg else self.train)

    @property
    def states(self) -> tuple[dict | None, dict | None]:
        return self.train.state, None if self.reg is None else self.reg.state
