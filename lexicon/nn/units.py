"""Single-unit learning rules: the delta rule (LMS, Widrow-Hoff) and the perceptron rule.

SPEC.md section 1 (document 001, "Backpropagation"). One unit with weights w sees inputs
x_d (one row of ``x`` per example d) and targets t_d:

* linear unit, o_d = w . x_d, error E(w) = 1/2 sum_d (t_d - o_d)^2; gradient descent gives
  the batch rule dw_i = alpha sum_d (t_d - o_d) x_{i,d} (:func:`lms_batch`) and the
  incremental rule dw_j = alpha (t - o) x_j applied example by example (:func:`lms_incremental`);
* threshold unit, o = sign(w . x) (or step_0(w . x) for 0/1 targets), trained with the same
  incremental form w_i <- w_i + alpha (t - o) x_i (:func:`perceptron`). Rosenblatt's theorem:
  on linearly separable data it stops making mistakes after finitely many updates; on XOR it
  never does and its weights cycle.

A bias is an input fixed at 1: prepend it with :func:`add_bias_input`, and w_0 becomes the
bias (minus the threshold). Each trainer is a pure jitted function; ``epochs`` (and
``threshold_unit``) are static, everything else can be traced, so runs vmap over initial
weights, learning rates or shuffling keys. An epoch is one ``lax.scan`` step.
"""

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from lexicon.losses import half_sum_squared_error
from lexicon.nn import activations

THRESHOLD_UNITS = ("sign", "step")


class LMSHistory(NamedTuple):
    """Per-epoch record of a delta-rule run.

    weights: (epochs, d) weights at the end of each epoch.
    errors: (epochs,) E(w) = 1/2 sum_d (t_d - w . x_d)^2 at those weights.
    """

    weights: jax.Array
    errors: jax.Array


class PerceptronHistory(NamedTuple):
    """Per-epoch record of a perceptron run.

    weights: (epochs, d) weights at the end of each epoch.
    mistakes: (epochs,) int32 number of examples misclassified while visited during the epoch
      (each one triggered an update); 0 means the weights classify every example correctly.
    """

    weights: jax.Array
    mistakes: jax.Array


def add_bias_input(x: jax.Array) -> jax.Array:
    """Prepends a constant input x_0 = 1 to every example (rows of ``x``)."""
    return jnp.concatenate([jnp.ones((*x.shape[:-1], 1), x.dtype), x], axis=-1)


def linear_unit_output(weights: jax.Array, x: jax.Array) -> jax.Array:
    """o = w . x for every row of ``x``."""
    return x @ weights


def threshold_unit_output(
    weights: jax.Array, x: jax.Array, threshold_unit: str = "sign"
) -> jax.Array:
    """o = sign(w . x) in {-1, +1}, or step_0(w . x) in {0, 1} with ``threshold_unit='step'``."""
    if threshold_unit not in THRESHOLD_UNITS:
        raise ValueError(
            f"unknown threshold unit {threshold_unit!r}; valid units: {', '.join(THRESHOLD_UNITS)}"
        )
    return activations.get(threshold_unit)(x @ weights)


def _epoch_orders(key: jax.Array | None, epochs: int, num_examples: int) -> jax.Array:
    """(epochs, n) visiting order of the examples: fixed 0..n-1, or a fresh permutation of it
    per epoch drawn from ``key``."""
    if key is None:
        return jnp.broadcast_to(jnp.arange(num_examples), (epochs, num_examples))
    return jax.vmap(lambda k: jax.random.permutation(k, num_examples))(
        jax.random.split(key, epochs)
    )


@partial(jax.jit, static_argnames=("epochs",))
def lms_batch(
    x: jax.Array, targets: jax.Array, initial_weights: jax.Array, alpha: float, epochs: int
) -> LMSHistory:
    """Batch delta rule: per epoch, w_i <- w_i + alpha sum_d (t_d - o_d) x_{i,d}, o_d = w . x_d.

    This is gradient descent on E(w) = 1/2 sum_d (t_d - o_d)^2, so for
    0 < alpha < 2 / lambda_max(X^T X) it converges to the least-squares solution.
    """

    def epoch(weights, _):
        outputs = linear_unit_output(weights, x)
        weights = weights + alpha * (x.T @ (targets - outputs))
        error = half_sum_squared_error(linear_unit_output(weights, x), targets)
        return weights, (weights, error)

    _, (weights, errors) = lax.scan(epoch, initial_weights, None, length=epochs)
    return LMSHistory(weights, errors)


@partial(jax.jit, static_argnames=("epochs",))
def lms_incremental(
    x: jax.Array,
    targets: jax.Array,
    initial_weights: jax.Array,
    alpha: float,
    epochs: int,
    key: jax.Array | None = None,
) -> LMSHistory:
    """Incremental delta rule (LMS, Widrow-Hoff, Adaline): for each example in turn,
    w_j <- w_j + alpha (t - o) x_j with o = w . x.

    Examples are visited in order 0..n-1, or in a new random order each epoch if ``key`` is
    given. With a constant alpha it settles within O(alpha) of the least-squares solution
    (exactly on it when the targets are an exact linear function of the inputs).
    """

    def example(weights, example_index):
        x_d, t_d = x[example_index], targets[example_index]
        output = x_d @ weights
        return weights + alpha * (t_d - output) * x_d, None

    def epoch(weights, order):
        weights, _ = lax.scan(example, weights, order)
        error = half_sum_squared_error(linear_unit_output(weights, x), targets)
        return weights, (weights, error)

    orders = _epoch_orders(key, epochs, x.shape[0])
    _, (weights, errors) = lax.scan(epoch, initial_weights, orders)
    return LMSHistory(weights, errors)


@partial(jax.jit, static_argnames=("epochs", "threshold_unit"))
def perceptron(
    x: jax.Array,
    targets: jax.Array,
    initial_weights: jax.Array,
    alpha: float,
    epochs: int,
    threshold_unit: str = "sign",
    key: jax.Array | None = None,
) -> PerceptronHistory:
    """Perceptron rule: for each example in turn, w_i <- w_i + alpha (t - o) x_i, where
    o = sign(w . x) and t in {-1, +1} (or o = step_0(w . x) and t in {0, 1}).

    Correctly classified examples leave w unchanged (t - o = 0). Examples are visited in
    order 0..n-1, or in a new random order each epoch if ``key`` is given.
    """
    if threshold_unit not in THRESHOLD_UNITS:
        raise ValueError(
            f"unknown threshold unit {threshold_unit!r}; valid units: {', '.join(THRESHOLD_UNITS)}"
        )
    unit = activations.get(threshold_unit)

    def example(weights, example_index):
        x_d, t_d = x[example_index], targets[example_index]
        output = unit(x_d @ weights)
        mistake = (output != t_d).astype(jnp.int32)
        return weights + alpha * (t_d - output) * x_d, mistake

    def epoch(weights, order):
        weights, mistakes = lax.scan(example, weights, order)
        return weights, (weights, jnp.sum(mistakes))

    orders = _epoch_orders(key, epochs, x.shape[0])
    _, (weights, mistakes) = lax.scan(epoch, initial_weights, orders)
    return PerceptronHistory(weights, mistakes)


# --- what the experiments measure of a perceptron ---------------------------------------------


def separable_set(num_points: int, margin: float, seed: int):
    """Points of [-1, 1]^2 labelled +-1 by a random line, none within ``margin`` of it."""
    rng = np.random.default_rng(seed)
    angle = rng.uniform(0, 2 * np.pi)
    normal, offset = np.array([np.cos(angle), np.sin(angle)]), rng.uniform(-0.3, 0.3)
    points = np.empty((0, 2))
    while len(points) < num_points:
        candidates = rng.uniform(-1, 1, size=(4 * num_points, 2))
        keep = np.abs(candidates @ normal + offset) >= margin
        points = np.concatenate([points, candidates[keep]])
    points = points[:num_points]
    labels = np.where(points @ normal + offset >= 0, 1.0, -1.0)
    return points.astype(np.float32), labels.astype(np.float32), (normal, offset)


def regression_set(num_examples: int, num_inputs: int, noise: float, seed: int):
    """A linear regression problem for a linear unit, float32: x = [1, z] with z ~ N(0, I) (the
    bias input first), t = x . w_true + noise * N(0, 1), w_true ~ N(0, I); seeded by ``seed``."""
    rng = np.random.default_rng(seed)
    x = np.hstack([np.ones((num_examples, 1)), rng.normal(size=(num_examples, num_inputs - 1))])
    true_w = rng.normal(size=num_inputs)
    t = x @ true_w + noise * rng.normal(size=num_examples)
    return x.astype(np.float32), t.astype(np.float32)


def least_squares(x: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, float, float]:
    """What the delta rule is held against, in float64: (w_lstsq, E(w_lstsq), lambda_max).

    w_lstsq minimizes E(w) = 1/2 sum_d (t_d - w . x_d)^2 (``numpy.linalg.lstsq``); batch LMS
    converges to it for 0 < alpha < 2 / lambda_max, lambda_max the largest eigenvalue of X^T X.
    """
    x, targets = np.asarray(x, np.float64), np.asarray(targets, np.float64)
    weights = np.linalg.lstsq(x, targets, rcond=None)[0]
    minimum = 0.5 * np.sum((targets - x @ weights) ** 2)
    return weights, minimum, float(np.linalg.eigvalsh(x.T @ x).max())


def novikoff_bound(x_with_bias: np.ndarray, targets: np.ndarray) -> tuple[float, float, float]:
    """(R, gamma, (R / gamma)^2) for the perceptron started at w = 0.

    gamma = max over ||w|| = 1 of min_d t_d w . x_d is the hard margin of a separator through
    the origin of the bias-augmented space: minimize ||w||^2 subject to t_d w . x_d >= 1, and
    gamma = 1 / ||w||. gamma is then read off the solver's w as min_d t_d w . x_d / ||w||: any
    separating w gives a margin no larger than the best one, so the bound stays an upper bound
    even if the solver stops short of the optimum.
    """
    import scipy.optimize

    x = x_with_bias.astype(np.float64)
    margins = targets.astype(np.float64)[:, None] * x
    solution = scipy.optimize.minimize(
        lambda w: w @ w,
        x0=np.linalg.lstsq(margins, np.ones(len(x)), rcond=None)[0],
        jac=lambda w: 2 * w,
        constraints=[{"type": "ineq", "fun": lambda w: margins @ w - 1, "jac": lambda w: margins}],
        method="SLSQP",
        options={"maxiter": 500, "ftol": 1e-12},
    )
    w = solution.x
    gamma = float(np.min(margins @ w) / np.linalg.norm(w))
    radius = float(np.max(np.linalg.norm(x, axis=1)))
    return radius, gamma, (radius / gamma) ** 2


def perceptron_path(x, targets, initial_weights, alpha: float, epochs: int) -> jax.Array:
    """Weights after every visited example (fixed order), shape (epochs * n, d).

    Each update is :func:`perceptron` run for one epoch on a one-example set, so this is the
    same rule, only observed more often than once per epoch.
    """
    order = jnp.tile(jnp.arange(len(x)), epochs)

    def visit(weights, index):
        history = perceptron(x[index][None], targets[index][None], weights, alpha, 1)
        return history.weights[-1], history.weights[-1]

    return jax.lax.scan(visit, initial_weights, order)[1]


def first_zero(mistakes: np.ndarray) -> np.ndarray:
    """Per seed, the first epoch (1-based) with no mistakes; 0 where there is none."""
    clean = mistakes == 0
    return np.where(clean.any(axis=1), clean.argmax(axis=1) + 1, 0)


def smallest_period(weights: np.ndarray, max_period: int = 50) -> int:
    """Smallest p with w(last epoch) == w(last epoch - p), or 0 if none up to max_period."""
    for p in range(1, min(max_period, len(weights) - 1) + 1):
        if np.allclose(weights[-1], weights[-1 - p], rtol=0, atol=1e-5):
            return p
    return 0


# --- networks of sigmoid units: backpropagation by the delta rules (SPEC §3) -------------------
# E = 1/2 sum_k (t_k - o_k)^2; delta_j = -dE/dnet_j: for an output unit
# delta_k = o_k (1 - o_k) (t_k - o_k), for a hidden unit delta_h = o_h (1 - o_h) sum_k w_hk delta_k,
# and every weight moves by w_ij <- w_ij + alpha delta_j x_ij. Parameters: a list of layers
# {"w": (inputs, units), "b": (units,)}.


def init_params(key, sizes) -> list:
    """Weights W (inputs x units) ~ U(-r, r) with r = sqrt(6 / (m + n)); biases 0."""
    params = []
    for k, (m, n) in zip(jax.random.split(key, len(sizes) - 1), zip(sizes[:-1], sizes[1:])):
        r = np.sqrt(6.0 / (m + n))
        params.append({"w": jax.random.uniform(k, (m, n), minval=-r, maxval=r), "b": jnp.zeros(n)})
    return params


def forward(params, x) -> list:
    """The outputs of every layer, the input included: [x, o_1, ..., o_L]."""
    outputs = [x]
    for layer in params:
        outputs.append(jax.nn.sigmoid(outputs[-1] @ layer["w"] + layer["b"]))
    return outputs


def squared_error(params, x, t):
    """E = 1/2 sum_k (t_k - o_k)^2, averaged over the examples of the batch."""
    o = forward(params, x)[-1]
    return 0.5 * jnp.sum((t - o) ** 2) / len(x)


def backprop_deltas(params, outputs, t):
    """delta_j = -dE/dnet_j for every layer, from the output back to the first hidden layer."""
    o = outputs[-1]
    deltas = [o * (1 - o) * (t - o)]
    for layer, o_h in zip(reversed(params[1:]), reversed(outputs[1:-1])):
        deltas.insert(0, o_h * (1 - o_h) * (deltas[0] @ layer["w"].T))
    return deltas


def delta_rule_increments(params, x, t):
    """Delta w_ij = delta_j x_ij (per unit learning rate), averaged over the batch."""
    outputs = forward(params, x)
    deltas = backprop_deltas(params, outputs, t)
    return [
        {"w": inputs.T @ delta / len(x), "b": delta.mean(axis=0)}
        for inputs, delta in zip(outputs[:-1], deltas)
    ]


def backprop_gradient(params, x, t):
    """dE/dw from the delta rules: the increments with their sign flipped."""
    return jax.tree.map(jnp.negative, delta_rule_increments(params, x, t))
