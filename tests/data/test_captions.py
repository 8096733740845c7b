import random

import pytest

from toolkit.data.captions import (
    CaptionOptions,
    caption_variants,
    clean_caption,
    drop_caption,
    drop_tokens,
    inject_trigger,
    is_dropped,
    process_caption,
    shuffle_tokens,
    split_tokens,
)


def test_clean_caption_joins_lines_and_collapses_spaces():
    assert clean_caption("  a\nmulti  line\r\ncaption \n") == "a multi line caption"


def test_split_tokens_strips_and_drops_empty():
    assert split_tokens(" a, b ,, c ,") == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("caption", "trigger", "add", "expected"),
    [
        ("photo of [trigger], smiling", "ohwx", True, "photo of ohwx, smiling"),
        ("a red car", "ohwx", True, "ohwx, a red car"),
        ("ohwx in the rain", "ohwx", True, "ohwx in the rain"),  # already there: not added twice
        ("a red car", "ohwx", False, "a red car"),  # regularisation images get no trigger
        ("photo of [trigger]", "ohwx", False, "photo of ohwx"),  # ...but [trigger] is still replaced
        ("", "ohwx", True, "ohwx"),
        ("photo of [trigger] smiling", None, True, "photo of smiling"),
        ("a red car", None, True, "a red car"),
    ],
)
def test_inject_trigger(caption, trigger, add, expected):
    assert inject_trigger(caption, trigger, add) == expected


def test_is_dropped_rate_matches_probability():
    rng = random.Random(0)
    draws = [is_dropped(0.3, rng) for _ in range(20000)]
    assert abs(sum(draws) / len(draws) - 0.3) < 0.015


def test_drop_caption_edges_do_not_consume_randomness():
    rng = random.Random(0)
    state = rng.getstate()
    assert drop_caption("x", 0.0, rng) == "x"
    assert drop_caption("x", 1.0, rng) == ""
    assert rng.getstate() == state


def test_drop_caption_is_reproducible():
    first = [drop_caption("x", 0.5, random.Random(7)) for _ in range(3)]
    assert len(set(first)) == 1
    rng = random.Random(7)
    assert [drop_caption("x", 0.5, rng) for _ in range(50)].count("") not in (0, 50)


def test_drop_tokens_keeps_the_first_tokens():
    tokens = [f"t{i}" for i in range(10)]
    for seed in range(20):
        kept = drop_tokens(tokens, 0.5, 2, random.Random(seed))
        assert kept[:2] == ["t0", "t1"]
        assert all(t in tokens for t in kept) and kept == sorted(kept, key=tokens.index)
    assert drop_tokens(tokens, 1.0, 3, random.Random(0)) == ["t0", "t1", "t2"]
    assert drop_tokens(tokens, 0.0, 0, random.Random(0)) == tokens


def test_drop_tokens_rate():
    rng = random.Random(1)
    tokens = [str(i) for i in range(100)]
    kept = sum(len(drop_tokens(tokens, 0.25, 0, rng)) for _ in range(200))
    assert abs(kept / 20000 - 0.75) < 0.02


def test_shuffle_tokens_keeps_head_and_is_seeded():
    tokens = [f"t{i}" for i in range(8)]
    a = shuffle_tokens(tokens, 2, random.Random(3))
    assert a == shuffle_tokens(tokens, 2, random.Random(3))
    assert a[:2] == ["t0", "t1"] and sorted(a) == sorted(tokens)
    assert a != tokens
    assert {tuple(shuffle_tokens(tokens, 0, random.Random(s)))[0] for s in range(30)} != {"t0"}
    assert tokens == [f"t{i}" for i in range(8)]  # input untouched


def test_process_caption_order_dropout_tokens_then_trigger():
    options = CaptionOptions(trigger_word="ohwx", dropout_rate=0.5, shuffle_tokens=True, keep_tokens=1)
    rng = random.Random(11)
    out = [process_caption("a, b, c, d", options, rng) for _ in range(400)]
    dropped = [o for o in out if o == ""]
    assert 150 < len(dropped) < 250  # dropped captions stay empty: no trigger word
    for caption in (o for o in out if o):
        head, *tokens = split_tokens(caption)
        assert head == "ohwx"  # prepended after shuffling: always first
        assert tokens[0] == "a" and sorted(tokens) == ["a", "b", "c", "d"]
    assert len({o for o in out if o}) > 1


def test_process_caption_untouched_without_token_options():
    options = CaptionOptions()
    assert process_caption("a,b ,  c", options, random.Random(0)) == "a,b ,  c"


def test_process_caption_token_dropout_never_loses_trigger():
    options = CaptionOptions(trigger_word="ohwx", token_dropout_rate=1.0)
    assert process_caption("[trigger], a, b", options, random.Random(0)) == "ohwx"


def test_process_caption_reproducible_with_seed():
    options = CaptionOptions(trigger_word="ohwx", dropout_rate=0.1, shuffle_tokens=True, token_dropout_rate=0.2)
    first = [process_caption("a, b, c, d, e", options, random.Random(s)) for s in range(20)]
    assert first == [process_caption("a, b, c, d, e", options, random.Random(s)) for s in range(20)]


def test_caption_variants():
    assert caption_variants("a car", CaptionOptions(trigger_word="ohwx", dropout_rate=0.1)) == ["ohwx, a car", ""]
    assert caption_variants("a car", CaptionOptions()) == ["a car"]
    assert caption_variants("a car", CaptionOptions(dropout_rate=1.0)) == [""]
    with pytest.raises(ValueError):
        caption_variants("a, b", CaptionOptions(shuffle_tokens=True))
    with pytest.raises(ValueError):
        caption_variants("a, b", CaptionOptions(token_dropout_rate=0.1))
