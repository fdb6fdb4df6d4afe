"""Pairs: a command that passes another system's parameters on (a Jenkins job's) takes the
trailing key=value pairs that are not its own; other commands still refuse them."""

from __future__ import annotations

import pytest

from marvin import Pairs, Text, command
from marvin.core.matcher import Invalid, Matched, Matcher, bind
from marvin.core.params import ParamError
from marvin.core.registry import CommandTable


@command(
    "ci.build",
    "run ci job {{ job }}",
    description="d",
    examples=["run ci job app VERSION=1"],
    params={"job": Text(pattern=r"^[a-z-]+$"), "parameters": Pairs()},
)
def build(ctx, job, parameters=None):  # noqa: ANN001, ANN201
    return None


@command("ci.show", "show ci job {{ job }}", description="d", examples=["show ci job app"])
def show(ctx, job):  # noqa: ANN001, ANN201
    return None


TABLE = CommandTable.build([build, show])
MATCHER = Matcher(TABLE)


def test_trailing_pairs_go_to_the_bag() -> None:
    got = MATCHER.match("run ci job deploy-app VERSION=1.2 DRY_RUN=true")
    assert isinstance(got, Matched)
    assert got.params == {"job": "deploy-app", "parameters": {"VERSION": "1.2", "DRY_RUN": "true"}}


def test_no_pairs_gives_the_default() -> None:
    got = MATCHER.match("run ci job deploy-app")
    assert isinstance(got, Matched) and got.params["parameters"] is None


def test_own_names_stay_own_and_json_carries_clashing_names() -> None:
    got = MATCHER.match('run ci job x parameters={"job":"other","A":"1"} B=2 job=deploy-app')
    assert isinstance(got, Matched)
    assert got.params == {"job": "deploy-app", "parameters": {"job": "other", "A": "1", "B": "2"}}


def test_quoted_values_keep_spaces_and_equals() -> None:
    got = MATCHER.match('run ci job x NOTE="a = b c"')
    assert isinstance(got, Matched) and got.params["parameters"] == {"NOTE": "a = b c"}


def test_bad_bag_values_are_refused() -> None:
    assert isinstance(MATCHER.match("run ci job x parameters=[1,2]"), Invalid)
    with pytest.raises(ParamError, match="expected a single value"):
        bind(TABLE["ci.build"], {"job": "x", "parameters": '{"A": {"b": 1}}'})
    with pytest.raises(ParamError, match="more than 2 pairs"):
        Pairs(max_pairs=2).convert("p", {"A": "1", "B": "2", "C": "3"})


def test_commands_without_a_bag_still_refuse_unknown_pairs() -> None:
    got = MATCHER.match("show ci job app VERSION=1")
    assert isinstance(got, Invalid)
    assert "VERSION: is not a parameter of ci.show; valid parameters: job" in got.message()


def test_cli_values_bind_the_same_way() -> None:
    params = bind(TABLE["ci.build"], {"job": "app", "VERSION": "2"})
    assert params == {"job": "app", "parameters": {"VERSION": "2"}}
