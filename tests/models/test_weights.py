"""Weights layouts: every error case names the path and what was expected, before loading."""

from __future__ import annotations

import pytest

from tests.models.test_model_parity import load, single_file
from toolkit.config_modules import ModelConfig
from toolkit.models.weights import WeightsError, resolve_weights

pytestmark = pytest.mark.slow  # end-to-end: builds / loads tiny models or runs jobs (see pyproject.toml)


def cfg(**kwargs):
    return ModelConfig(arch=kwargs.pop("arch", "flux2"), **kwargs)


def test_missing_single_file(tmp_path):
    with pytest.raises(WeightsError, match=r"model.name_or_path: file '.*flux2-dev.safetensors' does not exist"):
        resolve_weights(cfg(name_or_path=str(tmp_path / "flux2-dev.safetensors")), "black-forest-labs/FLUX.2-dev")


def test_folder_that_is_not_a_diffusers_model(tmp_path):
    with pytest.raises(WeightsError, match=r"is not a diffusers model folder: expected model_index.json"):
        resolve_weights(cfg(name_or_path=str(tmp_path)), "black-forest-labs/FLUX.2-dev")


def test_non_safetensors_single_file(tmp_path):
    path = tmp_path / "model.ckpt"
    path.write_bytes(b"x")
    with pytest.raises(WeightsError, match="not a .safetensors file"):
        resolve_weights(cfg(name_or_path=str(path)), "black-forest-labs/FLUX.2-dev")


def test_corrupt_single_file(tmp_path, tiny):
    path = tmp_path / "flux2-dev.safetensors"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(WeightsError, match="not a readable safetensors file"):
        load("flux2", name_or_path=str(path), extras_name_or_path=str(tiny("flux2")))


def test_nonexistent_path_that_is_not_a_repo_id(tmp_path):
    with pytest.raises(WeightsError, match="does not exist"):
        resolve_weights(cfg(name_or_path="./no/such/folder"), "black-forest-labs/FLUX.2-dev")


def test_repo_id_not_in_cache_offline(tmp_path, monkeypatch):
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(WeightsError, match=r"model.name_or_path: could not get 'someone/not-cached'"):
        resolve_weights(cfg(name_or_path="someone/not-cached"), "black-forest-labs/FLUX.2-dev")


def test_gated_repo_says_to_accept_the_license(monkeypatch):
    import huggingface_hub
    from huggingface_hub import errors

    def gated(*args, **kwargs):
        exc = errors.GatedRepoError.__new__(errors.GatedRepoError)  # no HTTP response object offline
        Exception.__init__(exc, "401 Client Error: access to this gated repo is restricted")
        raise exc

    monkeypatch.setattr(huggingface_hub, "snapshot_download", gated)
    with pytest.raises(WeightsError, match=r"gated repo.*HF_TOKEN"):
        resolve_weights(cfg(name_or_path="black-forest-labs/FLUX.2-dev"), "black-forest-labs/FLUX.2-dev")


def test_flux1_file_with_flux2_arch(tiny):
    with pytest.raises(WeightsError, match=r"is not a flux2 transformer checkpoint \(missing"):
        load(
            "flux2", name_or_path=str(single_file(tiny("flux", "single_file"))), extras_name_or_path=str(tiny("flux2"))
        )


def test_dev_file_with_klein_arch(tiny):
    with pytest.raises(WeightsError, match=r"not a flux2_klein_4b transformer checkpoint \(has \['guidance_in"):
        load(
            "flux2_klein_4b",
            name_or_path=str(single_file(tiny("flux2", "single_file"))),
            extras_name_or_path=str(tiny("flux2_klein_4b")),
        )


def test_flux2_file_with_flux_arch(tiny):
    with pytest.raises(WeightsError, match=r"not a FLUX.1 transformer checkpoint"):
        load("flux", name_or_path=str(single_file(tiny("flux2", "single_file"))), extras_name_or_path=str(tiny("flux")))


def test_klein_folder_with_dev_arch(tiny):
    with pytest.raises(WeightsError, match=r"has no guidance embedding.*arch 'flux2'"):
        load("flux2", name_or_path=str(tiny("flux2_klein_4b")))


def test_flux1_vae_file_for_flux2(tiny):
    flux1_ae = tiny("flux", "single_file") / "ae.safetensors"
    with pytest.raises(WeightsError, match=r"model.vae_path: .*ae.safetensors' is not a FLUX.2 VAE"):
        load("flux2", name_or_path=str(tiny("flux2")), vae_path=str(flux1_ae))


def test_vae_and_text_encoder_overrides(tiny):
    """vae_path (BFL file or diffusers folder) and text_encoder_path (folder) replace the base's."""
    base = tiny("flux2_klein_4b")
    other = tiny("flux2_klein_9b")
    model = load("flux2_klein_4b", name_or_path=str(base), vae_path=str(other / "vae"), text_encoder_path=str(other))
    reference = load("flux2_klein_9b", name_or_path=str(other))
    for a, b in ((model.vae, reference.vae), (model.pipeline.text_encoder, reference.pipeline.text_encoder)):
        first = next(iter(a.state_dict().values()))
        assert first.equal(next(iter(b.state_dict().values())))
    file_model = load(
        "flux2_klein_4b", name_or_path=str(base), vae_path=str(tiny("flux2_klein_9b", "single_file") / "ae.safetensors")
    )
    assert next(iter(file_model.vae.state_dict().values())).equal(next(iter(reference.vae.state_dict().values())))


def test_pixtral_processor_without_torchvision_says_what_to_install(tmp_path, tiny):
    """The real FLUX.2-dev tokenizer folder is a PixtralProcessor; without torchvision: a clear error."""
    import importlib.util
    import json
    import shutil

    if importlib.util.find_spec("torchvision") is not None:
        pytest.skip("torchvision is installed")
    folder = tmp_path / "FLUX.2-dev"
    shutil.copytree(tiny("flux2"), folder)
    (folder / "tokenizer" / "processor_config.json").write_text(
        json.dumps({"processor_class": "PixtralProcessor", "patch_size": 16, "spatial_merge_size": 2})
    )
    (folder / "tokenizer" / "preprocessor_config.json").write_text(
        json.dumps(
            {"image_processor_type": "PixtralImageProcessor", "processor_class": "PixtralProcessor", "patch_size": 16}
        )
    )
    with pytest.raises(WeightsError, match=r"PixtralProcessor, which needs torchvision.*torchvision==0.29.1"):
        load("flux2", name_or_path=str(folder))
