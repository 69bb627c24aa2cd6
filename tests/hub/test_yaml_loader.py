"""The one YAML loader, directly: strictness, the lines it keeps, and the errors it gives."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hub.errors import InputError
from hub.yaml_loader import (
    MAX_ALIAS_NODES, MAX_ALIASES, MAX_DEPTH, _is_tab, load_yaml_file, load_yaml_text, parse_yaml_text,
)

REPO = Path(__file__).resolve().parents[2]


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


# Where a tab stops the scanner, and the line and column named. LibYAML reports these three ways: "found character
# that cannot start any token" (without naming it), "found a tab character that violates indentation", and
# "found a tab character where an indentation space is expected" (in a block scalar).
TABS = [
    pytest.param("a:\n\tb: 1\n", 2, 1, id="indenting a key"),
    pytest.param("\ta: 1\n", 1, 1, id="first line"),
    pytest.param("-\t- a\n", 1, 2, id="after a dash"),
    pytest.param("x:\n  y:\n\t  z: 1\n", 3, 1, id="before spaces"),
    pytest.param("\ufeffa: 1\nb:\n\t- 2\n", 3, 1, id="after a byte order mark"),
    pytest.param("a:\n  - 1\n\t- 2\n", 3, 1, id="indenting an item"),
    pytest.param("a:\n  b: 1\n  \tc: 2\n", 3, 3, id="after spaces"),
    pytest.param("name: Montréal\n\tb: 2\n", 2, 1, id="after non-ASCII text"),
    pytest.param("a: 1\r\n\tb: 2\r\n", 2, 1, id="CRLF lines"),
    pytest.param("a: |\n  foo\n\tbar\n", 3, 1, id="in a block scalar"),
]


@pytest.mark.parametrize(("text", "line", "column"), TABS)
def test_a_tab_is_named_with_its_line_and_column(text, line, column):
    with pytest.raises(InputError) as caught:
        load_yaml_text(text, "inventory.yml")
    assert caught.value.problems == [f"inventory.yml:{line}:{column}: a tab character: YAML indents with spaces only"]


@pytest.mark.parametrize(("text", "line", "column"), TABS)
def test_a_tab_reported_by_pyyamls_own_scanner_is_recognised_too(text, line, column):
    """PyYAML without LibYAML says "found character '\\t' that cannot start any token"."""
    loader = yaml.SafeLoader(text)
    try:
        with pytest.raises(yaml.MarkedYAMLError) as caught:
            loader.get_single_node()
    finally:
        loader.dispose()
    assert caught.value.problem == "found character '\\t' that cannot start any token"
    assert _is_tab(caught.value, text)


@pytest.mark.parametrize("text", ["a: `b`\n", "a:\n  @b: 1\n", "\ufeff@a: 1\n\tb: 2\n"], ids=["backquote", "at sign", "at sign after a byte order mark"])
def test_another_character_that_cannot_start_a_token_is_not_called_a_tab(text):
    with pytest.raises(InputError) as caught:
        load_yaml_text(text, "f.yml")
    (problem,) = caught.value.problems
    assert "not valid YAML: found character that cannot start any token" in problem and "tab" not in problem


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


# --- aliases and depth: bounded before anything is expanded -------------------------------------


def alias_bomb(levels: int = 9, width: int = 9) -> str:
    """A "billion laughs": each level a list of `width` aliases of the level before (0.6 KB, 9**9 values)."""
    lines = ["l0: &l0 [" + ", ".join(["lol"] * width) + "]"]
    for level in range(1, levels):
        lines.append(f"l{level}: &l{level} [" + ", ".join([f"*l{level - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_is_refused_in_a_process_that_could_not_hold_its_expansion(tmp_path):
    """It used to be expanded (walking every path to record its line) until MemoryError at 1.5 GB; here under
    a 1 GiB address-space limit, so the old loader fails on memory rather than taking the machine's."""
    path = tmp_path / "bomb.yml"
    path.write_text(alias_bomb())
    assert len(path.read_bytes()) < 700
    probe = (
        "import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n"
        "from hub.errors import InputError\nfrom hub.yaml_loader import load_yaml_file\n"
        "try:\n    load_yaml_file(sys.argv[1])\nexcept InputError as error:\n    print(error)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe, str(path)], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert (done.returncode, done.stdout, done.stderr) == (0, f"{path}:5: aliases expand to more than {MAX_ALIAS_NODES} values\n", "")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("a: &a [1]\n" + "".join(f"k{i}: *a\n" for i in range(MAX_ALIASES + 1)), f"f.yml:{MAX_ALIASES + 2}: more than {MAX_ALIASES} aliases in one document"),
        ("a: &a [1]\nb: &b [*a]\nc: &c [*b]\nd: &d [*c]\ne: &e [*d]\nf: [*e]\n", "f.yml:6: aliases nested more than 4 deep"),
        ("a: &a [x, *a]\n", "f.yml:1: aliases nested more than 4 deep"),  # an alias inside its own anchor
        ("a: &a [" + ", ".join(["x"] * 2500) + "]\nb: [*a, *a, *a, *a]\n", f"f.yml:2: aliases expand to more than {MAX_ALIAS_NODES} values"),
        ("a:\n  b: " + "[" * MAX_DEPTH + "]" * MAX_DEPTH + "\n", f"f.yml:2: nested more than {MAX_DEPTH} deep"),
        ("a: " + "[" * 998 + "]" * 998 + "\n", f"f.yml:1: nested more than {MAX_DEPTH} deep"),  # used to be a RecursionError
    ],
)
def test_aliases_and_nesting_past_their_bounds_are_refused_naming_the_line(text, problem):
    with pytest.raises(InputError) as caught:
        load_yaml_text(text, "f.yml")
    (found,) = caught.value.problems
    assert found.startswith(problem)


def test_aliases_within_the_bounds_load_as_before_and_their_keys_are_checked_once():
    text = "base: &base {port: 1, port: 2}\nkeys: &keys [a, b]\nx: {settings: *base, names: *keys}\ny: *keys\n"
    loaded = parse_yaml_text(text, "f.yml")
    assert loaded.data == {"base": {"port": 2}, "keys": ["a", "b"], "x": {"settings": {"port": 2}, "names": ["a", "b"]}, "y": ["a", "b"]}
    assert loaded.duplicates == ("f.yml:1: duplicate key 'port' (first defined on line 1)",)
    assert loaded.where(("x", "names", 1)) == "f.yml:2" and loaded.where(("y",)) == "f.yml:2"  # an alias's value is where its anchor is
    nested = "a:\n  b: " + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1) + "\n"
    assert load_yaml_text(nested, "f.yml").data["a"]["b"] is not None
    chain = "a: &a [1]\nb: &b [*a]\nc: &c [*b]\nd: &d [*c]\ne: [*d]\n"  # four deep: allowed
    assert load_yaml_text(chain, "f.yml").data["e"] == [[[[[1]]]]]
