"""Parameter-norm penalties, their optimizer forms, and Gaussian weight noise (SPEC.md section 4).

Every penalty follows the penalized objective of document 001,

    J~(theta; X, y) = J(theta; X, y) + alpha Omega(theta),

where Omega only looks at the *weights*: which leaves of a params pytree count as weights is
decided by a filter ``(path, leaf) -> bool``. The default, :func:`is_kernel`, picks the
``kernel`` leaves of Flax Linen layers and leaves biases unpenalized.

* L2 (weight decay, ridge, Tikhonov): Omega = 1/2 w^T w, so grad J~ = alpha w + grad J and one
  SGD step is w <- (1 - eps alpha) w - eps grad J. :func:`l2_penalty` is the penalty,
  :func:`add_l2_gradient` adds its gradient inside an optax chain, and
  :func:`weight_decay_step` is the one-step (shrink, then step) form.
* L1: Omega = ||w||_1 = sum_i |w_i|, so grad J~ = alpha sign(w) + grad J. :func:`l1_penalty`,
  :func:`add_l1_subgradient` and the proximal form :func:`l1_proximal_step`.
* Noise on the weights: :func:`perturb_weights` and :func:`noisy_weights_loss` evaluate a loss at
  w + N(0, sigma^2) noise.
* What they leave: :func:`kernel_values` and :func:`sparsity` (near and exact zeros), drawn
  by :func:`plot_weights`, and :func:`replay_early_stopping`, the patience rule run over a
  recorded validation curve.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

PyTree = Any
LeafFilter = Callable[[tuple, jax.Array], bool]


def is_kernel(path: tuple, leaf: jax.Array) -> bool:
    """Default weight filter: True for leaves named ``kernel`` (Dense/Conv weights), not biases."""
    del leaf
    if not path:
        return False
    last = path[-1]
    name = getattr(last, "key", getattr(last, "name", None))
    return name == "kernel"


def all_parameters(path: tuple, leaf: jax.Array) -> bool:
    """Filter that treats every leaf of the pytree as a weight (biases included)."""
    del path, leaf
    return True


def weight_mask(params: PyTree, weight_filter: LeafFilter = is_kernel) -> PyTree:
    """Pytree of Python bools, True at the leaves that ``weight_filter`` calls weights.

    The result has the structure of ``params``, so it can be passed to ``optax.masked``.
    """
    return jax.tree_util.tree_map_with_path(weight_filter, params)


def _map_weights(fn, params: PyTree, weight_filter: LeafFilter, *rest: PyTree) -> PyTree:
    """Apply ``fn(leaf, *rest_leaves)`` on weight leaves and return zeros elsewhere."""

    def leaf_fn(path, leaf, *others):
        if weight_filter(path, leaf):
            return fn(leaf, *others)
        return jnp.zeros_like(leaf)

    return jax.tree_util.tree_map_with_path(leaf_fn, params, *rest)


def _sum_over_weights(fn, params: PyTree, weight_filter: LeafFilter) -> jax.Array:
    terms = [
        jnp.sum(fn(leaf))
        for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]
        if weight_filter(path, leaf)
    ]
    if not terms:
        return jnp.zeros(())
    return sum(terms[1:], terms[0])


@jax.custom_jvp
def abs_with_sign_gradient(w: jax.Array) -> jax.Array:
    """|w| whose derivative is sign(w), with sign(0) = 0.

    ``jnp.abs`` differentiates to +1 at w = 0 (a valid subgradient, but not the sign(w) of
    document 001); this version makes ``jax.grad`` of the L1 penalty equal alpha sign(w)
    everywhere, so a weight that is exactly 0 feels no penalty gradient.
    """
    return jnp.abs(w)


@abs_with_sign_gradient.defjvp
def _abs_with_sign_gradient_jvp(primals, tangents):
    (w,), (w_dot,) = primals, tangents
    return jnp.abs(w), jnp.sign(w) * w_dot


def l2_penalty(params: PyTree, alpha: float, weight_filter: LeafFilter = is_kernel) -> jax.Array:
    """L2 penalty (alpha / 2) w^T w over the weight leaves (document 001, section 4).

    w is the concatenation of every leaf that ``weight_filter`` selects; its gradient is
    alpha w on those leaves and zero on the others.
    """
    return 0.5 * alpha * _sum_over_weights(jnp.square, params, weight_filter)


def l1_penalty(params: PyTree, alpha: float, weight_filter: LeafFilter = is_kernel) -> jax.Array:
    """L1 penalty alpha ||w||_1 = alpha sum_i |w_i| over the weight leaves (document 001).

    Its gradient under ``jax.grad`` is alpha sign(w) with sign(0) = 0 (see
    :func:`abs_with_sign_gradient`), the same as :func:`l1_subgradient`.
    """
    return alpha * _sum_over_weights(abs_with_sign_gradient, params, weight_filter)


def l2_gradient(params: PyTree, alpha: float, weight_filter: LeafFilter = is_kernel) -> PyTree:
    """Gradient of :func:`l2_penalty`: alpha w on the weight leaves, zero elsewhere."""
    return _map_weights(lambda w: alpha * w, params, weight_filter)


def l1_subgradient(params: PyTree, alpha: float, weight_filter: LeafFilter = is_kernel) -> PyTree:
    """Subgradient of :func:`l1_penalty`: alpha sign(w) on the weight leaves, zero elsewhere."""
    return _map_weights(lambda w: alpha * jnp.sign(w), params, weight_filter)


class RegularizerStepState(NamedTuple):
    """State of the one-step regularized SGD transforms: the step count k for schedules."""

    count: jax.Array  # int32 scalar


def _learning_rate_at(learning_rate: optax.ScalarOrSchedule, count: jax.Array):
    return learning_rate(count) if callable(learning_rate) else learning_rate


def _require_params(params):
    if params is None:
        raise ValueError("this regularizer needs the current params: call update(g, state, params)")


def add_l2_gradient(alpha: float, weight_filter: LeafFilter = is_kernel):
    """Optax transform g <- g + alpha w on the weight leaves (the gradient of (alpha/2) w^T w).

    Chained before ``optax.sgd(eps)`` it performs w <- w - eps (alpha w + grad J), the first
    form of the L2 step in document 001.
    """

    def init_fn(params):
        del params
        return optax.EmptyState()

    def update_fn(updates, state, params=None):
        _require_params(params)
        penalty_grads = l2_gradient(params, alpha, weight_filter)
        return jax.tree.map(jnp.add, updates, penalty_grads), state

    return optax.GradientTransformation(init_fn, update_fn)


def add_l1_subgradient(alpha: float, weight_filter: LeafFilter = is_kernel):
    """Optax transform g <- g + alpha sign(w) on the weight leaves (the L1 subgradient).

    Chained before ``optax.sgd(eps)`` this is subgradient descent on J + alpha ||w||_1. Because
    each step moves a weight by the fixed amount eps alpha, weights that should be zero jump
    back and forth across 0 instead of settling there; :func:`l1_proximal_step` avoids that.
    """

    def init_fn(params):
        del params
        return optax.EmptyState()

    def update_fn(updates, state, params=None):
        _require_params(params)
        penalty_grads = l1_subgradient(params, alpha, weight_filter)
        return jax.tree.map(jnp.add, updates, penalty_grads), state

    return optax.GradientTransformation(init_fn, update_fn)


def weight_decay_step(
    learning_rate: optax.ScalarOrSchedule,
    alpha: float,
    weight_filter: LeafFilter = is_kernel,
) -> optax.GradientTransformation:
    """SGD with L2 weight decay in the one-step form of document 001 (section 4).

        w <- (1 - eps alpha) w - eps grad J      (weight leaves)
        b <- b - eps grad J                      (other leaves)

    The weights shrink by the constant factor (1 - eps alpha) each step before the gradient
    step. This equals SGD on J + (alpha/2) w^T w, i.e. ``optax.chain(add_l2_gradient(alpha),
    optax.sgd(eps))``. ``update`` returns the difference new_w - w, so ``optax.apply_updates``
    gives the new parameters; ``learning_rate`` may be a schedule of the step count k.
    """

    def init_fn(params):
        del params
        return RegularizerStepState(count=jnp.zeros([], jnp.int32))

    def update_fn(updates, state, params=None):
        _require_params(params)
        eps = _learning_rate_at(learning_rate, state.count)

        def step(path, grad, w):
            if weight_filter(path, w):
                new_w = (1.0 - eps * alpha) * w - eps * grad
                return (new_w - w).astype(w.dtype)
            return (-eps * grad).astype(w.dtype)

        new_updates = jax.tree_util.tree_map_with_path(step, updates, params)
        return new_updates, RegularizerStepState(optax.safe_int32_increment(state.count))

    return optax.GradientTransformation(init_fn, update_fn)


def soft_threshold(w: jax.Array, threshold) -> jax.Array:
    """Proximal operator of threshold * |w|: sign(w) max(|w| - threshold, 0).

    Entries with |w| <= threshold map to exactly 0.
    """
    return jnp.sign(w) * jnp.maximum(jnp.abs(w) - threshold, 0.0)


def l1_proximal_step(
    learning_rate: optax.ScalarOrSchedule,
    alpha: float,
    weight_filter: LeafFilter = is_kernel,
) -> optax.GradientTransformation:
    """Proximal-gradient (ISTA) SGD for J + alpha ||w||_1.

        w_half = w - eps grad J
        w      <- sign(w_half) max(|w_half| - eps alpha, 0)   (weight leaves)
        b      <- b - eps grad J                              (other leaves)

    Compared with the subgradient step w <- w - eps (alpha sign(w) + grad J) of document 001
    (:func:`add_l1_subgradient`), which overshoots a weight near zero by up to eps alpha and so
    oscillates around 0 without reaching it, the soft threshold sets every weight with
    |w_half| <= eps alpha to exactly 0, so the sparsity is exact. Away from zero the two steps
    coincide. ``update`` returns new_w - w; a weight thresholded to zero gets update -w, and
    w + (-w) is exactly 0 in floating point.
    """

    def init_fn(params):
        del params
        return RegularizerStepState(count=jnp.zeros([], jnp.int32))

    def update_fn(updates, state, params=None):
        _require_params(params)
        eps = _learning_rate_at(learning_rate, state.count)

        def step(path, grad, w):
            if weight_filter(path, w):
                new_w = soft_threshold(w - eps * grad, eps * alpha)
                return (new_w - w).astype(w.dtype)
            return (-eps * grad).astype(w.dtype)

        new_updates = jax.tree_util.tree_map_with_path(step, updates, params)
        return new_updates, RegularizerStepState(optax.safe_int32_increment(state.count))

    return optax.GradientTransformation(init_fn, update_fn)


def perturb_weights(
    params: PyTree,
    key: jax.Array,
    sigma: float,
    weight_filter: LeafFilter = is_kernel,
) -> PyTree:
    """Return params with w + sigma * z, z ~ N(0, I), added to the weight leaves.

    Noise on the weights is the regularizer of document 001 (section 4): the loss is evaluated
    at the perturbed weights during training. Each weight leaf gets its own key from
    ``jax.random.split(key, number_of_leaves)`` in tree-flattening order, so the result depends
    only on ``key`` and the structure of ``params``. Leaves not selected by the filter are
    returned unchanged.
    """
    leaves_with_paths, treedef = jax.tree_util.tree_flatten_with_path(params)
    keys = jax.random.split(key, max(len(leaves_with_paths), 1))
    noisy = []
    for leaf_key, (path, leaf) in zip(keys, leaves_with_paths, strict=False):
        if weight_filter(path, leaf):
            noise = jax.random.normal(leaf_key, jnp.shape(leaf), jnp.result_type(leaf))
            noisy.append(leaf + sigma * noise)
        else:
            noisy.append(leaf)
    return jax.tree_util.tree_unflatten(treedef, noisy)


def noisy_weights_loss(
    loss_fn: Callable[..., jax.Array],
    sigma: float,
    weight_filter: LeafFilter = is_kernel,
) -> Callable[..., jax.Array]:
    """Wrap ``loss_fn(params, *args)`` into ``(params, key, *args) -> loss_fn(params + noise)``.

    The noise is drawn by :func:`perturb_weights`. Because it is additive and independent of
    params, the gradient of the wrapped loss is grad J evaluated at the noisy weights.
    """

    def wrapped(params, key, *args, **kwargs):
        return loss_fn(perturb_weights(params, key, sigma, weight_filter), *args, **kwargs)

    return wrapped


# --- What a regularizer leaves behind: weight statistics and the early-stopping epoch ---------


def kernel_values(params: PyTree, weight_filter: LeafFilter = is_kernel) -> np.ndarray:
    """Every weight of replicated params (leading seed axis): (seeds, number of weights)."""
    leaves = [
        np.asarray(leaf).reshape(leaf.shape[0], -1)
        for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]
        if weight_filter(path, leaf)
    ]
    return np.concatenate(leaves, axis=1)


def sparsity(weights: np.ndarray, tol: float) -> tuple[np.ndarray, np.ndarray]:
    """Per seed (rows of ``weights``): the fraction of weights with |w| < tol, and the
    fraction exactly 0 (what only a proximal L1 step produces)."""
    return (np.abs(weights) < tol).mean(axis=1), (weights == 0).mean(axis=1)


def plot_weights(weights: dict[str, np.ndarray], tol: float):
    """Two panels over every weight of each run (name -> (seeds, weights)): the histogram (log
    counts), and the fraction of weights with |w| < t against the threshold t (seed mean and
    std band; dotted: ``tol``)."""
    from lexicon import report

    fig, (hist_ax, cdf_ax) = report.panels(2, size=(5.0, 3.6))
    largest = max(np.abs(w).max() for w in weights.values())
    bins = np.linspace(-largest, largest, 121)
    thresholds = np.logspace(-6, np.log10(largest), 200)
    for name, w in weights.items():
        hist_ax.hist(w.reshape(-1), bins=bins, histtype="step", lw=1.3, label=name)
    hist_ax.set(yscale="log", xlabel="weight w (all kernels, all seeds)", ylabel="count")
    hist_ax.legend(fontsize=8)
    fractions = {
        n: (thresholds, (np.abs(w)[:, :, None] < thresholds).mean(axis=1))
        for n, w in weights.items()
    }
    report.plot_curves(
        fractions, xlabel="threshold t", ylabel="fraction of weights with |w| < t", ax=cdf_ax
    )
    cdf_ax.axvline(tol, color="k", ls=":", lw=1)
    cdf_ax.set_xscale("log")
    return fig


def replay_early_stopping(monitored, tracked: dict, patience: int, mode: str):
    """Runs the patience rule of ``lexicon.train.early_stopping`` over recorded curves.

    monitored: (epochs, seeds) validation metric; tracked: name -> (epochs, seeds) values to
    read at the best epoch. The rule's state freezes once it fires, so its best epoch is the
    one a run stopped by the rule would restore. Returns (best epoch, stop epoch, tracked
    values at the best epoch), each per seed; the stop epoch is the last epoch if the rule
    never fires. Stopping chooses which weights are kept, not how they are trained, so one
    recorded run answers for every patience.
    """
    from lexicon.train.early_stopping import early_stopping

    stopper = early_stopping(patience, mode=mode)
    epochs = jnp.arange(1, np.shape(monitored)[0] + 1)

    def one_seed(curve, values):
        def body(state, inputs):
            epoch, metric, at_epoch = inputs
            state = stopper.update(state, metric, at_epoch, epoch)
            return state, state.should_stop

        first = jax.tree.map(lambda v: v[0], values)
        state, stopped = jax.lax.scan(body, stopper.init(first), (epochs, curve, values))
        stop_epoch = jnp.where(stopped.any(), epochs[jnp.argmax(stopped)], epochs[-1])
        return state.best_step, stop_epoch, state.best_params

    best, stop, at_best = jax.vmap(one_seed, in_axes=(1, 1))(
        jnp.asarray(monitored, jnp.float32),
        {k: jnp.asarray(v, jnp.float32) for k, v in tracked.items()},
    )
    return np.asarray(best), np.asarray(stop), {k: np.asarray(v) for k, v in at_best.items()}


# --- Penalties on the code of an autoencoder (SPEC.md section 6) ------------------------------
#
# An autoencoder minimizes L(x, g(f(x))) + Omega(h, x) with h = f(x). Each penalty below is the
# Omega of one example, averaged over the examples of a batch (codes h of shape (N, H)), so that
# it adds to a loss that is itself a mean over examples.


def l1_activity_penalty(h: jax.Array, lam: float) -> jax.Array:
    """Sparse autoencoder, Omega(h) = lambda sum_i |h_i| (documents 002 and 003).

    Document 002 reads it as a Laplace prior p(h_i) = lambda/2 e^{-lambda |h_i|} on the code:
    -log p(h) = -sum_i log(lambda/2) + Omega(h) (see :func:`laplace_log_prior`). Mean over
    examples of the per-example sum over the units of ``h`` (N, H).
    """
    return lam * jnp.mean(jnp.sum(jnp.abs(h), axis=-1))


def laplace_log_prior(h: jax.Array, lam: float) -> jax.Array:
    """log p(h) = sum_i log(lambda/2 e^{-lambda |h_i|}) = H log(lambda/2) - lambda sum_i |h_i|,
    per example (document 002): the prior whose negative log is the L1 penalty plus a constant.
    """
    return jnp.sum(jnp.log(lam / 2.0) - lam * jnp.abs(h), axis=-1)


def bernoulli_kl(rho, rho_hat: jax.Array) -> jax.Array:
    """KL(rho || rho^) = rho log(rho / rho^) + (1 - rho) log((1 - rho) / (1 - rho^)) between
    Bernoulli distributions of means rho and rho^, elementwise."""
    return rho * jnp.log(rho / rho_hat) + (1 - rho) * jnp.log((1 - rho) / (1 - rho_hat))


def kl_sparsity_penalty(h: jax.Array, rho: float, beta: float, eps: float = 1e-6) -> jax.Array:
    """Average-activation target of a sparse autoencoder: beta sum_j KL(rho || rho^_j).

    rho^_j = (1/N) sum_n h_nj is the mean activation of unit j over the batch (units in (0, 1),
    e.g. sigmoid). Document 003 asks for an average activation close to a small target and
    gives no formula; this is the usual one [add] (Ng, "Sparse autoencoder", CS294A notes,
    2011). ``eps`` keeps rho^ inside (0, 1).
    """
    rho_hat = jnp.clip(jnp.mean(h, axis=0), eps, 1 - eps)
    return beta * jnp.sum(bernoulli_kl(rho, rho_hat))


def encoder_jacobians(encode: Callable[[jax.Array], jax.Array], x: jax.Array) -> jax.Array:
    """df(x)/dx of every example: (N, H, D) for codes of H units and inputs of D features.

    The general form: ``jax.jacfwd`` of the encoder of one example, mapped over the batch with
    ``jax.vmap``; ``encode`` maps one input (D,) to its code (H,). Forward mode costs D
    Jacobian-vector products, reverse mode (``jax.jacrev``) H; for an undercomplete code
    jacrev is cheaper and gives the same matrix.
    """
    return jax.vmap(jax.jacfwd(encode))(x)


def contractive_penalty(
    encode: Callable[[jax.Array], jax.Array],
    x: jax.Array,
    lam: float,
    *,
    squared: bool = True,
) -> jax.Array:
    """Contractive autoencoder, the general form through ``jax.jacfwd`` and ``jax.vmap``.

    squared=True (the default): Omega(h) = lambda ||df(x)/dx||_F^2 (document 003), the sum of
    the squares of every entry of the encoder Jacobian. squared=False: document 002's
    Omega(h, x) = lambda sum_i ||grad_x h_i(x)||, the sum over code units of the Euclidean norm
    of each unit's gradient (the rows of the Jacobian). Mean over the examples of ``x`` (N, D).
    """
    jacobians = encoder_jacobians(encode, x)
    if squared:
        per_example = jnp.sum(jnp.square(jacobians), axis=(-2, -1))
    else:
        per_example = jnp.sum(jnp.sqrt(jnp.sum(jnp.square(jacobians), axis=-1)), axis=-1)
    return lam * jnp.mean(per_example)


def sigmoid_contractive_penalty(
    kernel: jax.Array,
    bias: jax.Array,
    x: jax.Array,
    lam: float,
    *,
    squared: bool = True,
) -> jax.Array:
    """The contractive penalty of a sigmoid layer h = sigmoid(x W + b) in closed form.

    dh_j/dx_i = h_j (1 - h_j) W_ij, so
        ||df/dx||_F^2         = sum_j (h_j (1 - h_j))^2 sum_i W_ij^2     (squared, document 003)
        sum_j ||grad_x h_j||  = sum_j h_j (1 - h_j) sqrt(sum_i W_ij^2)   (document 002)
    (Rifai et al. 2011, eq. 5). One matrix product instead of D Jacobian-vector products; it
    equals :func:`contractive_penalty` of the same layer. ``kernel`` W is (D, H).
    """
    h = jax.nn.sigmoid(x @ kernel + bias)
    slope = h * (1 - h)
    column_norms_sq = jnp.sum(jnp.square(kernel), axis=0)
    if squared:
        per_example = jnp.square(slope) @ column_norms_sq
    else:
        per_example = slope @ jnp.sqrt(column_norms_sq)
    return lam * jnp.mean(per_example)


def tangent_directions(
    encode: Callable[[jax.Array], jax.Array], x: jax.Array, k: int | None = None
) -> tuple[jax.Array, jax.Array]:
    """Singular values and input-space directions of the encoder Jacobian at one input x (D,).

    J = df/dx = U S V^T. The rows of V^T are the directions of x along which the code changes
    most; a contractive autoencoder keeps only a few singular values large, and their
    directions span the tangent plane of the data manifold at x (document 003). Returns
    (S, V^T[:k]) with S in decreasing order and each direction of unit norm.
    """
    jacobian = jax.jacfwd(encode)(x)
    _, s, vt = jnp.linalg.svd(jacobian, full_matrices=False)
    return (s, vt) if k is None else (s, vt[:k])
