"""``performance_log_every``: where the training time goes, reported every N steps.

The trainer wraps each phase in ``timer.section(name)``; :meth:`StepTimer.report` returns the seconds each
phase took since the previous report (and their share of the wall time), then starts over. Phases:
``data`` (next batch), ``forward`` (noise, embeddings, predictions, loss), ``backward``, ``optimizer`` (clip,
step, schedule, EMA), ``sampling``, ``saving``, ``validation``; ``other`` is the rest of the wall time.
On CUDA each section synchronises the device at its ends so that asynchronous kernels are charged to the
phase that launched them; a timer that is off does nothing.
"""

from __future__ import annotations

import contextlib
import time

PHASES = ("data", "forward", "backward", "optimizer", "sampling", "saving", "validation")


class StepTimer:
    def __init__(self, every: int, device=None):
        self.every = every
        self.enabled = every > 0
        self.cuda = device is not None and getattr(device, "type", str(device)) == "cuda"
        self._reset()

    def _reset(self) -> None:
        self.seconds = dict.fromkeys(PHASES, 0.0)
        self.started = time.perf_counter()
        self.steps = 0

    def _sync(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize()

    @contextlib.contextmanager
    def section(self, phase: str):
        if not self.enabled:
            yield
            return
        self._sync()
        start = time.perf_counter()
        try:
            yield
        finally:
            self._sync()
            self.seconds[phase] += time.perf_counter() - start

    def due(self, step: int) -> bool:
        self.steps += 1
        return self.enabled and step % self.every == 0

    def report(self) -> dict:
        """{'steps', 'wall_s', 's_per_step', 'seconds': {phase: s, ..., 'other': s}, 'share': {phase: 0..1}}."""
        wall = time.perf_counter() - self.started
        seconds = {phase: round(value, 4) for phase, value in self.seconds.items()}
        seconds["other"] = round(max(wall - sum(self.seconds.values()), 0.0), 4)
        report = {
            "steps": self.steps,
            "wall_s": round(wall, 4),
            "s_per_step": round(wall / max(self.steps, 1), 4),
            "seconds": seconds,
            "share": {k: round(v / wall, 4) if wall > 0 else 0.0 for k, v in seconds.items()},
        }
        self._reset()
        return report


def format_report(step: int, report: dict) -> str:
    parts = ", ".join(f"{k} {v:.2f}s ({report['share'][k]:.0%})" for k, v in report["seconds"].items() if v > 0)
    return f"performance over steps {step - report['steps'] + 1}-{step} ({report['s_per_step']:.3f} s/step): {parts}"
