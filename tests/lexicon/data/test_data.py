"""lexicon.data: embedded sets, MNIST-1D, TFDS through mock data, splits."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from lexicon import data


def test_digits_split_is_seeded_and_disjoint():
    a, b, c = data.load("digits", seed=3), data.load("digits", seed=3), data.load("digits", seed=4)
    np.testing.assert_array_equal(a.train["x"], b.train["x"])
    assert not np.array_equal(a.train["y"], c.train["y"])
    sizes = [len(s["y"]) for s in a]
    assert sum(sizes) == 1797 and sizes == [1258, 180, 359]
    assert a.train["x"].dtype == np.float32 and a.train["x"].max() <= 1.0
    assert a.num_classes == 10


def test_digits_as_images_and_sample_images():
    x, y = data.digits(images=True)
    assert x.shape == (1797, 8, 8, 1) and y.dtype == np.int32
    images = data.sample_images()
    assert set(images) == {"china", "flower"}
    assert images["china"].shape == (427, 640, 3) and images["china"].max() <= 1.0


def test_mnist1d_is_regenerated_offline_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    d = data.mnist1d()
    assert d["x"].shape == (4000, 40) and d["x_test"].shape == (1000, 40)
    assert (tmp_path / "lexicon" / "mnist1d-5000-42.npz").exists()
    np.testing.assert_array_equal(data.mnist1d()["x"], d["x"])
    splits = data.load("mnist1d", flatten=False)
    assert splits.train["x"].shape[1:] == (40, 1) and len(splits.test["y"]) == 1000


def test_standardize_uses_training_statistics():
    s = data.standardize(data.load("digits"))
    np.testing.assert_allclose(s.train["x"].mean(0), 0, atol=1e-5)
    assert abs(s.test["x"].mean()) < 0.2


def test_tfds_mnist_loads_under_mock_data():
    with tfds.testing.mock_data(num_examples=24):
        splits = data.load("mnist", seed=0, flatten=False)
    assert splits.train["x"].shape[1:] == (28, 28, 1)
    assert len(splits.train["y"]) + len(splits.val["y"]) == 24
    assert splits.train["x"].dtype == np.float32 and splits.train["x"].max() <= 1.0
    assert splits.test["y"].dtype == np.int32


def test_missing_tfds_copy_names_the_embedded_alternatives(tmp_path):
    with pytest.raises(data.DataError, match="embedded dataset \\(digits, mnist1d\\)"):
        data.load("mnist", data_dir=str(tmp_path))


def test_unknown_dataset():
    with pytest.raises(data.DataError, match="choose one of digits, mnist1d, mnist"):
        data.load("imagenet")
