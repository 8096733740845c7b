"""Caption maths: trigger words, caption dropout, token shuffle and token dropout.

Every function is pure: randomness comes from the ``random.Random`` passed in, so a
caption draw is reproducible from its seed (the dataset seeds one generator per
(seed, epoch, item) draw, which keeps DataLoader workers and resumed runs in step).

The order of one draw follows ai-toolkit:

1. caption dropout: with probability ``dropout_rate`` the caption is ``""``, and
   stays empty (no trigger word), so that the model learns the unconditional case;
2. only when ``shuffle_tokens`` or ``token_dropout_rate`` is on, the caption is split
   on commas into tokens; tokens after the first ``keep_tokens`` are dropped with
   probability ``token_dropout_rate`` each, then shuffled (the first ``keep_tokens``
   stay in place), and the tokens are joined back with ``", "``; otherwise the
   caption text is left untouched;
3. the trigger word: ``[trigger]`` is replaced (:func:`toolkit.prompt.apply_trigger`),
   and when the caption does not contain the trigger word it is prepended as
   ``"trigger, caption"`` (ai-toolkit prepends it with a space; a comma keeps it a
   token of its own). Regularisation datasets (``is_reg``) do not get it prepended,
   as in ai-toolkit. The trigger is applied after the token operations, so token
   dropout or shuffling never removes or moves a prepended trigger word.
"""

from __future__ import annotations

import dataclasses
import random
import re

from toolkit.prompt import apply_trigger

__all__ = [
    "CaptionOptions",
    "clean_caption",
    "split_tokens",
    "join_tokens",
    "inject_trigger",
    "is_dropped",
    "drop_caption",
    "drop_tokens",
    "shuffle_tokens",
    "process_caption",
    "caption_variants",
    "is_static",
]


@dataclasses.dataclass(frozen=True)
class CaptionOptions:
    """How one dataset's captions are drawn (from its ``DatasetConfig`` and the job's trigger word)."""

    trigger_word: str | None = None
    add_trigger: bool = True
    dropout_rate: float = 0.0
    shuffle_tokens: bool = False
    keep_tokens: int = 0
    token_dropout_rate: float = 0.0


def clean_caption(text: str) -> str:
    """Caption file text -> one line: lines joined by a space, runs of whitespace collapsed."""
    return re.sub(r"\s+", " ", text).strip()


def split_tokens(caption: str) -> list[str]:
    """``"a, b ,, c"`` -> ``["a", "b", "c"]`` (comma-separated, stripped, empties removed)."""
    return [token.strip() for token in caption.split(",") if token.strip()]


def join_tokens(tokens: list[str]) -> str:
    return ", ".join(tokens)


def inject_trigger(caption: str, trigger_word: str | None, add_if_missing: bool = True) -> str:
    """Replace ``[trigger]``; prepend ``"trigger, "`` when the caption lacks the trigger word.

    With no trigger word, ``[trigger]`` is removed. An empty caption with a trigger word
    becomes the trigger word alone.
    """
    caption = apply_trigger(caption, trigger_word)
    if trigger_word and add_if_missing and trigger_word not in caption:
        return f"{trigger_word}, {caption}" if caption else trigger_word
    return caption


def is_dropped(rate: float, rng: random.Random) -> bool:
    """One caption-dropout draw: True with probability ``rate``. Draws from ``rng`` only when 0 < rate < 1."""
    if rate <= 0.0:
        return False
    if rate >= 1.0:
        return True
    return rng.random() < rate


def drop_caption(caption: str, rate: float, rng: random.Random) -> str:
    """``""`` with probability ``rate``, else ``caption``."""
    return "" if is_dropped(rate, rng) else caption


def drop_tokens(tokens: list[str], rate: float, keep_tokens: int, rng: random.Random) -> list[str]:
    """Each token after the first ``keep_tokens`` is removed with probability ``rate``."""
    if rate <= 0.0:
        return list(tokens)
    kept = list(tokens[:keep_tokens])
    for token in tokens[keep_tokens:]:
        if rate < 1.0 and rng.random() >= rate:
            kept.append(token)
    return kept


def shuffle_tokens(tokens: list[str], keep_tokens: int, rng: random.Random) -> list[str]:
    """Tokens shuffled, except the first ``keep_tokens`` which stay in place."""
    head, tail = list(tokens[:keep_tokens]), list(tokens[keep_tokens:])
    rng.shuffle(tail)
    return head + tail


def process_caption(caption: str, options: CaptionOptions, rng: random.Random) -> str:
    """One draw of the caption the model trains on (see the module docstring for the order)."""
    if is_dropped(options.dropout_rate, rng):
        return ""
    if options.shuffle_tokens or options.token_dropout_rate > 0:
        tokens = drop_tokens(split_tokens(caption), options.token_dropout_rate, options.keep_tokens, rng)
        if options.shuffle_tokens:
            tokens = shuffle_tokens(tokens, options.keep_tokens, rng)
        caption = join_tokens(tokens)
    return inject_trigger(caption, options.trigger_word, options.add_trigger)


def is_static(options: CaptionOptions) -> bool:
    """True when a caption has finitely few draws: the full caption and, with dropout, ``""``."""
    return not options.shuffle_tokens and options.token_dropout_rate <= 0.0


def caption_variants(caption: str, options: CaptionOptions) -> list[str]:
    """Every caption a draw can produce, for text-embedding caching.

    Raises ValueError when token shuffling or token dropout make the draws combinatorial
    (the caller turns it into an error naming the dataset).
    """
    if not is_static(options):
        raise ValueError("shuffle_tokens / token_dropout_rate make every draw a different caption")
    variants = []
    if options.dropout_rate < 1.0:
        variants.append(inject_trigger(caption, options.trigger_word, options.add_trigger))
    if options.dropout_rate > 0.0:
        variants.append("")
    return list(dict.fromkeys(variants))
