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
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
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
