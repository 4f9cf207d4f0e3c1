"""Tests for lexicon.nn.dropout: keep rates, inverted scaling, eval identity, MC dropout.

Statistical bounds: a count of kept units out of n independent Bernoulli(p) draws has standard
deviation sqrt(n p (1 - p)); we allow 6 standard deviations, a two-sided normal tail of about
2e-9 per check. The keys are fixed, so each test is deterministic; the bound says the chosen
seeds are not special.

Computations run through jax.jit and params are built in NumPy: many small eager dispatches
(and Flax init) cost more than one compile on a 2-core CPU.
"""

import jax
import numpy as np
import pytest

from lexicon.nn import dropout

Z = 6.0


def normal(seed, shape):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def dense_params(seed, sizes):
    """NumPy params for DropoutMLP: hidden_0 .. hidden_{k-1}, then output."""
    names = [f"hidden_{i}" for i in range(len(sizes) - 2)] + ["output"]
    rng = np.random.default_rng(seed)
    return {
        name: {
            "kernel": (rng.normal(size=(m, n)) / np.sqrt(m)).astype(np.float32),
            "bias": (0.1 * rng.normal(size=n)).astype(np.float32),
        }
        for name, m, n in zip(names, sizes[:-1], sizes[1:], strict=True)
    }


@pytest.mark.parametrize("keep_prob", [dropout.INPUT_KEEP_PROB, dropout.HIDDEN_KEEP_PROB])
def test_keep_rate_expected_value_and_inverted_scaling(keep_prob):
    """T masks over d units: overall keep rate, and per unit the mean of m x / p estimates x
    with standard deviation |x| sqrt((1 - p) / (p T))."""
    d, samples = 200, 2000
    x = normal(2, (d,)) + np.float32(0.5) * np.sign(normal(3, (d,)))  # |x| away from 0

    @jax.jit
    def draw_all(key):
        keys = jax.random.split(key, samples)
        return jax.vmap(lambda k: dropout.dropout(x, keep_prob, k))(keys)

    draws = np.asarray(draw_all(jax.random.key(3)))
    kept = draws != 0
    n = kept.size
    assert abs(kept.mean() - keep_prob) < Z * np.sqrt(keep_prob * (1 - keep_prob) / n)
    # Every output is either dropped (0) or the input divided by p.
    np.testing.assert_allclose(draws[kept], np.broadcast_to(x / keep_prob, draws.shape)[kept])

    mean = draws.astype(np.float64).mean(axis=0)
    x64 = x.astype(np.float64)
    std_of_mean = np.abs(x64) * np.sqrt((1 - keep_prob) / (keep_prob * samples))
    assert np.all(np.abs(mean - x64) <= Z * std_of_mean + 1e-6)


def test_documented_keep_probabilities():
    assert dropout.INPUT_KEEP_PROB == 0.8
    assert dropout.HIDDEN_KEEP_PROB == 0.5
    module = dropout.DropoutMLP(hidden_features=(3,), out_features=2)
    assert module.input_keep_prob == 0.8 and module.hidden_keep_prob == 0.5


def test_eval_mode_and_keep_all_are_identity():
    x = normal(4, (5, 7))
    assert dropout.dropout(x, 0.5, None, deterministic=True) is x
    assert dropout.dropout(x, 1.0, jax.random.key(0)) is x
    layer = dropout.Dropout(keep_prob=0.5)
    np.testing.assert_array_equal(layer.apply({}, x, deterministic=True), x)
    with pytest.raises(ValueError, match="keep_prob"):
        dropout.dropout(x, 0.0, jax.random.key(0))
    with pytest.raises(ValueError, match="key"):
        dropout.dropout(x, 0.5, None)


def test_module_uses_dropout_rng_stream_deterministically():
    layer = dropout.Dropout(keep_prob=0.5)
    x = np.ones((64, 64), np.float32)
    train = jax.jit(lambda k: layer.apply({}, x, deterministic=False, rngs={"dropout": k}))
    a, b, c = train(jax.random.key(0)), train(jax.random.key(0)), train(jax.random.key(1))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert set(np.unique(np.asarray(a))) == {0.0, 2.0}


def test_dropout_mlp_eval_matches_plain_mlp_and_training_drops_at_the_right_rates():
    model = dropout.DropoutMLP(hidden_features=(300,), out_features=3)
    x = normal(5, (400, 50))
    params = dense_params(6, [50, 300, 3])
    variables = {"params": params}
    init_shapes = jax.eval_shape(model.init, jax.random.key(0), x)
    assert jax.tree.map(lambda a: a.shape, init_shapes) == jax.tree.map(np.shape, variables)

    @jax.jit
    def run(v, k):
        evaluation = model.apply(v, x)
        _, captured = model.apply(v, x, train=True, rngs={"dropout": k}, capture_intermediates=True)
        return evaluation, captured["intermediates"]

    evaluation, inter = run(variables, jax.random.key(7))
    p = jax.tree.map(lambda a: a.astype(np.float64), params)
    hidden = np.maximum(x.astype(np.float64) @ p["hidden_0"]["kernel"] + p["hidden_0"]["bias"], 0)
    expected = hidden @ p["output"]["kernel"] + p["output"]["bias"]
    np.testing.assert_allclose(evaluation, expected, rtol=1e-4, atol=1e-5)

    dropped_input = np.asarray(inter["input_dropout"]["__call__"][0])
    n = dropped_input.size
    assert abs((dropped_input != 0).mean() - 0.8) < Z * np.sqrt(0.8 * 0.2 / n)

    hidden_in = np.maximum(np.asarray(inter["hidden_0"]["__call__"][0]), 0.0)
    hidden_out = np.asarray(inter["hidden_dropout_0"]["__call__"][0])
    active = hidden_in > 0
    m = active.sum()
    assert abs((hidden_out[active] != 0).mean() - 0.5) < Z * np.sqrt(0.25 / m)
    np.testing.assert_allclose(
        hidden_out[hidden_out != 0], hidden_in[hidden_out != 0] / 0.5, rtol=1e-6
    )


def test_mc_dropout_predict_converges_to_expected_output_of_linear_model():
    """No hidden layer: output = (m x / p) W + b, whose mean over masks is x W + b.

    Also checks ``monte_carlo_average`` against the mean over the split keys, and an
    ``output_transform`` (softmax averages are probability vectors).
    """
    model = dropout.DropoutMLP(hidden_features=(), out_features=4)
    x = normal(9, (6, 30))
    variables = {"params": dense_params(10, [30, 4])}
    samples = 1000
    sample_fn = lambda k: jax.random.normal(k, (3,))

    @jax.jit
    def run(v, key):
        return {
            "mc": dropout.mc_dropout_predict(model, v, x, key, samples),
            "probs": dropout.mc_dropout_predict(
                model, v, x, key, 20, output_transform=jax.nn.softmax
            ),
            "average": dropout.monte_carlo_average(sample_fn, key, 5),
            "draws": jax.vmap(sample_fn)(jax.random.split(key, 5)),
        }

    out = run(variables, jax.random.key(11))
    w = variables["params"]["output"]["kernel"].astype(np.float64)
    b = variables["params"]["output"]["bias"].astype(np.float64)
    x64 = x.astype(np.float64)
    exact = x64 @ w + b
    p = model.input_keep_prob
    # Var of one sample of output j: sum_i W_ij^2 x_i^2 (1 - p) / p.
    variance = (x64**2) @ (w**2) * (1 - p) / p
    mc = np.asarray(out["mc"], np.float64)
    assert np.all(np.abs(mc - exact) <= Z * np.sqrt(variance / samples) + 1e-5)

    np.testing.assert_allclose(np.sum(out["probs"], axis=-1), np.ones(6), rtol=1e-5)
    np.testing.assert_allclose(out["average"], np.mean(out["draws"], axis=0), rtol=1e-6)
