"""Architectures as data: one declaration per arch, read by the model classes, tiny models, bench, LoRA format,
quantization/offloading, the UIs and the README."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from toolkit.arch import ArchSpec, UnknownArchError
from toolkit.arch_registry import README_BEGIN, README_END, arch_registry, get_arch, markdown_table
from toolkit.paths import ROOT

BUILTIN = ["flux", "flux2", "flux2_klein_4b", "flux2_klein_9b"]


def test_builtin_declarations():
    registry = arch_registry()
    assert list(registry)[:4] == BUILTIN
    assert all(isinstance(spec, ArchSpec) for spec in registry.values())
    assert get_arch("flux2").hidden_state_layers == (10, 20, 30)
    assert get_arch("flux2_klein_9b").hidden_state_layers == (9, 18, 27)
    assert [r.name for r in get_arch("flux").releases] == ["dev", "schnell"]
    with pytest.raises(UnknownArchError, match="unknown arch 'flux_schnell'"):
        get_arch("flux_schnell")  # schnell is a release of arch flux, not an arch


def test_registry_imports_no_torch():
    code = textwrap.dedent("""
        import sys
        from toolkit.arch_registry import arch_registry
        from toolkit.config_modules import MODEL_ARCHS, ModelConfig
        assert len(arch_registry()) >= 4 and ModelConfig(name_or_path="x", arch="flux2").is_flux2
        heavy = [m for m in ("torch", "diffusers", "transformers") if m in sys.modules]
        assert not heavy, heavy
    """)
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


@pytest.mark.parametrize("arch", BUILTIN)
def test_model_class_reads_its_declaration(arch):
    from toolkit.util.get_model import model_registry

    cls = model_registry()[arch]
    spec = get_arch(arch)
    assert cls.spec is spec and cls.arch == arch
    assert cls.capabilities is spec.capabilities and cls.official_repo == spec.official_repo


def test_tiny_models_bench_and_lora_format_read_the_declarations():
    from toolkit import bench, lora_format, tiny

    assert "flux_schnell" not in tiny.TINY_IDS and "flux-schnell" in tiny.TINY_IDS
    schnell = tiny.SPECS["flux-schnell"]
    assert schnell.transformer_file == "flux1-schnell.safetensors" and not schnell.guidance_embeds
    assert tiny.SPECS["flux2_klein_9b"].text_hidden == get_arch("flux2_klein_9b").tiny.text_hidden
    assert set(bench.bench_archs()) == set(BUILTIN)
    assert lora_format._family("flux2_klein_4b") is lora_format._family("flux2")
    assert lora_format._family("flux") is not lora_format._family("flux2")
    with pytest.raises(ValueError, match="unknown arch family"):
        lora_format._family("flux2_unknown")


def test_readme_architecture_table_is_in_sync():
    text = (ROOT / "README.md").read_text()
    table = text[text.index(README_BEGIN) + len(README_BEGIN) : text.index(README_END)].strip()
    assert table == markdown_table(arch_registry()), "run `python -m toolkit.arch_registry` and paste it into README"


def test_sampling_defaults_follow_the_release():
    assert get_arch("flux").release_for(guidance_embeds=False).sampling.sample_steps == 4
    assert get_arch("flux").release_for(guidance_embeds=True).sampling.guidance_scale == 3.5
    assert get_arch("flux2_klein_4b").sampling.sample_steps == 50
