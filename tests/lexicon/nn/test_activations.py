"""Activations against literal NumPy float64 transcriptions of SPEC.md section 3."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lexicon.nn import activations
from lexicon.nn.layers import MLP

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


def test_abs_subgradient_at_zero_is_plus_one_so_every_slope_has_size_one(x64):
    # Any value in [-1, 1] is a subgradient of |z| at 0; the documented choice is +1 (also at
    # -0.0), so |g'(z)| = 1 everywhere: absolute-value rectification never blocks a gradient.
    points = jnp.array([-2.0, -1e-300, -0.0, 0.0, 1e-300, 2.0])
    slopes = np.asarray(jax.vmap(jax.grad(activations.absolute_value_rectification))(points))
    np.testing.assert_array_equal(slopes, [-1.0, -1.0, 1.0, 1.0, 1.0, 1.0])
    closed_form, formula = activations.DERIVATIVES["abs"]
    np.testing.assert_array_equal(closed_form(np.asarray(points)), slopes)
    assert formula == "+1 if x >= 0 else -1"


def numpy_one_hidden_layer(params, x, y, activation, pieces=1):
    """Literal backprop of mean softmax cross-entropy through x -> g(x W0 + b0) W1 + b1.

    Returns the full-batch kernel gradients, the per-unit activity sum_e |dL_e/dW0[:, unit]|
    (summed over the unit's inputs and maxout pieces), and the pre-activations.
    """
    w0, b0 = params["Dense_0"]["kernel"], params["Dense_0"]["bias"]
    w1, b1 = params["Dense_1"]["kernel"], params["Dense_1"]["bias"]
    n = len(x)
    h = x @ w0 + b0
    if activation == "maxout":
        grouped = h.reshape(n, pieces, -1)
        a, winner = grouped.max(axis=1), grouped.argmax(axis=1)
    elif activation == "relu":
        a = np.maximum(h, 0)
    else:  # abs
        a = np.where(h >= 0, h, -h)
    z = a @ w1 + b1
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    dz = (p - np.eye(z.shape[1])[y]) / n
    da = dz @ w1.T
    if activation == "maxout":
        dh = np.zeros_like(grouped)
        for e in range(n):
            for unit in range(a.shape[1]):
                dh[e, winner[e, unit], unit] = da[e, unit]
        dh = dh.reshape(n, -1)
    elif activation == "relu":
        dh = da * (h > 0)
    else:
        dh = da * np.where(h >= 0, 1.0, -1.0)
    grads = [x.T @ dh, a.T @ dz]
    # Example e alone: its loss is not divided by n, so its gradient is n times its share.
    per_column = np.sum(n * np.abs(dh) * np.abs(x).sum(axis=1, keepdims=True), axis=0)
    activity = per_column.reshape(pieces, -1).sum(axis=0)
    return grads, activity, h, z


@pytest.mark.parametrize("activation", ["relu", "abs", "maxout"])
def test_classifier_diagnostics_match_numpy_backprop(x64, activation):
    rng = np.random.default_rng(0)
    x, y = rng.uniform(0, 1, size=(12, 5)), rng.integers(0, 3, size=12)
    pieces = 2 if activation == "maxout" else 1
    model = MLP(features=(4, 3), activation=activation, maxout_pieces=pieces)
    params = model.init(jax.random.key(1), jnp.zeros((1, 5)))["params"]
    params = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    # Unit 0 can never be active on inputs in [0, 1]: dead under ReLU, alive under |z|.
    params["Dense_0"]["kernel"][:, 0] = -1.0
    params["Dense_0"]["bias"][0] = -0.5
    grads, activity, pre, logits = numpy_one_hidden_layer(params, x, y, activation, pieces)
    np.testing.assert_allclose(model.apply({"params": params}, x), logits, rtol=1e-12)
    stacked = jax.tree.map(lambda a: jnp.asarray(a)[None], params)
    found = activations.classifier_diagnostics(
        model, stacked, {"x": jnp.asarray(x), "y": jnp.asarray(y)}, pieces
    )
    np.testing.assert_allclose(
        found["gradient_norms"][0], [np.linalg.norm(g) for g in grads], rtol=1e-10
    )
    np.testing.assert_allclose(found["activity"][0, 0], activity, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(found["pre_activations"][0, 0], pre, rtol=1e-12)
    if activation == "relu":
        assert found["activity"][0, 0, 0] == 0 and np.all(found["activity"][0, 0, 1:] > 0)
    if activation == "abs":  # the same unit sends gradient back: the remedy at work
        assert np.all(found["activity"][0, 0] > 0)


def test_derivative_table_holds_jax_grad_against_the_closed_forms():
    x = np.linspace(-2, 2, 9)  # the kink 0 included
    names = ("sigmoid", "relu", "abs")
    functions = {n: (activations.get(n), *activations.DERIVATIVES[n]) for n in names}
    table = activations.derivative_table(functions, x)
    assert tuple(table) == names
    for name, (value, slope, exact, formula) in table.items():
        assert value.dtype == slope.dtype == np.float32 and exact.dtype == np.float64
        np.testing.assert_allclose(slope, exact, atol=1e-7, err_msg=name)
        assert formula == activations.DERIVATIVES[name][1]
    np.testing.assert_allclose(table["sigmoid"][0], np_sigmoid(x), rtol=1e-6)
    np.testing.assert_array_equal(table["relu"][1], (x > 0).astype(float))
    np.testing.assert_array_equal(table["abs"][1], np.where(x >= 0, 1.0, -1.0))
