"""The GAN library (SPEC.md §9): losses on logits, the alternating step, priors, conditioning."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.stats

from lexicon.nn import gan


def sigmoid64(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


def test_losses_against_a_literal_transcription(x64):
    """V = mean log D(x_r) + mean log(1 - D(x_g)); the discriminator's BCE (real = 1, fake = 0)
    is -V; G minimizes mean log(1 - D(G(z))) (minimax) or -mean log D(G(z)) (non-saturating)."""
    rng = np.random.default_rng(0)
    real, fake = rng.normal(scale=3, size=7), rng.normal(scale=3, size=5)
    d_real, d_fake = sigmoid64(real), sigmoid64(fake)
    v = np.mean(np.log(d_real)) + np.mean(np.log(1 - d_fake))
    bce = -np.mean(1 * np.log(d_real) + 0 * np.log(1 - d_real)) - np.mean(
        0 * np.log(d_fake) + 1 * np.log(1 - d_fake)
    )
    np.testing.assert_allclose(gan.value(real, fake), v, rtol=1e-13)
    np.testing.assert_allclose(gan.discriminator_loss(real, fake), bce, rtol=1e-13)
    np.testing.assert_allclose(bce, -v, rtol=1e-13)
    np.testing.assert_allclose(
        gan.generator_loss(fake, "minimax"), np.mean(np.log(1 - d_fake)), rtol=1e-13
    )
    np.testing.assert_allclose(
        gan.generator_loss(fake, "non_saturating"), -np.mean(np.log(d_fake)), rtol=1e-13
    )
    with pytest.raises(ValueError, match="non_saturating"):
        gan.generator_loss(fake, "wasserstein")


def test_losses_stay_finite_where_d_is_sure():
    """At logits of +-100, D = sigmoid(l) rounds to 0 or 1 in float32; the logit forms give the
    exact values: log(1 - D) = -softplus(l), -log D = softplus(-l)."""
    logits = jnp.array([-100.0, 100.0])
    np.testing.assert_allclose(gan.generator_loss(logits[:1], "minimax"), 0.0, atol=1e-30)
    np.testing.assert_allclose(gan.generator_loss(logits[:1], "non_saturating"), 100.0)
    np.testing.assert_allclose(gan.discriminator_loss(logits[1:], logits[:1]), 0.0, atol=1e-30)
    np.testing.assert_allclose(gan.discriminator_loss(logits[:1], logits[1:]), 200.0)


@pytest.mark.parametrize("d_of_g", [1e-6, 1e-4, 1e-2, 0.1, 0.5])
def test_generator_gradients_where_d_rejects_the_fakes(x64, d_of_g):
    """Document 004's point: with l the logit of D(G(z)), d/dl log(1 - sigmoid(l)) = -D(G(z)),
    which vanishes as D rejects the fakes, while d/dl -log sigmoid(l) = -(1 - D(G(z))) -> -1."""
    logit = np.log(d_of_g) - np.log1p(-d_of_g)
    minimax = jax.grad(lambda l: gan.generator_loss(l[None], "minimax"))(logit)
    saturating = jax.grad(lambda l: gan.generator_loss(l[None], "non_saturating"))(logit)
    np.testing.assert_allclose(minimax, -d_of_g, rtol=1e-10)
    np.testing.assert_allclose(saturating, -(1 - d_of_g), rtol=1e-10)
    if d_of_g <= 1e-4:
        assert abs(minimax) < 1e-3 * abs(saturating)


def test_uniform_prior_is_the_default():
    """z ~ Uniform([0, 1]^d) unless asked otherwise: the default GAN draws exactly
    jax.random.uniform, whose draws pass a Kolmogorov-Smirnov test against U(0, 1)."""
    model = gan.GAN(gan.DenseGenerator(2, (4,)), gan.DenseDiscriminator((4,)), latent_dim=3)
    assert model.prior == "uniform"
    key = jax.random.key(5)
    z = np.asarray(model.latent(key, 4000))
    np.testing.assert_array_equal(z, jax.random.uniform(key, (4000, 3)))
    assert z.min() >= 0 and z.max() < 1
    assert scipy.stats.kstest(z.reshape(-1), "uniform").pvalue > 1e-3
    normal = np.asarray(gan.sample_latent(key, 4000, 3, "normal"))
    assert normal.min() < 0 and scipy.stats.kstest(normal.reshape(-1), "norm").pvalue > 1e-3
    with pytest.raises(ValueError, match="uniform, normal"):
        gan.sample_latent(key, 2, 3, "cauchy")


def small_gan(**changes):
    settings = dict(
        generator=gan.DenseGenerator(2, (8,)),
        discriminator=gan.DenseDiscriminator((8,)),
        latent_dim=3,
    )
    settings.update(changes)
    return gan.GAN(**settings)


def fresh_state(model, n=6, width=2, **tx):
    gen_tx = tx.get("gen_tx", optax.adam(1e-2, b1=0.5))
    disc_tx = tx.get("disc_tx", optax.sgd(0.1, momentum=0.9))
    return model.init(jax.random.key(0), jnp.zeros((n, width)), gen_tx, disc_tx)


def same(a, b):
    return all(
        np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


def test_the_idle_player_does_not_move():
    """A discriminator update leaves G's parameters and optimizer state bitwise as they were;
    a generator update leaves D's; each moves its own."""
    model = small_gan(r1=0.5)
    state = fresh_state(model)
    # one round first, so that both optimizer states hold non-zero moments
    real = jax.random.normal(jax.random.key(1), (6, 2))
    state, _ = jax.jit(model.step)(state, {"x": real}, jax.random.key(2))
    after_d, metrics = jax.jit(model.discriminator_update)(state, real, jax.random.key(3))
    assert same(after_d.gen, state.gen) and not same(after_d.disc.params, state.disc.params)
    assert not same(after_d.disc.opt_state, state.disc.opt_state)
    assert {"d_loss", "d_real", "d_fake", "r1"} <= set(metrics)
    after_g, _ = jax.jit(model.generator_update, static_argnums=2)(state, jax.random.key(4), 6)
    assert same(after_g.disc, state.disc) and not same(after_g.gen.params, state.gen.params)
    assert not same(after_g.gen.opt_state, state.gen.opt_state)


def test_step_is_k_discriminator_updates_then_one_generator_update():
    """With k = 3 the minibatch is cut into 3 slices, one per discriminator update (fresh noise
    each), then G moves once; the same calls made one by one give the same state bitwise."""
    model = small_gan(disc_steps=3)
    state = fresh_state(model, n=4)
    real = jax.random.normal(jax.random.key(1), (12, 2))
    key = jax.random.key(7)
    stepped, metrics = jax.jit(model.step)(state, {"x": real}, key)
    assert int(stepped.step) == 1 and int(stepped.disc.step) == 3 and int(stepped.gen.step) == 1

    @jax.jit
    def by_hand(state):
        d_keys = jax.random.split(jax.random.fold_in(key, 0), 3)
        for i in range(3):
            state, _ = model.discriminator_update(state, real[4 * i : 4 * i + 4], d_keys[i])
        state, _ = model.generator_update(state, jax.random.fold_in(key, 1), 4)
        return state.replace(step=state.step + 1)

    expected = by_hand(state)
    for a, b in zip(jax.tree.leaves(stepped), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert {"d_loss", "g_loss", "d_of_g", "g_grad_norm"} <= set(metrics)
    with pytest.raises(ValueError, match="k=3"):
        model.step(state, {"x": real[:10]}, key)


def test_data_free_step_draws_fresh_real_samples():
    """batch=None: each discriminator update draws real_batch examples from sample_real."""
    model = small_gan(disc_steps=2)
    state = fresh_state(model, n=5)
    seen = []

    def sample_real(key, n):
        seen.append(n)
        return jax.random.normal(key, (n, 2)) + 3.0

    stepped, _ = model.step(state, None, jax.random.key(0), sample_real=sample_real, real_batch=5)
    assert seen == [5] and int(stepped.disc.step) == 2
    with pytest.raises(ValueError, match="sample_real"):
        model.step(state, None, jax.random.key(0))


def test_r1_penalty_is_the_squared_input_gradient(x64):
    """For a linear logit l(x) = w.x + b the input gradient is w, so R1 = ||w||^2; for an MLP
    it matches the per-example Jacobian norms computed by jax.jacobian."""
    linear = gan.DenseDiscriminator(hidden=())
    x = jax.random.normal(jax.random.key(0), (5, 3), jnp.float64)
    params = linear.init(jax.random.key(1), x)["params"]
    w = np.asarray(params["logit"]["kernel"])[:, 0]
    penalty = gan.r1_penalty(lambda v, y: linear.apply({"params": params}, v), x)
    np.testing.assert_allclose(penalty, np.sum(w.astype(np.float64) ** 2), rtol=1e-6)
    mlp = gan.DenseDiscriminator(hidden=(6,), num_classes=3)
    y = jnp.array([0, 1, 2, 1, 0])
    params = mlp.init(jax.random.key(2), x, y)["params"]
    jac = jax.vmap(
        jax.jacobian(lambda v, label: mlp.apply({"params": params}, v[None], label[None])[0])
    )(x, y)
    got = gan.r1_penalty(lambda v, lab: mlp.apply({"params": params}, v, lab), x, y)
    np.testing.assert_allclose(got, np.mean(np.sum(jac**2, axis=1)), rtol=1e-10)


@pytest.mark.parametrize("mode", gan.LABEL_MODES)
def test_conditional_output_depends_on_the_label(mode):
    """The same z with different labels gives different samples (dense and DCGAN generators),
    and the discriminators score the same x differently under different labels."""
    z = jax.random.uniform(jax.random.key(0), (4, 5))
    for generator in (
        gan.DenseGenerator(6, (8,), num_classes=10, label_mode=mode),
        gan.DCGANGenerator((8, 8, 1), width=4, num_classes=10, label_mode=mode),
    ):
        params = generator.init(jax.random.key(1), z, jnp.zeros(4, jnp.int32))["params"]
        a = generator.apply({"params": params}, z, jnp.array([0, 1, 2, 3]))
        b = generator.apply({"params": params}, z, jnp.array([4, 5, 6, 7]))
        assert np.min(np.abs(np.asarray(a - b)).reshape(4, -1).max(axis=1)) > 1e-4
        with pytest.raises(ValueError, match="needs labels"):
            generator.apply({"params": params}, z)
    x = jax.random.uniform(jax.random.key(2), (4, 8, 8, 1))
    for disc in (
        gan.DenseDiscriminator((8,), num_classes=10, label_mode=mode),
        gan.DCGANDiscriminator(width=4, num_classes=10, label_mode=mode),
    ):
        params = disc.init(jax.random.key(3), x, jnp.zeros(4, jnp.int32))["params"]
        a = disc.apply({"params": params}, x, jnp.array([0, 1, 2, 3]))
        b = disc.apply({"params": params}, x, jnp.array([9, 8, 7, 6]))
        assert a.shape == (4,) and np.all(np.abs(np.asarray(a - b)) > 1e-6)


def test_dcgan_shapes_and_pixel_range():
    generator = gan.DCGANGenerator((12, 8, 1), width=4)
    z = jax.random.uniform(jax.random.key(0), (3, 10))
    params = generator.init(jax.random.key(1), z)["params"]
    x = generator.apply({"params": params}, z)
    assert x.shape == (3, 12, 8, 1) and float(x.min()) >= 0 and float(x.max()) <= 1
    disc = gan.DCGANDiscriminator(width=4)
    logits = disc.apply(disc.init(jax.random.key(2), x), x)
    assert logits.shape == (3,)
    with pytest.raises(ValueError, match="divisible by 4"):
        gan.DCGANGenerator((10, 10, 1)).init(jax.random.key(0), z)


def test_conditional_step_trains_both_players():
    """A conditional GAN's step takes labels with the batch and moves both players."""
    model = small_gan(
        generator=gan.DenseGenerator(2, (8,), num_classes=3),
        discriminator=gan.DenseDiscriminator((8,), num_classes=3, label_mode="embed"),
        num_classes=3,
        r1=1.0,
    )
    state = fresh_state(model, n=4)
    batch = {"x": jnp.ones((4, 2)), "y": jnp.array([0, 1, 2, 0])}
    stepped, metrics = jax.jit(model.step)(state, batch, jax.random.key(0))
    assert not same(stepped.gen.params, state.gen.params)
    assert not same(stepped.disc.params, state.disc.params)
    assert all(np.isfinite(float(v)) for v in metrics.values())


def test_optimizers():
    """adam uses the given beta1, adam_default optax's 0.9, sgd plain steps."""
    params = {"w": jnp.array([1.0, -2.0])}
    grads = {"w": jnp.array([0.5, 0.25])}
    for name, reference in (
        ("adam", optax.adam(0.1, b1=0.5)),
        ("adam_default", optax.adam(0.1)),
        ("sgd", optax.sgd(0.1)),
    ):
        tx = gan.optimizer(name, 0.1, beta1=0.5)
        state, ref_state = tx.init(params), reference.init(params)
        for _ in range(3):
            update, state = tx.update(grads, state, params)
            expected, ref_state = reference.update(grads, ref_state, params)
            np.testing.assert_array_equal(update["w"], expected["w"])
    with pytest.raises(ValueError, match="sgd"):
        gan.optimizer("rmsprop", 0.1)


def test_spectral_norm_is_the_top_singular_value(x64):
    """Power iteration from a fixed start against numpy.linalg.svd: sigma_1 of a matrix with
    a spectral gap, its gradient u_1 v_1^T, and a SpectralDense kernel rescaled to sigma_1 = 1."""
    rng = np.random.default_rng(0)
    u, _ = np.linalg.qr(rng.normal(size=(7, 7)))
    v, _ = np.linalg.qr(rng.normal(size=(5, 5)))
    w = u[:, :5] @ np.diag([3.0, 1.5, 1.0, 0.5, 0.1]) @ v.T
    np.testing.assert_allclose(gan.spectral_norm(jnp.asarray(w), 20), 3.0, rtol=1e-10)
    grad = jax.grad(lambda a: gan.spectral_norm(a, 20))(jnp.asarray(w))
    np.testing.assert_allclose(grad, np.outer(u[:, 0], v[:, 0]), atol=1e-10)
    x = rng.normal(size=(3, 7))
    layer = gan.SpectralDense(5, iterations=20)
    params = layer.init(jax.random.key(0), x)["params"]
    params = {"kernel": jnp.asarray(w), "bias": params["bias"] + 1.0}
    np.testing.assert_allclose(layer.apply({"params": params}, x), x @ w / 3.0 + 1.0, rtol=1e-10)
    random = rng.normal(size=(16, 32))  # a random matrix: a small gap, slower convergence
    top = np.linalg.svd(random, compute_uv=False)[0]
    np.testing.assert_allclose(gan.spectral_norm(jnp.asarray(random), 200), top, rtol=1e-8)
    assert gan.spectral_norm(jnp.asarray(random), 2) <= top


def test_unrolled_generator_gradient_against_a_literal_unrolling(x64):
    """K = 2: G's gradient through two SGD updates of a linear D, against central differences
    of a NumPy float64 transcription: d_w = mean_r -(1 - s(l)) x + mean_f s(l) x per D step,
    then G's non-saturating loss -mean log s(l) under the updated D. D does not move."""
    model = small_gan(
        generator=gan.DenseGenerator(2, ()), discriminator=gan.DenseDiscriminator(()), unroll=2
    )
    eta = 0.5
    state = fresh_state(model, n=4, gen_tx=optax.sgd(1.0), disc_tx=optax.sgd(eta))
    real = np.asarray(jax.random.normal(jax.random.key(1), (4, 2))) + 1.0
    key = jax.random.key(2)
    update = jax.jit(model.generator_update, static_argnums=2)
    new, _ = update(state, key, 4, jnp.asarray(real))
    z = np.asarray(model.latent(jax.random.split(key)[0], 4))
    d = {k: np.asarray(v, np.float64) for k, v in state.disc.params["logit"].items()}

    def literal(a, b):
        fake = z @ a + b
        w, c = d["kernel"][:, 0], d["bias"][0]
        for _ in range(2):
            sr, sf = sigmoid64(real @ w + c), sigmoid64(fake @ w + c)
            gw = np.mean(-(1 - sr)[:, None] * real, 0) + np.mean(sf[:, None] * fake, 0)
            gc = np.mean(-(1 - sr)) + np.mean(sf)
            w, c = w - eta * gw, c - eta * gc
        return -np.mean(np.log(sigmoid64(fake @ w + c)))

    g = {k: np.asarray(v, np.float64) for k, v in state.gen.params["out"].items()}
    for name in ("kernel", "bias"):
        numeric = np.zeros_like(g[name])
        for i in np.ndindex(g[name].shape):
            step = np.zeros_like(g[name])
            step[i] = 1e-6
            up = {**g, name: g[name] + step}
            down = {**g, name: g[name] - step}
            numeric[i] = (
                literal(up["kernel"], up["bias"]) - literal(down["kernel"], down["bias"])
            ) / 2e-6
        got = g[name] - np.asarray(new.gen.params["out"][name])  # sgd(1): the gradient
        np.testing.assert_allclose(got, numeric, rtol=1e-6, atol=1e-9)
    assert same(new.disc, state.disc)
    with pytest.raises(ValueError, match="real inputs"):
        model.generator_update(state, key, 4)
