"""Real fast tokenizers for the tiny models, with vocabularies built deterministically from a small built-in
text (byte-level BPE for Mistral, Qwen and CLIP, unigram for T5) and the chat templates the pipelines call.
Nothing is downloaded."""

from __future__ import annotations

import string


_WORDS = """
a an the photo photograph picture image painting drawing sketch render illustration portrait landscape
of in on at with and or under over near behind beside between through across above below inside outside
cat dog bird horse fox owl fish woman man girl boy child person people crowd robot dragon castle house
tree flower forest mountain river lake sea ocean beach desert field garden city street road bridge car
train boat ship plane sky sun moon star cloud rain snow fog storm light shadow fire water ice stone wood
red green blue yellow black white orange purple pink brown gray golden silver bright dark pale vivid
old young small large tiny huge tall short long soft hard warm cold wet dry happy sad calm quiet loud
beautiful detailed realistic photorealistic cinematic dramatic moody colorful minimal abstract surreal
studio lighting sunset sunrise night morning evening golden hour film grain sharp focus bokeh depth field
close up wide angle shot view top side front back left right center background foreground texture style
standing sitting running walking flying swimming holding wearing looking smiling reading playing sleeping
hat coat dress shirt glasses scarf boots jacket umbrella book cup table chair window door wall floor
sign text reads says hello world trigger token word letter number one two three four five ten hundred
you are an AI that describes images in detail creative system prompt user assistant instruction answer
""".split()
_PUNCT = list(".,!?;:'\"-()[]/&%$#@*+=<>_~0123456789")


def _corpus() -> list[str]:
    """A few hundred deterministic lines built from the word list above."""
    lines = [" ".join(_WORDS[i : i + 9]) for i in range(0, len(_WORDS), 3)]
    lines += [f"{a} {b}{p} {c}" for a, b, c, p in zip(_WORDS, _WORDS[7:], _WORDS[13:], _PUNCT * 20)]
    lines += [" ".join(_PUNCT), "".join(_PUNCT)]
    return lines


def _pieces(pre_tokenizer, lower: bool = False) -> list[str]:
    """The corpus's distinct pre-tokenized pieces, sorted."""
    return sorted({p for line in _corpus() for p, _ in pre_tokenizer.pre_tokenize_str(line.lower() if lower else line)})


def _prefix_bpe(pieces: list[str], specials: list[str], suffix: str = "") -> tuple[dict[str, int], list]:
    """Byte-level BPE vocab and merges built from the corpus pieces, without training.

    tokenizers' BPE trainer breaks ties between equally frequent pairs in hash-map order, which changes
    from one process to the next; a tokenizer that differs between processes would make a folder saved by
    one process disagree with the same seed built in another. So the merges are fixed instead: each piece
    left to right (``Ġ``+``p`` -> ``Ġp``, ``Ġp``+``h`` -> ``Ġph``...), pieces in sorted order. Pieces do not
    always end up as one token (an earlier merge may take a pair first), which only makes sequences a bit
    longer; every byte is in the vocabulary, so no text is unknown. ``suffix`` marks the last symbol of a
    word (CLIP's ``</w>``).
    """
    from tokenizers import pre_tokenizers

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {token: i for i, token in enumerate(specials)}
    for symbol in alphabet + ([c + suffix for c in alphabet] if suffix else []):
        vocab.setdefault(symbol, len(vocab))
    merges = []
    for piece in pieces:
        symbols = list(piece)
        symbols[-1] += suffix
        current = symbols[0]
        for symbol in symbols[1:]:
            if current + symbol not in vocab:
                merges.append((current, symbol))
                vocab[current + symbol] = len(vocab)
            current += symbol
    return vocab, merges


# Mistral's (tekken) first ids, in the release order; the processor and the model refer to [IMG] = 10.
_MISTRAL_SPECIALS = [
    "<unk>",
    "<s>",
    "</s>",
    "[INST]",
    "[/INST]",
    "[AVAILABLE_TOOLS]",
    "[/AVAILABLE_TOOLS]",
    "[TOOL_RESULTS]",
    "[/TOOL_RESULTS]",
    "[TOOL_CALLS]",
    "[IMG]",
    "<pad>",
    "[IMG_BREAK]",
    "[IMG_END]",
    "[PREFIX]",
    "[MIDDLE]",
    "[SUFFIX]",
    "[SYSTEM_PROMPT]",
    "[/SYSTEM_PROMPT]",
    "[TOOL_CONTENT]",
]
# Renders Flux2Pipeline's messages: content is a string or a list of {"type": "text"|"image", ...}.
_MISTRAL_CHAT_TEMPLATE = (
    "{{- bos_token }}"
    "{%- for message in messages %}"
    "{%- if message['content'] is string %}{%- set text = message['content'] %}"
    "{%- else %}{%- set ns = namespace(text='') %}{%- for part in message['content'] %}"
    "{%- if part['type'] == 'text' %}{%- set ns.text = ns.text + part['text'] %}"
    "{%- elif part['type'] == 'image' %}{%- set ns.text = ns.text + '[IMG]' %}{%- endif %}"
    "{%- endfor %}{%- set text = ns.text %}{%- endif %}"
    "{%- if message['role'] == 'system' %}{{- '[SYSTEM_PROMPT]' + text + '[/SYSTEM_PROMPT]' }}"
    "{%- elif message['role'] == 'user' %}{{- '[INST]' + text + '[/INST]' }}"
    "{%- elif message['role'] == 'assistant' %}{{- text + eos_token }}"
    "{%- endif %}{%- endfor %}"
)
# Qwen3's template, reduced to what Flux2KleinPipeline uses (user turns, generation prompt, no thinking).
_QWEN3_CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}{{- '<think>\\n\\n</think>\\n\\n' }}{%- endif %}"
    "{%- endif %}"
)


def mistral_tokenizer():
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import TokenizersBackend

    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False)
    vocab, merges = _prefix_bpe(_pieces(byte_level), _MISTRAL_SPECIALS)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = byte_level
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in _MISTRAL_SPECIALS])
    tokenizer = TokenizersBackend(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        padding_side="left",
        model_max_length=131072,
    )
    tokenizer.chat_template = _MISTRAL_CHAT_TEMPLATE
    return tokenizer


def qwen_tokenizer():
    from tokenizers import pre_tokenizers
    from transformers import Qwen2TokenizerFast

    vocab, merges = _prefix_bpe(_pieces(pre_tokenizers.ByteLevel(add_prefix_space=False)), ["<|endoftext|>"])
    tokenizer = Qwen2TokenizerFast(
        vocab=vocab,
        merges=merges,
        model_max_length=131072,
        additional_special_tokens=["<|im_start|>", "<|im_end|>", "<think>", "</think>"],
    )
    tokenizer.chat_template = _QWEN3_CHAT_TEMPLATE
    return tokenizer


def clip_tokenizer():
    from tokenizers import Regex, pre_tokenizers
    from transformers import CLIPTokenizer

    # CLIPTokenizer's own splitting (lower-cased input), so that corpus words are single tokens.
    split = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
    pre = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(split), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    vocab, merges = _prefix_bpe(_pieces(pre, lower=True), ["<|startoftext|>", "<|endoftext|>"], suffix="</w>")
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)


def t5_tokenizer():
    from tokenizers import pre_tokenizers
    from transformers import T5TokenizerFast

    # A unigram vocabulary in T5's layout (<pad>, </s>, <unk> first). Whole corpus pieces score higher
    # than single characters, so known words stay whole; the scores are fixed, hence deterministic.
    pre = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(replacement="▁")])
    pieces = [p for p in _pieces(pre) if len(p) > 1]
    chars = sorted({c for p in pieces for c in p} | set(string.ascii_letters + string.digits + string.punctuation))
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    vocab += [(c, -6.0) for c in chars] + [(p, -4.0) for p in pieces]
    return T5TokenizerFast(vocab=vocab, extra_ids=0, model_max_length=512)
