"""Marvin's own alias-language behaviour beyond StackStorm's vectors."""

import pytest

from marvin.core.grammar import FormatError, NoMatch, compile_format, extract, split_pairs, usage

SEED = (
    "create platform environment named {{ environment }}( with dataset {{ dataset }})?"
    "( with version {{ requested_version='latest' }})"
)


def test_seed_format_verbatim() -> None:
    assert extract(SEED, "create platform environment named demo01") == {
        "environment": "demo01",
        "requested_version": "latest",
    }
    assert extract(SEED, "create platform environment named demo01 with version 4.3") == {
        "environment": "demo01",
        "requested_version": "4.3",
    }
    assert extract(SEED, "create platform environment named d with dataset big with version 5") == {
        "environment": "d",
        "dataset": "big",
        "requested_version": "5",
    }


def test_group_with_required_placeholder_stays_required() -> None:
    fmt = "deploy( to {{ environment }})"
    with pytest.raises(NoMatch):
        extract(fmt, "deploy")
    assert extract(fmt, "deploy to demo") == {"environment": "demo"}


def test_nomatch_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        extract(SEED, "destroy everything")


def test_literal_words_case_insensitive_values_keep_case() -> None:
    assert extract(SEED, "CREATE Platform Environment NAMED Demo01")["environment"] == "Demo01"


def test_equals_inside_quotes_is_data() -> None:
    fmt = "set consul key {{ key }} to {{ value }}"
    got = extract(fmt, 'set consul key app/flags to "a=b c=d"')
    assert got == {"key": "app/flags", "value": "a=b c=d"}
    rest, pairs = split_pairs('say "x=1 y=2" z=3')
    assert rest == 'say "x=1 y=2"' and pairs == {"z": "3"}


def test_quoted_multi_word_and_json_values() -> None:
    fmt = "run job {{ job }} with {{ params }}"
    got = extract(fmt, 'run job "nightly build" with {"a": {"b": [1, 2]}, "c": "}"}')
    assert got == {"job": "nightly build", "params": '{"a": {"b": [1, 2]}, "c": "}"}'}


def test_pairs_override_and_extra() -> None:
    assert extract(SEED, "create platform environment named demo01 requested_version=9") == {
        "environment": "demo01",
        "requested_version": "9",
    }


def test_bad_formats() -> None:
    with pytest.raises(FormatError, match="unclosed"):
        compile_format("create {{ x")
    with pytest.raises(FormatError, match="bad parameter name"):
        compile_format("create {{ 1x }}")
    with pytest.raises(FormatError, match="regular expression"):
        compile_format("create [abc {{ x }}")
    with pytest.raises(FormatError, match="twice"):
        compile_format("copy {{ x }} to {{ x }}")


def test_prefix_index_words() -> None:
    assert compile_format(SEED).prefix == ("create", "platform", "environment", "named")
    assert compile_format("help( {{ topic }})?").prefix == ()  # "help(" is not a whole word
    assert compile_format("{{ a }} is my captain").prefix == ()
    assert compile_format("foo bar|baz qux").prefix == ()  # alternation: no fixed start


def test_usage_rendering() -> None:
    assert usage(SEED) == (
        "create platform environment named <environment> [with dataset <dataset>] "
        "[with version <requested_version=latest>]"
    )
    assert usage(r"^\s*foo (?P<key>[A-Z]+)\s*$") == "foo (?P<key>[A-Z]+)"
