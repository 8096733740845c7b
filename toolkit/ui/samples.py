"""What each sample image of a job shows, as the trainer will render it, for the UIs' galleries.

Sample ``i`` of a job (``samples/<step>_<i>.jpg``) is ``sample.sample_items()[i]``; its prompt is used
with ``[trigger]`` replaced (:func:`toolkit.prompt.apply_trigger`) and its ``--w/--h/--seed/--cfg/...``
flags taken out (:func:`toolkit.prompt.parse_prompt`), exactly as the trainer does. A gallery shows
the ``caption`` and the ``flags`` on a small line, never the raw text.

``python -m toolkit.ui.samples FILE`` prints ``[{"prompt", "caption", "flags": {field: value}}]`` (the
Next.js server runs it once when a job is queued). Nothing here imports torch.
"""

from __future__ import annotations

import dataclasses
import json
import sys

from toolkit.config import load_raw_config, parse_job_config
from toolkit.errors import ConfigError
from toolkit.prompt import PromptError, apply_trigger, parse_prompt


def sample_captions(raw: dict, source: str = "<ui>") -> list[dict]:
    """One entry per sample of the job's first process (``[]`` when it has no ``sample:`` section)."""
    process = parse_job_config(raw, source).config.process[0]
    sample = getattr(process, "sample", None)
    if sample is None:
        return []
    out = []
    for item in sample.sample_items():
        spec = parse_prompt(apply_trigger(item.prompt, process.trigger_word))
        flags = {k: v for k, v in dataclasses.asdict(spec).items() if k != "prompt" and v is not None}
        out.append({"prompt": item.prompt, "caption": spec.prompt, "flags": flags})
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m toolkit.ui.samples FILE", file=sys.stderr)
        return 2
    try:
        print(json.dumps(sample_captions(load_raw_config(argv[0]), argv[0])))
    except (ConfigError, PromptError) as exc:
        print(json.dumps({"error": str(exc)}))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
