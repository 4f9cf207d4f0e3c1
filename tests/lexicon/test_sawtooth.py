"""lexicon.sawtooth: T^k, its exact ReLU constructions, parameter counts of matched nets."""

import itertools

import jax
import numpy as np
import pytest

from lexicon import sawtooth as saw
from lexicon.nn.layers import MLP


def literal_sawtooth(x, k):
    """T^k by the definition, one scalar at a time."""
    for _ in range(k):
        x = 2 * x if x < 0.5 else 2 - 2 * x
    return x


def test_sawtooth_is_the_composed_triangle_map():
    x = np.random.default_rng(0).uniform(size=200)
    for k in range(5):
        np.testing.assert_allclose(saw.sawtooth(x, k), [literal_sawtooth(v, k) for v in x])
    # 2^(k-1) teeth: T^k hits 1 at the odd multiples of 1 / 2^k and 0 at the even ones.
    k = 3
    grid = np.arange(2**k + 1) / 2**k
    np.testing.assert_array_equal(saw.sawtooth(grid, k), np.arange(2**k + 1) % 2)


@pytest.mark.parametrize("k", [1, 2, 3, 6])
def test_constructions_compute_the_sawtooth_exactly(k):
    x = np.concatenate(
        [np.linspace(0, 1, 2 ** (k + 2) + 1), np.random.default_rng(k).uniform(size=300)]
    )[:, None]
    target = saw.sawtooth(x[:, 0], k)
    for build, parameters in (
        (saw.deep_construction, 6 * k + 1),
        (saw.shallow_construction, 3 * 2**k + 1),
    ):
        model, params = build(k)
        assert saw.count_parameters(params) == parameters
        # float64 NumPy forward pass of the hand-set weights ...
        np.testing.assert_allclose(saw.numpy_forward(params, x)[:, 0], target, atol=1e-12)
        # ... and the library's MLP in float32 with the same weights.
        out = model.apply({"params": params}, x.astype(np.float32))
        np.testing.assert_allclose(out[:, 0], target, atol=1e-5 * 2**k)


def test_parameter_counts_match_the_library_mlp():
    for widths in ([3], [5, 5], [2, 7, 4]):
        model = MLP(features=[*widths, 1], activation="relu")
        # Shapes are all that counts: trace the initialization without running it.
        shapes = jax.eval_shape(model.init, jax.random.key(0), np.zeros((1, 1), np.float32))
        params = jax.tree.map(lambda s: np.zeros(s.shape), shapes["params"])
        assert saw.mlp_parameters(widths) == saw.count_parameters(params)


def test_matched_width_is_the_closest_count():
    for budget, depth in itertools.product([49, 97, 385, 769], [2, 4, 6]):
        width = saw.matched_width(budget, depth)
        best = min(abs(saw.mlp_parameters([w] * depth) - budget) for w in range(1, 200))
        assert abs(saw.mlp_parameters([width] * depth) - budget) == best
