"""Optimizers and learning-rate schedules named by ``train.optimizer`` / ``train.lr_scheduler``.

The optimizers are the libraries' own (torch AdamW, bitsandbytes AdamW8bit, prodigyopt Prodigy, transformers
Adafactor), with ai-toolkit's defaults so that its YAML files train the same way: ``eps=1e-6`` for the Adam
family and Prodigy, Prodigy's ``lr`` raised to 1.0 when set below 0.1 (Prodigy estimates the step size
itself; ``lr`` is a multiplier on it), and Adafactor with a fixed ``lr`` (``relative_step``,
``scale_parameter`` and ``warmup_init`` off). ``train.optimizer_params`` override these and must be
keyword arguments of the optimizer's constructor: an unknown key is an error naming it, never ignored.

Schedules are diffusers' ``get_scheduler`` (LambdaLR), stepped once per optimizer step.
"""

from __future__ import annotations

import difflib
import inspect
import logging
from typing import Any, Callable, Iterable

import torch

from toolkit.errors import ConfigError, ToolkitError

log = logging.getLogger(__name__)

__all__ = ["OptimizerUnavailableError", "OPTIMIZERS", "LR_SCHEDULERS", "build_optimizer", "build_scheduler"]

OPTIMIZERS = ("adamw", "adamw8bit", "prodigy", "adafactor")
LR_SCHEDULERS = ("constant", "cosine", "linear")
_PARAMS_KEY = "train.optimizer_params"
_PRODIGY_MIN_LR = 0.1


class OptimizerUnavailableError(ToolkitError):
    """The optimizer asked for cannot run on this machine; the message says what to use instead."""


def _adamw():
    return torch.optim.AdamW, {"eps": 1e-6}


def _adamw8bit():
    if not torch.cuda.is_available():
        raise OptimizerUnavailableError("adamw8bit needs bitsandbytes with CUDA; use optimizer: adamw on CPU")
    try:
        import bitsandbytes
    except ImportError:
        raise OptimizerUnavailableError(
            "adamw8bit needs bitsandbytes with CUDA: pip install bitsandbytes (or set optimizer: adamw)"
        ) from None
    return bitsandbytes.optim.AdamW8bit, {"eps": 1e-6}


def _prodigy():
    from prodigyopt import Prodigy

    return Prodigy, {"eps": 1e-6}


def _adafactor():
    from transformers.optimization import Adafactor

    return Adafactor, {"relative_step": False, "scale_parameter": False, "warmup_init": False}


_FACTORIES: dict[str, Callable[[], tuple[type, dict[str, Any]]]] = {
    "adamw": _adamw,
    "adamw8bit": _adamw8bit,
    "prodigy": _prodigy,
    "adafactor": _adafactor,
}


def _accepted_keys(cls: type) -> list[str]:
    parameters = inspect.signature(cls.__init__).parameters
    return [
        name
        for name, p in parameters.items()
        if name not in ("self", "params", "lr") and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]


def _check_params(name: str, cls: type, optimizer_params: dict[str, Any]) -> None:
    accepted = _accepted_keys(cls)
    problems = []
    for key in optimizer_params:
        if key == "lr":
            problems.append((f"{_PARAMS_KEY}.lr", "set the learning rate as train.lr"))
        elif key not in accepted:
            close = difflib.get_close_matches(key, accepted, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            problems.append(
                (f"{_PARAMS_KEY}.{key}", f"not an option of optimizer {name} (accepted: {', '.join(accepted)}){hint}")
            )
    if problems:
        raise ConfigError(problems)


def build_optimizer(
    name: str,
    params: Iterable[torch.Tensor] | Iterable[dict],
    lr: float,
    optimizer_params: dict[str, Any] | None = None,
) -> torch.optim.Optimizer:
    """The optimizer ``name`` (:data:`OPTIMIZERS`, case-insensitive) over ``params`` (tensors or param groups).

    Raises :class:`OptimizerUnavailableError` for adamw8bit without CUDA or bitsandbytes, and
    :class:`~toolkit.errors.ConfigError` naming ``train.optimizer_params.<key>`` for a key the optimizer does
    not take or a value it rejects.
    """
    key = name.lower()
    if key not in _FACTORIES:
        raise ConfigError([("train.optimizer", f"unknown optimizer '{name}'; expected one of {', '.join(OPTIMIZERS)}")])
    cls, defaults = _FACTORIES[key]()
    optimizer_params = dict(optimizer_params or {})
    _check_params(key, cls, optimizer_params)
    kwargs = {**defaults, **optimizer_params}
    if key == "prodigy" and lr < _PRODIGY_MIN_LR:
        log.warning("prodigy: train.lr %g is a multiplier of Prodigy's own step size; using 1.0 as ai-toolkit does", lr)
        lr = 1.0
    if key == "adafactor" and kwargs.get("relative_step"):
        lr = None  # Adafactor's relative step computes the rate and refuses an explicit one
    if key == "adamw" and not {"fused", "foreach"} & optimizer_params.keys():
        params = list(params)
        if _can_fuse(params):
            # One kernel for the whole update instead of a handful per parameter group (foreach).
            kwargs["fused"] = True
            log.info("adamw: fused CUDA kernel")
    try:
        return cls(params, lr=lr, **kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError([(_PARAMS_KEY, f"optimizer {key} rejected {optimizer_params}: {exc}")]) from exc


_FUSED_DEVICE_TYPES = ("cuda",)


def _can_fuse(params: list) -> bool:
    """torch's fused AdamW: every parameter a floating-point tensor on a CUDA device."""
    tensors = [p for group in params for p in (group["params"] if isinstance(group, dict) else [group])]
    return bool(tensors) and all(t.device.type in _FUSED_DEVICE_TYPES and t.is_floating_point() for t in tensors)


def build_scheduler(
    name: str,
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    warmup_steps: int = 0,
    params: dict[str, Any] | None = None,
) -> torch.optim.lr_scheduler.LRScheduler:
    """``constant`` / ``cosine`` / ``linear`` (:data:`LR_SCHEDULERS`) with ``warmup_steps`` of linear warm-up.

    total_steps: optimizer steps in the whole run (``train.steps``). Cosine decays to 0 at ``total_steps``.
    ``linear`` is ai-toolkit's: torch's ``LinearLR`` over ``total_steps`` (from lr/3 up to lr unless
    ``params`` set ``start_factor`` / ``end_factor``; ``start_factor: 1, end_factor: 0`` decays to 0).
    ``params`` (``train.lr_scheduler_params``) are, as in ai-toolkit, keyword arguments of the torch scheduler
    (``ConstantLR``, ``CosineAnnealingLR``, ``LinearLR``), ``total_iters`` defaulting to ``total_steps`` (for
    cosine it is ``T_max``). Without params and for warm-up: diffusers' ``get_scheduler`` (the same curves).
    """
    from diffusers.optimization import get_scheduler

    params = dict(params or {})
    if name not in LR_SCHEDULERS:
        choices = ", ".join(LR_SCHEDULERS)
        raise ConfigError([("train.lr_scheduler", f"unknown lr_scheduler '{name}'; expected one of {choices}")])
    if warmup_steps > total_steps:
        message = f"{warmup_steps} warm-up steps exceed train.steps ({total_steps})"
        raise ConfigError([("train.lr_warmup_steps", message)])
    if name == "linear" or params:
        if warmup_steps:
            message = (
                "warm-up combines with lr_scheduler constant or cosine without lr_scheduler_params; remove it "
                "or set lr_scheduler_params yourself"
            )
            raise ConfigError([("train.lr_warmup_steps", message)])
        return _torch_scheduler(name, optimizer, total_steps, params)
    if name == "constant":
        name = "constant_with_warmup" if warmup_steps else "constant"
    return get_scheduler(name, optimizer, num_warmup_steps=warmup_steps, num_training_steps=total_steps)


def _torch_scheduler(name: str, optimizer: torch.optim.Optimizer, total_steps: int, params: dict[str, Any]):
    """ai-toolkit's ``get_lr_scheduler``: the torch scheduler of that name, ``total_iters`` = the run's steps."""
    params.setdefault("total_iters", total_steps)
    if name == "cosine":
        params["T_max"] = params.pop("total_iters")
        cls = torch.optim.lr_scheduler.CosineAnnealingLR
    elif name == "constant":
        params.setdefault("factor", 1.0)
        cls = torch.optim.lr_scheduler.ConstantLR
    else:
        cls = torch.optim.lr_scheduler.LinearLR
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self", "optimizer", "last_epoch", "verbose"}
    unknown = sorted(set(params) - accepted)
    if unknown:
        return _raise_params(unknown, accepted, cls.__name__)
    return cls(optimizer, **params)


def _raise_params(unknown: list[str], accepted: set[str], what: str):
    problems = []
    for key in unknown:
        close = difflib.get_close_matches(key, sorted(accepted), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else f"; {what} takes {', '.join(sorted(accepted))}"
        problems.append((f"train.lr_scheduler_params.{key}", f"not an option of {what}{hint}"))
    raise ConfigError(problems)


def check_optimizer(name: str, optimizer_params: dict[str, Any] | None = None) -> None:
    """Before any model loads: raise OptimizerUnavailableError if `name` cannot run here, and a ConfigError
    naming ``train.optimizer_params.<key>`` for a key its constructor does not take."""
    factory = _FACTORIES.get(name.lower())
    if factory is None:
        raise ConfigError([("train.optimizer", f"unknown optimizer '{name}'; expected one of {', '.join(OPTIMIZERS)}")])
    cls, _ = factory()
    _check_params(name.lower(), cls, dict(optimizer_params or {}))
