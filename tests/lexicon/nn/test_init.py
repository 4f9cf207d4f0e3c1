"""Initializers: Glorot bounds/variance from the formula, and their relation to jax's ones."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from lexicon import baselines
from lexicon.nn import init
from lexicon.nn.layers import MLP

# A million draws: the relative standard error of a sample variance is sqrt(0.8 / N) = 0.09%
# for a uniform and sqrt(2 / N) = 0.14% for a normal, so 1% is over 7 standard errors.
BIG_SHAPE = (1000, 1000)


def draw(initializer, key, shape, dtype=jnp.float32):
    """One compiled draw (cheaper than compiling each primitive of an eager call)."""
    return np.asarray(jax.jit(initializer, static_argnums=(1, 2))(key, shape, dtype))


def test_fans_dense_and_conv_kernels():
    assert init.fans((784, 256)) == (784, 256)
    assert init.fans((3, 3, 16, 32)) == (3 * 3 * 16, 3 * 3 * 32)
    with pytest.raises(ValueError, match="at least 2 axes"):
        init.fans((10,))
    assert init.glorot_bound((784, 256)) == math.sqrt(6.0 / (784 + 256))


def test_glorot_uniform_bounds_and_variance():
    m, n = BIG_SHAPE
    bound = math.sqrt(6.0 / (m + n))
    # The sampler works in float32, so its bound is the float32 rounding of sqrt(6 / (m + n)).
    bound32 = float(np.float32(bound))
    w = draw(init.glorot_uniform, jax.random.key(0), BIG_SHAPE).astype(np.float64)
    assert w.shape == BIG_SHAPE
    assert w.min() >= -bound32 and w.max() <= bound32
    # The extremes reach the bound: with 1e6 draws the gap is ~1e-6 of the bound.
    assert w.min() <= -0.99 * bound and w.max() >= 0.99 * bound
    assert abs(w.var() / (6.0 / (m + n) / 3.0) - 1.0) < 0.01
    assert abs(w.mean()) < 0.01 * bound
    # And the whole distribution is uniform on [-b, b].
    sample = w.reshape(-1)[:20000]
    assert scipy.stats.kstest(sample, scipy.stats.uniform(-bound, 2 * bound).cdf).pvalue > 1e-3


def test_glorot_uniform_conv_kernel_uses_receptive_field():
    shape = (5, 5, 40, 40)
    w = draw(init.glorot_uniform, jax.random.key(1), shape).astype(np.float64)
    m, n = 5 * 5 * 40, 5 * 5 * 40
    assert np.abs(w).max() <= np.float32(math.sqrt(6.0 / (m + n)))
    assert abs(w.var() / (2.0 / (m + n)) - 1.0) < 0.01


@pytest.mark.parametrize("shape", [(300, 200), (3, 16, 32)])
def test_glorot_uniform_is_jax_glorot_uniform_up_to_rounding(shape):
    ours_fn = jax.jit(init.glorot_uniform, static_argnums=1)
    jax_fn = jax.jit(jax.nn.initializers.glorot_uniform(), static_argnums=1)
    same_fn = jax.jit(
        jax.nn.initializers.variance_scaling(1.0, "fan_avg", "uniform"), static_argnums=1
    )
    bound = init.glorot_bound(shape)
    for seed in range(3):
        key = jax.random.key(seed)
        ours = np.asarray(ours_fn(key, shape))
        theirs = np.asarray(jax_fn(key, shape))
        np.testing.assert_array_equal(theirs, np.asarray(same_fn(key, shape)))
        # Same bits, same affine map (u * 2b - b versus (2u - 1) * b): equal up to float32
        # rounding of the bound, which is not always bit for bit.
        assert np.abs(ours - theirs).max() <= 2 * np.finfo(np.float32).eps * bound


def test_glorot_uniform_matches_jax_exactly_in_float64(x64):
    key = jax.random.key(3)
    ours = draw(init.glorot_uniform, key, (300, 200), jnp.float64)
    theirs = draw(jax.nn.initializers.glorot_uniform(), key, (300, 200), jnp.float64)
    assert ours.dtype == jnp.float64
    np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs), rtol=0, atol=1e-15)


def test_he_uniform_bounds_variance_and_jax_relation():
    m = BIG_SHAPE[0]
    w = draw(init.he_uniform, jax.random.key(4), BIG_SHAPE).astype(np.float64)
    assert np.abs(w).max() <= np.float32(math.sqrt(6.0 / m))
    assert abs(w.var() / (2.0 / m) - 1.0) < 0.01
    key = jax.random.key(5)
    theirs = draw(jax.nn.initializers.he_uniform(), key, (300, 200))
    ours = draw(init.he_uniform, key, (300, 200))
    assert np.abs(ours - theirs).max() <= 2 * np.finfo(np.float32).eps * math.sqrt(6.0 / 300)


def test_he_normal_is_untruncated_with_jax_variance():
    m = BIG_SHAPE[0]
    std = math.sqrt(2.0 / m)
    ours = draw(init.he_normal, jax.random.key(6), BIG_SHAPE).astype(np.float64)
    theirs = draw(jax.nn.initializers.he_normal(), jax.random.key(6), BIG_SHAPE).astype(np.float64)
    assert abs(ours.var() / std**2 - 1.0) < 0.01
    assert abs(theirs.var() / std**2 - 1.0) < 0.01
    # jax truncates at 2 standard deviations of the pre-scaling normal; ours does not.
    jax_cutoff = 2 * std / 0.87962566103423978
    assert np.abs(theirs).max() <= jax_cutoff * (1 + 1e-6)
    assert (np.abs(ours) > jax_cutoff).mean() > 0.01
    assert scipy.stats.kstest(ours.reshape(-1)[:20000] / std, "norm").pvalue > 1e-3


def test_small_normal_and_zeros():
    w = draw(init.small_normal(0.05), jax.random.key(7), BIG_SHAPE).astype(np.float64)
    assert abs(w.std() / 0.05 - 1.0) < 0.01
    default = draw(init.get("small_normal"), jax.random.key(7), (500, 500)).astype(np.float64)
    assert abs(default.std() / init.DEFAULT_SMALL_STDDEV - 1.0) < 0.01
    z = init.zeros(jax.random.key(8), (3, 4), jnp.float32)
    assert z.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(z), np.zeros((3, 4)))


def test_registry_initializers_work_in_flax_dense_under_vmap():
    class OneDensePerInitializer(nn.Module):
        @nn.compact
        def __call__(self, x):
            return [nn.Dense(8, kernel_init=init.get(name), name=name)(x) for name in init.NAMES]

    keys = jax.random.split(jax.random.key(9), 3)
    model = OneDensePerInitializer()
    params = jax.jit(jax.vmap(lambda k: model.init(k, jnp.ones((1, 5)))))(keys)["params"]
    for name in init.NAMES:
        kernels = np.asarray(params[name]["kernel"])
        assert kernels.shape == (3, 5, 8) and kernels.dtype == np.float32
        if name == "zeros":
            np.testing.assert_array_equal(kernels, 0.0)
        else:
            assert not np.allclose(kernels[0], kernels[1]), "different keys, different draws"


def test_registry_unknown_name():
    with pytest.raises(
        ValueError, match="unknown initializer 'xavier'; valid names: glorot_uniform"
    ):
        init.get("xavier")


# --- measurements on a network at initialization ---


def test_activation_variances_match_a_numpy_forward_pass():
    """Two nets stacked on a leading axis, measured by variances_at_init as one program: each
    row is that net's per-layer variance (and its gradients are measured for each net)."""
    model = MLP([16] * 3 + [10], "tanh", kernel_init=init.glorot_uniform)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 64)).astype(np.float32)
    y = rng.integers(0, 10, size=50)
    keys = jax.random.split(jax.random.key(0))
    stack = jax.jit(jax.vmap(lambda k: model.init(k, x[:1])["params"]))(keys)
    got, gradients = init.variances_at_init(model, stack, x, y)
    assert got.shape == (2, 3) and gradients.shape == (2, 4)
    for net in range(2):
        h, expected = x.astype(np.float64), []
        for i in range(3):
            layer = jax.tree.map(
                lambda a, net=net: np.asarray(a[net], np.float64), stack[f"Dense_{i}"]
            )
            h = np.tanh(h @ layer["kernel"] + layer["bias"])
            expected.append(h.var())
        np.testing.assert_allclose(got[net], expected, rtol=1e-4)
    assert np.all(gradients > 0) and not np.allclose(gradients[0], gradients[1])


def test_weight_gradient_variances_match_hand_written_backprop():
    """One hidden tanh layer, softmax cross-entropy averaged over N examples:
    dJ/dW2 = a1^T (p - t) / N and dJ/dW1 = x^T (((p - t) W2^T) * (1 - a1^2)) / N."""
    model = MLP([8, 4], "tanh", kernel_init=init.he_normal)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(30, 5)).astype(np.float32)
    y = rng.integers(0, 4, size=30)
    params = jax.jit(model.init)(jax.random.key(3), x[:1])["params"]
    w1, b1 = (np.asarray(params["Dense_0"][k], np.float64) for k in ("kernel", "bias"))
    w2, b2 = (np.asarray(params["Dense_1"][k], np.float64) for k in ("kernel", "bias"))
    a1 = np.tanh(x @ w1 + b1)
    logits = a1 @ w2 + b2
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    error = (p - np.eye(4)[y]) / len(x)
    grad_w2 = a1.T @ error
    grad_w1 = x.T @ ((error @ w2.T) * (1 - a1**2))
    measure = jax.jit(lambda p, x, y: init.weight_gradient_variances(model, p, x, y))
    got = measure(params, x, y)
    np.testing.assert_allclose(got, [grad_w1.var(), grad_w2.var()], rtol=1e-4)


def test_unit_spread_is_zero_only_for_identical_units():
    x = jnp.asarray(np.random.default_rng(4).normal(size=(20, 64)), jnp.float32)
    for init_name, zero in (("zeros", True), ("glorot_uniform", False)):
        model = MLP([16] * 3 + [10], "relu", kernel_init=init.get(init_name))
        params = jax.jit(model.init)(jax.random.key(0), x[:1])["params"]
        spread = float(init.unit_spread(model, params, x))
        expected = max(
            float(np.max(np.max(a, -1) - np.min(a, -1)))
            for a in init.hidden_activations(model, params, x)
        )
        assert spread == pytest.approx(expected)
        assert (spread == 0.0) == zero


def test_majority_class_accuracy():
    assert baselines.majority_class_accuracy(np.array([0, 1, 1, 2, 1, 0])) == pytest.approx(0.5)
