"""lexicon.rules: the declarative checks every experiment's flags go through."""

import math

import pytest

from lexicon.rules import Choice, ConfigError, Names, Range, check, positive, split_names


def test_choice_and_range_messages_name_the_valid_values():
    assert Choice("a", "b").check("k", "a") is None
    assert "choose one of: a, b" in Choice("a", "b").check("k", "c")
    assert positive().check("lr", 0.0).endswith("(0, inf]")
    assert Range(1, 3).check("n", 2) is None
    assert "finite" in Range().check("x", math.nan)


def test_split_names_takes_strings_and_sequences():
    assert split_names(" a, b ,,c ") == ["a", "b", "c"]
    assert split_names(("a", "b")) == ["a", "b"]
    assert split_names("") == []


def test_names_keywords_and_parsing():
    rule = Names(("x", "y", "z"), everything="all")
    assert rule.check("m", "all") is None and rule.parse("all") == ["x", "y", "z"]
    assert rule.check("m", "z,x") is None and rule.parse("z, x") == ["z", "x"]
    assert "names w" in rule.check("m", "x,w")
    assert "names nothing" in rule.check("m", "")
    assert "give all or comma-separated" in rule.check("m", "all,x")

    optional = Names(("x", "y"), nothing="none", allow_empty=True)
    assert optional.check("m", "none") is None and optional.parse("none") == []
    assert optional.check("m", "") is None and optional.parse("") == []
    assert optional.check("m", "all") is not None


def test_check_walks_nested_keys_and_raises_the_first_failure():
    config = {"a": {"b": 5}, "c": "q"}
    check(config, {"a.b": Range(0, 10), "c": Choice("q")})
    with pytest.raises(ConfigError, match=r"config.a.b=5 is out of range"):
        check(config, {"a.b": Range(0, 1)})
