"""EMA of the trained LoRA parameters (``train.ema_config``), on diffusers' ``EMAModel``.

diffusers' ``diffusers.training_utils.EMAModel`` already does what we need over a list of parameters:
``step`` (skipping frozen ones), ``copy_to``, ``store``/``restore`` for sampling with the averaged weights,
and a ``state_dict``/``load_state_dict`` that accelerate checkpoints; so we use it rather than write one.
What this module adds is the toolkit's choices:

* Only the LoRA parameters are averaged (a few MB), kept beside them (same device and dtype, fp32 in practice).
* ``decay`` is ``ema_config.ema_decay``. ``EMAModel`` ramps the decay in as ``min(decay, (1 + n) / (10 + n))``
  at update n (0 on the first update, so the average starts at the current weights instead of dragging
  the random start along for hundreds of steps); with ai-toolkit's 0.99 the ramp ends near step 900.
* :func:`ema_weights` swaps the averaged weights in for sampling or saving and always swaps back.

The EMA's ``state_dict()`` holds the shadow tensors in the order of the parameter list, so build it with the
same ordered list on resume (the trainer's LoRA parameters in ``named_parameters()`` order).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Iterable, Iterator

import torch

if TYPE_CHECKING:
    from diffusers.training_utils import EMAModel

__all__ = ["build_ema", "ema_weights"]


def build_ema(parameters: Iterable[torch.nn.Parameter], decay: float) -> "EMAModel":
    """An EMA of ``parameters`` (their current values as the start); call ``.step(parameters)`` after each
    optimizer step with the same list."""
    from diffusers.training_utils import EMAModel

    if not 0.0 < decay < 1.0:
        raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
    return EMAModel(list(parameters), decay=decay)


@contextlib.contextmanager
def ema_weights(ema: "EMAModel", parameters: Iterable[torch.nn.Parameter]) -> Iterator[None]:
    """Inside the block ``parameters`` hold the EMA weights; on exit (errors included) the trained ones return."""
    parameters = list(parameters)
    ema.store(parameters)
    try:
        ema.copy_to(parameters)
        yield
    finally:
        ema.restore(parameters)
