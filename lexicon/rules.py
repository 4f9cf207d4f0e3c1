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


def positive():
    return Range(0, None, open_lo=True)


def nonnegative():
    return Range(0, None)


def probability():
    return Range(0, 1)


def check(config, rules: Mapping[str, Choice | Range]) -> None:
    """Raises ConfigError for the first value that breaks its rule."""
    for key, rule in rules.items():
        value = config
        for part in key.split("."):
            value = value[part]
        message = rule.check(key, value)
        if message:
            raise ConfigError(message)
