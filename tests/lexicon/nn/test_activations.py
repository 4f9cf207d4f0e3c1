"""Activations against literal NumPy float64 transcriptions of SPEC.md section 3."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lexicon.nn import activations

# Includes the kinks (0) and the step threshold used below (0.5) exactly.
POINTS = np.array([-3.0, -1.5, -0.25, -1e-3, 0.0, 1e-3, 0.25, 0.5, 0.75, 1.5, 3.0])
SLOPE = 0.01
THRESHOLD = 0.5


def np_step(x, t):
    return np.array([1.0 if v >= t else 0.0 for v in x])


def np_sign(x):
    return np.array([1.0 if v >= 0 else -1.0 for v in x])


def np_sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def np_tanh(x):
    return (np.exp(x) - np.exp(-x)) / (np.exp(x) + np.exp(-x))


def np_relu(x):
    return np.array([max(0.0, v) for v in x])


def np_leaky(x):
    return np.array([v if v >= 0 else SLOPE * v for v in x])


# (function under test, value transcription, derivative transcription as autodiff defines it
# at the kinks: relu'(0) = 0, leaky'(0) = 1, |.|'(0) = +1, step/sign' = 0 everywhere)
CASES = {
    "step": (
        lambda x: activations.step(x, THRESHOLD),
        lambda x: np_step(x, THRESHOLD),
        lambda x: np.zeros_like(x),
    ),
    "sign": (activations.sign, np_sign, lambda x: np.zeros_like(x)),
    "sigmoid": (
        activations.sigmoid,
        np_sigmoid,
        lambda x: np_sigmoid(x) * (1.0 - np_sigmoid(x)),
    ),
    "tanh": (activations.tanh, np_tanh, lambda x: 1.0 - np_tanh(x) ** 2),
    "relu": (
        activations.relu,
        np_relu,
        lambda x: np.array([1.0 if v > 0 else 0.0 for v in x]),
    ),
    "leaky_relu": (
        lambda x: activations.leaky_relu(x, SLOPE),
        np_leaky,
        lambda x: np.array([1.0 if v >= 0 else SLOPE for v in x]),
    ),
    "abs": (
        activations.absolute_value_rectification,
        lambda x: np.array([v if v >= 0 else -v for v in x]),
        lambda x: np.array([1.0 if v >= 0 else -1.0 for v in x]),
    ),
    "identity": (activations.identity, lambda x: x.copy(), lambda x: np.ones_like(x)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_values_match_numpy_transcription(x64, name):
    fn, np_fn, _ = CASES[name]
    got = np.asarray(fn(jnp.asarray(POINTS)))
    np.testing.assert_allclose(got, np_fn(POINTS), rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("name", sorted(CASES))
def test_autodiff_derivative_matches_analytic(x64, name):
    fn, _, np_derivative = CASES[name]
    grads = np.asarray(jax.vmap(jax.grad(fn))(jnp.asarray(POINTS)))
    assert np.all(np.isfinite(grads)), "autodiff must not produce NaN/inf, even at kinks"
    np.testing.assert_allclose(grads, np_derivative(POINTS), rtol=1e-13, atol=1e-15)


def test_step_and_sign_conventions_at_the_boundary():
    # The document's definitions: step_t(t) = 1 and sign(0) = +1 (jnp.sign(0) would give 0).
    assert float(activations.step(jnp.float32(2.0), 2.0)) == 1.0
    assert float(activations.step(jnp.float32(1.999), 2.0)) == 0.0
    assert float(activations.sign(jnp.float32(0.0))) == 1.0
    assert float(activations.sign(jnp.float32(-0.0))) == 1.0


def test_sigmoid_gradient_is_finite_far_in_the_tails():
    grads = jax.vmap(jax.grad(activations.sigmoid))(jnp.array([-1000.0, -80.0, 80.0, 1000.0]))
    assert np.all(np.isfinite(np.asarray(grads)))
    assert np.all(np.asarray(grads) >= 0.0)


@pytest.mark.parametrize("name", activations.NAMES)
def test_registry_functions_keep_dtype_and_work_under_jit_and_vmap(name):
    fn = activations.get(name)
    x = jnp.linspace(-2.0, 2.0, 12, dtype=jnp.float32).reshape(3, 4)
    eager = fn(x)
    assert eager.dtype == jnp.float32 and eager.shape == x.shape
    np.testing.assert_array_equal(np.asarray(jax.jit(fn)(x)), np.asarray(eager))
    np.testing.assert_array_equal(np.asarray(jax.vmap(fn)(x)), np.asarray(eager))


def test_registry_defaults_and_unknown_name():
    x = jnp.array([-2.0, 0.0, 2.0])
    np.testing.assert_array_equal(
        np.asarray(activations.get("step")(x)), np.asarray(activations.step(x, 0.0))
    )
    np.testing.assert_allclose(
        np.asarray(activations.get("leaky_relu")(x)), [-0.02, 0.0, 2.0], rtol=1e-6
    )
    assert activations.get("abs") is activations.absolute_value_rectification
    with pytest.raises(
        ValueError, match="unknown activation 'swish'; valid names: .*sigmoid.*relu"
    ):
        activations.get("swish")


def test_dense_kernels_are_in_layer_order():
    params = {f"Dense_{i}": {"kernel": np.full((1, 1), i)} for i in range(12)}
    params["PReLU_0"] = {"negative_slope": np.zeros(1)}
    assert [int(k[0, 0]) for k in activations.dense_kernels(params)] == list(range(12))
