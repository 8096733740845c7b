import pytest

from toolkit.prompt import PromptError, PromptSpec, apply_trigger, parse_prompt


def test_plain_prompt_has_no_overrides():
    assert parse_prompt("  a cat  ") == PromptSpec(prompt="a cat")


def test_every_flag_parses():
    spec = parse_prompt("a cat on a mat --w 512 --h 768 --seed 7 --cfg 3.5 --steps 20 --m 0.5 --n blurry, low quality")
    assert spec == PromptSpec(
        prompt="a cat on a mat",
        neg="blurry, low quality",
        width=512,
        height=768,
        seed=7,
        guidance_scale=3.5,
        sample_steps=20,
        network_multiplier=0.5,
    )


def test_negative_flag_in_the_middle_stops_at_next_flag():
    spec = parse_prompt("a dog --n ugly hands --seed 3")
    assert spec.neg == "ugly hands" and spec.seed == 3


def test_unknown_flag_suggests_the_close_one():
    with pytest.raises(PromptError, match=r"--seeds.*did you mean --seed"):
        parse_prompt("a dog --seeds 3")


def test_bad_value_names_the_flag():
    with pytest.raises(PromptError, match=r"--w needs a int value, got 'wide'"):
        parse_prompt("a dog --w wide")


def test_double_dash_inside_a_word_is_text():
    assert parse_prompt("a well--known landmark").prompt == "a well--known landmark"


def test_trigger_substitution():
    assert apply_trigger("photo of [trigger] in Paris", "sks") == "photo of sks in Paris"
    assert apply_trigger("photo of [trigger] in Paris", None) == "photo of in Paris"
