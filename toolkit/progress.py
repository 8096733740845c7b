"""The job folder's progress log: what the Gradio and Next.js UIs read.

`progress.jsonl` holds one JSON object per line, appended and flushed as events happen (fsynced
at saves and at the end):

    {"time": 1732800000.1, "event": "start",  "state": "running", "step": 0, "total_steps": 500, "name": "..."}
    {"time": ..., "event": "step",   "state": "running", "step": 12, "total_steps": 500, "loss": 0.41, "lr": 1e-4, "s_per_it": 1.9}
    {"time": ..., "event": "sample", "state": "running", "step": 250, "paths": ["samples/000000250_0.jpg"]}
    {"time": ..., "event": "save",   "state": "running", "step": 250, "path": "my_lora_000000250.safetensors"}
    {"time": ..., "event": "validation", "state": "running", "step": 20, "loss": 0.38}       (train.validation_config)
    {"time": ..., "event": "performance", "state": "running", "step": 50, "steps": 50, "wall_s": 95.1,
     "s_per_step": 1.9, "seconds": {"data": 0.4, "forward": 30.2, ...}, "share": {...}}    (performance_log_every)
    {"time": ..., "event": "end",    "state": "finished" | "stopped" | "error", "step": 500, "error": "..."}

Paths are relative to the job folder. `loss_log.csv` (step,loss,lr) is the loss curve,
`validation_log.csv` (step,val_loss) the validation curve; `loss.png` draws both at each save.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

log = logging.getLogger(__name__)


class ProgressLog:
    """Appends to `progress.jsonl` and `loss_log.csv`, each opened once and kept open.

    Every record is flushed at once (a UI polling the folder sees it), but fsync (a disk round trip,
    slow on the network filesystems of rented GPU machines) runs only at saves and at the end: after a
    crash the log is durable up to the last checkpoint, which is where a resume starts anyway.
    """

    DURABLE_EVENTS = ("save", "end")

    def __init__(self, folder: Path, enabled: bool = True):
        self.folder = Path(folder)
        self.path = self.folder / "progress.jsonl"
        self.loss_path = self.folder / "loss_log.csv"
        self.validation_path = self.folder / "validation_log.csv"
        self.enabled = enabled
        self._files: dict[Path, object] = {}

    def _file(self, path: Path):
        f = self._files.get(path)
        if f is None or f.closed:
            f = self._files[path] = open(path, "a", encoding="utf-8")  # noqa: SIM115 (kept open on purpose)
        return f

    def event(self, event: str, state: str = "running", **fields) -> None:
        if not self.enabled:
            return
        record = {"time": round(time.time(), 3), "event": event, "state": state, **fields}
        try:
            f = self._file(self.path)
            f.write(json.dumps(record) + "\n")
            f.flush()
            if event in self.DURABLE_EVENTS:
                self.sync()
        except OSError as exc:  # a full disk: the run's own error says so; a lost progress line must not mask it
            log.warning("could not append to %s: %s", self.path, exc)
        if event == "end":
            self.close()

    def loss(self, step: int, loss: float, lr: float) -> None:
        if not self.enabled:
            return
        new = not self.loss_path.exists() or self.loss_path.stat().st_size == 0
        f = self._file(self.loss_path)
        if new:
            f.write("step,loss,lr\n")
        f.write(f"{step},{loss:.6g},{lr:.6g}\n")
        f.flush()

    def sync(self) -> None:
        """fsync both files (at saves and at the end)."""
        for f in self._files.values():
            if not f.closed:
                f.flush()
                os.fsync(f.fileno())

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()

    def validation(self, step: int, loss: float) -> None:
        if not self.enabled:
            return
        new = not self.validation_path.exists() or self.validation_path.stat().st_size == 0
        f = self._file(self.validation_path)
        if new:
            f.write("step,val_loss\n")
        f.write(f"{step},{loss:.6g}\n")
        f.flush()

    def truncate_after(self, step: int) -> None:
        """On resume, drop loss rows past the checkpoint so the curves have no duplicates."""
        self.close()
        for path in (self.loss_path, self.validation_path):
            if not path.exists():
                continue
            lines = path.read_text().splitlines()
            kept = [lines[0]] + [line for line in lines[1:] if int(line.split(",")[0]) <= step]
            path.write_text("\n".join(kept) + "\n")


def read_events(folder: Path) -> list[dict]:
    """All progress events of a job folder (a torn last line, mid-write, is ignored)."""
    path = Path(folder) / "progress.jsonl"
    if not path.exists():
        return []
    events = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return events


def plot_loss(folder: Path) -> Path | None:
    """Draw loss_log.csv into loss.png (raw and smoothed) with PIL; returns the path."""
    from PIL import Image, ImageDraw

    path = Path(folder) / "loss_log.csv"
    if not path.exists():
        return None
    rows = [line.split(",") for line in path.read_text().splitlines()[1:] if line]
    if len(rows) < 2:
        return None
    steps = [int(r[0]) for r in rows]
    losses = [float(r[1]) for r in rows]
    smooth, ema = [], losses[0]
    for value in losses:
        ema = 0.9 * ema + 0.1 * value
        smooth.append(ema)
    w, h, pad = 640, 360, 40
    image = Image.new("RGB", (w, h), "white")
    draw = ImageDraw.Draw(image)
    validation = _read_curve(Path(folder) / "validation_log.csv")
    values = losses + [v for _, v in validation]
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1.0
    first, last = steps[0], steps[-1]

    def xy(step, value):
        x = pad + (step - first) / max(last - first, 1) * (w - 2 * pad)
        y = h - pad - (value - lo) / span * (h - 2 * pad)
        return x, y

    draw.rectangle([pad, pad, w - pad, h - pad], outline="#888")
    draw.line([xy(s, v) for s, v in zip(steps, losses)], fill="#9ecae1", width=1)
    draw.line([xy(s, v) for s, v in zip(steps, smooth)], fill="#08519c", width=2)
    title = f"loss (step {first}-{last}); min {lo:.4g} max {hi:.4g}"
    if validation:
        points = [xy(s, v) for s, v in validation]
        if len(points) > 1:
            draw.line(points, fill="#d95f02", width=2)
        for x, y in points:
            draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill="#d95f02")
        title += f"; validation (orange) last {validation[-1][1]:.4g}"
    draw.text((pad, 10), title, fill="black")
    out = Path(folder) / "loss.png"
    tmp = out.with_suffix(".png.tmp")
    try:
        image.save(tmp, format="PNG")
        os.replace(tmp, out)
    except OSError as exc:  # a full disk: the plot is a convenience, the checkpoint was written before it
        tmp.unlink(missing_ok=True)
        log.warning("could not draw %s: %s", out, exc)
        return None
    return out


def _read_curve(path: Path) -> list[tuple[int, float]]:
    """(step, value) rows of a two-column curve csv with a header ([] when absent)."""
    if not path.exists():
        return []
    rows = [line.split(",") for line in path.read_text().splitlines()[1:] if line]
    return [(int(r[0]), float(r[1])) for r in rows]
