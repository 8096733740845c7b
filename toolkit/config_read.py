"""Reading a job file safely: a size cap, a clear word on the encoding, and bounded YAML aliases.

A job file is a few kilobytes. The limits here turn hostile or broken files into one
:class:`ConfigError` before anything grows without bound:

- :func:`read_config_bytes`: at most :data:`MAX_CONFIG_BYTES` are read (a 50 MB YAML is refused,
  not parsed for minutes);
- :func:`decode_config`: UTF-8 (a UTF-8 byte-order mark is dropped); a UTF-16/UTF-32 file is named
  as such from its byte-order mark (or its NUL bytes), any other encoding by the byte that is not
  UTF-8 and a guess of what the file is;
- :func:`check_node_expansion`: a YAML document's size with every alias (``*name``) and merge
  (``<<:``) written out is counted on the composed node graph (each node once, so the count itself
  is linear) and refused above :data:`MAX_EXPANDED_NODES`; "billion laughs" never reaches the
  constructor, the ``${ENV}`` expansion or pydantic, which would copy every aliased list.

Nothing here imports torch.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from toolkit.errors import ConfigError, Problem

MAX_CONFIG_BYTES = 4 * 1024 * 1024
MAX_EXPANDED_NODES = 200_000

_ENV_REF = re.compile(r"\$\{[^}]*\}?")
_BOMS = (  # longest first: the UTF-32 LE mark starts with the UTF-16 LE one
    (b"\xff\xfe\x00\x00", "UTF-32 LE"), (b"\x00\x00\xfe\xff", "UTF-32 BE"),
    (b"\xff\xfe", "UTF-16 LE"), (b"\xfe\xff", "UTF-16 BE"),
)  # fmt: skip


def read_config_bytes(path: Path, limit: int = MAX_CONFIG_BYTES) -> bytes:
    """The file's bytes; a ConfigError when it is unreadable or larger than ``limit``."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read config file: {exc.strerror or exc}", str(path)) from None
    if len(data) > limit:
        raise ConfigError(
            f"the file is larger than {limit // (1024 * 1024)} MiB; a job file is a few kilobytes "
            "(is this the right file?)",
            str(path),
        )
    return data


def decode_config(data: bytes, source: str) -> str:
    """UTF-8 text of a job file, or a ConfigError naming the encoding found and how to convert it."""
    for bom, name in _BOMS:
        if data.startswith(bom):
            raise ConfigError(
                f"the file is {name} encoded (it starts with a {name} byte-order mark); job files are "
                f"UTF-8: save it as UTF-8 (e.g. iconv -f {name.replace(' ', '')} -t UTF-8)",
                source,
            )
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    head = data[:4096]
    if head and head.count(0) >= len(head) // 4:
        name = "UTF-16 LE" if head[1::2].count(0) > head[0::2].count(0) else "UTF-16 BE"
        raise ConfigError(
            f"the file looks {name} encoded (every other byte is NUL, no byte-order mark); job files "
            "are UTF-8: save it as UTF-8",
            source,
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigError(
            f"the file is not UTF-8: byte 0x{data[exc.start]:02x} at line {line}, column {column} "
            f"({_guess(data)}); save it as UTF-8",
            source,
        ) from None


def _guess(data: bytes) -> str:
    try:
        from charset_normalizer import from_bytes
    except ImportError:  # optional: requests installs it; without it we only say "not UTF-8"
        return "probably Latin-1 / Windows-1252 or another 8-bit encoding"
    best = from_bytes(data).best()
    return f"it looks like {best.encoding}" if best is not None else "the encoding could not be recognised"


def check_node_expansion(node: yaml.Node, source: str, limit: int = MAX_EXPANDED_NODES) -> None:
    """Refuse a composed YAML document whose aliases and merges expand to more than ``limit`` values.

    Sizes are computed bottom-up once per node (memoized by identity), iteratively, so neither
    the count nor deep nesting can blow up.
    """
    size: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(node, False)]
    on_stack: set[int] = set()
    while stack:
        current, children_done = stack.pop()
        key = id(current)
        if key in size:
            continue
        children = _children(current)
        if children_done:
            total = 1 + sum(size.get(id(c), 0) for c in children)
            size[key] = total
            on_stack.discard(key)
            if total > limit:
                raise ConfigError(
                    f"the YAML expands to more than {limit:,} values once its aliases (*name) and "
                    "merges (<<:) are written out; a job file needs far fewer. Refusing it (an alias "
                    "bomb such as 'billion laughs'?)",
                    source,
                )
            continue
        if key in on_stack:  # a recursive alias; the constructor reports it
            continue
        on_stack.add(key)
        stack.append((current, True))
        stack.extend((c, False) for c in children if id(c) not in size)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def env_problems(raw: Any, where: str = "") -> list[Problem]:
    """Every string holding ``${...}``, by key path: UI jobs are run without environment expansion."""
    problems: list[Problem] = []
    for path, value in _strings(raw, where):
        match = _ENV_REF.search(value)
        if match:
            problems.append(
                (
                    path,
                    f"'{match.group(0)}' would read an environment variable; jobs from the UI are "
                    "never expanded (the value would be served back to the browser): write the "
                    "value itself",
                )
            )
    return problems


def _strings(value: Any, path: str) -> Iterable[tuple[str, str]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _strings(item, f"{path}[{i}]")
    elif isinstance(value, str):
        yield path, value
