"""The YAML writer of generated configurations: whatever it writes reads back as exactly the data written."""

from __future__ import annotations

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.yaml_out import dump, scalar
from hub.yaml_loader import load_yaml_text

TRICKY = ["", " x", "x ", "yes", "No", "on", "OFF", "~", "null", "012", "0x1F", "1:30", "1.5", "2025-06-20", "-",
          "- x", "a: b", "a #b", "*.css", "&x", "!x", "%x", "@x", "`x", "'x'", '"x"', "x:", "?", "[a]", "{a}", "a\nb",
          "tab\tx", "é", "${database}", "^/$", "'off'", "<<", "=", "1_000", "+1", ".inf", "0o17", "1e3", "\x00"]
text = st.one_of(st.sampled_from(TRICKY), st.text(max_size=12))
scalars = st.one_of(text, st.integers(min_value=-(2**40), max_value=2**40), st.booleans(), st.none())
data = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(text, inner, max_size=4)),
    max_leaves=25,
)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(text, data, max_size=5))
def test_pyyaml_and_the_strict_reader_read_back_exactly_what_was_written(document):
    written = dump(document)
    assert yaml.safe_load(written) == (document or None)
    if document:
        assert load_yaml_text(written, "written.yml").data == document


def test_the_layout_is_block_style_with_lists_at_their_key_s_indentation():
    assert dump({"server": {"listen": 9999, "paths": ["/up", "*.css"], "rules": [{"from": "^/$", "to": "/x/"}]},
                 "empty": [], "off": "off"}) == (
        "server:\n"
        "  listen: 9999\n"
        "  paths:\n"
        "  - /up\n"
        "  - '*.css'\n"
        "  rules:\n"
        "  - from: ^/$\n"
        "    to: /x/\n"
        "empty: []\n"
        "'off': 'off'\n"
    )


def test_strings_other_readers_would_take_for_another_type_are_quoted():
    assert [scalar(value) for value in ("0", "true", "1y", "5m", "768M", "3")] == ["'0'", "'true'", "1y", "5m", "768M", "'3'"]
