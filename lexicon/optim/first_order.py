"""First-order optimizers of SPEC.md section 2 (Algorithms 8.1-8.7 and document 000's forms).

Every optimizer is an ``optax.GradientTransformation`` built the way optax builds its own:
a ``NamedTuple`` state with an int32 ``count``, a ``scale_by_*`` factory, and the public
optimizer as an ``optax.chain`` with the learning rate. ``learning_rate`` is a float (or a
scalar array) or an optax schedule, a function of the int step count k = 0, 1, 2, ...

Two placements of the learning rate occur, chosen so that a *schedule* eps_k reproduces the
document exactly:

* The adaptive methods (AdaGrad, RMSProp, Adam, EMA momentum) produce a direction d and the
  document applies ``theta <- theta - eps_k d``; their chain is ``scale_by_*`` then the
  learning rate.
* The momentum methods (Alg 8.2, 8.3, 8.6) put eps_k *inside* the velocity,
  ``v <- alpha v - eps_k g``. Their ``scale_by_momentum`` / ``scale_by_nesterov`` transforms
  therefore come *after* the learning rate and receive u = -eps_k g; the velocity ``v`` in
  their state is the document's v, in parameter units.

Nesterov's methods (Alg 8.3, 8.6) are exact through a look-ahead reparametrization: the
parameters that the model and the optimizer carry are the interim point
phi = theta + alpha v, where the algorithm evaluates its gradient. See
:func:`scale_by_nesterov` and :func:`nesterov_theta`.

Divisions by an accumulated second moment (RMSProp with delta = 0, Alg 8.6) use the convention
0 / 0 = 0: where the denominator is exactly zero the step is zero (see :func:`_safe_divide`),
so no optimizer here ever emits NaN on a zero gradient.

The optimizers (g is evaluated at the carried parameters; the ``scale_by_*`` pieces in
brackets):

* ``sgd``: theta <- theta - eps_k g  [the learning rate only]
* ``momentum``: v <- alpha v - eps_k g; theta <- theta + v  [scale_by_momentum]
* ``nesterov``: the same at theta~ = theta + alpha v, carried  [scale_by_nesterov]
* ``ema_momentum``: v <- (1 - beta) g + beta v; theta <- theta - lambda v  [scale_by_ema_momentum]
* ``adagrad``: r <- r + g g; theta <- theta - eps g / (delta + sqrt(r))  [scale_by_adagrad]
* ``rmsprop``: r <- rho r + (1 - rho) g g; theta <- theta - eps g / sqrt(delta + r)
  [scale_by_rmsprop]
* ``rmsprop_nesterov``: r as RMSProp, v <- alpha v - eps g / sqrt(r), g at theta~
  [scale_by_rmsprop, then scale_by_nesterov]
* ``adam``: s, r moments with bias correction; theta <- theta - eps s^ / sqrt(r^ + delta)
  [scale_by_adam]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

ScalarOrSchedule = optax.ScalarOrSchedule

__all__ = [
    "NAMES",
    "ScaleByAdagradState",
    "ScaleByAdamState",
    "ScaleByEmaMomentumState",
    "ScaleByMomentumState",
    "ScaleByNesterovState",
    "ScaleByRmspropState",
    "adagrad",
    "adam",
    "ema_momentum",
    "get",
    "linear_decay",
    "momentum",
    "nesterov",
    "nesterov_theta",
    "rmsprop",
    "rmsprop_nesterov",
    "scale_by_adagrad",
    "scale_by_adam",
    "scale_by_ema_momentum",
    "scale_by_momentum",
    "scale_by_nesterov",
    "scale_by_rmsprop",
    "sgd",
]


def _zero_count() -> jax.Array:
    return jnp.zeros([], jnp.int32)


def _safe_divide(numerator: jax.Array, denominator: jax.Array) -> jax.Array:
    """numerator / denominator elementwise, defined as 0 where the denominator is exactly 0.

    A zero second-moment accumulator r means every gradient seen so far in that coordinate was
    zero (or squared to an underflowed zero), so the literal step is 0/0. Taking it as 0 keeps
    the coordinate still, which is also the limit of delta -> 0 of g / sqrt(delta + r) at
    g = 0. The inner ``where`` keeps the division itself (and its derivative) finite.
    """
    is_zero = denominator == 0
    safe_denominator = jnp.where(is_zero, jnp.ones_like(denominator), denominator)
    return jnp.where(is_zero, jnp.zeros_like(numerator), numerator / safe_denominator)


def _at_least_float32(dtype: Any) -> Any:
    """The dtype in which to form bias corrections: float32 for bfloat16/float16 leaves."""
    return jnp.promote_types(dtype, jnp.float32)


# --------------------------------------------------------------------------------------------
# Schedules
# --------------------------------------------------------------------------------------------


def linear_decay(eps0: float, eps_tau: float, tau: int) -> optax.Schedule:
    """Linear learning-rate decay of SPEC.md section 1 (document 001, before Alg 8.1).

    eps_k = (1 - a) eps_0 + a eps_tau with a = k / tau for k <= tau, and eps_k = eps_tau for
    k > tau (the rate stays constant after iteration tau). The document suggests eps_tau of
    about 1% of eps_0 and tau large enough for a few hundred passes over the data.

    Args:
      eps0: the initial rate eps_0, used at step k = 0.
      eps_tau: the final rate, reached at step k = tau.
      tau: the number of steps of the decay, a positive integer.

    Returns:
      An optax schedule ``k -> eps_k`` usable as ``learning_rate`` of every optimizer here.
    """
    if isinstance(tau, int | float) and tau <= 0:
        raise ValueError(f"linear_decay needs tau > 0, got {tau}")

    def schedule(count: jax.Array) -> jax.Array:
        a = jnp.minimum(jnp.asarray(count, dtype=float) / tau, 1.0)
        return (1.0 - a) * eps0 + a * eps_tau

    return schedule


# --------------------------------------------------------------------------------------------
# Alg 8.1: SGD
# --------------------------------------------------------------------------------------------


def sgd(learning_rate: ScalarOrSchedule) -> optax.GradientTransformation:
    """Stochastic gradient descent, Algorithm 8.1: theta <- theta - eps_k g.

    g is the minibatch-mean gradient (1/m) grad sum_i L(f(x_i; theta), y_i) that the caller
    passes as ``updates``. With a schedule (e.g. :func:`linear_decay`) step k uses eps_k.
    The method has no state of its own, so the only transform is the learning rate.
    """
    return optax.chain(optax.scale_by_learning_rate(learning_rate))


# --------------------------------------------------------------------------------------------
# Alg 8.2: momentum
# --------------------------------------------------------------------------------------------


class ScaleByMomentumState(NamedTuple):
    """State of :func:`scale_by_momentum`: the velocity v of Algorithm 8.2."""

    count: jax.Array  # int32 scalar, number of updates so far
    v: optax.Updates


def scale_by_momentum(alpha: float = 0.9) -> optax.GradientTransformation:
    """Velocity accumulation of Algorithm 8.2: v <- alpha v + u, output v.

    The input u is the velocity increment -eps_k g, so this transform belongs *after* the
    learning rate in a chain (as :func:`momentum` puts it); then v is exactly the document's
    velocity v <- alpha v - eps_k g and the output is the step theta <- theta + v. v_0 = 0.
    """

    def init_fn(params: optax.Params) -> ScaleByMomentumState:
        return ScaleByMomentumState(count=_zero_count(), v=optax.tree.zeros_like(params))

    def update_fn(updates, state, params=None):
        del params
        v = jax.tree.map(lambda u, v_prev: alpha * v_prev + u, updates, state.v)
        return v, ScaleByMomentumState(count=optax.safe_increment(state.count), v=v)

    return optax.GradientTransformation(init_fn, update_fn)


def momentum(learning_rate: ScalarOrSchedule, alpha: float = 0.9) -> optax.GradientTransformation:
    """SGD with momentum, Algorithm 8.2.

    v <- alpha v - eps_k g;  theta <- theta + v  (v_0 = 0; typical alpha 0.5, 0.9, 0.99).

    The learning rate is applied before :func:`scale_by_momentum`, so a schedule enters the
    velocity as the algorithm writes it. With a constant rate this is the same trajectory as
    ``optax.sgd(eps, momentum=alpha)``, whose trace is v' = g + alpha v' and step -eps v'.
    """
    return optax.chain(optax.scale_by_learning_rate(learning_rate), scale_by_momentum(alpha))


# --------------------------------------------------------------------------------------------
# Alg 8.3 and 8.6: Nesterov momentum in look-ahead form
# --------------------------------------------------------------------------------------------


class ScaleByNesterovState(NamedTuple):
    """State of :func:`scale_by_nesterov`.

    ``v`` is the document's velocity (parameter units). ``alpha`` is the momentum coefficient,
    kept so that :func:`nesterov_theta` can recover theta = phi - alpha v from the state alone.
    """

    count: jax.Array  # int32 scalar, number of updates so far
    v: optax.Updates
    alpha: jax.Array  # float scalar, the momentum coefficient


def scale_by_nesterov(alpha: float = 0.9) -> optax.GradientTransformation:
    """Nesterov velocity update (Alg 8.3, 8.6) on the look-ahead parameters.

    The algorithm keeps theta and v, evaluates the gradient at the interim point
    theta~ = theta + alpha v, then sets v' = alpha v - eps g(theta~) and theta' = theta + v'.
    Here the carried parameters ARE the interim point phi = theta + alpha v, so the gradient
    that reaches the optimizer is already g(theta~). Writing phi' = theta' + alpha v':

        phi' = phi - alpha v + v' + alpha v' = phi + (1 + alpha) v' - alpha v = phi + u + alpha v'

    with u = v' - alpha v = -eps g the input of this transform. The output is therefore
    u + alpha v' (the same algebra as ``optax.trace(nesterov=True)``), and after step t the
    carried parameters equal theta_t + alpha v_t of the literal algorithm. With v_0 = 0 the
    initial carried parameters are theta_0. Recover theta with :func:`nesterov_theta`.

    The input u is the velocity increment (-eps_k g in Alg 8.3, -eps_k g / sqrt(r) in Alg 8.6),
    so this transform goes *after* the learning rate: only then is v in parameter units and
    phi - alpha v equal to theta. alpha must stay constant for the equivalence (a changing
    alpha would move the interim point theta + alpha_{t+1} v_t away from the carried
    theta_t + alpha_t v_t); the state stores the alpha of the last step for the recovery.
    """

    def init_fn(params: optax.Params) -> ScaleByNesterovState:
        return ScaleByNesterovState(
            count=_zero_count(),
            v=optax.tree.zeros_like(params),
            alpha=jnp.asarray(alpha, dtype=float),
        )

    def update_fn(updates, state, params=None):
        del params
        v = jax.tree.map(lambda u, v_prev: alpha * v_prev + u, updates, state.v)
        lookahead_step = jax.tree.map(lambda u, v_new: u + alpha * v_new, updates, v)
        # Store the alpha this step used (it may be an injected hyperparameter that changes),
        # since phi - alpha v recovers theta only with the alpha of the last step.
        new_state = ScaleByNesterovState(
            count=optax.safe_increment(state.count),
            v=v,
            alpha=jnp.asarray(alpha, dtype=state.alpha.dtype),
        )
        return lookahead_step, new_state

    return optax.GradientTransformation(init_fn, update_fn)


def nesterov(learning_rate: ScalarOrSchedule, alpha: float = 0.9) -> optax.GradientTransformation:
    """SGD with Nesterov momentum, Algorithm 8.3, exact through the look-ahead form.

    theta~ = theta + alpha v;  g = g(theta~);  v <- alpha v - eps_k g;  theta <- theta + v.

    The parameters carried by the model and this optimizer are theta~ (phi): after step t they
    equal theta_t + alpha v_t, and the gradient the caller computes at them is the gradient the
    algorithm asks for. ``nesterov_theta(params, opt_state)`` returns theta_t. See
    :func:`scale_by_nesterov` for the derivation. With a constant rate the trajectory of the
    carried parameters is that of ``optax.sgd(eps, momentum=alpha, nesterov=True)``.
    """
    return optax.chain(optax.scale_by_learning_rate(learning_rate), scale_by_nesterov(alpha))


def nesterov_theta(carried_params: optax.Params, opt_state: optax.OptState) -> optax.Params:
    """Recovers the algorithm's theta from the carried look-ahead parameters phi.

    theta = phi - alpha v, with v and alpha read from the one :class:`ScaleByNesterovState`
    found anywhere inside ``opt_state`` (a chain, ``optax.inject_hyperparams`` ...). Each
    leaf keeps the dtype of ``carried_params``.

    Raises:
      ValueError: if ``opt_state`` holds no Nesterov state or more than one.
    """

    def is_nesterov(node: Any) -> bool:
        return isinstance(node, ScaleByNesterovState)

    found = [s for s in jax.tree.leaves(opt_state, is_leaf=is_nesterov) if is_nesterov(s)]
    if len(found) != 1:
        raise ValueError(
            f"nesterov_theta needs exactly one ScaleByNesterovState in opt_state, found "
            f"{len(found)}; build the optimizer with nesterov() or rmsprop_nesterov()"
        )
    state = found[0]
    return jax.tree.map(
        lambda phi, v: (phi - state.alpha * v).astype(phi.dtype), carried_params, state.v
    )


def evaluation_params(params: optax.Params, opt_state: optax.OptState) -> optax.Params:
    """The point at which to evaluate the model: the algorithm's theta.

    For Nesterov methods, which carry the look-ahead phi = theta + alpha v, that is
    ``nesterov_theta(params, opt_state)``; for every other optimizer the carried parameters
    are theta already.
    """

    def is_nesterov(node: Any) -> bool:
        return isinstance(node, ScaleByNesterovState)

    if any(is_nesterov(s) for s in jax.tree.leaves(opt_state, is_leaf=is_nesterov)):
        return nesterov_theta(params, opt_state)
    return params


# --------------------------------------------------------------------------------------------
# Document 000: exponential moving average momentum
# --------------------------------------------------------------------------------------------


class ScaleByEmaMomentumState(NamedTuple):
    """State of :func:`scale_by_ema_momentum`: the moving average v_t of document 000."""

    count: jax.Array  # int32 scalar, number of updates so far
    v: optax.Updates


def scale_by_ema_momentum(beta: float = 0.9) -> optax.GradientTransformation:
    """Exponential moving average of the gradients (document 000).

    v_t = (1 - beta) g_t + beta v_{t-1}, v_0 = 0; output v_t (no bias correction).
    """

    def init_fn(params: optax.Params) -> ScaleByEmaMomentumState:
        return ScaleByEmaMomentumState(count=_zero_count(), v=optax.tree.zeros_like(params))

    def update_fn(updates, state, params=None):
        del params
        v = jax.tree.map(lambda g, v_prev: (1 - beta) * g + beta * v_prev, updates, state.v)
        return v, ScaleByEmaMomentumState(count=optax.safe_increment(state.count), v=v)

    return optax.GradientTransformation(init_fn, update_fn)


def ema_momentum(
    learning_rate: ScalarOrSchedule, beta: float = 0.9
) -> optax.GradientTransformation:
    """Momentum as an exponential moving average (document 000, SPEC.md section 2).

    v_t = (1 - beta) g_t + beta v_{t-1} (v_0 = 0);  theta_{t+1} = theta_t - lambda v_t,
    with lambda the learning rate. Equals ``optax.ema(beta, debias=False)`` then the rate.
    """
    return optax.chain(scale_by_ema_momentum(beta), optax.scale_by_learning_rate(learning_rate))


# --------------------------------------------------------------------------------------------
# Alg 8.4: AdaGrad
# --------------------------------------------------------------------------------------------


class ScaleByAdagradState(NamedTuple):
    """State of :func:`scale_by_adagrad`: the accumulated squared gradient r."""

    count: jax.Array  # int32 scalar, number of updates so far
    r: optax.Updates


def scale_by_adagrad(
    delta: float = 1e-7, *, delta_inside_sqrt: bool = False, initial_accumulator: float = 0.0
) -> optax.GradientTransformation:
    """AdaGrad scaling: r <- r + g * g, output g / (delta + sqrt(r)) (Algorithm 8.4).

    With ``delta_inside_sqrt=True`` the output is g / sqrt(r + delta), document 000's form
    (which writes v_t for r and eps for delta). ``initial_accumulator`` is r_0; the document
    starts from 0, and ``optax.adagrad`` from its ``initial_accumulator_value`` (0.1).
    A zero denominator (only possible with delta = 0) gives a zero step.
    """

    def init_fn(params: optax.Params) -> ScaleByAdagradState:
        return ScaleByAdagradState(
            count=_zero_count(), r=optax.tree.full_like(params, initial_accumulator)
        )

    def update_fn(updates, state, params=None):
        del params
        r = jax.tree.map(lambda g, r_prev: r_prev + g * g, updates, state.r)
        if delta_inside_sqrt:
            denominator = jax.tree.map(lambda r_: jnp.sqrt(r_ + delta), r)
        else:
            denominator = jax.tree.map(lambda r_: delta + jnp.sqrt(r_), r)
        direction = jax.tree.map(_safe_divide, updates, denominator)
        return direction, ScaleByAdagradState(count=optax.safe_increment(state.count), r=r)

    return optax.GradientTransformation(init_fn, update_fn)


def adagrad(
    learning_rate: ScalarOrSchedule,
    delta: float = 1e-7,
    *,
    delta_inside_sqrt: bool = False,
    initial_accumulator: float = 0.0,
) -> optax.GradientTransformation:
    """AdaGrad, Algorithm 8.4 (default) or document 000's form.

    Alg 8.4: r = 0; r <- r + g * g; dtheta = -eps / (delta + sqrt(r)) * g; delta ~ 1e-7
    (delta OUTSIDE the root).
    Document 000 (``delta_inside_sqrt=True``): theta <- theta - alpha / sqrt(v_t + eps) * g.
    With ``initial_accumulator=0.1`` and ``delta_inside_sqrt=True`` this is ``optax.adagrad``.
    """
    return optax.chain(
        scale_by_adagrad(
            delta, delta_inside_sqrt=delta_inside_sqrt, initial_accumulator=initial_accumulator
        ),
        optax.scale_by_learning_rate(learning_rate),
    )


# --------------------------------------------------------------------------------------------
# Alg 8.5: RMSProp, and Alg 8.6: RMSProp with Nesterov momentum
# --------------------------------------------------------------------------------------------


class ScaleByRmspropState(NamedTuple):
    """State of :func:`scale_by_rmsprop`: the moving average r of squared gradients."""

    count: jax.Array  # int32 scalar, number of updates so far
    r: optax.Updates


def scale_by_rmsprop(rho: float = 0.9, delta: float = 1e-6) -> optax.GradientTransformation:
    """RMSProp scaling: r <- rho r + (1 - rho) g * g, output g / sqrt(delta + r) (Alg 8.5).

    r_0 = 0. delta sits INSIDE the root as the document writes it. With delta = 0 (Alg 8.6 has
    no delta) a coordinate with r = 0 gets a zero step instead of 0/0.
    """

    def init_fn(params: optax.Params) -> ScaleByRmspropState:
        return ScaleByRmspropState(count=_zero_count(), r=optax.tree.zeros_like(params))

    def update_fn(updates, state, params=None):
        del params
        r = jax.tree.map(lambda g, r_prev: rho * r_prev + (1 - rho) * g * g, updates, state.r)
        direction = jax.tree.map(lambda g, r_: _safe_divide(g, jnp.sqrt(delta + r_)), updates, r)
        return direction, ScaleByRmspropState(count=optax.safe_increment(state.count), r=r)

    return optax.GradientTransformation(init_fn, update_fn)


def rmsprop(
    learning_rate: ScalarOrSchedule, rho: float = 0.9, delta: float = 1e-6
) -> optax.GradientTransformation:
    """RMSProp, Algorithm 8.5.

    r <- rho r + (1 - rho) g * g;  dtheta = -eps / sqrt(delta + r) * g;  delta ~ 1e-6 (inside
    the root). Document 000 gives the same form with beta for rho and eps for delta. Equals
    ``optax.rmsprop(eps, decay=rho, eps=delta)`` (optax's default ``eps_in_sqrt=True``).
    """
    return optax.chain(scale_by_rmsprop(rho, delta), optax.scale_by_learning_rate(learning_rate))


def rmsprop_nesterov(
    learning_rate: ScalarOrSchedule, rho: float = 0.9, alpha: float = 0.9, delta: float = 0.0
) -> optax.GradientTransformation:
    """RMSProp with Nesterov momentum, Algorithm 8.6, exact through the look-ahead form.

    theta~ = theta + alpha v;  g = g(theta~);  r <- rho r + (1 - rho) g * g;
    v <- alpha v - eps_k / sqrt(r) * g;  theta <- theta + v.

    The document has no delta; ``delta > 0`` goes inside the root, eps_k / sqrt(delta + r).
    With delta = 0, where r = 0 (all gradients so far zero in that coordinate) the velocity
    increment is taken as 0 rather than 0/0, so the update is never NaN.

    The chain is :func:`scale_by_rmsprop` (g / sqrt(delta + r)), the learning rate, then
    :func:`scale_by_nesterov`; as for :func:`nesterov` the carried parameters are
    theta_t + alpha v_t and :func:`nesterov_theta` returns theta_t.
    """
    return optax.chain(
        scale_by_rmsprop(rho, delta),
        optax.scale_by_learning_rate(learning_rate),
        scale_by_nesterov(alpha),
    )


# --------------------------------------------------------------------------------------------
# Alg 8.7: Adam
# --------------------------------------------------------------------------------------------


class ScaleByAdamState(NamedTuple):
    """State of :func:`scale_by_adam`: time step t (``count``) and moments s, r."""

    count: jax.Array  # int32 scalar, the time step t
    s: optax.Updates
    r: optax.Updates


def scale_by_adam(
    rho1: float = 0.9, rho2: float = 0.999, delta: float = 1e-8
) -> optax.GradientTransformation:
    """Adam scaling, Algorithm 8.7, with delta INSIDE the root as the document writes it.

    t <- t + 1;  s <- rho1 s + (1 - rho1) g;  r <- rho2 r + (1 - rho2) g * g;
    s^ = s / (1 - rho1^t);  r^ = r / (1 - rho2^t);  output s^ / sqrt(r^ + delta).

    The bias corrections are formed in at least float32 (for bfloat16 leaves) and the output
    is cast back to the gradient's dtype. With delta = 0 a zero r^ gives a zero step.
    """

    def init_fn(params: optax.Params) -> ScaleByAdamState:
        zeros = optax.tree.zeros_like(params)
        return ScaleByAdamState(count=_zero_count(), s=zeros, r=zeros)

    def update_fn(updates, state, params=None):
        del params
        t = optax.safe_increment(state.count)
        s = jax.tree.map(lambda g, s_prev: rho1 * s_prev + (1 - rho1) * g, updates, state.s)
        r = jax.tree.map(lambda g, r_prev: rho2 * r_prev + (1 - rho2) * g * g, updates, state.r)

        def direction(s_leaf: jax.Array, r_leaf: jax.Array) -> jax.Array:
            wide = _at_least_float32(s_leaf.dtype)
            t_wide = t.astype(wide)
            s_hat = s_leaf.astype(wide) / (1 - rho1**t_wide)
            r_hat = r_leaf.astype(wide) / (1 - rho2**t_wide)
            return _safe_divide(s_hat, jnp.sqrt(r_hat + delta)).astype(s_leaf.dtype)

        return jax.tree.map(direction, s, r), ScaleByAdamState(count=t, s=s, r=r)

    return optax.GradientTransformation(init_fn, update_fn)


def adam(
    learning_rate: ScalarOrSchedule = 1e-3,
    rho1: float = 0.9,
    rho2: float = 0.999,
    delta: float = 1e-8,
) -> optax.GradientTransformation:
    """Adam, Algorithm 8.7 (defaults eps = 0.001, rho1 = 0.9, rho2 = 0.999, delta = 1e-8).

    dtheta = -eps s^ / sqrt(r^ + delta), delta inside the root as in the document (the textbook
    it follows puts delta outside). Equals ``optax.adam(eps, rho1, rho2, eps=0,
    eps_root=delta)``.
    """
    return optax.chain(
        scale_by_adam(rho1, rho2, delta), optax.scale_by_learning_rate(learning_rate)
    )


# --------------------------------------------------------------------------------------------
# Lookup by name, for configs
# --------------------------------------------------------------------------------------------

_REGISTRY: dict[str, Callable[..., optax.GradientTransformation]] = {
    "sgd": sgd,
    "momentum": momentum,
    "nesterov": nesterov,
    "ema_momentum": ema_momentum,
    "adagrad": adagrad,
    "rmsprop": rmsprop,
    "rmsprop_nesterov": rmsprop_nesterov,
    "adam": adam,
}

NAMES: tuple[str, ...] = tuple(_REGISTRY)


def get(name: str, **hyperparams: Any) -> optax.GradientTransformation:
    """Builds the optimizer registered as ``name`` (one of :data:`NAMES`) with ``hyperparams``.

    Example: ``get("rmsprop", learning_rate=1e-2, rho=0.9)``.

    Raises:
      ValueError: if ``name`` is not registered; the message lists the valid names.
    """
    try:
        factory = _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown optimizer {name!r}; valid names: {', '.join(NAMES)}") from None
    return factory(**hyperparams)


def from_config(
    name: str, block: Any, *, rate_key: str = "lr", skip: tuple = ()
) -> optax.GradientTransformation:
    """The optimizer ``name`` built from a config block: ``block[rate_key]`` is the learning
    rate and every other key a hyperparameter of the factory (keys in ``skip``, such as the
    rates of other studies, are left out).

    Example: a block ``{lr: 3e-3, rho: 0.9, delta: 1e-6}`` gives
    ``rmsprop(learning_rate=3e-3, rho=0.9, delta=1e-6)``.
    """
    items = dict(block.items())
    if rate_key not in items:
        raise ValueError(f"the {name} block has no {rate_key!r} key; it holds {sorted(items)}")
    rate = items.pop(rate_key)
    hyperparams = {k: v for k, v in items.items() if k not in skip}
    return get(name, learning_rate=rate, **hyperparams)
