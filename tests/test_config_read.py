"""toolkit.config_read: a job file is read with a size cap, its encoding named when it is not UTF-8, and its YAML
aliases bounded before anything is built; ``${...}`` found by key path for UI jobs."""

from __future__ import annotations

import pytest
import yaml

from toolkit.config_read import check_node_expansion, decode_config, env_problems, read_config_bytes
from toolkit.errors import ConfigError


def test_a_file_over_the_cap_is_refused_naming_it(tmp_path):
    path = tmp_path / "huge.yaml"
    path.write_bytes(b"# " + b"x" * 2048)
    assert read_config_bytes(path, limit=4096).startswith(b"# x")
    with pytest.raises(ConfigError) as info:
        read_config_bytes(path, limit=1024)
    assert "huge.yaml" in str(info.value) and "a job file is a few kilobytes" in str(info.value)


def test_an_unreadable_file_is_one_config_error(tmp_path):
    with pytest.raises(ConfigError) as info:
        read_config_bytes(tmp_path / "nowhere.yaml")
    assert "cannot read config file" in str(info.value) and "nowhere.yaml" in str(info.value)


def test_utf8_with_or_without_a_byte_order_mark_reads():
    assert decode_config("job: extension # é\n".encode(), "a.yaml") == "job: extension # é\n"
    assert decode_config(b"\xef\xbb\xbfjob: extension\n", "a.yaml") == "job: extension\n"


@pytest.mark.parametrize(
    "data, name",
    [
        ("job: x\n".encode("utf-16"), "UTF-16"),  # with its byte-order mark
        ("job: extension\n".encode("utf-16-le"), "UTF-16 LE"),  # without: told by the NUL bytes
        ("job: x\n".encode("utf-32"), "UTF-32"),
    ],
)
def test_utf16_and_utf32_are_named_with_how_to_convert(data, name):
    with pytest.raises(ConfigError) as info:
        decode_config(data, "job.yaml")
    assert name in str(info.value) and "save it as UTF-8" in str(info.value)


def test_an_8bit_file_names_the_byte_line_and_column():
    with pytest.raises(ConfigError) as info:
        decode_config("job: extension\nname: caf\xe9\n".encode("latin-1"), "job.yaml")
    message = str(info.value)
    assert "byte 0xe9 at line 2, column 10" in message and "save it as UTF-8" in message


def test_an_alias_bomb_is_refused_before_it_is_built():
    text = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(6)
    )  # 10^7 values once written out
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    with pytest.raises(ConfigError) as info:
        check_node_expansion(node, "bomb.yaml")
    assert "aliases" in str(info.value) and "bomb.yaml" in str(info.value)
    small = yaml.compose("a: &a [1, 2]\nb: *a\nc: {<<: {k: *a}}\n", Loader=yaml.SafeLoader)
    check_node_expansion(small, "ok.yaml")  # ordinary aliases and merges pass


def test_env_references_are_found_by_key_path():
    raw = {"config": {"name": "x", "process": [{"datasets": [{"folder_path": "${HOME}/data"}], "note": "$HOME"}]}}
    assert [path for path, _ in env_problems(raw)] == ["config.process[0].datasets[0].folder_path"]
    assert "${HOME}" in env_problems(raw)[0][1]
