"""Datasets: embedded sources, MNIST-1D, 5,000 MNIST digits, TFDS images, seeded splits; text
corpora, MovieLens, sequence tasks and Gaussian mixtures as submodules."""

from __future__ import annotations

from lexicon.data import mixtures, movielens, prepare, sequences, text
from lexicon.data.sources import (
    EMBEDDED,
    MNIST5K,
    TFDS_IMAGES,
    DataError,
    binarize,
    cache_dir,
    digits,
    mnist1d,
    mnist5k,
    sample_images,
    tfds_images,
)
from lexicon.data.splits import Splits, holdout, per_class_subsets, split, standardize

DATASETS = EMBEDDED + TFDS_IMAGES

__all__ = [
    "DATASETS",
    "mixtures",
    "movielens",
    "prepare",
    "sequences",
    "text",
    "EMBEDDED",
    "MNIST5K",
    "TFDS_IMAGES",
    "DataError",
    "Splits",
    "binarize",
    "cache_dir",
    "digits",
    "holdout",
    "load",
    "mnist1d",
    "mnist5k",
    "per_class_subsets",
    "sample_images",
    "split",
    "standardize",
    "tfds_images",
]


def load(
    name: str,
    *,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    train_size: int | None = None,
    flatten: bool = True,
    data_dir: str | None = None,
) -> Splits:
    """Loads a dataset by name into seeded splits.

    ``digits`` and ``mnist5k`` are split at random; ``mnist1d`` and the TFDS sets keep their
    published test split and carve the validation split from their training data. ``flatten``
    turns images into vectors; with ``flatten=False`` digits come as (8, 8, 1) images,
    mnist5k as (28, 28, 1) and MNIST-1D as (40, 1) signals. ``mnist5k_binary`` is mnist5k
    binarized at the fixed threshold 0.5 (``binarize``; a seeded stochastic binarization is
    ``binarize(x, seed=...)``).
    """
    if name == "digits":
        x, y = digits(images=not flatten)
        splits = split(x, y, seed=seed, val_fraction=val_fraction, test_fraction=test_fraction)
    elif name in MNIST5K:
        x, y = mnist5k()
        if name == "mnist5k_binary":
            x = binarize(x)
        if flatten:
            x = x.reshape(len(x), -1)
        splits = split(x, y, seed=seed, val_fraction=val_fraction, test_fraction=test_fraction)
    elif name == "mnist1d":
        d = mnist1d()
        x, x_test = d["x"], d["x_test"]
        if not flatten:
            x, x_test = x[..., None], x_test[..., None]
        splits = holdout(x, d["y"], x_test, d["y_test"], seed=seed, val_fraction=val_fraction)
    elif name in TFDS_IMAGES:
        x, y = tfds_images(name, "train", data_dir=data_dir)
        x_test, y_test = tfds_images(name, "test", data_dir=data_dir)
        if flatten:
            x, x_test = x.reshape(len(x), -1), x_test.reshape(len(x_test), -1)
        splits = holdout(x, y, x_test, y_test, seed=seed, val_fraction=val_fraction)
    else:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    if train_size is not None:
        splits = splits._replace(train={k: v[:train_size] for k, v in splits.train.items()})
    return splits
