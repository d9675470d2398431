"""Loading: safe YAML, precise syntax errors, duplicate keys, odd files -- always ConfigError."""

from __future__ import annotations

import pytest

from floe_sink.config import ConfigError, load_floe_spec, load_manifest, parse_floe_spec

FR011 = pytest.mark.requirement("4G-FR-011")

VALID = "destinations:\n  - name: a\n    sink_type: rest_api\n    connection_secret_ref: crm\n"


def problems(text: str | bytes) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_floe_spec(text)
    return info.value.problems


@FR011
def test_syntax_error_has_line_and_column() -> None:
    text = "destinations:\n  - name: a\n    sink_type: [rest_api\n"
    [problem] = problems(text)
    assert problem.startswith("floe.yaml: line 4, column 1: YAML syntax error: ")


@FR011
def test_syntax_error_never_quotes_the_offending_line() -> None:
    text = 'destinations:\n  - name: a\n    password: "hunter2\n'
    [problem] = problems(text)
    assert "line 4" in problem
    assert "hunter2" not in problem


@FR011
def test_tabs_are_a_syntax_error_with_position() -> None:
    [problem] = problems("destinations:\n\t- name: a\n")
    assert problem.startswith("floe.yaml: line 2, column 1: YAML syntax error:")


@FR011
@pytest.mark.parametrize("text", ["", "   \n\n", "# just a comment\n", b""])
def test_empty_file_is_a_clear_error(text: str | bytes) -> None:
    assert problems(text) == [
        "floe.yaml: the file is empty; expected a mapping with an optional destinations: list"
    ]


@FR011
@pytest.mark.parametrize(
    ("text", "got"),
    [("- a\n- b\n", "a list"), ("42\n", "42"), ("hello\n", "'hello'"), ("null\n", "None")],
)
def test_top_level_must_be_a_mapping(text: str, got: str) -> None:
    assert problems(text) == [
        f"floe.yaml: the top level must be a mapping (key: value pairs), got {got}; "
        "expected a mapping with an optional destinations: list (line 1)"
    ]


@FR011
def test_valid_file_passes() -> None:
    assert parse_floe_spec(VALID).destinations[0].name == "a"


@FR011
def test_duplicate_keys_are_refused_with_both_lines() -> None:
    text = VALID + "    batch_size: 10\n    batch_size: 20\n"
    assert problems(text) == [
        "floe.yaml: destinations[0].batch_size: duplicate key (first defined at line 5); YAML "
        "would silently keep only the last value, so remove one (line 6)"
    ]


@FR011
def test_duplicate_top_level_keys_are_refused() -> None:
    assert problems(VALID + "destinations: []\n") == [
        "floe.yaml: destinations: duplicate key (first defined at line 1); YAML would silently "
        "keep only the last value, so remove one (line 5)"
    ]


@FR011
def test_duplicates_and_other_problems_come_together() -> None:
    text = VALID + "    name: b\n    batch_size: 0\n"
    found = problems(text)
    assert [p.split(": ")[1] for p in found] == [
        "destinations[0].name",
        "destinations[0].batch_size",
    ]


@FR011
def test_yaml_merge_keys_may_override() -> None:
    text = (
        "base: &base {sink_type: rest_api, connection_secret_ref: crm, batch_size: 5}\n"
        "destinations:\n  - <<: *base\n    name: a\n    batch_size: 10\n"
    )
    assert parse_floe_spec(text).destinations[0].batch_size == 10


@FR011
@pytest.mark.parametrize(
    "tag",
    [
        "!!python/object/apply:os.system ['echo pwned']",
        "!!python/name:os.system",
        "!!python/object:builtins.dict {}",
        "!custom x",
    ],
)
def test_no_object_construction_from_tags(tag: str) -> None:
    [problem] = problems(f"destinations: {tag}\n")
    assert problem.startswith("floe.yaml: line 1, column 15: YAML syntax error: ")
    assert "could not determine a constructor" in problem


@FR011
def test_recursive_alias_is_refused() -> None:
    text = (
        "destinations:\n  - &d\n    name: a\n    sink_type: s\n"
        "    connection_secret_ref: c\n    config: {self: *d}\n"
    )
    found = problems(text)
    assert found[0] == (
        "floe.yaml: destinations[0].config.self: an alias refers to a value that contains it "
        "(recursive YAML) (line 6)"
    )


@FR011
def test_alias_bomb_is_cheap() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    text = (
        "\n".join(lines)
        + "\ndestinations:\n  - name: a\n    sink_type: s\n"
        + "    connection_secret_ref: c\n    config: {x: *a8}\n"
    )
    assert parse_floe_spec(text).destinations[0].config["x"][0][0][0][0][0][0][0][0][0] == "x"


@FR011
def test_deep_nesting_is_an_error_not_a_crash() -> None:
    text = "destinations: " + "[" * 5000 + "]" * 5000 + "\n"
    [problem] = problems(text)
    assert problem.startswith("floe.yaml: ")


@FR011
def test_bytes_are_utf8_and_a_bom_is_fine() -> None:
    assert parse_floe_spec(b"\xef\xbb\xbf" + VALID.encode()).destinations[0].name == "a"
    assert problems(b"destinations: [\xff]\n") == [
        "floe.yaml: not UTF-8 text (invalid byte at offset 15)"
    ]


@FR011
def test_control_characters_are_refused() -> None:
    [problem] = problems("destinations: \x07\n")
    assert problem.startswith("floe.yaml: character 15: control characters are not allowed")


@FR011
def test_several_documents_are_refused() -> None:
    [problem] = problems(VALID + "---\n" + VALID)
    assert "expected a single document" in problem


@FR011
def test_non_string_keys_are_refused() -> None:
    text = "destinations:\n  - name: a\n    sink_type: s\n    connection_secret_ref: c\n    1: x\n"
    assert problems(text) == ["floe.yaml: destinations[0]: keys must be strings, got 1 (line 2)"]


@FR011
@pytest.mark.parametrize("loader", [load_floe_spec, load_manifest])
def test_missing_file_and_directory(tmp_path, loader) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        loader(missing)
    assert info.value.problems == [f"{missing}: file not found"]
    with pytest.raises(ConfigError) as info:
        loader(tmp_path)
    assert info.value.problems == [f"{tmp_path}: is a directory, not a YAML file"]


@FR011
def test_message_lists_problems_one_per_line() -> None:
    with pytest.raises(ConfigError) as info:
        parse_floe_spec("destinations:\n  - {}\n")
    message = str(info.value)
    assert message.splitlines()[0] == "Invalid configuration in floe.yaml (3 problems):"
    assert "  - floe.yaml: destinations[0].name: required key missing (line 2)" in message
