"""Registry: discovery, unknown arch, broken or duplicate extensions, and a user's extension that adds an
architecture (one declaration plus its model class) and trains it end to end."""

import textwrap
import uuid

import pytest
import yaml

from toolkit import extension
from toolkit.arch_registry import UnknownArchError, arch_registry
from toolkit.config_modules import ModelConfig
from toolkit.extension import EXTENSION_DIRS, ExtensionImportError, get_extensions
from toolkit.util.get_model import get_model_class, model_registry


def make_ext_dir(tmp_path, packages: dict[str, dict[str, str]], folder: str = "extensions"):
    """A temporary extensions folder: {package: {file name: source}}; returns the dirs tuple."""
    root = tmp_path / f"ext_{uuid.uuid4().hex[:8]}" / folder
    for name, files in packages.items():
        (root / name).mkdir(parents=True)
        for file, source in files.items():
            (root / name / file).write_text(textwrap.dedent(source))
    return (root,)


def test_builtin_archs_are_registered():
    registry = model_registry()
    assert {"flux", "flux2", "flux2_klein_4b", "flux2_klein_9b"} <= set(registry)
    assert registry["flux2"].__name__ == "Flux2Model"
    assert registry["flux"].__name__ == "StableDiffusion"
    for arch, cls in registry.items():
        assert cls.arch == arch


def test_get_model_class_by_arch():
    cls = get_model_class(ModelConfig(name_or_path="x", arch="flux2_klein_9b"))
    assert cls.__name__ == "Flux2Klein9BModel"


def test_unknown_arch_lists_known_ones():
    with pytest.raises(ValueError, match=r"flux2_klein_4b.*got 'sd3'"):
        ModelConfig(name_or_path="x", arch="sd3")
    with pytest.raises(UnknownArchError, match=r"no model class for arch 'sd3'.*flux2_klein_4b"):
        get_model_class(ModelConfig.model_construct(name_or_path="x", arch="sd3"))


def test_broken_extension_is_an_error_naming_it(tmp_path):
    dirs = make_ext_dir(tmp_path, {"broken_ext": {"__init__.py": "import not_a_module_anywhere\n"}})
    with pytest.raises(ExtensionImportError, match=r"extension 'broken_ext'.*not_a_module_anywhere"):
        get_extensions(dirs)


def test_arch_declared_twice_is_an_error(tmp_path):
    dirs = make_ext_dir(
        tmp_path,
        {
            "dup": {
                "__init__.py": """
        import dataclasses
        from extensions_built_in.diffusion_models.flux2.arch import FLUX2_DEV
        AI_TOOLKIT_ARCHS = [dataclasses.replace(FLUX2_DEV, label="another FLUX.2", model_class="x.y:Another")]
    """
            }
        },
    )
    with pytest.raises(UnknownArchError, match="arch 'flux2' is declared twice"):
        arch_registry(EXTENSION_DIRS + dirs)


def test_model_class_without_a_declaration_is_an_error(tmp_path):
    dirs = make_ext_dir(
        tmp_path,
        {
            "nospec": {
                "__init__.py": """
        from toolkit.models.base_model import BaseModel
        class Bare(BaseModel):
            pass
        AI_TOOLKIT_MODELS = [Bare]
    """
            }
        },
    )
    with pytest.raises(ExtensionImportError, match="declares no `spec`"):
        arch_registry(dirs)


def _write_extension(tmp_path, package: str):
    """A user's extension in a fresh `extensions/` folder: a klein-4B-shaped architecture `my_klein` whose
    model class trains LoRA on the attention projections only (a hook of its own, visible in the file)."""
    init = f"""
        # The declaration: plain data, no torch, so validating a config that names this arch stays cheap.
        import dataclasses

        from extensions_built_in.diffusion_models.flux2.arch import FLUX2_KLEIN_4B

        MY_KLEIN = dataclasses.replace(
            FLUX2_KLEIN_4B, arch="my_klein", label="my klein (attention-only LoRA)",
            model_class="extensions.{package}.model:MyKleinModel",
        )
        AI_TOOLKIT_ARCHS = [MY_KLEIN]
    """
    model = """
        from extensions_built_in.diffusion_models.flux2.flux2_model import Flux2Model

        from . import MY_KLEIN


        class MyKleinModel(Flux2Model):
            spec = MY_KLEIN

            def pipeline_call_kwargs(self, request):
                kwargs = super().pipeline_call_kwargs(request)
                if request.guidance_scale > 1:
                    kwargs["negative_prompt_embeds"] = self.prompt_embeds(request.neg)["prompt_embeds"]
                return kwargs

            def lora_targets(self):
                return [name for name in super().lora_targets() if ".attn." in name]
    """
    return make_ext_dir(tmp_path, {package: {"__init__.py": init, "model.py": model}})


@pytest.mark.slow
def test_extension_adds_an_architecture_and_trains_it(tmp_path, monkeypatch):
    """Adding an architecture is one declaration plus its model class, in `extensions/`: the config validates
    against the open registry, the trainer builds the extension's class, and the LoRA file says its arch."""
    from safetensors import safe_open

    from tests.jobs.train_helpers import train_process, write_job
    from toolkit.job import get_job

    package = f"my_klein_{uuid.uuid4().hex[:8]}"
    dirs = _write_extension(tmp_path, package)
    monkeypatch.setattr(extension, "EXTENSION_DIRS", EXTENSION_DIRS[:1] + dirs)
    assert "my_klein" in arch_registry()
    with pytest.raises(ValueError, match="did you mean 'my_klein'"):
        ModelConfig(name_or_path="x", arch="my_klein_typo")
    assert ModelConfig(name_or_path="x", arch="my_klein").is_flux2  # family comes from the declaration

    process = train_process(
        tmp_path,
        arch="my_klein",
        tiny_id="flux2_klein_4b",
        steps=2,
        save={"save_every": 2},
        sample={"sample_every": 100, "sample_steps": 2},
        train={"skip_first_sample": True},
    )
    job = get_job(str(write_job(tmp_path, process, name="ext_lora")))
    try:
        job.run()
        model = job.processes[0].model
        assert type(model).__name__ == "MyKleinModel" and model.arch == "my_klein"
    finally:
        job.cleanup()
    folder = tmp_path / "output" / "ext_lora"
    with safe_open(str(folder / "ext_lora.safetensors"), framework="pt") as f:
        keys, meta = list(f.keys()), f.metadata()
    assert meta["arch"] == "my_klein"
    # The extension's lora_targets hook was used: no LoRA on the double blocks' MLPs (img_mlp / txt_mlp).
    assert any("img_attn" in key for key in keys) and not any("_mlp." in key for key in keys), keys
    assert yaml.safe_load((folder / "config.yaml").read_text())["config"]["process"][0]["model"]["arch"] == "my_klein"
    assert list((folder / "samples").glob("*.png"))
