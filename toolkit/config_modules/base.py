"""The base of every config section (:class:`_Section`), the shared field types and the helpers the sections'
cross-key checks use. No torch import (see the package docstring)."""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from toolkit import aitk_keys


def _arch_ids() -> list[str]:
    # Imported here, not at the top: the registry (toolkit/arch_registry.py) imports the extension packages,
    # which must happen when a job is validated (a broken one is then a problem of that job), not whenever
    # this module is imported. It reads only declarations, never model classes: no torch.
    from toolkit.arch_registry import arch_ids

    return arch_ids()


def _family(family: str) -> frozenset[str]:
    from toolkit.arch_registry import family_archs  # see _arch_ids

    return family_archs(family)


def _check_arch(value: str) -> str:
    import difflib

    known = _arch_ids()
    if value in known:
        return value
    close = [k for k in known if k.lower() == value.lower()] or difflib.get_close_matches(value, known, n=1, cutoff=0.6)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    choices = ", ".join(repr(a) for a in known)
    raise PydanticCustomError(
        CONFIG_ERROR_TYPE,
        "{message}",
        {"message": f"must be one of {choices} (the built-in and extension architectures), got {value!r}{hint}"},
    )


class _ArchJsonSchema:
    """The JSON schema of ``arch`` lists the registered archs (the UIs offer them)."""

    def __get_pydantic_json_schema__(self, core_schema, handler):
        schema = handler(core_schema)
        schema["enum"] = _arch_ids()
        return schema


ModelArch = Annotated[str, AfterValidator(_check_arch), _ArchJsonSchema()]
"""An architecture id declared in the registry (toolkit/arch_registry.py): built-ins (``flux``, ``flux2``,
``flux2_klein_4b``, ``flux2_klein_9b``) and the archs extensions in ``extensions/`` declare."""

Dtype = Literal["bf16", "fp16", "fp32", "float32", "bfloat16", "float16"]
QType = Literal["qfloat8", "qint8", "qint4", "qint2"]

_CANONICAL_DTYPES = {
    "bf16": "bfloat16",
    "bfloat16": "bfloat16",
    "fp16": "float16",
    "float16": "float16",
    "fp32": "float32",
    "float32": "float32",
}


def canonical_dtype(dtype: str) -> str:
    """``'bf16'`` -> ``'bfloat16'`` etc.: the torch attribute name, without importing torch."""
    return _CANONICAL_DTYPES[dtype]


CONFIG_ERROR_TYPE = "config_error"
"""pydantic error type of the problems raised by :meth:`_Section._check`."""

_LocProblem = tuple[tuple[str | int, ...], str]


def _as_init_error(error: dict) -> InitErrorDetails:
    # Re-raise an error pydantic already produced, keeping its type, loc, input and ctx.
    # The rendered message travels in ctx so no template re-formatting can alter it.
    ctx = {**(error.get("ctx") or {}), "message": error["msg"]}
    return InitErrorDetails(
        type=PydanticCustomError(error["type"], "{message}", ctx), loc=error["loc"], input=error.get("input")
    )


class _Section(BaseModel):
    """Base of every config section: unknown keys are errors, cross-key checks gather."""

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)

    _hints: ClassVar[dict[str, str]] = {}
    """ai-toolkit keys this toolkit does not take -> what to write instead."""
    _legacy_keys: ClassVar[tuple[str, ...]] = ()
    """Keys accepted as input for compatibility that are not fields (offered as did-you-mean)."""
    _aitk_section: ClassVar[str | None] = None
    """This section's name in toolkit/aitk_keys.yaml: its ai-toolkit no-op and refused keys."""
    _ignored_keys: list[tuple[str, str]] = PrivateAttr(default_factory=list)
    """(key, why) of the ai-toolkit keys accepted as no-ops (toolkit.aitk_keys.ignored_keys collects them)."""

    @classmethod
    def accepted_keys(cls) -> list[str]:
        keys = list(cls._legacy_keys)
        for name, field in cls.model_fields.items():
            keys.append(name)
            alias = field.validation_alias
            if isinstance(alias, AliasChoices):
                keys += [choice for choice in alias.choices if isinstance(choice, str)]
            elif isinstance(alias, str):
                keys.append(alias)
        return list(dict.fromkeys(keys))

    @classmethod
    def _check(cls, data: dict[str, Any]) -> list[_LocProblem]:
        """Cross-key checks and legacy rewrites on the raw mapping (may edit ``data``)."""
        return []

    @model_validator(mode="wrap")
    @classmethod
    def _validate_gathering_problems(cls, data: Any, handler):
        if not isinstance(data, dict):
            return handler(data)
        original, data = data, dict(data)
        problems: list[_LocProblem] = []
        for key in [k for k in data if k in cls._hints and k not in cls.model_fields]:
            data.pop(key)
            problems.append(((key,), cls._hints[key]))
        ignored, refused = aitk_keys.apply(cls._aitk_section, data, set(cls.accepted_keys()))
        problems += [((key,), message) for key, message in refused]
        problems += cls._check(data)
        if not problems:
            result = handler(data)
            result._ignored_keys = ignored
            return result
        errors: list[InitErrorDetails] = []
        try:
            handler(data)
        except ValidationError as exc:
            errors += [_as_init_error(e) for e in exc.errors()]
        for loc, message in problems:
            head = loc[0] if loc else None
            errors.append(
                InitErrorDetails(
                    type=PydanticCustomError(CONFIG_ERROR_TYPE, "{message}", {"message": message}),
                    loc=loc,
                    input=original.get(head) if isinstance(head, str) else original,
                )
            )
        raise ValidationError.from_exception_data(cls.__name__, errors)


def _both_given(data: dict, key: str, alias: str) -> list[_LocProblem]:
    if key in data and alias in data:
        data.pop(alias)  # reported here, not again as an unknown key
        return [((alias,), f"'{alias}' is another name for '{key}'; give only one of them")]
    return []


def _lowercase(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _none_if_empty(value: Any) -> Any:
    # ai-toolkit's UI writes "" (or an empty list) for "no reference images".
    return None if value in ("", []) else value


def _as_list(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def _numbered_into_list(data: dict[str, Any], base: str, numbered: str) -> list[_LocProblem]:
    """ai-toolkit's ``{base}_1``, ``{base}_2``... (e.g. ``ctrl_img_1``) -> ``data[base]`` as a list, in number
    order; empty slots ("" or null, as its UI writes them) are skipped. Both forms at once is a problem."""
    pattern = re.compile(rf"^{re.escape(numbered)}_([1-9][0-9]*)$")
    found = sorted((int(m.group(1)), key) for key in data if isinstance(key, str) and (m := pattern.match(key)))
    if not found:
        return []
    values = [data.pop(key) for _, key in found]
    paths = [v for v in values if v not in (None, "")]
    if data.get(base) not in (None, "", []):
        return [((found[0][1],), f"give {base} or {numbered}_1..N, not both ({base} takes a list)")]
    if paths:
        data[base] = paths
    return []


# A path or a list of paths; "" or [] (ai-toolkit's UI) means none.
Paths = Annotated[str | list[str] | None, AfterValidator(_none_if_empty)]

_BOOL = TypeAdapter(bool)
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
Size = Annotated[int, Field(ge=16)]
