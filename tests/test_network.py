"""LoRA target filtering (pure) and the PEFT adapter on a tiny transformer."""

import pytest
import torch

from toolkit.network import NetworkError, attach_lora, load_lora_state_dict, lora_state_dict, select_targets

pytestmark = pytest.mark.slow  # end-to-end: builds / loads tiny models or runs jobs (see pyproject.toml)

NAMES = ["transformer_blocks.0.attn.to_q", "transformer_blocks.0.ff.linear_in",
         "single_transformer_blocks.0.attn.to_qkv_mlp_proj", "single_transformer_blocks.0.attn.to_out"]


def test_filters():
    assert select_targets(NAMES, [], [], "network") == NAMES
    assert select_targets(NAMES, ["attn"], [], "network") == [NAMES[0], NAMES[2], NAMES[3]]
    assert select_targets(NAMES, [], ["single_transformer_blocks"], "network") == NAMES[:2]
    assert select_targets(NAMES, ["attn"], ["to_out"], "network") == [NAMES[0], NAMES[2]]


def test_filter_leaving_nothing_is_an_error():
    with pytest.raises(NetworkError, match=r"config.process\[0\].network.network_kwargs.*leave no module"):
        select_targets(NAMES, ["attn"], ["attn"], "config.process[0].network")


def test_attach_trains_only_lora_and_state_round_trips():
    from toolkit.tiny_models import build_tiny_pipeline

    transformer = build_tiny_pipeline("flux2").transformer
    params = attach_lora(transformer, NAMES, rank=4, alpha=4)
    trainable = [n for n, p in transformer.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_" in n for n in trainable) and len(params) == 2 * len(NAMES)
    assert all(p.dtype == torch.float32 for p in params)
    state = lora_state_dict(transformer)
    assert "transformer_blocks.0.attn.to_q.lora_A.weight" in state
    changed = {k: torch.randn_like(v) for k, v in state.items()}
    load_lora_state_dict(transformer, changed)
    for key, value in lora_state_dict(transformer).items():
        assert torch.equal(value, changed[key])


def test_a_filter_naming_no_module_is_an_error_even_beside_good_ones():
    with pytest.raises(NetworkError, match=r"only_if_contains: \['transformer_blok'\] match no module"):
        select_targets(NAMES, ["attn", "transformer_blok"], [], "network")
