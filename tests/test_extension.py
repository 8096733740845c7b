"""Registry: discovery, unknown arch, broken or duplicate extensions."""

import textwrap
import uuid
from types import SimpleNamespace

import pytest

from toolkit.extension import EXTENSION_DIRS, ExtensionImportError, get_extensions, get_model_classes
from toolkit.util.get_model import UnknownArchError, get_model_class, model_registry


def make_ext_dir(tmp_path, packages: dict[str, str]):
    root = tmp_path / f"ext_{uuid.uuid4().hex[:8]}"
    for name, source in packages.items():
        (root / name).mkdir(parents=True)
        (root / name / "__init__.py").write_text(textwrap.dedent(source))
    return (root,)


def test_builtin_archs_are_registered():
    registry = model_registry()
    assert {"flux", "flux2", "flux2_klein_4b", "flux2_klein_9b"} <= set(registry)
    assert registry["flux2"].__name__ == "Flux2Model"
    assert registry["flux"].__name__ == "StableDiffusion"
    for arch, cls in registry.items():
        assert cls.arch == arch


def test_get_model_class_by_arch():
    cls = get_model_class(SimpleNamespace(arch="flux2_klein_9b"))
    assert cls.__name__ == "Flux2Klein9BModel"


def test_unknown_arch_lists_known_ones():
    with pytest.raises(UnknownArchError, match=r"no model class for arch 'sd3'.*flux2_klein_4b"):
        get_model_class(SimpleNamespace(arch="sd3"))


def test_broken_extension_is_an_error_naming_it(tmp_path):
    dirs = make_ext_dir(tmp_path, {"broken_ext": "import not_a_module_anywhere\n"})
    with pytest.raises(ExtensionImportError, match=r"extension 'broken_ext'.*not_a_module_anywhere"):
        get_extensions(dirs)


def test_user_extension_adds_a_model_and_a_process(tmp_path):
    dirs = make_ext_dir(tmp_path, {"mine": """
        from toolkit.extension import Extension
        from toolkit.models.base_model import BaseModel

        class MyModel(BaseModel):
            arch = "my_arch"

        class MyExt(Extension):
            uid = "my_process"
            @classmethod
            def get_process(cls):
                return object

        AI_TOOLKIT_MODELS = [MyModel]
        AI_TOOLKIT_EXTENSIONS = [MyExt]
    """})
    assert [c.arch for c in get_model_classes(dirs)] == ["my_arch"]
    assert "my_process" in get_extensions(dirs)
    assert get_model_class(SimpleNamespace(arch="my_arch"), dirs).__name__ == "MyModel"


def test_arch_claimed_twice_is_an_error(tmp_path):
    dirs = make_ext_dir(tmp_path, {"dup": """
        from toolkit.models.base_model import BaseModel
        class Another(BaseModel):
            arch = "flux2"
        AI_TOOLKIT_MODELS = [Another]
    """})
    with pytest.raises(UnknownArchError, match="arch 'flux2' is claimed by two classes"):
        model_registry(EXTENSION_DIRS + dirs)
