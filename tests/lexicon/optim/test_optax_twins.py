"""The hand-written optimizers against optax where the maths is the same, and their mechanics.

Twins (float64, 50 steps on logistic regression, identical trajectories to 1e-12):
adam(delta=d) = optax.adam(eps=0, eps_root=d); rmsprop = optax.rmsprop(eps=delta) with optax's
default eps_in_sqrt=True; momentum and nesterov = optax.sgd(momentum=alpha[, nesterov=True])
at a constant rate; adagrad(delta_inside_sqrt=True) from optax's initial accumulator =
optax.adagrad; ema_momentum = optax.ema(beta, debias=False) then the rate; sgd = optax.sgd.

Mechanics: one compilation for repeated updates, dtypes kept (float32, bfloat16), finite and
zero updates on zero gradients, and whole training runs under jax.vmap.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lexicon import optim

STEPS = 50


def logistic_problem():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(64, 5))
    y = (rng.uniform(size=64) < 0.5).astype(float)
    params0 = {"w": rng.normal(size=5) * 0.3, "b": np.asarray(0.2)}

    def loss(params):
        z = jnp.asarray(x) @ params["w"] + params["b"]
        return jnp.mean(jnp.logaddexp(0.0, z) - jnp.asarray(y) * z)

    return loss, params0


def trajectory(optimizer, loss, params0):
    def body(carry, _):
        params, state = carry
        updates, state = optimizer.update(jax.grad(loss)(params), state, params)
        params = optax.apply_updates(params, updates)
        return (params, state), params

    params0 = jax.tree.map(jnp.asarray, params0)
    init = (params0, optimizer.init(params0))
    return jax.lax.scan(body, init, None, length=STEPS)[1]


TWINS = {
    "adam": (
        optim.adam(0.05, rho1=0.9, rho2=0.99, delta=1e-6),
        optax.adam(0.05, b1=0.9, b2=0.99, eps=0.0, eps_root=1e-6),
    ),
    "rmsprop": (
        optim.rmsprop(0.02, rho=0.9, delta=1e-6),
        optax.rmsprop(0.02, decay=0.9, eps=1e-6),
    ),
    "momentum": (optim.momentum(0.3, alpha=0.9), optax.sgd(0.3, momentum=0.9)),
    "nesterov": (
        optim.nesterov(0.3, alpha=0.9),
        optax.sgd(0.3, momentum=0.9, nesterov=True),
    ),
    "adagrad": (
        optim.adagrad(0.1, delta=1e-7, delta_inside_sqrt=True, initial_accumulator=0.1),
        optax.adagrad(0.1, initial_accumulator_value=0.1, eps=1e-7),
    ),
    "ema_momentum": (
        optim.ema_momentum(0.3, beta=0.8),
        optax.chain(optax.ema(0.8, debias=False), optax.scale_by_learning_rate(0.3)),
    ),
    "sgd": (optim.sgd(0.3), optax.sgd(0.3)),
    # Alg 8.7's defaults: eps 1e-3, rho1 0.9, rho2 0.999, delta 1e-8.
    "adam_defaults": (optim.adam(), optax.adam(1e-3, eps=0.0, eps_root=1e-8)),
}


def test_optax_twins_follow_the_same_trajectory(x64):
    loss, params0 = logistic_problem()

    def run_all():
        return {
            name: (trajectory(ours, loss, params0), trajectory(theirs, loss, params0))
            for name, (ours, theirs) in TWINS.items()
        }

    runs = jax.device_get(jax.jit(run_all)())
    for name, (ours, theirs) in runs.items():
        for leaf_ours, leaf_theirs, leaf0 in zip(
            jax.tree.leaves(ours), jax.tree.leaves(theirs), jax.tree.leaves(params0), strict=True
        ):
            assert leaf_ours.dtype == np.float64
            # Runs must move away from the start, or agreement proves nothing.
            assert np.max(np.abs(leaf_ours[-1] - leaf0)) > 1e-2, name
            np.testing.assert_allclose(leaf_ours, leaf_theirs, rtol=1e-12, atol=1e-14, err_msg=name)


def every_optimizer():
    """Each optimizer once, including the delta = 0 variants that could divide 0 by 0."""
    schedule = optim.linear_decay(0.1, 0.001, 10)
    return {
        "sgd": optim.sgd(schedule),
        "momentum": optim.momentum(schedule, alpha=0.9),
        "nesterov": optim.nesterov(0.1),
        "ema_momentum": optim.ema_momentum(0.1),
        "adagrad": optim.adagrad(0.1),
        "adagrad_delta0": optim.adagrad(0.1, delta=0.0),
        "adagrad_doc000_delta0": optim.adagrad(0.1, delta=0.0, delta_inside_sqrt=True),
        "rmsprop": optim.rmsprop(0.1),
        "rmsprop_delta0": optim.rmsprop(0.1, delta=0.0),
        "rmsprop_nesterov": optim.rmsprop_nesterov(0.1),
        "rmsprop_nesterov_delta": optim.rmsprop_nesterov(schedule, delta=1e-6),
        "adam": optim.adam(0.1),
        "adam_delta0": optim.adam(0.1, delta=0.0),
    }


def params_of(dtype):
    return {
        "w": jnp.asarray([[0.5, -1.0], [2.0, 0.25]], dtype),
        "b": jnp.asarray([0.1, -0.3], dtype),
    }


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16], ids=["float32", "bfloat16"])
def test_compiles_once_keeps_dtypes_and_is_finite_on_zero_gradients(dtype):
    optimizers = every_optimizer()
    traces = []

    @jax.jit
    def step(grads, states, params):
        traces.append(1)  # runs only while tracing
        out = {}
        for name, optimizer in optimizers.items():
            updates, state = optimizer.update(grads, states[name], params[name])
            out[name] = (optax.apply_updates(params[name], updates), updates, state)
        return out

    params = {name: params_of(dtype) for name in optimizers}
    states = {name: optimizer.init(params[name]) for name, optimizer in optimizers.items()}
    grads = jax.tree.map(lambda p: (p - 0.2) * 3, params_of(dtype))
    zeros = jax.tree.map(jnp.zeros_like, grads)
    # Zero gradients first (r = 0 everywhere), then real ones, then zeros again.
    for call, g in enumerate((zeros, grads, grads, zeros)):
        out = step(g, states, params)
        for name, (new_params, updates, new_state) in out.items():
            updates = jax.device_get(updates)
            for u, p in zip(jax.tree.leaves(updates), jax.tree.leaves(params[name]), strict=True):
                assert u.dtype == p.dtype, name
                assert np.all(np.isfinite(u.astype(np.float32))), (name, call)
                if call == 0:  # the very first, zero, gradient leaves every parameter in place
                    assert np.all(u == 0), name
                elif call in (1, 2):  # real gradients move every parameter
                    assert np.all(u != 0), name
            # The state keeps its structure, shapes and dtypes, so the program is reused.
            assert jax.tree.structure(new_state) == jax.tree.structure(states[name])
            for a, b in zip(jax.tree.leaves(new_state), jax.tree.leaves(states[name]), strict=True):
                assert a.dtype == b.dtype and a.shape == b.shape, name
            params[name], states[name] = new_params, new_state
    assert len(traces) == 1
    assert step._cache_size() == 1


def test_train_runs_vmap_over_seeds():
    """A whole training run vmapped over initial parameters equals the runs one by one."""
    target = jnp.asarray([1.0, -2.0, 0.5])

    def loss(params):
        return 0.5 * jnp.sum((params - target) ** 2 * jnp.asarray([1.0, 10.0, 100.0]))

    def train(key, optimizer):
        params = jax.random.normal(key, (3,))

        def body(carry, _):
            params, state = carry
            updates, state = optimizer.update(jax.grad(loss)(params), state, params)
            return (optax.apply_updates(params, updates), state), None

        (params, state), _ = jax.lax.scan(body, (params, optimizer.init(params)), None, length=20)
        return params

    optimizers = (optim.nesterov(0.005), optim.rmsprop_nesterov(0.01), optim.adam(0.1))

    @jax.jit
    def batched_and_sequential(keys):
        batched = [jax.vmap(lambda k, o=o: train(k, o))(keys) for o in optimizers]
        sequential = [jax.lax.map(lambda k, o=o: train(k, o), keys) for o in optimizers]
        return batched, sequential

    keys = jax.random.split(jax.random.key(0), 3)
    for batched, sequential in zip(*batched_and_sequential(keys), strict=True):
        np.testing.assert_allclose(batched, sequential, rtol=1e-5, atol=1e-6)
        assert not np.allclose(batched[0], batched[1])
