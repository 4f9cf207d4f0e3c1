"""Tests for lexicon.regularizers: L2/L1 penalties, their optimizer steps, weight noise."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lexicon import regularizers


class TwoLayer(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.tanh(nn.Dense(4)(x))
        return nn.Dense(2)(x)


MODEL = TwoLayer()


def make_problem(seed=0):
    """A small regression problem; params and data in the current default float dtype.

    Params are drawn in NumPy with the layout of ``TwoLayer().init`` (cheaper than compiling
    the Flax initializer); biases are nonzero so that a filter mistake would show.
    """
    rng = np.random.default_rng(seed)
    dtype = jnp.asarray(1.0).dtype
    x = rng.normal(size=(8, 3)).astype(dtype)
    y = rng.normal(size=(8, 2)).astype(dtype)
    params = {
        "params": {
            name: {
                "kernel": rng.normal(size=shape).astype(dtype),
                "bias": rng.normal(size=shape[1]).astype(dtype),
            }
            for name, shape in (("Dense_0", (3, 4)), ("Dense_1", (4, 2)))
        }
    }
    expected_layout = jax.eval_shape(MODEL.init, jax.random.key(0), x)
    assert jax.tree.map(lambda a: a.shape, expected_layout) == jax.tree.map(np.shape, params)

    def loss(p):
        return 0.5 * jnp.mean(jnp.sum((MODEL.apply(p, x) - y) ** 2, axis=-1))

    return params, loss


@functools.partial(jax.jit, static_argnums=0)
def one_update(tx, grads, params):
    """One update of a fresh transform, applied: (new_params, new_state)."""
    updates, state = tx.update(grads, tx.init(params), params)
    return optax.apply_updates(params, updates), state


def numpy_leaves(tree):
    return {
        jax.tree_util.keystr(path): np.asarray(leaf, np.float64)
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
    }


def test_default_filter_selects_kernels_not_biases():
    params, _ = make_problem()
    mask = numpy_leaves(regularizers.weight_mask(params))
    assert {k: bool(v) for k, v in mask.items()} == {
        "['params']['Dense_0']['bias']": False,
        "['params']['Dense_0']['kernel']": True,
        "['params']['Dense_1']['bias']": False,
        "['params']['Dense_1']['kernel']": True,
    }
    everything = regularizers.weight_mask(params, regularizers.all_parameters)
    assert all(jax.tree.leaves(everything))


def test_l2_penalty_and_gradient_match_formula(x64):
    params, _ = make_problem()
    alpha = 0.37
    leaves = numpy_leaves(params)
    kernels = [v for k, v in leaves.items() if k.endswith("['kernel']")]
    w = np.concatenate([k.ravel() for k in kernels])
    expected = alpha / 2.0 * w @ w
    penalty, autodiff, closed_form = jax.jit(
        lambda p: (
            regularizers.l2_penalty(p, alpha),
            jax.grad(regularizers.l2_penalty)(p, alpha),
            regularizers.l2_gradient(p, alpha),
        )
    )(params)
    np.testing.assert_allclose(penalty, expected, rtol=1e-15)
    autodiff, closed_form = numpy_leaves(autodiff), numpy_leaves(closed_form)
    for name, value in leaves.items():
        want = alpha * value if name.endswith("['kernel']") else np.zeros_like(value)
        np.testing.assert_allclose(autodiff[name], want, rtol=1e-15, atol=0)
        np.testing.assert_allclose(closed_form[name], want, rtol=1e-15, atol=0)


def test_l2_step_identity_penalty_gradient_equals_one_step_form(x64):
    """w - eps (alpha w + grad J) == (1 - eps alpha) w - eps grad J, over several steps."""
    params, loss = make_problem()
    eps, alpha = 0.1, 0.3

    penalized = lambda p: loss(p) + regularizers.l2_penalty(p, alpha)
    one_step = regularizers.weight_decay_step(eps, alpha)
    chained = optax.chain(regularizers.add_l2_gradient(alpha), optax.sgd(eps))
    mask = regularizers.weight_mask(params)
    reference = optax.chain(optax.add_decayed_weights(alpha, mask=mask), optax.sgd(eps))

    steps = 5

    @functools.partial(jax.jit, static_argnums=0)
    def run(tx, p):
        state = tx.init(p)
        for _ in range(steps):
            updates, state = tx.update(jax.grad(loss)(p), state, p)
            p = optax.apply_updates(p, updates)
        return p, state

    @jax.jit
    def run_penalized(p):
        for _ in range(steps):
            p = jax.tree.map(lambda w, g: w - eps * g, p, jax.grad(penalized)(p))
        return p

    p_one, s_one = run(one_step, params)
    p_chain, _ = run(chained, params)
    p_ref, _ = run(reference, params)
    p_pen = run_penalized(params)

    # The literal formula in NumPy float64, with grad J from autodiff at the NumPy weights.
    grad_loss = jax.jit(jax.grad(loss))
    p_np = jax.tree.map(lambda w: np.asarray(w, np.float64), params)
    for _ in range(steps):
        grads_np = jax.tree.map(np.asarray, grad_loss(p_np))
        p_np = jax.tree.map(
            lambda w, g, is_weight: (1.0 - eps * alpha) * w - eps * g if is_weight else w - eps * g,
            p_np,
            grads_np,
            mask,
        )

    one = numpy_leaves(p_one)
    for other in (p_chain, p_pen, p_ref, p_np):
        for name, value in numpy_leaves(other).items():
            np.testing.assert_allclose(one[name], value, rtol=1e-14, atol=1e-15)
    assert int(s_one.count) == steps


def test_weight_decay_step_shrinks_by_constant_factor_and_follows_schedule(x64):
    params = {"dense": {"kernel": np.array([[1.0, -2.0], [0.5, 4.0]]), "bias": np.ones(2)}}
    zero_grads = jax.tree.map(np.zeros_like, params)
    schedule = lambda k: 0.1 * (k + 1)  # eps_0 = 0.1, eps_1 = 0.2
    alpha = 0.5
    tx = regularizers.weight_decay_step(schedule, alpha)
    state = tx.init(params)
    step = jax.jit(tx.update)
    for k in range(2):
        updates, state = step(zero_grads, state, params)
        new_params = optax.apply_updates(params, updates)
        factor = 1.0 - 0.1 * (k + 1) * alpha
        np.testing.assert_allclose(
            new_params["dense"]["kernel"], factor * params["dense"]["kernel"], rtol=1e-15
        )
        np.testing.assert_array_equal(new_params["dense"]["bias"], params["dense"]["bias"])
        params = new_params


def test_l1_penalty_gradient_is_alpha_sign(x64):
    alpha = 0.2
    kernel = np.array([[-1.5, 0.0, 2.0], [0.3, -0.0, -4.0]])
    params = {"layer": {"kernel": kernel, "bias": np.array([1.0, -1.0, 0.0])}}
    np.testing.assert_allclose(
        regularizers.l1_penalty(params, alpha), alpha * np.sum(np.abs(np.asarray(kernel)))
    )
    expected = alpha * np.sign(np.asarray(kernel))
    autodiff, closed_form = jax.jit(
        lambda p: (
            jax.grad(regularizers.l1_penalty)(p, alpha),
            regularizers.l1_subgradient(p, alpha),
        )
    )(params)
    for grads in (autodiff, closed_form):
        np.testing.assert_array_equal(grads["layer"]["kernel"], expected)
        np.testing.assert_array_equal(grads["layer"]["bias"], np.zeros(3))

    g = {"layer": {"kernel": np.full((2, 3), 0.25), "bias": np.full((3,), 0.5)}}
    eps = 0.1
    tx = optax.chain(regularizers.add_l1_subgradient(alpha), optax.sgd(eps))
    new, _ = one_update(tx, g, params)
    np.testing.assert_allclose(
        new["layer"]["kernel"], np.asarray(kernel) - eps * (expected + 0.25), rtol=1e-15
    )
    np.testing.assert_allclose(new["layer"]["bias"], np.array([1.0, -1.0, 0.0]) - eps * 0.5)


def test_l1_proximal_step_gives_exact_zeros_below_threshold(x64):
    eps, alpha = 0.1, 0.3
    threshold = eps * alpha
    kernel = np.array([0.5, -0.5, threshold, -threshold, 0.01, -0.029, 0.0, 0.031, 2.0])
    params = {"layer": {"kernel": kernel, "bias": np.array([0.01, -0.01])}}
    zero_grads = jax.tree.map(np.zeros_like, params)
    tx = regularizers.l1_proximal_step(eps, alpha)
    new, state = one_update(tx, zero_grads, params)
    new_kernel = np.asarray(new["layer"]["kernel"])

    small = np.abs(kernel) <= threshold
    assert small.sum() == 5
    assert np.all(new_kernel[small] == 0.0)
    expected = np.sign(kernel) * np.maximum(np.abs(kernel) - threshold, 0.0)
    np.testing.assert_allclose(new_kernel, expected, rtol=1e-15, atol=1e-17)
    # Biases take the plain gradient step, so small biases are not zeroed.
    np.testing.assert_array_equal(new["layer"]["bias"], params["layer"]["bias"])
    assert int(state.count) == 1

    # With a gradient the threshold applies to w - eps g.
    grads = {"layer": {"kernel": np.full(kernel.shape, 1.0), "bias": np.ones(2)}}
    new, _ = one_update(tx, grads, params)
    half = kernel - eps * 1.0
    expected = np.sign(half) * np.maximum(np.abs(half) - threshold, 0.0)
    np.testing.assert_allclose(new["layer"]["kernel"], expected, rtol=1e-14, atol=1e-16)
    assert np.all(np.asarray(new["layer"]["kernel"])[np.abs(half) <= threshold] == 0.0)
    np.testing.assert_allclose(new["layer"]["bias"], np.array([0.01, -0.01]) - eps)


def test_subgradient_oscillates_where_proximal_step_lands_on_zero(x64):
    """J = 1/2 (w - c)^2 with |c| < alpha: the L1 minimizer is w = 0."""
    c, alpha, eps = 0.05, 0.2, 0.3
    loss = lambda p: 0.5 * jnp.sum((p["kernel"] - c) ** 2)
    params = {"kernel": jnp.array([1.0])}

    @functools.partial(jax.jit, static_argnums=0)
    def run_trajectory(tx, p):
        def step(carry, _):
            p, state = carry
            updates, state = tx.update(jax.grad(loss)(p), state, p)
            p = optax.apply_updates(p, updates)
            return (p, state), p["kernel"]

        return jax.lax.scan(step, (p, tx.init(p)), None, length=60)[1]

    results = {}
    for name, tx in {
        "subgradient": optax.chain(regularizers.add_l1_subgradient(alpha), optax.sgd(eps)),
        "proximal": regularizers.l1_proximal_step(eps, alpha),
    }.items():
        results[name] = np.asarray(run_trajectory(tx, params))[:, 0]
    assert np.all(results["proximal"][-20:] == 0.0)
    tail = results["subgradient"][-20:]
    assert np.all(tail != 0.0)
    assert np.any(tail > 0) and np.any(tail < 0)


perturb = jax.jit(regularizers.perturb_weights, static_argnames="weight_filter")


def test_perturb_weights_statistics_filter_and_determinism():
    params = {
        "big": {"kernel": np.zeros((400, 250), np.float32)},
        "big_bias": {"bias": np.ones(7, np.float32)},
    }
    sigma = 0.3
    noisy = perturb(params, jax.random.key(0), sigma)
    noise = np.asarray(noisy["big"]["kernel"], np.float64).ravel()
    n = noise.size
    # 6-sigma bounds: sample mean ~ N(0, sigma^2/n); sample std has std about sigma/sqrt(2n).
    assert abs(noise.mean()) < 6 * sigma / np.sqrt(n)
    assert abs(noise.std() - sigma) < 6 * sigma / np.sqrt(2 * n)
    np.testing.assert_array_equal(noisy["big_bias"]["bias"], params["big_bias"]["bias"])

    again = perturb(params, jax.random.key(0), sigma)
    other = perturb(params, jax.random.key(1), sigma)
    np.testing.assert_array_equal(again["big"]["kernel"], noisy["big"]["kernel"])
    assert not np.array_equal(other["big"]["kernel"], noisy["big"]["kernel"])

    all_noisy = perturb(params, jax.random.key(0), sigma, regularizers.all_parameters)
    assert not np.array_equal(all_noisy["big_bias"]["bias"], params["big_bias"]["bias"])
    unchanged = perturb(params, jax.random.key(0), 0.0)
    np.testing.assert_array_equal(unchanged["big"]["kernel"], params["big"]["kernel"])


def test_noisy_weights_loss_is_loss_at_noisy_weights_and_jits():
    params, loss = make_problem()
    sigma, key = 0.05, jax.random.key(3)
    noisy_loss = regularizers.noisy_weights_loss(loss, sigma)

    @jax.jit
    def compute(p):
        noisy_params = regularizers.perturb_weights(p, key, sigma)
        return {
            "noisy_loss": noisy_loss(p, key),
            "loss_at_noisy": loss(noisy_params),
            "clean_loss": loss(p),
            "grads": jax.grad(noisy_loss)(p, key),
            "grads_at_noisy": jax.grad(loss)(noisy_params),
        }

    out = compute(params)
    np.testing.assert_allclose(out["noisy_loss"], out["loss_at_noisy"], rtol=1e-6)
    leaves = zip(jax.tree.leaves(out["grads"]), jax.tree.leaves(out["grads_at_noisy"]), strict=True)
    for a, b in leaves:
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    assert not np.isclose(float(out["noisy_loss"]), float(out["clean_loss"]))


def test_transforms_need_params():
    params = {"kernel": jnp.ones(2)}
    for tx in (
        regularizers.weight_decay_step(0.1, 0.1),
        regularizers.l1_proximal_step(0.1, 0.1),
        regularizers.add_l2_gradient(0.1),
        regularizers.add_l1_subgradient(0.1),
    ):
        with pytest.raises(ValueError, match="params"):
            tx.update(params, tx.init(params))


# --- penalties on an autoencoder's code (SPEC.md section 6) --------------------------------------


def test_l1_activity_penalty_is_the_negative_laplace_log_prior_minus_its_constant(x64):
    """Omega(h) = lambda sum_i |h_i| = -log p(h) + H log(lambda/2), p(h_i) = lambda/2
    e^{-lambda |h_i|} (document 002); the prior checked against scipy's Laplace density."""
    from scipy import stats

    rng = np.random.default_rng(0)
    h, lam = rng.normal(size=(7, 5)), 0.3
    log_prior = np.asarray(regularizers.laplace_log_prior(h, lam))
    np.testing.assert_allclose(log_prior, stats.laplace.logpdf(h, scale=1 / lam).sum(1), rtol=1e-12)
    constant = h.shape[1] * np.log(lam / 2)
    penalty = float(regularizers.l1_activity_penalty(h, lam))
    np.testing.assert_allclose(penalty, np.mean(-log_prior + constant), rtol=1e-12)
    np.testing.assert_allclose(penalty, lam * np.mean(np.abs(h).sum(1)), rtol=1e-12)


def test_kl_sparsity_penalty_is_the_bernoulli_kl_of_the_mean_activation(x64):
    rng = np.random.default_rng(1)
    h, rho, beta = rng.uniform(0.01, 0.99, size=(20, 6)), 0.05, 3.0
    rho_hat = h.mean(axis=0)
    kl = [rho * np.log(rho / r) + (1 - rho) * np.log((1 - rho) / (1 - r)) for r in rho_hat]
    np.testing.assert_allclose(
        regularizers.kl_sparsity_penalty(h, rho, beta), beta * np.sum(kl), rtol=1e-12
    )
    # zero exactly at the target, and its gradient pushes a too-active unit down
    at_target = np.full((4, 3), rho)
    assert float(regularizers.kl_sparsity_penalty(at_target, rho, beta)) == pytest.approx(
        0, abs=1e-12
    )
    grad = jax.grad(lambda a: regularizers.kl_sparsity_penalty(a, rho, beta))(jnp.asarray(h))
    assert np.all(np.asarray(grad) > 0)


def sigmoid_layer_jacobian_numpy(w, b, x):
    """J_ji = dh_j/dx_i = h_j (1 - h_j) W_ij for h = sigmoid(x W + b), written out with loops."""
    n, (d, k) = len(x), w.shape
    jac = np.zeros((n, k, d))
    for e in range(n):
        h = 1 / (1 + np.exp(-(x[e] @ w + b)))
        for j in range(k):
            for i in range(d):
                jac[e, j, i] = h[j] * (1 - h[j]) * w[i, j]
    return jac


@pytest.mark.parametrize("squared", [True, False])
def test_contractive_penalty_closed_form_equals_the_jacobian_form(x64, squared):
    """Two implementations of lambda ||df/dx||_F^2 (003) and lambda sum_i ||grad_x h_i|| (002)
    agree to 1e-6, and both equal a NumPy transcription of the Jacobian."""
    rng = np.random.default_rng(2)
    d, k, lam = 9, 4, 0.7
    w, b, x = rng.normal(size=(d, k)), rng.normal(size=k), rng.normal(size=(6, d))
    closed = regularizers.sigmoid_contractive_penalty(w, b, x, lam, squared=squared)
    general = regularizers.contractive_penalty(
        lambda v: jax.nn.sigmoid(v @ w + b), x, lam, squared=squared
    )
    np.testing.assert_allclose(closed, general, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(closed, general, rtol=1e-12)
    jac = sigmoid_layer_jacobian_numpy(w, b, x)
    if squared:
        expected = lam * np.mean([np.sum(j**2) for j in jac])
    else:
        expected = lam * np.mean([np.sum(np.linalg.norm(j, axis=1)) for j in jac])
    np.testing.assert_allclose(closed, expected, rtol=1e-12)
    np.testing.assert_allclose(
        regularizers.encoder_jacobians(lambda v: jax.nn.sigmoid(v @ w + b), x), jac, rtol=1e-12
    )


def test_contractive_forms_agree_in_float32():
    rng = np.random.default_rng(3)
    w = rng.normal(scale=0.1, size=(64, 16)).astype(np.float32)
    b = rng.normal(size=16).astype(np.float32)
    x = rng.uniform(size=(32, 64)).astype(np.float32)
    for squared in (True, False):
        closed = regularizers.sigmoid_contractive_penalty(w, b, x, 1.0, squared=squared)
        general = regularizers.contractive_penalty(
            lambda v: jax.nn.sigmoid(v @ w + b), x, 1.0, squared=squared
        )
        np.testing.assert_allclose(closed, general, rtol=1e-6)


def test_tangent_directions_are_the_jacobians_right_singular_vectors(x64):
    from scipy.linalg import subspace_angles

    rng = np.random.default_rng(4)
    w, b, x = rng.normal(size=(8, 3)), rng.normal(size=3), rng.normal(size=8)
    s, directions = regularizers.tangent_directions(lambda v: jax.nn.sigmoid(v @ w + b), x, k=2)
    jac = sigmoid_layer_jacobian_numpy(w, b, x[None])[0]
    _, s_np, vt_np = np.linalg.svd(jac)
    np.testing.assert_allclose(s, s_np, rtol=1e-10)
    np.testing.assert_allclose(np.linalg.norm(directions, axis=1), 1.0, rtol=1e-10)
    assert np.max(subspace_angles(np.asarray(directions).T, vt_np[:2].T)) < 1e-8
    # the directions are where the code moves most: |J v_1| = s_1
    np.testing.assert_allclose(np.linalg.norm(jac @ np.asarray(directions[0])), s_np[0], rtol=1e-10)


def patience_rule(values, patience, mode):
    """Literal early stopping: keep the best, count evaluations without improvement, stop."""
    sign = 1.0 if mode == "min" else -1.0
    best, best_epoch, waited = np.inf, -1, 0
    for epoch, value in enumerate(values, start=1):
        if sign * value < best:
            best, best_epoch, waited = sign * value, epoch, 0
        else:
            waited += 1
            if waited >= patience:
                return best_epoch, epoch
    return best_epoch, len(values)


@pytest.mark.parametrize("mode", ["min", "max"])
def test_replay_early_stopping_matches_the_patience_rule(mode):
    rng = np.random.default_rng(3)
    curves = np.cumsum(rng.normal(size=(40, 4)), axis=0)
    tracked = {"test": rng.uniform(size=(40, 4))}
    best, stop, at_best = regularizers.replay_early_stopping(curves, tracked, patience=5, mode=mode)
    for seed in range(4):
        want_best, want_stop = patience_rule(curves[:, seed], 5, mode)
        assert (best[seed], stop[seed]) == (want_best, want_stop)
        np.testing.assert_allclose(at_best["test"][seed], tracked["test"][want_best - 1, seed])


def test_sparsity_counts_small_and_exact_zeros():
    weights = np.array([[0.0, 1e-4, -2e-3, 0.5], [0.0, 0.0, 0.0, 1.0]])
    near, exact = regularizers.sparsity(weights, 1e-3)
    np.testing.assert_allclose(near, [0.5, 0.75])
    np.testing.assert_allclose(exact, [0.25, 0.75])


def test_plot_weights_draws_the_fraction_below_each_threshold():
    weights = {"a": np.array([[0.0, 1e-4, -2e-3, 0.5], [0.0, 0.0, 0.0, 1.0]])}
    fig = regularizers.plot_weights(weights, 1e-3)
    hist_ax, cdf_ax = fig.axes
    t, fraction = cdf_ax.lines[0].get_data()  # the seed mean of (|w| < t).mean()
    want = np.mean([(np.abs(w)[:, None] < t).mean(0) for w in weights["a"]], axis=0)
    np.testing.assert_allclose(fraction, want)
    assert cdf_ax.get_xscale() == "log" and hist_ax.get_yscale() == "log"
    assert cdf_ax.lines[-1].get_xdata()[0] == 1e-3  # the dotted zero_tol line
