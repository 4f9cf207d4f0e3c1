"""lexicon.rules: the declarative checks every experiment's flags go through."""

import math

import pytest

from lexicon.rules import (
    Choice,
    ConfigError,
    Items,
    Names,
    Range,
    check,
    check_batch_size,
    implicit_rule,
    kind_of,
    positive,
    split_names,
    widths,
)


def test_choice_and_range_messages_name_the_valid_values():
    assert Choice("a", "b").check("k", "a") is None
    assert "choose one of: a, b" in Choice("a", "b").check("k", "c")
    assert positive().check("lr", 0.0).endswith("(0, inf]")
    assert Range(1, 3).check("n", 2) is None
    assert Range(0, 1, open_hi=True).check("rho", 1.0).endswith("[0, 1)")
    assert Range(0, 1, open_hi=True).check("rho", 0.999) is None
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


def test_range_checks_float32_and_int32():
    assert "float32" in positive().check("lr", 1e39)  # finite in float64, inf in float32
    assert positive().check("lr", 3e38) is None
    assert "positive in float32" in positive().check("lr", 1e-50)  # 0 in float32
    assert positive().check("lr", 1e-30) is None
    assert "finite" in Range().check("x", -math.inf)
    assert "[0, 2147483647]" in Range(0).check("n", 2**40)  # no upper bound: int32
    assert Range(0).check("n", 2**31 - 1) is None
    assert Range(0).check("x", 2.0**40) is None  # a float needs only be finite
    assert "must be a number" in Range().check("x", "3")
    assert "must be a number" in Range().check("x", True)


def test_items_check_type_range_and_length():
    rule = Items(Range(1, 10), kind=int, min_len=1, max_len=3)
    assert rule.check("h", (1, 10)) is None and rule.check("h", [2]) is None
    assert "has 0 items; give at least 1" in rule.check("h", ())
    assert "at most 3" in rule.check("h", (1, 1, 1, 1))
    assert "must hold integers; item 1 is 2.5" in rule.check("h", (1, 2.5))
    assert "item 0 is True" in rule.check("h", (True,))
    assert "item 0 is '(a,b)'" in rule.check("h", ("(a,b)",))
    assert "item 0 is (1, 2)" in rule.check("h", ((1, 2),))
    assert "config.h[1]=0 is out of range" in rule.check("h", (1, 0))
    assert "must be a tuple" in rule.check("h", 3)
    numbers = Items(Range(0, 1), kind=float)
    assert numbers.check("e", (0, 0.5, 1)) is None  # integers are numbers
    assert "config.e[0]=nan" in numbers.check("e", (math.nan,))
    assert "config.e[0]=1.5 is out of range" in numbers.check("e", (1.5,))
    assert Items(kind=str).check("s", ("a",)) is None
    assert "must hold strings" in Items(kind=str).check("s", (1,))


def test_widths_and_batch_size():
    assert widths().check("hidden", (32, 32)) is None
    for bad in [(0,), (-3,), (16.5,), ()]:
        assert widths().check("hidden", bad) is not None
    config = {"batch_size": 64}
    check_batch_size(config, 64)
    check_batch_size(config, None)  # unknown size: checked later
    with pytest.raises(ConfigError, match="config.batch_size=64 exceeds the 10 training"):
        check_batch_size(config, 10)


def test_implicit_rule_keeps_the_type_of_the_default():
    assert kind_of((1, 2)) is int and kind_of((1, 2.5)) is float and kind_of(("a",)) is str
    assert implicit_rule((1, 2)).check("t", (3,)) is None
    assert "must hold integers" in implicit_rule((1, 2)).check("t", (3.5,))
    assert "has 0 items" in implicit_rule((1, 2)).check("t", ())
    assert implicit_rule(()).check("t", ()) is None  # an empty default may stay empty
    assert "float32" in implicit_rule(0.5).check("x", 1e39)
    assert "out of range" in implicit_rule(3).check("n", 2**40)
    assert implicit_rule(True) is None and implicit_rule("a") is None
