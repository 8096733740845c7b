"""Load a job file and validate it into a typed :class:`JobConfig`.

Steps, in order (each reports every problem it finds as one :class:`ConfigError`):

1. :func:`find_config`: an existing file, or a bare name looked up in ``config/``
   (``name``, ``name.yaml``, ``name.yml``, ``name.json``) as ai-toolkit does. An
   existing path wins over a same-named file in ``config/``.
2. :func:`load_raw_config`: YAML or JSON (duplicate keys are errors; ``lr: 1e-4``
   is a float as in ai-toolkit, although YAML 1.1 reads it as a string), then
   ``${VAR}`` / ``${VAR:-default}`` in string values, then ``--name``, then
   ``[name]`` in every string value. ``[trigger]`` is left for the trainer.
3. :func:`parse_job_config`: pydantic validation; every error becomes
   ``(key path, message)`` with ai-toolkit style paths (``config.process[0].model.quantize``)
   and a did-you-mean for unknown keys and invalid choices.

Nothing here imports torch, diffusers or transformers.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import types
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from toolkit.config_modules import CONFIG_ERROR_TYPE, PROCESS_TYPE_HINTS, PROCESS_TYPES, JobConfig
from toolkit.config_read import check_node_expansion, decode_config, env_problems, read_config_bytes
from toolkit.errors import ConfigError, Problem

__all__ = [
    "CONFIG_EXTENSIONS",
    "ConfigError",
    "find_config",
    "load_raw_config",
    "parse_job_config",
    "parse_text_checked",
]

CONFIG_EXTENSIONS = (".yaml", ".yml", ".json", ".jsonc")  # .jsonc: ai-toolkit reads it as plain JSON

# ------------------------------------------------------------------------- finding


def find_config(path_or_name: str, config_dir: Path) -> Path:
    """The job file for ``path_or_name``: an existing file, else ``config_dir/name[.yaml|.yml|.json]``."""
    given = Path(path_or_name).expanduser()
    candidates = [given] + [Path(config_dir) / f"{path_or_name}{ext}" for ext in ("", *CONFIG_EXTENSIONS)]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    tried = ", ".join(str(c) for c in dict.fromkeys(candidates))
    raise ConfigError(f"config file '{path_or_name}' not found; tried: {tried}")


# ------------------------------------------------------------------------- reading


class _YamlLoader(yaml.SafeLoader):
    """SafeLoader that reads ``1e-4`` as a float and refuses duplicate keys."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                if key_node.value in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key '{key_node.value}'", key_node.start_mark
                    )
                seen.add(key_node.value)
        return super().construct_mapping(node, deep)


# YAML 1.1 wants a dot in a float ("1.0e-4"); people write "1e-4" and mean a number.
# add_implicit_resolver copies the resolver table onto the subclass: SafeLoader is untouched.
_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def _parse_text(text: str, path: Path) -> Any:
    if path.suffix.lower() in (".json", ".jsonc"):

        def no_duplicates(pairs):
            keys = [k for k, _ in pairs]
            dupes = sorted({k for k in keys if keys.count(k) > 1})
            if dupes:
                raise ValueError(f"duplicate key '{dupes[0]}'")
            return dict(pairs)

        try:
            return json.loads(text, object_pairs_hook=no_duplicates)
        except RecursionError:
            raise ConfigError("the JSON is nested too deeply to be a job file", str(path)) from None
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"JSON syntax error at line {exc.lineno}, column {exc.colno}: {exc.msg}", str(path)
            ) from None
        except ValueError as exc:
            raise ConfigError(f"JSON error: {exc}", str(path)) from None
    loader = None
    try:
        # yaml.load, with the expanded size checked between composing and constructing (alias bombs)
        loader = _YamlLoader(text)  # its reader refuses control characters here already
        node = loader.get_single_node()
        if node is None:
            return None
        check_node_expansion(node, str(path))
        return loader.construct_document(node)
    except RecursionError:
        raise ConfigError("the YAML is nested too deeply to be a job file", str(path)) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"YAML error{where}: {what}", str(path)) from None
    finally:
        if loader is not None:
            loader.dispose()


_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _expand_env(value: Any, path: str, problems: list[Problem]) -> Any:
    """``${VAR}`` and ``${VAR:-default}`` (default also when VAR is empty, as in the shell) in strings."""
    if isinstance(value, dict):
        return {k: _expand_env(v, _join(path, k), problems) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v, f"{path}[{i}]", problems) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match) -> str:
        name, default = match.group(1), match.group(2)
        found = os.environ.get(name)
        if default is not None and not found:
            return default
        if found is None:
            problems.append((path, f"environment variable {name} is not set (set it, or write ${{{name}:-default}})"))
            return match.group(0)
        return found

    return _ENV.sub(replace, value)


def _substitute(value: Any, tag: str, replacement: str) -> Any:
    if isinstance(value, dict):
        return {k: _substitute(v, tag, replacement) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, tag, replacement) for v in value]
    if isinstance(value, str):
        return value.replace(tag, replacement)
    return value


def parse_text_checked(text: str | bytes, path: str | Path) -> dict:
    """Job text (bytes are decoded as :func:`toolkit.config_read.decode_config` says) parsed into a
    mapping, nothing substituted yet; the file's suffix picks JSON or YAML."""
    path = Path(path)
    if isinstance(text, bytes):
        text = decode_config(text, str(path))
    raw = _parse_text(text, path)
    if raw is None:
        raise ConfigError("the file is empty; a job file has job:, config: and optionally meta:", str(path))
    if not isinstance(raw, dict):
        raise ConfigError(f"the top level must be a mapping with job:, config: and meta:, got {_show(raw)}", str(path))
    return raw


def load_raw_config(path: str | Path, name_override: str | None = None, expand_env: bool = True) -> dict:
    """Read a YAML/JSON job file into a dict: env vars expanded, ``--name`` applied, ``[name]`` substituted.

    ``expand_env=False`` (``run.py --no-env``, jobs from the UIs): a ``${...}`` is an error naming its key.
    """
    path = Path(path)
    raw = parse_text_checked(read_config_bytes(path), path)
    if not expand_env:
        problems = env_problems({k: v for k, v in raw.items() if k != "meta"})
        if problems:
            raise ConfigError(problems, str(path))
    problems: list[Problem] = []
    if expand_env:
        raw = _expand_env(raw, "", problems)
    if problems:
        raise ConfigError(problems, str(path))
    section = raw.get("config")
    if name_override is not None and isinstance(section, dict):
        section["name"] = name_override
    name = section.get("name") if isinstance(section, dict) else None
    if isinstance(name, (str, int)) and not isinstance(name, bool):
        raw = _substitute(raw, "[name]", str(name))
    return raw


# ---------------------------------------------------------------------- validating


def parse_job_config(raw: dict, source: str) -> JobConfig:
    """Validate ``raw`` into a :class:`JobConfig`; one :class:`ConfigError` lists every problem."""
    if not isinstance(raw, dict):
        raise ConfigError(f"the top level must be a mapping with job:, config: and meta:, got {_show(raw)}", source)
    try:
        return JobConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_problems(exc.errors()), source) from None


_TYPE_MISMATCH = {
    "int_type", "int_parsing", "int_from_float", "float_type", "float_parsing", "bool_type", "bool_parsing",
    "string_type", "list_type", "dict_type", "model_type", "model_attributes_type", "literal_error",
    "none_required",
}  # fmt: skip
_BOUNDS = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}
_UNION_TYPES = (Union, types.UnionType)


class _Where:
    """Where an error's loc points, walked over the JobConfig annotations.

    pydantic puts union member tags in loc (``'sd_trainer'`` for the process
    union, ``'list[int]'`` for ``int | list[int]``); they are not keys and are
    dropped from the path here.
    """

    def __init__(self, loc: tuple):
        self.path: list[str | int] = []
        self.parent: type[BaseModel] | None = None  # model that holds the last key
        self.annotation: Any = JobConfig  # annotation at the end of the path
        self.union: tuple[tuple, Any] | None = None  # (path, annotation) of a plain union crossed
        tp: Any = JobConfig
        for item in loc:
            tp = _unwrap(tp)
            self.parent = None
            if isinstance(tp, type) and issubclass(tp, BaseModel):
                self.parent = tp
                self.path.append(item)
                tp = _field_annotation(tp, item)
            elif get_origin(tp) is list and isinstance(item, int):
                self.path.append(item)
                tp = get_args(tp)[0]
            elif get_origin(tp) in _UNION_TYPES and isinstance(item, str):
                tp = self._member(tp, item)
            else:
                self.path.append(item)
                tp = None
        self.annotation = _unwrap(tp)

    def _member(self, union: Any, tag: str) -> Any:
        members = [m for m in get_args(union) if m is not type(None)]
        for member in members:
            model = _unwrap(member)
            if isinstance(model, type) and issubclass(model, BaseModel) and "type" in model.model_fields:
                if tag in get_args(model.model_fields["type"].annotation):
                    return model
        self.union = (tuple(self.path), union)
        lists = [m for m in members if get_origin(_unwrap(m)) is list]
        others = [m for m in members if m not in lists]
        return (lists if tag.startswith("list") else others or lists)[0]

    @property
    def text(self) -> str:
        return _path_text(self.path)


def _unwrap(tp: Any) -> Any:
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            tp = get_args(tp)[0]
        elif origin in _UNION_TYPES and sum(a is not type(None) for a in get_args(tp)) == 1:
            tp = next(a for a in get_args(tp) if a is not type(None))
        else:
            return tp


def _field_annotation(model: type[BaseModel], key: Any) -> Any:
    for name, field in model.model_fields.items():
        alias = field.validation_alias
        aliases = getattr(alias, "choices", [alias] if isinstance(alias, str) else [])
        if key == name or key in aliases:
            return field.annotation
    return None


def _path_text(parts: list | tuple) -> str:
    text = ""
    for part in parts:
        text = f"{text}[{part}]" if isinstance(part, int) else _join(text, str(part))
    return text


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, str):
        return repr(value if len(value) <= 60 else value[:57] + "...")
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def _describe(tp: Any, plural: bool = False) -> str:
    tp = _unwrap(tp)
    origin = get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(v) for v in get_args(tp))
    if origin in _UNION_TYPES:
        return " or ".join(dict.fromkeys(_describe(m) for m in get_args(tp) if m is not type(None)))
    if origin is list:
        return ("lists" if plural else "a list") + " of " + _describe(get_args(tp)[0], plural=True)
    names = {bool: ("true or false", "booleans"), int: ("an integer", "integers"), float: ("a number", "numbers"),
             str: ("a string", "strings"), dict: ("a mapping", "mappings")}  # fmt: skip
    if tp in names:
        return names[tp][plural]
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return "mappings" if plural else "a mapping"
    return "values" if plural else "a value"


_OPPOSITES = (
    ("skip", "force"),
    ("ignore", "only"),
    ("min", "max"),
    ("enable", "disable"),
    ("first", "last"),
    ("start", "end"),
    ("positive", "negative"),
    ("pos", "neg"),
    ("high", "low"),
    ("include", "exclude"),
    ("train", "freeze"),
    ("unload", "load"),
    ("true", "false"),
)


def _opposite(given: str, choice: str) -> bool:
    """``force_first_sample`` vs ``skip_first_sample``: words that differ only by an antonym mean the opposite,
    so neither is offered as a did-you-mean for the other."""
    a, b = given.lower().split("_"), choice.lower().split("_")
    if len(a) != len(b):
        return False
    differ = [{x, y} for x, y in zip(a, b) if x != y]
    return bool(differ) and all(any(pair == set(o) for o in _OPPOSITES) for pair in differ)


def _did_you_mean(given: Any, choices: list[str]) -> str:
    if not isinstance(given, str):
        return ""
    choices = [c for c in choices if not _opposite(given, c)]
    exact = [c for c in choices if c.lower() == given.lower()]
    close = exact or difflib.get_close_matches(given, choices, n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def _message(error: dict, where: _Where) -> tuple[str, str]:
    """(path, message) for one pydantic error."""
    kind, ctx, given = error["type"], error.get("ctx") or {}, error.get("input")
    path = where.text
    if kind == CONFIG_ERROR_TYPE:
        return path, ctx.get("message", error["msg"])
    if kind == "extra_forbidden":
        key = str(where.path[-1])
        keys = where.parent.accepted_keys() if hasattr(where.parent, "accepted_keys") else []
        hint = _did_you_mean(key, keys) or (f"; valid keys: {', '.join(sorted(keys))}" if keys else "")
        return path, f"unknown key '{key}'{hint}"
    if kind == "missing":
        return path, "is required"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        known = ", ".join(repr(t) for t in PROCESS_TYPES)
        if kind == "union_tag_not_found":
            return _join(path, "type"), f"is required: one of {known}"
        tag = ctx.get("tag", "")
        hint = PROCESS_TYPE_HINTS.get(tag) or _did_you_mean(tag, list(PROCESS_TYPES)).lstrip("; ")
        return _join(path, "type"), f"unknown process type {tag!r}; known types: {known}" + (
            f"; {hint}" if hint else ""
        )
    if kind == "literal_error":
        choices = [str(v) for v in get_args(where.annotation)] if get_origin(where.annotation) is Literal else []
        expected = ", ".join(repr(c) for c in choices) or ctx.get("expected", "")
        return path, f"must be one of {expected}, got {_show(given)}{_did_you_mean(given, choices)}"
    if kind in _BOUNDS:
        bound = next(v for k, v in ctx.items() if k in ("ge", "gt", "le", "lt"))
        return path, f"must be {_BOUNDS[kind]} {bound}, got {_show(given)}"
    if kind == "too_short":
        return path, f"needs at least {ctx.get('min_length')} item(s), got {ctx.get('actual_length')}"
    if kind == "string_too_short":
        return path, "must not be empty"
    if kind in _TYPE_MISMATCH:
        return path, f"expected {_describe(where.annotation)}, got {_show(given)}"
    if kind == "value_error":
        return path, str(ctx.get("message", error["msg"])).removeprefix("Value error, ")
    return path, f"{ctx.get('message', error['msg'])}, got {_show(given)}"


def _problems(errors: list[dict]) -> list[Problem]:
    """Map pydantic errors to (path, message); a value that fits no member of a union is one problem."""
    located = [(e, _Where(e["loc"])) for e in errors]
    groups: dict[tuple, list] = {}
    for error, where in located:
        if where.union is not None:
            groups.setdefault(where.union[0], []).append((error, where))
    problems: list[Problem] = []
    merged: set[tuple] = set()
    for error, where in located:
        if where.union is None:
            problems.append(_message(error, where))
            continue
        union_path, union_tp = where.union
        group = groups[union_path]
        specific = [(e, w) for e, w in group if len(w.path) > len(union_path) or e["type"] not in _TYPE_MISMATCH]
        if specific:
            if (error, where) in specific:
                problems.append(_message(error, where))
        elif union_path not in merged:
            merged.add(union_path)
            problems.append(
                (_path_text(union_path), f"expected {_describe(union_tp)}, got {_show(error.get('input'))}")
            )
    return list(dict.fromkeys(problems))
