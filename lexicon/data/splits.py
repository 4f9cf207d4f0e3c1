"""Seeded train / validation / test splits and normalization."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Splits(NamedTuple):
    """Three named splits, each a dict of arrays sharing a leading example axis."""

    train: dict[str, np.ndarray]
    val: dict[str, np.ndarray]
    test: dict[str, np.ndarray]

    @property
    def num_classes(self) -> int:
        return int(max(s["y"].max() for s in self if len(s["y"])) + 1)


def split(
    x: np.ndarray,
    y: np.ndarray,
    *,
    seed: int,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    train_size: int | None = None,
) -> Splits:
    """Shuffles the examples with ``seed`` and cuts them into test, validation and train.

    ``train_size`` keeps only the first examples of the training split (a small training
    set, e.g. to make a network overfit on purpose).
    """
    if not 0 <= val_fraction < 1 or not 0 <= test_fraction < 1 or val_fraction + test_fraction >= 1:
        raise ValueError("val_fraction and test_fraction must be in [0, 1) and sum to less than 1")
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = int(round(test_fraction * len(x)))
    n_val = int(round(val_fraction * len(x)))
    test, val, train = np.split(order, [n_test, n_test + n_val])
    if train_size is not None:
        train = train[:train_size]
    return Splits(*({"x": x[i], "y": y[i]} for i in (train, val, test)))


def holdout(
    x: np.ndarray,
    y: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    *,
    seed: int,
    val_fraction: float = 0.1,
) -> Splits:
    """Keeps a dataset's published test split and carves a seeded validation split from train."""
    order = np.random.default_rng(seed).permutation(len(x))
    n_val = int(round(val_fraction * len(x)))
    val, train = order[:n_val], order[n_val:]
    return Splits(
        {"x": x[train], "y": y[train]}, {"x": x[val], "y": y[val]}, {"x": x_test, "y": y_test}
    )


def per_class_subsets(split: dict, per_class: int, seeds, *, seed: int = 0) -> dict:
    """``per_class`` examples of every class of ``split``, one draw for each of ``seeds``.

    Returns the arrays of ``split`` with a leading axis over the seeds, (len(seeds),
    per_class * classes, ...), ready for ``train.fit(..., per_replica=True)``: replica i trains
    on the few labels drawn with ``(seed, seeds[i], per_class)``, the same in every run.
    """
    y = split["y"]
    picks = []
    for s in seeds:
        rng = np.random.default_rng([seed, int(s), per_class])
        members = [np.flatnonzero(y == c) for c in np.unique(y)]
        picks.append(np.concatenate([rng.choice(m, per_class, replace=False) for m in members]))
    return {k: v[np.stack(picks)] for k, v in split.items()}


def standardize(splits: Splits, *, per_feature: bool = True, eps: float = 1e-6) -> Splits:
    """Zero mean, unit variance, with statistics from the training split only."""
    x = splits.train["x"]
    axes = 0 if per_feature else None
    mean = x.mean(axis=axes, keepdims=per_feature)
    std = x.std(axis=axes, keepdims=per_feature) + eps
    return Splits(*({**s, "x": ((s["x"] - mean) / std).astype(np.float32)} for s in splits))
