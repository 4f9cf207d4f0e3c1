"""Declarative checks on config values, run before anything compiles."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

INT32_MAX = 2**31 - 1
FLOAT32_MAX = 3.4028234663852886e38  # the largest finite float32, the training dtype
FLOAT32_TINY = 1.1754943508222875e-38  # the smallest normal float32


class ConfigError(ValueError):
    """A config value is invalid; the message is one line and names the valid choices."""


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def finite32(value) -> bool:
    """Finite once cast to float32, the dtype that training computes in."""
    return math.isfinite(value) and abs(value) <= FLOAT32_MAX


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
    """The value must lie in [lo, hi] (either bound may be None), and be finite in float32.

    An integer with no upper bound must still fit int32 (JAX's default integer)."""

    lo: float | None = None
    hi: float | None = None
    open_lo: bool = False  # exclude lo itself (e.g. a learning rate must be > 0)
    open_hi: bool = False  # exclude hi itself (e.g. a decay rate must be < 1)

    def check(self, key, value):
        if not is_number(value):
            return f"config.{key}={value!r} must be a number"
        if isinstance(value, float) and not finite32(value):
            return (
                f"config.{key}={value!r} must be a finite number; float32, the training dtype, "
                f"ends at {FLOAT32_MAX:.4g}"
            )
        if self.open_lo and self.lo == 0 and isinstance(value, float) and 0 < value < FLOAT32_TINY:
            return (
                f"config.{key}={value!r} must be positive in float32, the training dtype, whose "
                f"smallest normal number is {FLOAT32_TINY:.4g}"
            )
        hi = self.hi
        if hi is None and is_int(value):
            hi = INT32_MAX
        bad = (
            self.lo is not None and (value < self.lo or (self.open_lo and value == self.lo))
        ) or (hi is not None and (value > hi or (self.open_hi and value == hi)))
        if bad:
            lo = "-inf" if self.lo is None else self.lo
            hi = "inf" if hi is None else hi
            interval = f"{'(' if self.open_lo else '['}{lo}, {hi}{')' if self.open_hi else ']'}"
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


KIND_NAMES = {int: "integers", float: "numbers", str: "strings"}


@dataclasses.dataclass(frozen=True)
class Items:
    """A tuple of ``kind`` items (int, float or str), each passing ``rule``, with
    ``min_len`` to ``max_len`` items, e.g. ``Items(Range(1, 4096))`` for layer widths."""

    rule: Choice | Range | None = None
    kind: type = int
    min_len: int = 1
    max_len: int | None = None

    def has_kind(self, item) -> bool:
        if self.kind is int:
            return is_int(item)
        if self.kind is float:
            return is_number(item)
        return isinstance(item, self.kind)

    def check(self, key, value):
        example = {int: "(32, 32)", float: "(0.1, 0.5)", str: "('a', 'b')"}.get(self.kind, "(...)")
        if not isinstance(value, (tuple, list)):
            return f"config.{key}={value!r} must be a tuple, e.g. --config.{key}={example}"
        value = tuple(value)
        if len(value) < self.min_len or (self.max_len is not None and len(value) > self.max_len):
            most = "" if self.max_len is None else f" and at most {self.max_len}"
            return (
                f"config.{key}={value!r} has {len(value)} items; give at least {self.min_len}"
                f"{most}, e.g. --config.{key}={example}"
            )
        for index, item in enumerate(value):
            if not self.has_kind(item):
                kind = KIND_NAMES.get(self.kind, self.kind.__name__)
                return (
                    f"config.{key}={value!r} must hold {kind}; item {index} is {item!r}, "
                    f"e.g. --config.{key}={example}"
                )
            message = self.rule.check(f"{key}[{index}]", item) if self.rule else None
            if message:
                return message
        return None


def widths(max_width: int = 16384, max_layers: int = 64) -> Items:
    """Layer widths: a non-empty tuple of integers in [1, max_width]."""
    return Items(Range(1, max_width), kind=int, min_len=1, max_len=max_layers)


def check_batch_size(config, num_train: int | None, *, of: str = "training examples") -> None:
    """config.batch_size (0 = full batch) must not exceed the ``num_train`` examples of a
    step's data; None (not known before loading) skips the check."""
    batch_size = config["batch_size"]
    if num_train is not None and batch_size > num_train:
        raise ConfigError(
            f"config.batch_size={batch_size} exceeds the {num_train} {of}; use 0 for "
            f"full batch or a value in [1, {num_train}]"
        )


def positive():
    return Range(0, None, open_lo=True)


def nonnegative():
    return Range(0, None)


def probability():
    return Range(0, 1)


def kind_of(items) -> type:
    """int, float or str: the one kind of every item of a default tuple (object if mixed)."""
    if items and all(is_int(item) for item in items):
        return int
    if items and all(is_number(item) for item in items):
        return float
    if items and all(isinstance(item, str) for item in items):
        return str
    return object


def implicit_rule(default):
    """The least a value must satisfy when its key has no rule: the type of its default
    (a tuple's item type, not empty if the default is not), finite, and int32 for integers."""
    if isinstance(default, (tuple, list)):
        return Items(kind=kind_of(default), min_len=1 if default else 0)
    if isinstance(default, float):
        return Range()
    if is_int(default):
        return Range(-INT32_MAX - 1, INT32_MAX)
    return None


def check(config, rules: Mapping[str, Choice | Range | Names | Items]) -> None:
    """Raises ConfigError for the first value that breaks its rule."""
    for key, rule in rules.items():
        value = config
        for part in key.split("."):
            value = value[part]
        message = rule.check(key, value)
        if message:
            raise ConfigError(message)
