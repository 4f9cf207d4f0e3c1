"""Algorithms 8.1-8.7 and document 000's forms against literal NumPy float64 transcriptions.

Each optimizer runs 50 steps on an ill-conditioned quadratic and on logistic regression. The
code gets its gradients from ``jax.grad`` at the parameters it carries; each transcription
below computes its gradient in NumPy at the point its algorithm names (the interim point
theta + alpha v for Nesterov). Every iterate must agree to relative error 1e-10.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lexicon import optim

STEPS = 50
RTOL = 1e-10


# --------------------------------------------------------------------------------------------
# Problems: a NumPy gradient for the transcription, a JAX loss for the code
# --------------------------------------------------------------------------------------------


class Quadratic:
    """J(theta) = 1/2 (theta - theta*)^T A (theta - theta*), cond(A) = 10^2.5 ~ 316."""

    name = "quadratic"

    def __init__(self):
        rng = np.random.default_rng(0)
        dim = 6
        q, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
        eigenvalues = np.logspace(0.0, 2.5, dim)
        self.a = q @ np.diag(eigenvalues) @ q.T
        self.theta_star = rng.normal(size=dim)
        self.theta0 = rng.normal(size=dim)
        self.plain_rate = 1.0 / eigenvalues.max()
        self.adaptive_rate = 0.02

    def numpy_grad(self, theta):
        return self.a @ (theta - self.theta_star)

    def loss(self, params):
        diff = params - jnp.asarray(self.theta_star)
        return 0.5 * diff @ jnp.asarray(self.a) @ diff

    def to_params(self, theta):
        return jnp.asarray(theta)

    def to_vector(self, params):
        return np.asarray(params)


class LogisticRegression:
    """J(w, b) = (1/m) sum_i [log(1 + e^{z_i}) - y_i z_i], z_i = x_i.w + b; params {w, b}."""

    name = "logistic"

    def __init__(self):
        rng = np.random.default_rng(1)
        m, dim = 40, 4
        self.x = rng.normal(size=(m, dim))
        true_w = rng.normal(size=dim)
        self.y = (rng.uniform(size=m) < 1 / (1 + np.exp(-self.x @ true_w))).astype(float)
        self.theta0 = rng.normal(size=dim + 1) * 0.5
        self.plain_rate = 0.5
        # With larger rates RMSProp reaches its sign-like oscillation about the minimum within
        # 50 steps; there g is a difference of nearly equal terms and g / sqrt(r) amplifies
        # the last-bit differences between two correct gradient codes (early steps still
        # agree to 1e-16). This rate keeps the comparison in the regime where it is exact.
        self.adaptive_rate = 0.02

    def numpy_grad(self, theta):
        w, b = theta[:-1], theta[-1]
        z = self.x @ w + b
        residual = 1 / (1 + np.exp(-z)) - self.y
        m = len(self.y)
        return np.concatenate([self.x.T @ residual / m, [residual.sum() / m]])

    def loss(self, params):
        z = jnp.asarray(self.x) @ params["w"] + params["b"]
        return jnp.mean(jnp.logaddexp(0.0, z) - jnp.asarray(self.y) * z)

    def to_params(self, theta):
        return {"w": jnp.asarray(theta[:-1]), "b": jnp.asarray(theta[-1])}

    def to_vector(self, params):
        return np.concatenate([np.asarray(params["w"]), [np.asarray(params["b"])]])


PROBLEMS = [Quadratic(), LogisticRegression()]


# --------------------------------------------------------------------------------------------
# Literal transcriptions (NumPy float64). Each returns [theta_0, ..., theta_STEPS] and, for
# Nesterov, the velocities [v_0, ..., v_STEPS].
# --------------------------------------------------------------------------------------------


def literal_linear_decay(eps0, eps_tau, tau):
    def eps_k(k):
        if k <= tau:
            a = k / tau
            return (1 - a) * eps0 + a * eps_tau
        return eps_tau

    return eps_k


def constant(eps):
    return lambda k: eps


def transcribe_sgd(grad, theta, eps_k):
    thetas = [theta]
    for k in range(STEPS):
        g = grad(theta)
        theta = theta - eps_k(k) * g
        thetas.append(theta)
    return thetas


def transcribe_momentum(grad, theta, eps_k, alpha):
    v = np.zeros_like(theta)
    thetas = [theta]
    for k in range(STEPS):
        g = grad(theta)
        v = alpha * v - eps_k(k) * g
        theta = theta + v
        thetas.append(theta)
    return thetas


def transcribe_nesterov(grad, theta, eps_k, alpha):
    v = np.zeros_like(theta)
    thetas, velocities = [theta], [v]
    for k in range(STEPS):
        theta_interim = theta + alpha * v
        g = grad(theta_interim)
        v = alpha * v - eps_k(k) * g
        theta = theta + v
        thetas.append(theta)
        velocities.append(v)
    return thetas, velocities


def transcribe_ema_momentum(grad, theta, lam, beta):
    v = np.zeros_like(theta)
    thetas = [theta]
    for _ in range(STEPS):
        g = grad(theta)
        v = (1 - beta) * g + beta * v
        theta = theta - lam * v
        thetas.append(theta)
    return thetas


def transcribe_adagrad_alg84(grad, theta, eps, delta):
    r = np.zeros_like(theta)
    thetas = [theta]
    for _ in range(STEPS):
        g = grad(theta)
        r = r + g * g
        delta_theta = -eps / (delta + np.sqrt(r)) * g
        theta = theta + delta_theta
        thetas.append(theta)
    return thetas


def transcribe_adagrad_doc000(grad, theta, alpha, eps):
    v = np.zeros_like(theta)
    thetas = [theta]
    for _ in range(STEPS):
        g = grad(theta)
        v = v + g * g
        theta = theta - alpha / np.sqrt(v + eps) * g
        thetas.append(theta)
    return thetas


def transcribe_rmsprop(grad, theta, eps, rho, delta):
    r = np.zeros_like(theta)
    thetas = [theta]
    for _ in range(STEPS):
        g = grad(theta)
        r = rho * r + (1 - rho) * g * g
        delta_theta = -eps / np.sqrt(delta + r) * g
        theta = theta + delta_theta
        thetas.append(theta)
    return thetas


def transcribe_rmsprop_nesterov(grad, theta, eps, rho, alpha, delta):
    r = np.zeros_like(theta)
    v = np.zeros_like(theta)
    thetas, velocities = [theta], [v]
    for _ in range(STEPS):
        theta_interim = theta + alpha * v
        g = grad(theta_interim)
        r = rho * r + (1 - rho) * g * g
        v = alpha * v - eps / np.sqrt(delta + r) * g
        theta = theta + v
        thetas.append(theta)
        velocities.append(v)
    return thetas, velocities


def transcribe_adam(grad, theta, eps, rho1, rho2, delta):
    s = np.zeros_like(theta)
    r = np.zeros_like(theta)
    t = 0
    thetas = [theta]
    for _ in range(STEPS):
        g = grad(theta)
        t = t + 1
        s = rho1 * s + (1 - rho1) * g
        r = rho2 * r + (1 - rho2) * g * g
        s_hat = s / (1 - rho1**t)
        r_hat = r / (1 - rho2**t)
        delta_theta = -eps * s_hat / np.sqrt(r_hat + delta)
        theta = theta + delta_theta
        thetas.append(theta)
    return thetas


# --------------------------------------------------------------------------------------------
# Cases: (name, code optimizer, transcription), given a problem's rates
# --------------------------------------------------------------------------------------------


def decay(rate):
    return optim.linear_decay(rate, 0.01 * rate, 30), literal_linear_decay(rate, 0.01 * rate, 30)


def plain_cases(p):
    eps = p.plain_rate
    schedule, eps_k = decay(eps)
    return {
        "sgd": (optim.sgd(eps), lambda g, th: transcribe_sgd(g, th, constant(eps))),
        "sgd_linear_decay": (optim.sgd(schedule), lambda g, th: transcribe_sgd(g, th, eps_k)),
        "momentum": (
            optim.momentum(eps, alpha=0.9),
            lambda g, th: transcribe_momentum(g, th, constant(eps), 0.9),
        ),
        "momentum_linear_decay": (
            optim.momentum(schedule, alpha=0.5),
            lambda g, th: transcribe_momentum(g, th, eps_k, 0.5),
        ),
        "ema_momentum": (
            optim.ema_momentum(eps, beta=0.8),
            lambda g, th: transcribe_ema_momentum(g, th, eps, 0.8),
        ),
    }


def adaptive_cases(p):
    eps = p.adaptive_rate
    return {
        "adagrad_alg84": (
            optim.adagrad(eps, delta=1e-7),
            lambda g, th: transcribe_adagrad_alg84(g, th, eps, 1e-7),
        ),
        "adagrad_doc000": (
            optim.adagrad(eps, delta=1e-3, delta_inside_sqrt=True),
            lambda g, th: transcribe_adagrad_doc000(g, th, eps, 1e-3),
        ),
        "rmsprop": (
            optim.rmsprop(eps, rho=0.9, delta=1e-6),
            lambda g, th: transcribe_rmsprop(g, th, eps, 0.9, 1e-6),
        ),
        "adam": (
            optim.adam(eps, rho1=0.9, rho2=0.999, delta=1e-8),
            lambda g, th: transcribe_adam(g, th, eps, 0.9, 0.999, 1e-8),
        ),
        "adam_large_delta": (
            optim.adam(eps, rho1=0.8, rho2=0.99, delta=1e-2),
            lambda g, th: transcribe_adam(g, th, eps, 0.8, 0.99, 1e-2),
        ),
    }


def nesterov_cases(p):
    eps, eps_adaptive = p.plain_rate, p.adaptive_rate
    schedule, eps_k = decay(eps)
    return {
        "nesterov": (
            optim.nesterov(eps, alpha=0.9),
            0.9,
            lambda g, th: transcribe_nesterov(g, th, constant(eps), 0.9),
        ),
        "nesterov_linear_decay": (
            optim.nesterov(schedule, alpha=0.7),
            0.7,
            lambda g, th: transcribe_nesterov(g, th, eps_k, 0.7),
        ),
        "rmsprop_nesterov": (
            optim.rmsprop_nesterov(eps_adaptive, rho=0.9, alpha=0.9),
            0.9,
            lambda g, th: transcribe_rmsprop_nesterov(g, th, eps_adaptive, 0.9, 0.9, 0.0),
        ),
        "rmsprop_nesterov_delta": (
            optim.rmsprop_nesterov(eps_adaptive, rho=0.8, alpha=0.5, delta=1e-4),
            0.5,
            lambda g, th: transcribe_rmsprop_nesterov(g, th, eps_adaptive, 0.8, 0.5, 1e-4),
        ),
    }


PLAIN_NAMES = list(plain_cases(PROBLEMS[0])) + list(adaptive_cases(PROBLEMS[0]))
NESTEROV_NAMES = list(nesterov_cases(PROBLEMS[0]))


def run_cases(problem):
    """Runs every case for STEPS steps in one compiled program (float64).

    Returns {case name: (carried params after each step, nesterov_theta of them or None)},
    each as a (STEPS, n) NumPy array in the transcription's flat layout.
    """
    params0 = problem.to_params(problem.theta0)
    grad_fn = jax.grad(problem.loss)
    optimizers = {name: case[0] for name, case in plain_cases(problem).items()}
    optimizers |= {name: case[0] for name, case in adaptive_cases(problem).items()}
    nesterov_optimizers = {name: case[0] for name, case in nesterov_cases(problem).items()}

    def trajectory(optimizer, with_theta):
        def body(carry, _):
            params, state = carry
            updates, state = optimizer.update(grad_fn(params), state, params)
            params = optax.apply_updates(params, updates)
            theta = optim.nesterov_theta(params, state) if with_theta else None
            return (params, state), (params, theta)

        init = (params0, optimizer.init(params0))
        return jax.lax.scan(body, init, None, length=STEPS)[1]

    def run_all():
        runs = {name: trajectory(opt, False) for name, opt in optimizers.items()}
        return runs | {name: trajectory(opt, True) for name, opt in nesterov_optimizers.items()}

    def to_rows(tree):
        if tree is None:
            return None
        return np.stack(
            [problem.to_vector(jax.tree.map(lambda leaf, i=i: leaf[i], tree)) for i in range(STEPS)]
        )

    runs = jax.device_get(jax.jit(run_all)())
    return {name: (to_rows(carried), to_rows(theta)) for name, (carried, theta) in runs.items()}


@pytest.fixture(scope="module")
def code_trajectories():
    """Every case on both problems, computed once with float64 enabled only here."""
    with jax.enable_x64(True):
        return {problem.name: run_cases(problem) for problem in PROBLEMS}


def relative_error(actual, expected):
    return np.max(np.linalg.norm(actual - expected, axis=-1) / np.linalg.norm(expected, axis=-1))


@pytest.mark.parametrize("problem", PROBLEMS, ids=lambda p: p.name)
@pytest.mark.parametrize("name", PLAIN_NAMES)
def test_matches_literal_transcription(code_trajectories, problem, name):
    _, transcription = {**plain_cases(problem), **adaptive_cases(problem)}[name]
    expected = np.stack(transcription(problem.numpy_grad, problem.theta0.copy())[1:])
    carried, _ = code_trajectories[problem.name][name]
    assert carried.dtype == np.float64
    # The run must actually move, or the comparison proves nothing.
    assert np.linalg.norm(expected[-1] - problem.theta0) > 1e-2
    assert relative_error(carried, expected) <= RTOL


@pytest.mark.parametrize("problem", PROBLEMS, ids=lambda p: p.name)
@pytest.mark.parametrize("name", NESTEROV_NAMES)
def test_nesterov_lookahead_matches_literal_transcription(code_trajectories, problem, name):
    _, alpha, transcription = nesterov_cases(problem)[name]
    thetas, velocities = transcription(problem.numpy_grad, problem.theta0.copy())
    thetas, velocities = np.stack(thetas[1:]), np.stack(velocities[1:])
    carried, recovered_theta = code_trajectories[problem.name][name]
    assert np.linalg.norm(thetas[-1] - problem.theta0) > 1e-2
    # Carried params are the interim point theta_t + alpha v_t ...
    assert relative_error(carried, thetas + alpha * velocities) <= RTOL
    # ... and nesterov_theta recovers theta_t.
    assert relative_error(recovered_theta, thetas) <= RTOL
    # The two differ, so the look-ahead is really there.
    assert np.max(np.abs(carried - thetas)) > 1e-4


def test_nesterov_initial_carried_params_are_theta0(x64):
    params = jnp.array([1.0, -2.0])
    state = optim.nesterov(0.1).init(params)
    np.testing.assert_array_equal(optim.nesterov_theta(params, state), params)


def test_linear_decay_values(x64):
    schedule = optim.linear_decay(0.5, 0.005, 20)
    eps_k = literal_linear_decay(0.5, 0.005, 20)
    for k in [0, 1, 7, 19, 20, 21, 100]:
        np.testing.assert_allclose(float(schedule(jnp.asarray(k, jnp.int32))), eps_k(k), rtol=1e-14)
    assert float(schedule(0)) == 0.5
    assert float(schedule(1000)) == pytest.approx(0.005, rel=1e-14)
    with pytest.raises(ValueError, match="tau > 0"):
        optim.linear_decay(0.5, 0.005, 0)


def test_nesterov_theta_finds_state_inside_chains(x64):
    params = {"w": jnp.array([0.3, -0.2]), "b": jnp.array(0.1)}
    grads = {"w": jnp.array([1.0, 2.0]), "b": jnp.array(-1.0)}
    inner = optim.nesterov(0.1, alpha=0.9)
    wrapped = optax.chain(optax.clip_by_global_norm(1e6), inner)
    injected = optax.inject_hyperparams(optim.rmsprop_nesterov)(learning_rate=0.1, alpha=0.9)
    for optimizer in (inner, wrapped, injected):

        @jax.jit
        def one_step(params, optimizer=optimizer):
            updates, state = optimizer.update(grads, optimizer.init(params), params)
            carried = optax.apply_updates(params, updates)
            return carried, optim.nesterov_theta(carried, state)

        carried, theta = one_step(params)
        # One step from v_0 = 0: theta_1 = theta_0 + v_1 and carried = theta_1 + alpha v_1,
        # so carried - theta_0 = (1 + alpha) (theta_1 - theta_0).
        for key in params:
            np.testing.assert_allclose(
                np.asarray(carried[key]) - np.asarray(params[key]),
                1.9 * (np.asarray(theta[key]) - np.asarray(params[key])),
                rtol=1e-12,
            )


def test_nesterov_theta_rejects_states_without_one_nesterov_state():
    params = jnp.zeros(3)
    with pytest.raises(ValueError, match="found 0"):
        optim.nesterov_theta(params, optim.momentum(0.1).init(params))
    doubled = optax.chain(optim.nesterov(0.1), optim.nesterov(0.1))
    with pytest.raises(ValueError, match="found 2"):
        optim.nesterov_theta(params, doubled.init(params))


def test_get_builds_every_registered_optimizer_and_rejects_unknown_names():
    params = jnp.ones(2)
    for name in optim.NAMES:
        optimizer = optim.get(name, learning_rate=0.1)
        updates, _ = jax.jit(optimizer.update)(jnp.ones(2), optimizer.init(params), params)
        # Every method's first step moves against a positive gradient.
        assert updates.shape == (2,) and bool(jnp.all(updates < 0))
    assert set(optim.NAMES) == {
        "sgd", "momentum", "nesterov", "ema_momentum", "adagrad", "rmsprop",
        "rmsprop_nesterov", "adam",
    }  # fmt: skip
    with pytest.raises(ValueError, match="valid names: sgd, momentum"):
        optim.get("adamw", learning_rate=0.1)
