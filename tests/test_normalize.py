import pytest

from marvin.core.normalize import normalize


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("<@U012ABC> help", "help"),
        ("<@U012ABC|marvin>: help", "help"),
        ("deploy <http://example.com/build/1|build 1>", "deploy http://example.com/build/1"),
        ("deploy <https://example.com/x>", "deploy https://example.com/x"),
        ("notify <mailto:a@b.c|a@b.c>", "notify a@b.c"),
        ("set key to \u201chello world\u201d", 'set key to "hello world"'),
        ("set key to \u2018x\u2019", "set key to 'x'"),
        ("create\u00a0platform", "create platform"),
        ("echo &lt;tag&gt; &amp;amp;", "echo <tag> &amp;"),
        ("`help platform`", "help platform"),
        (
            "```create platform environment named demo01```",
            "create platform environment named demo01",
        ),
        ("tell <@U999> hi", "tell <@U999> hi"),  # only a leading mention is removed
    ],
)
def test_normalize(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


def test_inline_code_spans_are_not_one_command() -> None:
    assert normalize("`help` or `whoami`") == "`help` or `whoami`"


def test_unclosed_links_stay_linear() -> None:
    import time

    text = "<http:" * 7000  # about 40,000 characters, Slack's maximum
    t0 = time.perf_counter()
    normalize(text)
    assert time.perf_counter() - t0 < 0.5
