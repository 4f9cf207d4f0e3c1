"""Declarative checks on config values, run before anything compiles."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping


class ConfigError(ValueError):
    """A config value is invalid; the message is one line and names the valid choices."""


@dataclasses.dataclass(frozen=True)
class Choice:
    """The value must be one of ``values``."""

    values: tuple

    def __init__(self, *values):
        object.__setattr__(self, "values", tuple(values))

    def check(self, key, value):
        if value not in self.values:
            choices = ", ".join(map(str, self.values))
            return f"config.{key}={value!r} is not valid; choose one of: {choices}"
        return None


@dataclasses.dataclass(frozen=True)
class Range:
    """The value must lie in [lo, hi] (either bound may be None), and be finite."""

    lo: float | None = None
    hi: float | None = None
    open_lo: bool = False  # exclude lo itself (e.g. a learning rate must be > 0)

    def check(self, key, value):
        if isinstance(value, float) and not math.isfinite(value):
            return f"config.{key}={value!r} must be a finite number"
        bad = (
            self.lo is not None and (value < self.lo or (self.open_lo and value == self.lo))
        ) or (self.hi is not None and value > self.hi)
        if bad:
            lo = "-inf" if self.lo is None else self.lo
            hi = "inf" if self.hi is None else self.hi
            interval = f"{'(' if self.open_lo else '['}{lo}, {hi}]"
            return f"config.{key}={value!r} is out of range; valid values lie in {interval}"
        return None


def split_names(value) -> list[str]:
    """The items of a comma-separated config value (a string or a sequence), blanks dropped."""
    items = value.split(",") if isinstance(value, str) else list(value)
    return [str(item).strip() for item in items if str(item).strip()]


@dataclasses.dataclass(frozen=True)
class Names:
    """A comma-separated list of names, each one of ``values``.

    ``everything`` (e.g. "all"), given alone, stands for every value and ``nothing`` (e.g.
    "none"), given alone, for no value; an empty list is valid only with ``allow_empty``.
    """

    values: tuple
    everything: str | None = None
    nothing: str | None = None
    allow_empty: bool = False

    def parse(self, value) -> list[str]:
        """The names ``value`` stands for, in the order given (``everything``: ``values``)."""
        items = split_names(value)
        if self.everything is not None and items == [self.everything]:
            return list(self.values)
        if self.nothing is not None and items == [self.nothing]:
            return []
        return items

    def check(self, key, value):
        items = split_names(value)
        keywords = [k for k in (self.everything, self.nothing) if k is not None]
        if len(items) == 1 and items[0] in keywords:
            return None
        unknown = [item for item in items if item not in self.values]
        if unknown or not (items or self.allow_empty):
            alone = "".join(f"{k} or " for k in keywords)
            return (
                f"config.{key}={value!r} names {', '.join(unknown) or 'nothing'}; give "
                f"{alone}comma-separated names from: {', '.join(map(str, self.values))}"
            )
        return None


def positive():
    return Range(0, None, open_lo=True)


def nonnegative():
    return Range(0, None)


def probability():
    return Range(0, 1)


def check(config, rules: Mapping[str, Choice | Range | Names]) -> None:
    """Raises ConfigError for the first value that breaks its rule."""
    for key, rule in rules.items():
        value = config
        for part in key.split("."):
            value = value[part]
        message = rule.check(key, value)
        if message:
            raise ConfigError(message)
