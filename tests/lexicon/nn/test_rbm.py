"""RBMs (SPEC.md §7): energies, conditionals, exact log Z, AIS, CD-k, the guide's optimizer,
and PCD chains that persist through the training core and its checkpoints."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.integrate

from lexicon import train
from lexicon.nn import rbm


def random_params(key, visible, hidden, scale=1.0, dtype=jnp.float64):
    k1, k2, k3 = jax.random.split(jax.random.key(key), 3)
    return {
        "w": scale * jax.random.normal(k1, (visible, hidden), dtype),
        "b": 0.5 * jax.random.normal(k2, (visible,), dtype),
        "a": 0.5 * jax.random.normal(k3, (hidden,), dtype),
    }


def numpy_energy(p, v, h, visible):
    """The document's energies, literally, with the corrected Gaussian sign."""
    w, b, a = (np.asarray(p[k], np.float64) for k in ("w", "b", "a"))
    e = -sum(w[i, j] * v[i] * h[j] for i in range(len(v)) for j in range(len(h)))
    e -= sum(a[j] * h[j] for j in range(len(h)))
    if visible == "bernoulli":
        return e - sum(b[i] * v[i] for i in range(len(v)))
    return e + 0.5 * sum((v[i] - b[i]) ** 2 for i in range(len(v)))


def binary_vectors(n):
    return np.array(list(itertools.product([0.0, 1.0], repeat=n)))


@pytest.mark.parametrize("visible", rbm.VISIBLE)
def test_energy_and_free_energy_against_numpy(x64, visible):
    p = random_params(0, 5, 3)
    rng = np.random.default_rng(0)
    v = rng.normal(size=(4, 5)) if visible == "gaussian" else binary_vectors(5)[[1, 7, 20, 31]]
    hs = binary_vectors(3)
    energies = np.asarray(rbm.energy(p, jnp.asarray(v)[:, None], jnp.asarray(hs)[None], visible))
    free = np.asarray(rbm.free_energy(p, jnp.asarray(v), visible))
    for r, row in enumerate(v):
        for c, h in enumerate(hs):
            np.testing.assert_allclose(energies[r, c], numpy_energy(p, row, h, visible), rtol=1e-13)
        # F(v) = -log sum_h exp(-E(v, h)).
        expected = -np.log(sum(np.exp(-numpy_energy(p, row, h, visible)) for h in hs))
        np.testing.assert_allclose(free[r], expected, rtol=1e-12)


@jax.jit
def conditionals(p, v, h):
    return rbm.p_h_given_v(p, v), rbm.p_v_given_h(p, h)


def test_conditionals_are_ratios_of_energies(x64):
    """p(h_j=1|v) = 1 / (1 + exp(E(v, h_j=1) - E(v, h_j=0))) whatever the other units; the
    same for p(v_i=1|h); on random small RBMs."""
    rng = np.random.default_rng(1)
    for seed in range(3):
        p = random_params(seed, 6, 4, scale=1.5)
        for _ in range(5):
            v, h = ((rng.uniform(size=n) < 0.5).astype(np.float64) for n in (6, 4))
            ph, pv = (np.asarray(a) for a in conditionals(p, v, h))
            for j in range(4):
                on, off = h.copy(), h.copy()
                on[j], off[j] = 1, 0
                gap = numpy_energy(p, v, on, "bernoulli") - numpy_energy(p, v, off, "bernoulli")
                np.testing.assert_allclose(ph[j], 1 / (1 + np.exp(gap)), rtol=1e-12)
            for i in range(6):
                on, off = v.copy(), v.copy()
                on[i], off[i] = 1, 0
                gap = numpy_energy(p, on, h, "bernoulli") - numpy_energy(p, off, h, "bernoulli")
                np.testing.assert_allclose(pv[i], 1 / (1 + np.exp(gap)), rtol=1e-12)


def test_exact_log_z_equals_brute_force(x64):
    """log Z by the sum over hidden states equals the sum of exp(-E) over all 64 x 16 (v, h)
    of a 6 x 4 RBM in float64, to 1e-10; and p(v) sums to 1."""
    p = random_params(3, 6, 4, scale=1.0)
    vs, hs = binary_vectors(6), binary_vectors(4)
    energies = np.array([[numpy_energy(p, v, h, "bernoulli") for h in hs] for v in vs])
    brute = np.log(np.sum(np.exp(-energies)))
    got = float(rbm.log_partition(p, chunk=4))  # several chunks
    assert abs(got - brute) < 1e-10, (got, brute)
    total = np.exp(np.asarray(rbm.log_likelihood(p, jnp.asarray(vs)))).sum()
    np.testing.assert_allclose(total, 1.0, rtol=1e-12)


def test_gaussian_energy_normalizes_in_one_dimension(x64):
    """One Gaussian visible unit, 3 hidden units: Z = sum_h int exp(-E(v, h)) dv by scipy's
    quadrature equals the closed form of log_partition; p(v|h) integrates to 1; the slide's
    sign (-1/2 (v - b)^2) gives an integral that grows without bound."""
    p = random_params(4, 1, 3, scale=0.8)
    hs = binary_vectors(3)

    def integrand(v, h, sign=1.0):
        w, b, a = (np.asarray(p[k]) for k in ("w", "b", "a"))
        e = -v * (w[0] @ h) + sign * 0.5 * (v - b[0]) ** 2 - a @ h
        return np.exp(-e)

    z = sum(scipy.integrate.quad(integrand, -np.inf, np.inf, args=(h,))[0] for h in hs)
    np.testing.assert_allclose(float(rbm.log_partition(p, "gaussian")), np.log(z), rtol=1e-10)
    for h in hs:
        mean = float(rbm.p_v_given_h(p, jnp.asarray(h), "gaussian")[0])
        norm = scipy.integrate.quad(integrand, -np.inf, np.inf, args=(h,))[0]

        def moment(v, h, power, centre, norm):
            return (v - centre) ** power * integrand(v, h) / norm

        total, m1, m2 = (
            scipy.integrate.quad(moment, -np.inf, np.inf, args=(h, power, centre, norm))[0]
            for power, centre in ((0, 0.0), (1, 0.0), (2, mean))
        )
        np.testing.assert_allclose([total, m1, m2], [1.0, mean, 1.0], rtol=1e-8, atol=1e-10)
        density = integrand(mean + 0.7, h) / norm  # N(mean, 1) at one standard deviation 0.7
        np.testing.assert_allclose(density, np.exp(-0.245) / np.sqrt(2 * np.pi), rtol=1e-8)
    slide = [scipy.integrate.quad(integrand, -L, L, args=(hs[0], -1.0))[0] for L in (5, 10, 20)]
    assert slide[0] < slide[1] < slide[2] and slide[2] > 1e40, slide


def test_gaussian_p_v_given_h_is_wh_plus_b_with_unit_variance():
    """Samples of p(v|h): mean W h + b (exactly, as the mean function; within 5 standard
    errors over 100,000 draws) and variance 1 (within 5 of its standard errors)."""
    p = random_params(5, 4, 3, scale=1.0, dtype=jnp.float32)
    h = jnp.array([1.0, 0.0, 1.0])
    mean = np.asarray(p["w"]) @ np.asarray(h) + np.asarray(p["b"])
    np.testing.assert_allclose(rbm.p_v_given_h(p, h, "gaussian"), mean, rtol=1e-6)
    n = 100_000
    draws = rbm.sample_v(p, jnp.tile(h, (n, 1)), jax.random.key(0), "gaussian")
    draws = np.asarray(draws, np.float64)
    assert np.all(np.abs(draws.mean(0) - mean) < 5 / np.sqrt(n))
    assert np.all(np.abs(draws.var(0, ddof=1) - 1) < 5 * np.sqrt(2 / (n - 1)))


def check_ais(visible, scale):
    """16 hidden units, 30 visible: AIS with 100 runs and 1,000 temperatures vs the exact sum
    over 2^16 hidden states."""
    p = random_params(6, 30, 16, scale=scale)
    exact = float(rbm.log_partition(p, visible))
    estimate, log_w = jax.jit(
        lambda p, key: rbm.ais(p, key, runs=100, betas=rbm.ais_betas(1000), visible=visible)
    )(p, jax.random.key(0))
    assert abs(float(estimate) - exact) < 1.0, (visible, float(estimate), exact)
    low, high = rbm.ais_interval(estimate, log_w)
    assert low < float(estimate) < high


def test_ais_is_within_one_nat_of_the_exact_log_z(x64):
    check_ais("bernoulli", 0.5)
    betas = rbm.ais_betas(14500)  # Salakhutdinov & Murray's schedule
    assert len(betas) == 14501 and betas[0] == 0 and betas[-1] == 1
    assert np.sum(betas < 0.5) == 500 and np.sum((betas >= 0.5) & (betas < 0.9)) == 4000


@pytest.mark.slow
def test_ais_with_gaussian_visibles(x64):
    check_ais("gaussian", 0.15)


def numpy_cd_expectation(p, data, k):
    """The exact expectation of the CD-k gradient by the 64 x 64 Gibbs transition matrix
    T(v, v') = sum_h p(h|v) p(v'|h) of a 6-visible RBM, in float64."""
    w, b, a = (np.asarray(p[x], np.float64) for x in ("w", "b", "a"))
    vs, hs = binary_vectors(w.shape[0]), binary_vectors(w.shape[1])
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    ph = sig(vs @ w + a)  # p(h_j = 1 | v) for every v
    p_h = np.prod(np.where(hs[None], ph[:, None], 1 - ph[:, None]), axis=-1)  # (v, h)
    pv = sig(hs @ w.T + b)
    p_v = np.prod(np.where(vs[None], pv[:, None], 1 - pv[:, None]), axis=-1)  # (h, v')
    transition = p_h @ p_v
    index = (data @ (2 ** np.arange(w.shape[0])[::-1])).astype(int)
    reach = np.linalg.matrix_power(transition, k)[index].mean(0)  # distribution of v_k
    positive = data.T @ sig(data @ w + a) / len(data)
    negative = (vs * reach[:, None]).T @ ph
    return positive - negative


def test_cd_k_tends_to_the_exact_gradient(x64):
    """On a 6 x 4 RBM with strong weights: the sampled CD-k gradient agrees with its exact
    expectation (transition matrix) within 5 standard errors; that expectation's distance to
    the exact log-likelihood gradient (jax.grad through the exact log Z) shrinks as k grows
    and vanishes for large k; the sampled CD-k error at k = 50 is within sampling noise."""
    p = random_params(7, 6, 4, scale=1.5)
    rng = np.random.default_rng(0)
    data = (rng.uniform(size=(8, 6)) < 0.3).astype(np.float64)
    exact = np.asarray(rbm.exact_gradient(p, jnp.asarray(data))["w"])
    errors = [np.abs(numpy_cd_expectation(p, data, k) - exact).max() for k in (1, 3, 10, 200)]
    assert errors[0] > 0.05 and all(np.diff(errors) < 0) and errors[-1] < 1e-8, errors
    copies = 20_000
    batch = jnp.asarray(np.tile(data, (copies // 8, 1)))
    cd = jax.jit(lambda k, key: rbm.cd_gradient(p, batch, key, k)[0]["w"], static_argnums=0)
    for k in (1, 50):
        sampled = np.asarray(cd(k, jax.random.key(k)))
        tolerance = 5 * 0.5 / np.sqrt(copies)  # |v h| <= 1: std of one term at most 1/2
        expected = numpy_cd_expectation(p, data, k)
        assert np.abs(sampled - expected).max() < tolerance, k
    assert np.abs(sampled - exact).max() < tolerance


def test_sgd_momentum_is_hintons_update_and_optax_for_constant_momentum():
    """velocity <- alpha velocity - eps (g + lambda w), theta <- theta + velocity: equal to
    optax's add_decayed_weights + scale(-eps) + trace(alpha) at constant alpha, and the guide
    preset switches the momentum from 0.5 to 0.9 after 5 epochs."""
    params = random_params(8, 5, 3, dtype=jnp.float32)
    ours = rbm.sgd_momentum(0.1, 0.9, 1e-2)
    mask = rbm.weights_only(params)
    theirs = optax.chain(
        optax.add_decayed_weights(1e-2, mask=mask), optax.scale(-0.1), optax.trace(0.9)
    )
    s1, s2, p1, p2 = ours.init(params), theirs.init(params), params, params
    for i in range(4):
        g = random_params(20 + i, 5, 3, dtype=jnp.float32)
        u1, s1 = ours.update(g, s1, p1)
        u2, s2 = theirs.update(g, s2, p2)
        p1, p2 = optax.apply_updates(p1, u1), optax.apply_updates(p2, u2)
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7), p1, p2)
    guide = rbm.practical_guide(steps_per_epoch=3)
    zero = jax.tree.map(jnp.zeros_like, params)
    g = jax.tree.map(jnp.ones_like, params)
    state = guide.init(params)
    velocities = []
    for _ in range(17):
        _, state = guide.update(g, state, zero)
        velocities.append(float(state.velocity["a"][0]))
    # v_t = alpha v_(t-1) - 0.1: alpha 0.5 for the first 15 updates (5 epochs of 3), then 0.9.
    np.testing.assert_allclose(velocities[14], 0.5 * velocities[13] - 0.1, rtol=1e-6)
    np.testing.assert_allclose(velocities[15], 0.9 * velocities[14] - 0.1, rtol=1e-6)
    decayed = rbm.practical_guide(steps_per_epoch=3, decay_steps=10)  # eps 0.1 (1 - t / 10)
    state = decayed.init(params)
    _, state = decayed.update(g, state, zero)
    _, state = decayed.update(g, state, zero)
    np.testing.assert_allclose(state.velocity["a"][0], 0.5 * -0.1 - 0.09, rtol=1e-6)


def tiny_config(**changes):
    config = train.defaults()
    config.update(dict(seeds=2, epochs=2, batch_size=10, progress=False, checkpoint_every=1))
    config.update(changes)
    return config


def pcd_task(persistent=True):
    tx = rbm.practical_guide(steps_per_epoch=4, learning_rate=0.05)
    return rbm.task(12, 5, tx, k=1, persistent=persistent, chains=10)


def test_pcd_chain_persists_across_steps():
    """One PCD step continues the stored chains (Gibbs from state.chain with the step's key);
    a CD step leaves them untouched."""
    batch = {"x": (jax.random.uniform(jax.random.key(1), (10, 12)) < 0.4).astype(jnp.float32)}
    for persistent in (True, False):
        task = pcd_task(persistent)
        state = task.init(jax.random.key(0))
        key = jax.random.key(5)
        new, metrics = jax.jit(task.make_step(None))(state, batch, key)
        assert int(new.step) == 1 and np.isfinite(float(metrics["reconstruction"]))
        if persistent:
            _, cd_key = jax.random.split(key)
            expected, _ = jax.jit(rbm.gibbs, static_argnums=3)(state.params, state.chain, cd_key, 1)
            np.testing.assert_array_equal(new.chain, expected)
            assert not np.array_equal(new.chain, state.chain)
        else:
            np.testing.assert_array_equal(new.chain, state.chain)


def test_pcd_chain_persists_across_a_checkpoint(tmp_path):
    """Two epochs of PCD in one run equal one epoch, a checkpoint, and a resume to two,
    bitwise: parameters, momentum and the chains (a resume that restarted the chains would
    differ)."""
    data = {"x": (np.random.default_rng(0).uniform(size=(40, 12)) < 0.4).astype(np.float32)}
    straight = train.fit(tiny_config(), pcd_task(), data, tmp_path / "a")
    train.fit(tiny_config(epochs=1), pcd_task(), data, tmp_path / "b")
    resumed = train.fit(tiny_config(resume=True), pcd_task(), data, tmp_path / "b")

    def fields(state):
        return state.step, state.params, state.opt_state, state.chain

    jax.tree.map(np.testing.assert_array_equal, fields(straight.state), fields(resumed.state))
    assert straight.history == resumed.history
    fresh = pcd_task().init(jax.random.key(0)).chain
    assert not np.array_equal(straight.state.chain[0], fresh)
    assert np.all(np.asarray(straight.state.step) == 8)
