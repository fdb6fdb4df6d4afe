"""StackStorm's parser test vectors (st2common/tests/unit/test_action_alias_utils.py), restated.

Each row is (format, message, expected parameters). Marvin's own extensions are tested in
test_grammar.py; where Marvin deliberately differs from StackStorm the row says so.
"""

import pytest

from marvin.core.grammar import NoMatch, extract

VECTORS = [
    # test_empty_string / test_arbitrary_pairs
    ("", "", {}),
    ("", "a=foobar1", {"a": "foobar1"}),
    ("foo", 'foo a="foobar2 poonies bar"', {"a": "foobar2 poonies bar"}),
    ("foo", "foo a='foobar2 poonies bar'", {"a": "foobar2 poonies bar"}),
    ("foo", 'foo a={"foobar2": "poonies"}', {"a": '{"foobar2": "poonies"}'}),
    (
        "",
        'a=foobar1 b="boobar2 3 4" c=\'coobar3 4\' d={"a": "b"}',
        {"a": "foobar1", "b": "boobar2 3 4", "c": "coobar3 4", "d": '{"a": "b"}'},
    ),
    (
        "{{ captain }} is my captain",
        'Malcolm Reynolds is my captain weirdo="River Tam"',
        {"captain": "Malcolm Reynolds", "weirdo": "River Tam"},
    ),
    # test_simple_parsing, test_end_string_parsing, test_spaced_parsing
    (
        "skip {{a}} more skip {{b}} and skip more.",
        "skip a1 more skip b1 and skip more.",
        {"a": "a1", "b": "b1"},
    ),
    ("skip {{a}} more skip {{b}}", "skip a1 more skip b1", {"a": "a1", "b": "b1"}),
    (
        "skip {{a}} more skip {{b}} and skip more.",
        'skip "a1 a2" more skip b1 and skip more.',
        {"a": "a1 a2", "b": "b1"},
    ),
    # test_default_values, test_spacing
    (
        "acl {{a}} {{b}} {{c}} {{d=1}}",
        'acl "a1 a2" "b1" "c1"',
        {"a": "a1 a2", "b": "b1", "c": "c1", "d": "1"},
    ),
    ("acl {{a=test}}", "acl", {"a": "test"}),
    # test_json_parsing, test_mixed_parsing
    (
        "skip {{a}} more skip.",
        'skip {"a": "b", "c": "d"} more skip.',
        {"a": '{"a": "b", "c": "d"}'},
    ),
    (
        "skip {{a}} more skip {{b}}.",
        'skip {"a": "b", "c": "d"} more skip x.',
        {"a": '{"a": "b", "c": "d"}', "b": "x"},
    ),
    # test_param_spaces, test_enclosed_defaults, test_template_defaults
    (
        "s {{a}} more {{ b }} more {{ c=99 }} more {{ d = 99 }}",
        "s one more two more three more",
        {"a": "one", "b": "two", "c": "three", "d": "99"},
    ),
    ("skip {{ a = value }} more", "skip one more", {"a": "one"}),
    ("skip {{ a = value }} more", "skip more", {"a": "value"}),
    (
        "two by two hands of {{ color = {{ colors.default_color }} }}",
        "two by two hands of",
        {"color": "{{ colors.default_color }}"},
    ),
    # test_key_value_combinations
    ("testing {{ a }}", "testing value b=value2", {"a": "value", "b": "value2"}),
    ("testing {{ a=new }}", 'testing b="another value"', {"a": "new", "b": "another value"}),
    (
        "testing {{ b=abc }} {{ c=xyz }}",
        'testing newvalue d={"1": "2"} e="long value"',
        {"b": "newvalue", "c": "xyz", "d": '{"1": "2"}', "e": "long value"},
    ),
    # test_stream_is_none_with_all_default_values / ..._some_default_values
    ("skip {{d=test1}} more skip {{e=test1}}.", "skip more skip", {"d": "test1", "e": "test1"}),
    ("skip {{d=test}} more skip {{e=test}}", "skip ponies more skip", {"d": "ponies", "e": "test"}),
    # test_all_the_things
    (
        "{{ p0='http' }} g {{ p1=p }} a {{ url }} {{ p2={'a':'b'} }} {{ p3={{ e.i }} }}",
        "g a http://google.com {{ execution.id }} p4='testing' p5={'a':'c'}",
        {
            "p0": "http",
            "p1": "p",
            "url": "http://google.com",
            "p2": "{{ execution.id }}",
            "p3": "{{ e.i }}",
            "p4": "testing",
            "p5": "{'a':'c'}",
        },
    ),
    # test_ending_parameters_matching
    ("foo bar", "foo bar pony1=foo pony2=bar", {"pony1": "foo", "pony2": "bar"}),
    # test_regex_*_anchors
    (r"^\s*foo (?P<issue_key>[A-Z][A-Z0-9]+-[0-9]+)", "foo ASDF-1234", {"issue_key": "ASDF-1234"}),
    (r"foo (?P<issue_key>[A-Z][A-Z0-9]+-[0-9]+)\s*$", "foo ASDF-1234", {"issue_key": "ASDF-1234"}),
    (
        r"^\s*foo (?P<issue_key>[A-Z][A-Z0-9]+-[0-9]+) bar\s*$",
        "foo ASDF-1234 bar",
        {"issue_key": "ASDF-1234"},
    ),
]

MISMATCHES = [
    ("skip {{d}} more skip {{e}}.", None),  # test_stream_is_none_no_default_values
    ("foo bar ponies", "foo lulz ponies"),  # test_command_doesnt_match_format_string
    (r"^\s*foo (?P<issue_key>[A-Z][A-Z0-9]+-[0-9]+)", "bar foo ASDF-1234"),
    (r"foo (?P<issue_key>[A-Z][A-Z0-9]+-[0-9]+)\s*$", "foo ASDF-1234 bar"),
    (r"^\s*foo (?P<issue_key>[A-Z][A-Z0-9]+-[0-9]+)\s*$", "bar ASDF-1234"),
]


@pytest.mark.parametrize(("fmt", "text", "expected"), VECTORS)
def test_st2_vector(fmt: str, text: str, expected: dict[str, str]) -> None:
    assert extract(fmt, text) == expected


@pytest.mark.parametrize(("fmt", "text"), MISMATCHES)
def test_st2_mismatch(fmt: str, text: str | None) -> None:
    with pytest.raises(NoMatch, match="doesn't match format string"):
        extract(fmt, text)
