"""Restricted Boltzmann machines (SPEC.md §7, document 001) as pure JAX functions.

Parameters are a dict ``{"w": (V, H), "b": (V,), "a": (H,)}`` named as the document names
them: ``w_ij`` joins visible unit i to hidden unit j, ``b_i`` is the bias of visible unit i,
``a_j`` the bias of hidden unit j. p(v, h) = exp(-E(v, h)) / Z with Z = sum_v sum_h exp(-E).

Bernoulli-Bernoulli (binary visible and hidden units)::

    E(v, h) = -sum_ij w_ij v_i h_j - sum_i b_i v_i - sum_j a_j h_j
    p(h_j = 1 | v) = sigmoid(sum_i w_ij v_i + a_j)
    p(v_i = 1 | h) = sigmoid(sum_j w_ij h_j + b_i)

Gaussian-Bernoulli with unit variance (real visible units)::

    E(v, h) = -sum_ij w_ij v_i h_j + 1/2 sum_i (v_i - b_i)^2 - sum_j a_j h_j
    p(v_i | h) = N(sum_j w_ij h_j + b_i, 1)

The document prints the quadratic term with a minus sign. With -1/2 sum (v_i - b_i)^2 the
integral of exp(-E) over v diverges, so Z does not exist, and p(v | h) would not be the
Gaussian it states. The code uses +1/2 sum (v_i - b_i)^2, the only sign under which the
model normalizes and p(v | h) = N(W h + b, 1) holds (tests/lexicon/nn/test_rbm.py integrates
it numerically).

Sign convention of learning. The gradient of the average log-likelihood is
    d log p(v) / d w_ij = E_data[v_i h_j] - E_model[v_i h_j]
(and <v_i>_data - <v_i>_model for b, <h_j>_data - <h_j>_model for a). ``cd_gradient``
returns this *ascent* direction, estimated by contrastive divergence: the model average is
replaced by the states a Gibbs chain reaches after k steps (CD-k), started at the data, or
continued from the previous update's chains (persistent CD [add], Tieleman 2008). The
optimizer (optax convention: it is handed the gradient of a loss) receives its negation,
the gradient estimate of the negative log-likelihood, so every update ascends the
log-likelihood. Following Hinton's practical guide [add] (Hinton 2010, "A Practical Guide to
Training Restricted Boltzmann Machines"), hidden states driven by data are sampled, the
statistics use p(h | v) in place of sampled hidden states, and the model's visible states are
samples, which keeps the CD-k estimate tending to the exact gradient as k grows.

The free energy F(v) = -log sum_h exp(-E(v, h)) gives p(v) = exp(-F(v)) / Z:
    Bernoulli visibles: F(v) = -sum_i b_i v_i - sum_j softplus(a_j + sum_i w_ij v_i)
    Gaussian visibles:  F(v) = 1/2 sum_i (v_i - b_i)^2 - sum_j softplus(a_j + sum_i w_ij v_i)
For up to ``MAX_EXACT_HIDDEN`` hidden units, log Z is exact by summing over every hidden state
(``log_partition``); beyond, annealed importance sampling estimates it [add] (Neal 2001;
Salakhutdinov & Murray 2008).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from jax import lax

from lexicon.train.loop import Task
from lexicon.train.steps import mean_over

VISIBLE = ("bernoulli", "gaussian")
MAX_EXACT_HIDDEN = 24  # 2^24 hidden states: the exact log Z is still a few seconds on a CPU
LOG_2PI = math.log(2 * math.pi)

Params = dict[str, jax.Array]


def _check_visible(visible: str) -> None:
    if visible not in VISIBLE:
        raise ValueError(f"visible must be one of {VISIBLE}, not {visible!r}")


# --- parameters ---------------------------------------------------------------------------------


def init(
    key: jax.Array,
    visible_size: int,
    hidden_size: int,
    *,
    scale: float = 0.01,
    visible_bias=None,
    dtype=jnp.float32,
) -> Params:
    """w_ij ~ N(0, scale^2), a = 0, b = ``visible_bias`` or 0 (Hinton's guide, section 8:
    weights N(0, 0.01^2), hidden biases 0, visible biases log p_i / (1 - p_i), see
    ``base_rate_bias``)."""
    w = scale * jax.random.normal(key, (visible_size, hidden_size), dtype)
    b = jnp.zeros(visible_size, dtype) if visible_bias is None else jnp.asarray(visible_bias, dtype)
    return {"w": w, "b": b, "a": jnp.zeros(hidden_size, dtype)}


def base_rate_bias(x, smoothing: float = 1e-3) -> np.ndarray:
    """log p_i / (1 - p_i) of the data's mean p_i of each visible unit, p_i clipped to
    [smoothing, 1 - smoothing]: the biases of the best RBM with W = 0 (the base-rate model)."""
    p = np.clip(np.asarray(x, np.float64).mean(axis=0), smoothing, 1 - smoothing)
    return (np.log(p) - np.log1p(-p)).astype(np.float32)


# --- energy, free energy and the conditionals ---------------------------------------------------


def energy(params: Params, v, h, visible: str = "bernoulli") -> jax.Array:
    """E(v, h) of each pair (leading axes broadcast): see the module docstring for both kinds."""
    _check_visible(visible)
    interaction = jnp.sum((v @ params["w"]) * h, axis=-1)
    hidden_term = h @ params["a"]
    if visible == "bernoulli":
        visible_term = -(v @ params["b"])
    else:
        visible_term = 0.5 * jnp.sum((v - params["b"]) ** 2, axis=-1)
    return -interaction + visible_term - hidden_term


def hidden_input(params: Params, v) -> jax.Array:
    """sum_i w_ij v_i + a_j, the input of every hidden unit."""
    return v @ params["w"] + params["a"]


def free_energy(params: Params, v, visible: str = "bernoulli") -> jax.Array:
    """F(v) = -log sum_h exp(-E(v, h)), so that p(v) = exp(-F(v)) / Z."""
    _check_visible(visible)
    hidden_term = jnp.sum(jax.nn.softplus(hidden_input(params, v)), axis=-1)
    if visible == "bernoulli":
        return -(v @ params["b"]) - hidden_term
    return 0.5 * jnp.sum((v - params["b"]) ** 2, axis=-1) - hidden_term


def p_h_given_v(params: Params, v) -> jax.Array:
    """p(h_j = 1 | v) = sigmoid(sum_i w_ij v_i + a_j), for either kind of visible unit."""
    return jax.nn.sigmoid(hidden_input(params, v))


def p_v_given_h(params: Params, h, visible: str = "bernoulli") -> jax.Array:
    """Bernoulli: p(v_i = 1 | h) = sigmoid(sum_j w_ij h_j + b_i); Gaussian: the mean
    sum_j w_ij h_j + b_i of p(v_i | h) = N(., 1)."""
    _check_visible(visible)
    x = h @ params["w"].T + params["b"]
    return jax.nn.sigmoid(x) if visible == "bernoulli" else x


def sample_h(params: Params, v, key) -> jax.Array:
    """Binary hidden states drawn from p(h | v)."""
    return jax.random.bernoulli(key, p_h_given_v(params, v)).astype(v.dtype)


def sample_v(params: Params, h, key, visible: str = "bernoulli") -> jax.Array:
    """Visible states drawn from p(v | h): binary, or the mean plus unit-variance noise."""
    mean = p_v_given_h(params, h, visible)
    if visible == "bernoulli":
        return jax.random.bernoulli(key, mean).astype(h.dtype)
    return mean + jax.random.normal(key, mean.shape, mean.dtype)


def gibbs(params: Params, v, key, steps: int, visible: str = "bernoulli"):
    """``steps`` full steps of block Gibbs sampling v0 -> h0 -> v1 -> h1 -> ... -> v_steps, as
    one lax.scan. Returns (v_steps, the mean of p(v | h_{steps-1}) it was drawn from)."""

    def body(carry, step_key):
        v, _ = carry
        h_key, v_key = jax.random.split(step_key)
        h = sample_h(params, v, h_key)
        return (sample_v(params, h, v_key, visible), p_v_given_h(params, h, visible)), None

    keys = jax.random.split(key, steps)
    (v, mean), _ = lax.scan(body, (v, jnp.zeros_like(v)), keys)
    return v, mean


# --- contrastive divergence ---------------------------------------------------------------------


def statistics(params: Params, v) -> Params:
    """<v_i p(h_j=1|v)>, <v_i>, <p(h_j=1|v)> averaged over the rows of v."""
    ph = p_h_given_v(params, v)
    n = v.shape[0]
    return {"w": v.T @ ph / n, "b": v.mean(axis=0), "a": ph.mean(axis=0)}


def cd_gradient(params: Params, v_data, key, k: int = 1, visible="bernoulli", chain=None):
    """The CD-k estimate of d log p / d theta (the ascent direction):
    dw = <v h>_data - <v h>_k, db = <v>_data - <v>_k, da = <h>_data - <h>_k.

    The model states come from k Gibbs steps started at the data (CD-k) or, given ``chain``,
    at those persistent states (PCD). Returns (gradient, the chain's new states)."""
    start = v_data if chain is None else chain
    v_model, _ = gibbs(params, start, key, k, visible)
    v_model = lax.stop_gradient(v_model)
    positive, negative = statistics(params, v_data), statistics(params, v_model)
    return jax.tree.map(jnp.subtract, positive, negative), v_model


def exact_gradient(params: Params, v_data, visible: str = "bernoulli") -> Params:
    """d/d theta of the average exact log-likelihood (jax.grad through ``log_partition``);
    for RBMs small enough to enumerate."""
    return jax.grad(lambda p: log_likelihood(p, v_data, visible).mean())(params)


def reconstruction_error(params: Params, v, visible: str = "bernoulli") -> jax.Array:
    """Mean over rows of sum_i (v_i - E[v_i | h = p(h|v)])^2: the usual (not a likelihood)
    progress measure of CD."""
    mean = p_v_given_h(params, p_h_given_v(params, v), visible)
    return jnp.mean(jnp.sum((v - mean) ** 2, axis=-1))


# --- the optimizer of Hinton's practical guide ---------------------------------------------------


class MomentumState(NamedTuple):
    count: jax.Array
    velocity: Any


def weights_only(params) -> Any:
    """The decay mask of the guide: weight cost on w, none on the biases."""
    return {name: name == "w" for name in params}


def sgd_momentum(
    learning_rate: float | Callable,
    momentum: float | Callable,
    weight_decay: float = 0.0,
    decay_mask: Callable = weights_only,
) -> optax.GradientTransformation:
    """The update of Hinton's guide (sections 9-10) [add], given the gradient g of the loss
    (here: of the negative log-likelihood, the negated CD estimate):

        velocity <- alpha(t) velocity - eps(t) (g + lambda theta [theta a weight])
        theta    <- theta + velocity

    ``learning_rate`` (eps) and ``momentum`` (alpha) are numbers or schedules of the update
    count t; lambda is the weight cost (L2, weights only)."""

    def init_fn(params):
        return MomentumState(jnp.zeros((), jnp.int32), jax.tree.map(jnp.zeros_like, params))

    def update_fn(grads, state, params):
        eps = learning_rate(state.count) if callable(learning_rate) else learning_rate
        alpha = momentum(state.count) if callable(momentum) else momentum
        mask = decay_mask(params)
        velocity = jax.tree.map(
            lambda v, g, p, m: alpha * v - eps * (g + weight_decay * p * m),
            state.velocity,
            grads,
            params,
            mask,
        )
        return velocity, MomentumState(state.count + 1, velocity)

    return optax.GradientTransformation(init_fn, update_fn)


def practical_guide(
    steps_per_epoch: int,
    learning_rate: float = 0.1,
    weight_decay: float = 1e-4,
    momentum: tuple[float, float] = (0.5, 0.9),
    switch_epoch: int = 5,
    decay_steps: int | None = None,
) -> optax.GradientTransformation:
    """The guide's preset: momentum 0.5 for the first ``switch_epoch`` epochs, then 0.9, a
    weight cost of 1e-4 on w, and a learning rate of 0.1 for binary units (the guide asks
    for one or two orders of magnitude less with Gaussian visible units). ``decay_steps``
    lowers the learning rate linearly to 0 over that many updates [add] (as Tieleman 2008
    does for PCD, whose persistent chains need a small step late in training)."""
    switch = switch_epoch * steps_per_epoch
    if decay_steps:
        learning_rate = optax.linear_schedule(learning_rate, 0.0, decay_steps)

    def alpha(count):
        return jnp.where(count < switch, momentum[0], momentum[1])

    return sgd_momentum(learning_rate, alpha, weight_decay)


# --- training through lexicon.train --------------------------------------------------------------


class RBMState(struct.PyTreeNode):
    """One replica: step count, parameters, optimizer state (the momentum), the persistent
    chains of PCD (left untouched by CD-k), and ``below``, the frozen lower layers of a deep
    belief network whose hidden samples are this RBM's data (empty for a single RBM)."""

    step: jax.Array
    params: Any
    opt_state: Any
    chain: jax.Array
    below: Any
    tx: optax.GradientTransformation = struct.field(pytree_node=False)


def propagate_up(below, x, key=None):
    """Binary samples of the top hidden layer of the stack ``below`` given x (each layer's h
    drawn from p(h | layer below)), or with key=None the mean-field probabilities."""
    for i, layer in enumerate(below):
        x = p_h_given_v(layer, x) if key is None else sample_h(layer, x, jax.random.fold_in(key, i))
    return x


def task(
    visible_size: int,
    hidden_size: int,
    tx: optax.GradientTransformation,
    *,
    visible: str = "bernoulli",
    k: int = 1,
    persistent: bool = False,
    chains: int = 100,
    visible_bias=None,
    init_scale: float = 0.01,
    exact: bool = False,
) -> Task:
    """A lexicon.train Task whose step is one CD-k (or PCD-k) update on a minibatch {"x"}.

    Metrics of a step: ``reconstruction`` (watched for divergence). Evaluation of a split:
    ``reconstruction``, ``free_energy`` (mean F(v)) and, with ``exact``, ``log_z`` and the
    exact average ``log_likelihood`` in nats."""
    _check_visible(visible)
    if exact and hidden_size > MAX_EXACT_HIDDEN:
        raise ValueError(f"exact log Z sums 2^{hidden_size} states; at most {MAX_EXACT_HIDDEN}")

    def init_state(key):
        params_key, chain_key = jax.random.split(key)
        params = init(
            params_key, visible_size, hidden_size, scale=init_scale, visible_bias=visible_bias
        )
        # Fantasy particles start at p(v | h = 0), the visible biases' own distribution.
        chain = sample_v(params, jnp.zeros((chains, hidden_size)), chain_key, visible)
        return RBMState(
            step=jnp.zeros((), jnp.int32),
            params=params,
            opt_state=tx.init(params),
            chain=chain,
            below=(),
            tx=tx,
        )

    def make_step(axis_name=None):
        def step(state, batch, key):
            up_key, cd_key = jax.random.split(key)
            v = propagate_up(state.below, batch["x"], up_key)
            chain = state.chain if persistent else None
            gradient, v_model = cd_gradient(state.params, v, cd_key, k, visible, chain)
            gradient = mean_over(axis_name, gradient)
            loss_gradient = jax.tree.map(jnp.negative, gradient)
            updates, opt_state = state.tx.update(loss_gradient, state.opt_state, state.params)
            params = optax.apply_updates(state.params, updates)
            new_chain = v_model if persistent else state.chain
            metrics = {"reconstruction": reconstruction_error(state.params, v, visible)}
            new_state = state.replace(
                step=state.step + 1, params=params, opt_state=opt_state, chain=new_chain
            )
            return new_state, mean_over(axis_name, metrics)

        return step

    def evaluate(state, split):
        v = propagate_up(state.below, split["x"], jax.random.key(0) if state.below else None)
        out = {
            "reconstruction": reconstruction_error(state.params, v, visible),
            "free_energy": free_energy(state.params, v, visible).mean(),
        }
        if exact:
            log_z = log_partition(state.params, visible)
            out["log_z"] = log_z
            out["log_likelihood"] = -out["free_energy"] - log_z
        return out

    return Task(init=init_state, make_step=make_step, evaluate=evaluate, watch=("reconstruction",))


# --- the exact partition function ---------------------------------------------------------------


def hidden_states(start, count: int, hidden_size: int, dtype=jnp.float32) -> jax.Array:
    """The binary hidden vectors numbered start .. start + count - 1 (bit j = unit j)."""
    index = start + jnp.arange(count, dtype=jnp.int32)
    return ((index[:, None] >> jnp.arange(hidden_size, dtype=jnp.int32)) & 1).astype(dtype)


def log_partition(params: Params, visible: str = "bernoulli", chunk: int = 4096) -> jax.Array:
    """The exact log Z, summing over all 2^H hidden states h (the visible sum is closed form):

        Bernoulli: log Z = logsumexp_h [a.h + sum_i softplus(b_i + sum_j w_ij h_j)]
        Gaussian:  log Z = logsumexp_h [a.h + b.Wh + 1/2 |Wh|^2] + V/2 log 2 pi

    (for Gaussian visibles, the integral over v of exp(v.Wh - 1/2 |v - b|^2) is
    (2 pi)^(V/2) exp(b.Wh + 1/2 |Wh|^2)). Evaluated ``chunk`` hidden states at a time."""
    _check_visible(visible)
    visible_size, hidden_size = params["w"].shape
    if hidden_size > MAX_EXACT_HIDDEN:
        raise ValueError(f"exact log Z sums 2^{hidden_size} states; at most {MAX_EXACT_HIDDEN}")
    total = 2**hidden_size
    chunk = min(chunk, total)
    dtype = params["w"].dtype

    def chunk_term(c):
        h = hidden_states(c * chunk, chunk, hidden_size, dtype)
        wh = h @ params["w"].T
        if visible == "bernoulli":
            terms = h @ params["a"] + jnp.sum(jax.nn.softplus(wh + params["b"]), axis=-1)
        else:
            terms = h @ params["a"] + wh @ params["b"] + 0.5 * jnp.sum(wh**2, axis=-1)
        return jax.nn.logsumexp(terms)

    log_z = jax.nn.logsumexp(lax.map(chunk_term, jnp.arange(total // chunk)))
    if visible == "gaussian":
        log_z = log_z + 0.5 * visible_size * LOG_2PI
    return log_z


def log_likelihood(params: Params, v, visible: str = "bernoulli", log_z=None) -> jax.Array:
    """log p(v) = -F(v) - log Z of each row (exact log Z unless given)."""
    if log_z is None:
        log_z = log_partition(params, visible)
    return -free_energy(params, v, visible) - log_z


# --- annealed importance sampling ---------------------------------------------------------------


def ais_betas(count: int) -> np.ndarray:
    """``count`` + 1 inverse temperatures 0 = beta_0 < ... < beta_K = 1, spaced as in
    Salakhutdinov & Murray (2008): 500, 4,000 and 10,000 of their 14,500 steps in [0, 0.5),
    [0.5, 0.9) and [0.9, 1], here in those proportions."""
    first = max(1, round(count * 500 / 14500))
    second = max(1, round(count * 4000 / 14500))
    third = max(1, count - first - second)
    return np.concatenate(
        [
            np.linspace(0.0, 0.5, first, endpoint=False),
            np.linspace(0.5, 0.9, second, endpoint=False),
            np.linspace(0.9, 1.0, third + 1),
        ]
    )


def ais(
    params: Params,
    key,
    *,
    runs: int = 100,
    betas=None,
    visible: str = "bernoulli",
    base_visible_bias=None,
):
    """Annealed importance sampling of log Z [add] (Neal 2001; Salakhutdinov & Murray 2008).

    The path runs from the base RBM A (w = 0, a = 0, visible biases b_A: ``base_visible_bias``
    or 0), whose log Z_A is known, to the target B through the RBMs of parameters
    theta_beta = (1 - beta) theta_A + beta theta_B. With f_beta(v) = exp(-F_theta_beta(v)),
    v_0 ~ p_A and v_k drawn by one Gibbs step that leaves p_beta_k invariant,

        log w = sum_k [log f_beta_k(v_{k-1}) - log f_beta_(k-1)(v_{k-1})],
        Z_B ~ Z_A mean(w)   (unbiased in Z; its log is biased low, the likelihood high).

    Returns (log Z estimate, the log w of each run)."""
    _check_visible(visible)
    betas = jnp.asarray(ais_betas(1000) if betas is None else betas, params["w"].dtype)
    w, a, b = params["w"], params["a"], params["b"]
    visible_size, hidden_size = w.shape
    b_base = jnp.zeros_like(b) if base_visible_bias is None else jnp.asarray(base_visible_bias)
    log_z_base = hidden_size * math.log(2.0)
    if visible == "bernoulli":
        log_z_base += jnp.sum(jax.nn.softplus(b_base))
    else:
        log_z_base += 0.5 * visible_size * LOG_2PI

    def log_f(v, x, beta):  # -F of theta_beta, with x = v W + a (theta_A has w = a = 0)
        bias = (1 - beta) * b_base + beta * b
        hidden_term = jnp.sum(jax.nn.softplus(beta * x), axis=-1)
        if visible == "bernoulli":
            return v @ bias + hidden_term
        return -0.5 * jnp.sum((v - bias) ** 2, axis=-1) + hidden_term

    start_key, key = jax.random.split(key)
    base = {"w": jnp.zeros_like(w), "a": jnp.zeros_like(a), "b": b_base}
    v = sample_v(base, jnp.zeros((runs, hidden_size), w.dtype), start_key, visible)

    def body(carry, inputs):
        v, log_w = carry
        beta_prev, beta, step_key = inputs
        x = v @ w + a
        log_w = log_w + log_f(v, x, beta) - log_f(v, x, beta_prev)
        h_key, v_key = jax.random.split(step_key)
        h = jax.random.bernoulli(h_key, jax.nn.sigmoid(beta * x)).astype(v.dtype)
        scaled = {"w": beta * w, "a": beta * a, "b": (1 - beta) * b_base + beta * b}
        return (sample_v(scaled, h, v_key, visible), log_w), None

    keys = jax.random.split(key, len(betas) - 1)
    (_, log_w), _ = lax.scan(body, (v, jnp.zeros(runs, w.dtype)), (betas[:-1], betas[1:], keys))
    log_z = log_z_base + jax.nn.logsumexp(log_w) - math.log(runs)
    return log_z, log_w


def ais_interval(log_z, log_w, sigmas: float = 3.0) -> tuple[float, float]:
    """log(Z_hat -/+ sigmas * std error of Z_hat) from the runs' weights, Salakhutdinov &
    Murray's way of showing the spread of an AIS estimate (the low end is -inf when the
    interval reaches 0)."""
    log_w = np.asarray(log_w, np.float64)
    w = np.exp(log_w - log_w.max())
    relative = sigmas * w.std(ddof=1) / np.sqrt(len(w)) / w.mean()
    low = float(log_z) + (np.log1p(-relative) if relative < 1 else -np.inf)
    return low, float(log_z) + float(np.log1p(relative))
