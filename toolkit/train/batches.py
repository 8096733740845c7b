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
