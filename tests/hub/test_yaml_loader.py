"""The one YAML loader, directly: strictness, the lines it keeps, and the errors it gives."""

from __future__ import annotations

import pytest

from hub.errors import InputError
from hub.yaml_loader import load_yaml_file, load_yaml_text, parse_yaml_text


def test_a_duplicate_key_anywhere_is_an_error_naming_both_lines():
    text = "items:\n  - name: a\n    port: 1\n    port: 2\n"
    with pytest.raises(InputError) as caught:
        load_yaml_text(text, "f.yml")
    assert caught.value.problems == ["f.yml:4: duplicate key 'port' (first defined on line 3)"]
    loaded = parse_yaml_text(text, "f.yml")
    assert loaded.duplicates == ("f.yml:4: duplicate key 'port' (first defined on line 3)",)
    assert loaded.data == {"items": [{"name": "a", "port": 2}]}


def test_a_complex_key_is_refused_and_later_keys_are_still_checked():
    text = "? [a, b]\n: x\nname: 1\nname: 2\n"
    with pytest.raises(InputError) as caught:
        load_yaml_text(text, "f.yml")
    assert caught.value.problems == [
        "f.yml:1: mapping keys must be plain scalars",
        "f.yml:4: duplicate key 'name' (first defined on line 3)",
    ]


def test_yaml_1_1_scalars_stay_strings_and_1_2_ones_are_typed():
    data = load_yaml_text("a: no\nb: 1:30\nc: 012\nd: true\ne: 12\nf: 1.5\ng: ~\nh: on\n", "f.yml").data
    assert data == {"a": "no", "b": "1:30", "c": "012", "d": True, "e": 12, "f": 1.5, "g": None, "h": "on"}


def test_lines_point_at_each_value_and_fall_back_to_the_nearest_known_one():
    loaded = load_yaml_text("app:\n  name: demo\n  ports:\n    - 1\n    - 2\n", "f.yml")
    assert loaded.where(("app", "ports", 1)) == "f.yml:5"
    assert loaded.where(("app", "missing")) == "f.yml:2"
    assert loaded.where(("elsewhere", "x")) == "f.yml"
    assert loaded.where(()) == "f.yml:1"


def test_an_empty_document_has_no_data_and_no_lines():
    loaded = load_yaml_text("# nothing\n", "f.yml")
    assert (loaded.source, loaded.data, loaded.lines, loaded.where(("x",))) == ("f.yml", None, {}, "f.yml")


def test_text_that_is_not_yaml_names_its_line_and_the_problem():
    with pytest.raises(InputError) as caught:
        load_yaml_text("a: [1, 2\nb: 3\n", "f.yml")
    (problem,) = caught.value.problems
    assert problem.startswith("f.yml:") and ": not valid YAML: " in problem
    assert problem.endswith(("expected ',' or ']', but got ':'", "did not find expected ',' or ']'"))


def test_files_that_cannot_be_read(tmp_path):
    with pytest.raises(InputError) as caught:
        load_yaml_file(tmp_path / "absent.yml")
    assert caught.value.problems == [f"{tmp_path / 'absent.yml'}: file not found"]
    binary = tmp_path / "binary.yml"
    binary.write_bytes(b"a: \xff\xfe\n")
    with pytest.raises(InputError) as caught:
        load_yaml_file(binary)
    assert caught.value.problems[0].startswith(f"{binary}: cannot read: ")
    with pytest.raises(InputError) as caught:
        load_yaml_file(tmp_path)
    assert caught.value.problems[0].startswith(f"{tmp_path}: cannot read: ")


def test_non_ascii_text_is_read_as_utf8(tmp_path):
    path = tmp_path / "f.yml"
    path.write_bytes("name: Montréal\n".encode())
    assert load_yaml_file(path).data == {"name": "Montréal"}


@pytest.mark.parametrize(("text", "line"), [("a: 1\nb: \x07\nc: 2\nd: 3\n", 2), ("\nb: \x07\n", 2), ("b: \x07\n\n\n", 1)])
def test_a_character_yaml_does_not_allow_names_its_line(text, line):
    with pytest.raises(InputError) as caught:
        load_yaml_text(text, "f.yml")
    assert caught.value.problems == [f"f.yml:{line}: not valid YAML: control characters are not allowed (#x0007)"]


@pytest.mark.parametrize("text", ["items:\n  - ? [a]\n    : x\n", "app:\n  nested:\n    ? {a: 1}\n    : x\n"])
def test_a_complex_key_below_the_top_is_refused_too(text):
    with pytest.raises(InputError) as caught:
        load_yaml_text(text, "f.yml")
    (problem,) = caught.value.problems
    assert problem.endswith(": mapping keys must be plain scalars")


def test_an_empty_document_is_located_in_its_file():
    assert load_yaml_text("", "f.yml").where(()) == "f.yml"
