"""Prompt strings with ai-toolkit's inline flags.

A sample or generate prompt may carry per-image settings after the text::

    "a photo of [trigger] on a beach --w 768 --h 1024 --seed 7 --cfg 3.5 --steps 20 --n blurry"

Parsing is pure (no torch) so that every prompt in a job file is checked at
validation time, before any weights load.
"""

from __future__ import annotations

import dataclasses
import difflib
import re

from toolkit.errors import ToolkitError

# flag -> (field, converter). `--n` takes the rest of its segment as text.
_FLAGS = {
    "n": ("neg", str),
    "w": ("width", int),
    "h": ("height", int),
    "seed": ("seed", int),
    "cfg": ("guidance_scale", float),
    "steps": ("sample_steps", int),
    "m": ("network_multiplier", float),
}

# Long names people type for the short flags, used only to suggest the right one.
_SUGGEST = {
    **{f: f for f in _FLAGS},
    "width": "w",
    "height": "h",
    "neg": "n",
    "negative": "n",
    "guidance": "cfg",
    "guidance_scale": "cfg",
    "sample_steps": "steps",
    "multiplier": "m",
    "network_multiplier": "m",
}

_FLAG_RE = re.compile(r"(?:^|\s)--([A-Za-z_]+)")


class PromptError(ToolkitError, ValueError):
    """A prompt flag is unknown or its value does not parse."""


@dataclasses.dataclass(frozen=True)
class PromptSpec:
    """One image to make: the prompt text plus the settings its flags override.

    Fields left as None fall back to the section defaults (`sample:` / `generate:`).
    """

    prompt: str
    neg: str | None = None
    width: int | None = None
    height: int | None = None
    seed: int | None = None
    guidance_scale: float | None = None
    sample_steps: int | None = None
    network_multiplier: float | None = None


def parse_prompt(text: str) -> PromptSpec:
    """Split `text` into the prompt and its `--flag value` settings.

    Raises PromptError naming the flag for an unknown flag or a bad value.
    """
    matches = list(_FLAG_RE.finditer(text))
    if not matches:
        return PromptSpec(prompt=text.strip())
    values: dict[str, object] = {}
    for i, match in enumerate(matches):
        flag = match.group(1)
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        raw = text[match.end() : end].strip()
        if flag not in _FLAGS:
            close = difflib.get_close_matches(flag, list(_SUGGEST), n=1, cutoff=0.5)
            hint = f"; did you mean --{_SUGGEST[close[0]]}?" if close else ""
            raise PromptError(
                f"unknown prompt flag --{flag} in {text!r}{hint} (known: {', '.join('--' + f for f in _FLAGS)})"
            )
        field, convert = _FLAGS[flag]
        try:
            values[field] = convert(raw)
        except ValueError:
            raise PromptError(
                f"prompt flag --{flag} needs a {convert.__name__} value, got {raw!r} in {text!r}"
            ) from None
    return PromptSpec(prompt=text[: matches[0].start()].strip(), **values)


def apply_trigger(text: str, trigger_word: str | None) -> str:
    """Replace `[trigger]` the way ai-toolkit does (removed when no trigger word is set)."""
    if trigger_word:
        return text.replace("[trigger]", trigger_word)
    return re.sub(r"\s*\[trigger\]\s*", " ", text).strip()
