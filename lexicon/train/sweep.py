"""Hyperparameter sweeps as one compiled program: a grid of config values times the seeds.

``--config.sweep='lr=1e-3,1e-2,1e-1;alpha=0.5,0.9'`` names a grid: every combination of the
listed values (the first key varies slowest), each trained with ``config.seeds`` seeds. The
grid points and the seeds share one replica axis, the vmap axis that the seeds already are:
replica ``g * seeds + s`` is grid point g with seed ``config.seed + s``, so grid point g with
seed s is the run ``--config.<key>=<value> --config.seed=<seed + s> --config.seeds=1``, and
every grid point trains from the same initializations and data orders (paired seeds).

Which keys can be swept. A swept value enters the compiled program as a traced scalar: the
experiment hands ``fit`` a task builder ``config -> Task``, and inside every compiled function
the builder is called with a config whose swept keys are traced values of that replica. So a
key can be swept when
- its default is a float, and
- the experiment lists it in its module's ``SWEEPABLE``: it reaches the compiled step only as
  a number (an optimizer hyperparameter, a penalty weight, a keep probability, a loss
  weight), never as a shape, a name, a loop count, the data, or a value the host computes
  with.
Every other key (layer sizes, the optimizer's name, epochs, the batch size, the dataset) is
refused in a sweep before anything compiles, with one line: run one job per value.

The static parts of a state (the optimizer object ``TrainState.tx``, ``apply_fn``) are code
that closes over the swept values, so in a sweep they come from the builder of each trace:
the carried state keeps its arrays and takes the structure ``task.init`` gives in that trace.
Optimizer hyperparameters thus act as traced values in the update, as with
``optax.inject_hyperparams`` (which puts them in the optimizer state instead; both work).

Before compiling, ``fit`` estimates the memory of the program (``MEMORY_FACTOR`` times the
state of one replica, times grid points times seeds) and, when that exceeds
``config.sweep_memory`` MiB (0: the memory of the devices), cuts the grid into chunks of whole
grid points run one after the other, and says so in one line.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
from collections.abc import Mapping, Sequence

import numpy as np

from lexicon.rules import ConfigError, finite32

MEMORY_FACTOR = 4  # the carried state, the new state, the last good state and the gradients


@dataclasses.dataclass(frozen=True)
class Sweep:
    """Grid points over config keys: ``table[g, k]`` is the value of ``keys[k]`` at point g.

    ``axes`` (key -> values) is the grid it came from, None for a subset of a grid (a chunk).
    """

    keys: tuple[str, ...]
    table: np.ndarray  # (points, keys), float64
    axes: tuple[tuple[str, tuple[float, ...]], ...] | None = None

    @classmethod
    def grid(cls, axes: Mapping[str, Sequence[float]]) -> Sweep:
        """Every combination of the values of ``axes`` (key -> values); the first key varies
        slowest."""
        axes = tuple((str(k), tuple(float(v) for v in vs)) for k, vs in axes.items())
        if not axes or any(not vs for _, vs in axes):
            raise ConfigError("a sweep needs at least one key with at least one value")
        table = np.array(list(itertools.product(*(vs for _, vs in axes))), dtype=np.float64)
        return cls(tuple(k for k, _ in axes), table.reshape(-1, len(axes)), axes)

    @property
    def size(self) -> int:
        return len(self.table)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(vs) for _, vs in self.axes) if self.axes else (self.size,)

    def point(self, g: int) -> dict[str, float]:
        return {k: float(v) for k, v in zip(self.keys, self.table[g])}

    def label(self, g: int) -> str:
        return ", ".join(f"{k}={v:g}" for k, v in self.point(g).items())

    def subset(self, points: Sequence[int]) -> Sweep:
        return Sweep(self.keys, self.table[np.asarray(points, dtype=np.int64)], None)

    def replica_values(self, seeds: int) -> dict[str, np.ndarray]:
        """Per replica (g * seeds + s): the float32 value of every swept key."""
        return {
            k: np.repeat(self.table[:, i], seeds).astype(np.float32)
            for i, k in enumerate(self.keys)
        }

    def coordinates(self, seeds: int, first_seed: int) -> dict[str, list]:
        """The grid coordinates of every replica, for metrics.jsonl: each swept key's value
        (as given) and the seed."""
        coords = {k: np.repeat(self.table[:, i], seeds).tolist() for i, k in enumerate(self.keys)}
        coords["seed"] = np.tile(np.arange(first_seed, first_seed + seeds), self.size).tolist()
        return coords


def parse(text: str) -> Sweep | None:
    """``'lr=1e-3,1e-2;alpha=0.5,0.9'`` -> the Sweep of that grid; '' (or a value that is not
    a string: an experiment's own key of that name) -> None."""
    if not isinstance(text, str):
        return None
    text = text.strip()
    if not text:
        return None
    axes: dict[str, list[float]] = {}
    for part in text.split(";"):
        if not part.strip():
            continue
        key, equals, values = part.partition("=")
        key = key.strip()
        if not equals or not key or not values.strip():
            raise ConfigError(
                f"config.sweep={text!r}: {part.strip()!r} is not key=value,value,...; write "
                f"e.g. --config.sweep='lr=0.01,0.1;alpha=0.5,0.9'"
            )
        if key in axes:
            raise ConfigError(f"config.sweep={text!r} names {key} twice")
        numbers = []
        for item in values.split(","):
            try:
                number = float(item)
            except ValueError:
                raise ConfigError(
                    f"config.sweep={text!r}: {item.strip()!r} (for {key}) is not a number"
                ) from None
            if not finite32(number):
                raise ConfigError(
                    f"config.sweep={text!r}: {key}={item.strip()} is not a finite float32"
                )
            numbers.append(number)
        axes[key] = numbers
    if not axes:
        return None
    return Sweep.grid(axes)


def of(config) -> Sweep | None:
    """The sweep a config asks for (``config.sweep``), or None."""
    return parse(config.get("sweep", "") if hasattr(config, "get") else "")


def check(sweep: Sweep, config, sweepable: Sequence[str], rules: Mapping | None = None) -> None:
    """Refuses a sweep over a key that cannot be swept, or a value its rule refuses."""
    from lexicon.cli import flat_keys, value_at

    keys = flat_keys(config)
    for key in sweep.keys:
        if key not in keys:
            raise ConfigError(f"config.sweep names {key!r}, which is not a config key")
        if key not in sweepable or not isinstance(value_at(config, key), float):
            listed = ", ".join(sweepable) if sweepable else "none"
            raise ConfigError(
                f"config.sweep: {key} cannot be swept in one program (it sets shapes, code, "
                f"data or host-side values); run one job per value. Sweepable keys here: {listed}"
            )
        rule = (rules or {}).get(key)
        if rule is not None:
            for value in sorted(set(sweep.table[:, sweep.keys.index(key)])):
                message = rule.check(key, float(value))
                if message:
                    raise ConfigError(f"config.sweep: {message}")


class SweptConfig:
    """A read-only view of a config in which the swept keys hold other values (in a compiled
    function: traced scalars). Attribute, item and ``get`` access; nested keys by dots."""

    def __init__(self, config, values: Mapping[str, object], prefix: str = ""):
        object.__setattr__(self, "_config", config)
        object.__setattr__(self, "_values", dict(values))
        object.__setattr__(self, "_prefix", prefix)

    def _lookup(self, name):
        full = self._prefix + name
        if full in self._values:
            return self._values[full]
        value = self._config[name]
        if any(k.startswith(full + ".") for k in self._values):
            return SweptConfig(value, self._values, full + ".")
        return value

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return self._lookup(name)
        except KeyError:
            raise AttributeError(name) from None

    def __getitem__(self, name):
        return self._lookup(name)

    def __contains__(self, name):
        return name in self._config

    def get(self, name, default=None):
        return self._lookup(name) if name in self._config else default

    def __setattr__(self, name, value):
        raise TypeError("a swept config is read-only")

    def keys(self):
        return self._config.keys()

    def items(self):
        return [(k, self._lookup(k)) for k in self._config.keys()]


def budget_mib(config) -> float:
    """The memory a sweep may take, in MiB: ``config.sweep_memory``, or (0) the devices'."""
    given = float(config.get("sweep_memory", 0) or 0)
    if given > 0:
        return given
    import jax

    total = 0.0
    for device in jax.local_devices():
        stats = None
        try:
            stats = device.memory_stats()
        except Exception:  # a backend without memory statistics (CPU)
            stats = None
        if stats and stats.get("bytes_limit"):
            total += stats["bytes_limit"]
    if not total:
        try:
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2
        except (ValueError, OSError, AttributeError):
            total = 8 * 2**30
    return total / 2**20


def chunk_points(
    points: int, seeds: int, replica_mib: float, budget: float, devices: int = 1
) -> int:
    """Grid points per chunk: as many as fit ``budget`` MiB (at least one), and a number whose
    replicas (points x seeds) the devices divide when they share the seeds."""
    need = MEMORY_FACTOR * replica_mib * seeds
    per_chunk = max(1, min(points, int(budget // need) if need > 0 else points))
    step = devices // math.gcd(devices, seeds)  # points whose replicas the devices divide
    if per_chunk < points:
        per_chunk = max(step, per_chunk - per_chunk % step)
    return min(points, per_chunk)


SUMMARY_FILE = "sweep.json"


def parse_select(text: str) -> tuple[str, bool] | None:
    """``config.sweep_select``: 'metric' or 'metric:max' / 'metric:min' -> (metric, higher is
    better); '' -> None (the automatic choice). A loss, error, NLL or distance is lower-better
    unless said otherwise. Never a test metric."""
    if not text:
        return None
    name, _, way = text.partition(":")
    if not name or way not in ("", "max", "min"):
        raise ConfigError(
            f"config.sweep_select={text!r} must be 'metric', 'metric:max' or 'metric:min' "
            "(e.g. 'val/accuracy:max')"
        )
    if name.startswith("test/"):
        raise ConfigError(
            f"config.sweep_select={text!r}: a sweep's best point is never chosen on a test metric"
        )
    lower = any(w in name for w in ("loss", "error", "nll", "distance"))
    return name, (way == "max") if way else not lower


def selection(metrics: Sequence[str], select: str = "") -> tuple[str, bool] | None:
    """The metric that picks a sweep's best point, and whether higher is better: the one
    ``select`` names (``parse_select``) when the run recorded it; else validation accuracy,
    else validation loss, else another validation metric, else the training loss. Never a
    test metric."""
    metrics = list(metrics)
    named = parse_select(select)
    if named is not None and named[0] in metrics:
        return named
    for name in ("val/accuracy", "val/loss"):
        if name in metrics:
            return name, name.endswith("accuracy")
    for name in metrics:
        if name.startswith("val/"):
            lower = any(w in name for w in ("loss", "error", "nll", "distance"))
            return name, not lower
    if "train/loss" in metrics:
        return "train/loss", False
    return None


def summarize(result, select: str = "") -> dict:
    """Every grid point's final metrics (mean, std over seeds, per seed) and the best point by
    ``selection`` (``select``: ``config.sweep_select``)."""
    sweep = result.sweep
    finals: dict[str, np.ndarray] = {}
    for record in result.history:
        for key, value in record.items():
            if "/" in key:
                finals[key] = np.asarray(
                    [np.nan if v is None else v for v in value], dtype=np.float64
                ).reshape(sweep.size, -1)
    points = []
    for g in range(sweep.size):
        entry = {"point": sweep.point(g), "metrics": {}}
        for key, values in finals.items():
            row = values[g]
            mean = float(np.nanmean(row)) if np.isfinite(row).any() else None
            entry["metrics"][key] = {
                "mean": mean,
                "std": float(np.nanstd(row)) if mean is not None else None,
                "per_seed": [float(v) if np.isfinite(v) else None for v in row],
            }
        points.append(entry)
    chosen = selection(finals, select)
    best = None
    if chosen is not None:
        name, higher = chosen
        means = np.array(
            [
                np.nan if p["metrics"][name]["mean"] is None else p["metrics"][name]["mean"]
                for p in points
            ]
        )
        if np.isfinite(means).any():
            best = int(np.nanargmax(means) if higher else np.nanargmin(means))
    return {
        "keys": list(sweep.keys),
        "axes": {k: list(v) for k, v in sweep.axes} if sweep.axes else None,
        "shape": list(sweep.shape),
        "seeds": int(len(result.diverged_at) // sweep.size),
        "select": None if chosen is None else {"metric": chosen[0], "higher_is_better": chosen[1]},
        "best": best,
        "points": points,
    }


def write_summary(workdir, result, config=None) -> dict:
    """``workdir/sweep.json``: the summary of a swept run (process 0 calls it)."""
    import json
    import pathlib

    summary = summarize(result, config.get("sweep_select", "") if config is not None else "")
    path = pathlib.Path(workdir) / SUMMARY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=1) + "\n")
    return summary
