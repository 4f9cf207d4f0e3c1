"""Losses against literal NumPy float64 transcriptions (SPEC.md section 3), optax and scipy.

Library calls go through ``jax.jit`` (one compilation per call instead of one per primitive),
which also checks that every loss traces.
"""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.stats

from lexicon import losses


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def compiled(fn, **static):
    return jax.jit(partial(fn, **static))


def value_and_grad(fn, *args, **static):
    """Value and gradient with respect to the first argument, in one compiled call."""
    return jax.jit(jax.value_and_grad(partial(fn, **static)))(*args)


def random_distributions(rng, shape):
    return rng.dirichlet(np.ones(shape[-1]), size=shape[:-1])


def np_softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def test_half_sum_squared_error(x64, rng):
    o, t = rng.normal(size=(7, 3)), rng.normal(size=(7, 3))
    expected = 0.5 * sum((t[d, k] - o[d, k]) ** 2 for d in range(7) for k in range(3))
    got, grad = value_and_grad(losses.half_sum_squared_error, jnp.asarray(o), jnp.asarray(t))
    np.testing.assert_allclose(float(got), expected, rtol=1e-14)
    # dE/do = -(t - o): the delta rule's error signal with no 1/N factor.
    np.testing.assert_allclose(np.asarray(grad), o - t, rtol=1e-14)


@pytest.mark.parametrize("shape", [(9,), (9, 4), (9, 2, 3)])
def test_mean_squared_error(x64, rng, shape):
    y_hat, y = rng.normal(size=shape), rng.normal(size=shape)
    n = shape[0]
    expected = sum(np.sum((y[i] - y_hat[i]) ** 2) for i in range(n)) / n
    got, grad = value_and_grad(losses.mean_squared_error, jnp.asarray(y_hat), jnp.asarray(y))
    np.testing.assert_allclose(float(got), expected, rtol=1e-14)
    np.testing.assert_allclose(np.asarray(grad), 2.0 / n * (y_hat - y), rtol=1e-13)
    # Per-example squared norm averaged over examples = optax's per-element mean times D.
    per_element = 2 * float(np.mean(optax.l2_loss(y_hat, y)))
    np.testing.assert_allclose(float(got), per_element * np.prod(shape[1:]), rtol=1e-13)


def test_softmax_cross_entropy_soft_targets(x64, rng):
    z, t = rng.normal(size=(6, 5)) * 3, random_distributions(rng, (6, 5))
    per_example = np.array(
        [
            -sum(t[i, c] * np.log(np.exp(z[i, c]) / np.exp(z[i]).sum()) for c in range(5))
            for i in range(6)
        ]
    )
    got = compiled(losses.softmax_cross_entropy, reduction="none")(jnp.asarray(z), jnp.asarray(t))
    np.testing.assert_allclose(np.asarray(got), per_example, rtol=1e-13)
    reference = jax.jit(optax.softmax_cross_entropy)(z, t)
    np.testing.assert_allclose(np.asarray(got), np.asarray(reference), rtol=1e-13)
    # d(mean loss)/dz = (softmax(z) - t) / N for targets that sum to one.
    mean, grad = value_and_grad(losses.softmax_cross_entropy, jnp.asarray(z), jnp.asarray(t))
    np.testing.assert_allclose(float(mean), per_example.mean(), rtol=1e-13)
    np.testing.assert_allclose(np.asarray(grad), (np_softmax(z) - t) / 6, rtol=1e-12, atol=1e-15)


def test_integer_labels_equal_one_hot(x64, rng):
    z, labels = rng.normal(size=(8, 4)) * 2, rng.integers(0, 4, size=8)
    expected = np.array([np.log(np.exp(z[i]).sum()) - z[i, labels[i]] for i in range(8)])
    got = compiled(losses.softmax_cross_entropy_with_integer_labels, reduction="none")(
        jnp.asarray(z), jnp.asarray(labels)
    )
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-13)
    one_hot = np.eye(4)[labels]
    from_one_hot = compiled(losses.softmax_cross_entropy, reduction="none")(
        jnp.asarray(z), jnp.asarray(one_hot)
    )
    np.testing.assert_allclose(np.asarray(got), np.asarray(from_one_hot), rtol=1e-14)
    reference = jax.jit(optax.softmax_cross_entropy_with_integer_labels)(z, labels)
    np.testing.assert_allclose(np.asarray(got), np.asarray(reference), rtol=1e-13)


def test_probability_forms_equal_logit_forms(x64, rng):
    z, t = rng.normal(size=(5, 3)), random_distributions(rng, (5, 3))
    labels = rng.integers(0, 3, size=5)
    p = np_softmax(z)
    expected = np.array([-sum(t[i, c] * np.log(p[i, c]) for c in range(3)) for i in range(5)])
    got = compiled(losses.categorical_cross_entropy, reduction="none")(
        jnp.asarray(p), jnp.asarray(t)
    )
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-13)
    from_logits = compiled(losses.softmax_cross_entropy, reduction="none")(
        jnp.asarray(z), jnp.asarray(t)
    )
    np.testing.assert_allclose(np.asarray(got), np.asarray(from_logits), rtol=1e-13)
    got_labels = compiled(losses.categorical_cross_entropy_with_integer_labels, reduction="none")(
        jnp.asarray(p), jnp.asarray(labels)
    )
    np.testing.assert_allclose(
        np.asarray(got_labels), [-np.log(p[i, labels[i]]) for i in range(5)], rtol=1e-13
    )


def test_categorical_from_probabilities_treats_zero_targets_as_zero():
    # 0 log 0 = 0: a zero-probability class with a zero target contributes nothing.
    p = jnp.array([[0.0, 0.25, 0.75]])
    t = jnp.array([[0.0, 0.0, 1.0]])
    np.testing.assert_allclose(
        float(compiled(losses.categorical_cross_entropy)(p, t)), -np.log(0.75), rtol=1e-6
    )


def test_logit_forms_are_stable_for_huge_logits():
    z = jnp.array([[1000.0, -1000.0, 0.0]])
    t = jnp.array([[0.0, 1.0, 0.0]])
    value, grad = value_and_grad(losses.softmax_cross_entropy, z, t)
    assert np.isclose(float(value), 2000.0)
    np.testing.assert_allclose(np.asarray(grad), [[1.0, -1.0, 0.0]], atol=1e-6)
    bce, bce_grad = value_and_grad(
        losses.binary_cross_entropy_with_logits, jnp.array([-500.0, 500.0]), jnp.array([1.0, 0.0])
    )
    assert np.isclose(float(bce), 500.0)
    np.testing.assert_allclose(np.asarray(bce_grad), [-0.5, 0.5])


def test_binary_cross_entropy_with_logits(x64, rng):
    z, t = rng.normal(size=(4, 3)) * 4, rng.uniform(size=(4, 3))
    sig = 1.0 / (1.0 + np.exp(-z))
    expected = -(t * np.log(sig) + (1 - t) * np.log(1 - sig))
    got = compiled(losses.binary_cross_entropy_with_logits, reduction="none")(
        jnp.asarray(z), jnp.asarray(t)
    )
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-12)
    reference = jax.jit(optax.sigmoid_binary_cross_entropy)(z, t)
    np.testing.assert_allclose(np.asarray(got), np.asarray(reference), rtol=1e-12)
    # d(sum loss)/dz = sigmoid(z) - t.
    total, grad = value_and_grad(
        losses.binary_cross_entropy_with_logits, jnp.asarray(z), jnp.asarray(t), reduction="sum"
    )
    np.testing.assert_allclose(float(total), expected.sum(), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(grad), sig - t, rtol=1e-12, atol=1e-15)
    got_probs = compiled(losses.binary_cross_entropy, reduction="none")(
        jnp.asarray(sig), jnp.asarray(t)
    )
    np.testing.assert_allclose(np.asarray(got_probs), expected, rtol=1e-10)


def test_binary_cross_entropy_from_probabilities_hard_targets():
    # Targets at exactly 0 or 1 with p at the other end contribute 0 (0 log 0 = 0), not NaN.
    p = jnp.array([1.0, 0.0, 0.8])
    t = jnp.array([1.0, 0.0, 0.0])
    got = compiled(losses.binary_cross_entropy, reduction="none")(p, t)
    np.testing.assert_allclose(np.asarray(got), [0.0, 0.0, -np.log(0.2)], rtol=1e-6)


def test_entropy(x64, rng):
    p = random_distributions(rng, (4, 6))
    expected = np.array([-sum(p[i, x] * np.log(p[i, x]) for x in range(6)) for i in range(4)])
    entropy = jax.jit(losses.entropy)
    got = np.asarray(entropy(jnp.asarray(p)))
    np.testing.assert_allclose(got, expected, rtol=1e-13)
    np.testing.assert_allclose(got, scipy.stats.entropy(p, axis=-1), rtol=1e-13)
    special = np.asarray(entropy(jnp.array([[1 / 3, 1 / 3, 1 / 3], [0.0, 1.0, 0.0]])))
    np.testing.assert_allclose(special, [np.log(3), 0.0], rtol=1e-14, atol=0)


def test_kl_equals_cross_entropy_minus_entropy(x64, rng):
    p, q = random_distributions(rng, (50, 10)), random_distributions(rng, (50, 10))
    kl, cross, ent, kl_self = jax.jit(
        lambda p, q: (
            losses.kl_divergence(p, q),
            losses.cross_entropy(p, q),
            losses.entropy(p),
            losses.kl_divergence(p, p),
        )
    )(jnp.asarray(p), jnp.asarray(q))
    kl, cross, ent = np.asarray(kl), np.asarray(cross), np.asarray(ent)
    np.testing.assert_allclose(kl, cross - ent, atol=1e-6)
    expected_kl = np.array(
        [sum(p[i, x] * (np.log(p[i, x]) - np.log(q[i, x])) for x in range(10)) for i in range(50)]
    )
    np.testing.assert_allclose(kl, expected_kl, rtol=1e-12)
    np.testing.assert_allclose(kl, scipy.stats.entropy(p, q, axis=-1), rtol=1e-12)
    expected_cross = np.array([-sum(p[i] * np.log(q[i])) for i in range(50)])
    np.testing.assert_allclose(cross, expected_cross, rtol=1e-13)
    assert np.all(kl > 0)
    np.testing.assert_allclose(np.asarray(kl_self), 0.0, atol=1e-15)


def test_kl_in_float32_matches_identity_to_1e6(rng):
    p = random_distributions(rng, (200, 10)).astype(np.float32)
    q = random_distributions(rng, (200, 10)).astype(np.float32)
    kl, identity = jax.jit(
        lambda p, q: (losses.kl_divergence(p, q), losses.cross_entropy(p, q) - losses.entropy(p))
    )(jnp.asarray(p), jnp.asarray(q))
    np.testing.assert_allclose(np.asarray(kl), np.asarray(identity), atol=1e-6)


def test_reductions(rng):
    z = jnp.asarray(rng.normal(size=(6, 4)), jnp.float32)
    labels = jnp.asarray(rng.integers(0, 4, size=6))
    none, mean, total, binary_none, binary_mean = jax.jit(
        lambda z, labels: (
            losses.softmax_cross_entropy_with_integer_labels(z, labels, reduction="none"),
            losses.softmax_cross_entropy_with_integer_labels(z, labels, reduction="mean"),
            losses.softmax_cross_entropy_with_integer_labels(z, labels, reduction="sum"),
            losses.binary_cross_entropy_with_logits(z, jnp.ones_like(z), reduction="none"),
            losses.binary_cross_entropy_with_logits(z, jnp.ones_like(z)),
        )
    )(z, labels)
    assert none.shape == (6,) and binary_none.shape == (6, 4)
    np.testing.assert_allclose(float(mean), np.asarray(none).mean(), rtol=1e-6)
    np.testing.assert_allclose(float(total), np.asarray(none).sum(), rtol=1e-6)
    np.testing.assert_allclose(float(binary_mean), np.asarray(binary_none).mean(), rtol=1e-6)
    with pytest.raises(
        ValueError, match="unknown reduction 'avg'; valid reductions: mean, sum, none"
    ):
        losses.softmax_cross_entropy(z, jax.nn.softmax(z), reduction="avg")


def test_losses_jit_and_vmap(rng):
    z = jnp.asarray(rng.normal(size=(3, 5, 4)), jnp.float32)
    labels = jnp.asarray(rng.integers(0, 4, size=(3, 5)))
    batched = jax.jit(jax.vmap(losses.softmax_cross_entropy_with_integer_labels))(z, labels)
    single = jax.jit(losses.softmax_cross_entropy_with_integer_labels)
    looped = [single(z[i], labels[i]) for i in range(3)]
    np.testing.assert_allclose(np.asarray(batched), np.asarray(looped), rtol=1e-6)


# --- The VAE's terms (SPEC §6): Gaussian KL and decoder log-likelihoods ------------------------


def np_gaussian_kl(mu, log_var):
    """1/2 sum_j (mu_j^2 + sigma_j^2 - log sigma_j^2 - 1), one term at a time."""
    total = 0.0
    for m, lv in zip(mu, log_var):
        sigma2 = np.exp(lv)
        total += 0.5 * (m**2 + sigma2 - np.log(sigma2) - 1.0)
    return total


def test_gaussian_kl_is_the_closed_form(x64, rng):
    mu, log_var = rng.normal(size=(7, 5)), rng.normal(size=(7, 5))
    got, grad = jax.jit(jax.value_and_grad(lambda m, lv: losses.gaussian_kl(m, lv).sum(), (0, 1)))(
        jnp.asarray(mu), jnp.asarray(log_var)
    )
    expected = [np_gaussian_kl(mu[n], log_var[n]) for n in range(7)]
    np.testing.assert_allclose(
        np.asarray(compiled(losses.gaussian_kl)(mu, log_var)), expected, rtol=1e-14
    )
    np.testing.assert_allclose(float(got), sum(expected), rtol=1e-14)
    # dKL/dmu = mu and dKL/dlog sigma^2 = (sigma^2 - 1) / 2: zero only at the prior.
    np.testing.assert_allclose(np.asarray(grad[0]), mu, rtol=1e-14)
    np.testing.assert_allclose(np.asarray(grad[1]), 0.5 * (np.exp(log_var) - 1), rtol=1e-14)
    assert float(losses.gaussian_kl(jnp.zeros(4), jnp.zeros(4))) == 0.0


def test_gaussian_kl_equals_a_monte_carlo_estimate(x64):
    """KL(q || p) = E_q[log q(z) - log p(z)], estimated from 400,000 draws of q with scipy's
    log densities; the estimate lies within 5 standard errors of the closed form."""
    rng = np.random.default_rng(3)
    mu, log_var = np.array([0.8, -1.5, 0.0]), np.array([-1.0, 0.7, 0.2])
    sigma = np.exp(0.5 * log_var)
    z = mu + sigma * rng.standard_normal((400_000, 3))
    log_q = scipy.stats.norm(mu, sigma).logpdf(z).sum(axis=1)
    log_p = scipy.stats.norm(0.0, 1.0).logpdf(z).sum(axis=1)
    estimate, stderr = (log_q - log_p).mean(), (log_q - log_p).std() / np.sqrt(len(z))
    closed = float(losses.gaussian_kl(jnp.asarray(mu), jnp.asarray(log_var)))
    assert abs(estimate - closed) < 5 * stderr, (estimate, closed, stderr)
    assert stderr < 0.01 * closed  # the test can tell a wrong constant apart


def test_gaussian_log_density_is_scipys(x64, rng):
    x, mean, log_var = rng.normal(size=(6, 4)), rng.normal(size=(6, 4)), rng.normal(size=(6, 4))
    got = compiled(losses.gaussian_log_density)(x, mean, log_var)
    expected = [
        scipy.stats.multivariate_normal(mean[n], np.diag(np.exp(log_var[n]))).logpdf(x[n])
        for n in range(6)
    ]
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-12)
    standard = compiled(losses.gaussian_log_density)(x, np.zeros_like(x))
    np.testing.assert_allclose(
        np.asarray(standard), scipy.stats.norm.logpdf(x).sum(axis=1), rtol=1e-12
    )
    # The decoder form takes (mean, targets): the same density of the data.
    np.testing.assert_allclose(
        np.asarray(compiled(losses.gaussian_log_likelihood)(mean, x, log_var)),
        expected,
        rtol=1e-12,
    )


def test_gaussian_log_likelihood_with_unit_variance_is_half_squared_error(x64, rng):
    mean, x = rng.normal(size=(5, 8)), rng.normal(size=(5, 8))
    got = compiled(losses.gaussian_log_likelihood)(mean, x)
    expected = -0.5 * np.sum((x - mean) ** 2, axis=1) - 0.5 * 8 * np.log(2 * np.pi)
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-13)


def test_bernoulli_log_likelihood(x64, rng):
    logits = 4 * rng.normal(size=(5, 9))
    x = (rng.uniform(size=(5, 9)) < 0.5).astype(np.float64)
    p = 1 / (1 + np.exp(-logits))
    expected = [
        sum(x[n, j] * np.log(p[n, j]) + (1 - x[n, j]) * np.log(1 - p[n, j]) for j in range(9))
        for n in range(5)
    ]
    got = compiled(losses.bernoulli_log_likelihood)(logits, x)
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-12)
    # Saturated logits stay finite (log-sigmoid), where the literal form gives log(0).
    far = compiled(losses.bernoulli_log_likelihood)(np.array([[200.0, -200.0]]), np.eye(2)[1:])
    np.testing.assert_allclose(np.asarray(far), [-400.0], rtol=1e-12)


def numpy_softmax(z):
    z = np.asarray(z, np.float64)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def test_hint_loss_is_half_the_mean_squared_norm(x64):
    rng = np.random.default_rng(0)
    hint, predicted = rng.normal(size=(6, 9)), rng.normal(size=(6, 9))
    expected = 0.5 * np.mean([np.sum((hint[n] - predicted[n]) ** 2) for n in range(6)])
    np.testing.assert_allclose(losses.hint_loss(predicted, hint), expected, rtol=1e-12)


@pytest.mark.parametrize("temperature, alpha", [(1.0, 0.5), (4.0, 0.9), (20.0, 1.0), (2.0, 0.0)])
def test_distillation_loss_is_the_documented_mixture(x64, temperature, alpha):
    rng = np.random.default_rng(1)
    student, teacher = rng.normal(size=(5, 10)) * 3, rng.normal(size=(5, 10)) * 3
    labels = rng.integers(0, 10, 5)
    p = numpy_softmax(teacher / temperature)
    q = numpy_softmax(student / temperature)
    soft = np.mean(-np.sum(p * np.log(q), axis=1))
    hard = np.mean(-np.log(numpy_softmax(student)[np.arange(5), labels]))
    total, soft_term, hard_term = losses.distillation_loss(
        student, teacher, labels, temperature, alpha
    )
    np.testing.assert_allclose(soft_term, soft, rtol=1e-12)
    np.testing.assert_allclose(hard_term, hard, rtol=1e-12)
    np.testing.assert_allclose(
        total, alpha * temperature**2 * soft + (1 - alpha) * hard, rtol=1e-12
    )


def test_soft_term_gradient_is_t_times_q_minus_p(x64):
    """d/dz_i of T^2 H(p^T, q^T) = T (q_i^T - p_i^T) per example (Hinton et al. 2015)."""
    rng = np.random.default_rng(2)
    student, teacher = rng.normal(size=(4, 10)), rng.normal(size=(4, 10))
    labels = np.zeros(4, int)
    temperature = 3.0
    grad = jax.grad(
        lambda z: losses.distillation_loss(z, teacher, labels, temperature, alpha=1.0)[0]
    )(jnp.asarray(student))
    expected = temperature * (numpy_softmax(student / temperature) - numpy_softmax(teacher / 3))
    np.testing.assert_allclose(grad, expected / 4, rtol=1e-10, atol=1e-14)
    # H(p, q) = H(p) + KL(p || q): the soft term and the KL differ by a constant in z.
    p, q = jax.nn.softmax(teacher / 3.0), jax.nn.softmax(student / 3.0)
    kl_plus_entropy = jnp.mean(losses.kl_divergence(p, q) + losses.entropy(p))
    soft = losses.distillation_loss(student, teacher, labels, 3.0, 1.0)[1]
    np.testing.assert_allclose(soft, kl_plus_entropy, rtol=1e-12)


def numpy_sigmoid(z):
    return 1 / (1 + np.exp(-z))


def test_sigmoid_squared_error_with_integer_labels_is_the_literal_formula(x64, rng):
    z, y = rng.normal(scale=3.0, size=(7, 4)), rng.integers(0, 4, size=7)
    o, t = numpy_sigmoid(z), np.eye(4)[y]
    literal = sum(
        0.5 * sum((o[n, k] - t[n, k]) ** 2 for k in range(4)) for n in range(len(y))
    ) / len(y)
    ours = losses.sigmoid_squared_error_with_integer_labels(jnp.asarray(z), jnp.asarray(y))
    np.testing.assert_allclose(ours, literal, rtol=1e-12)


def test_sigmoid_cross_entropy_with_integer_labels_is_the_literal_formula(x64, rng):
    z, y = rng.normal(scale=3.0, size=(7, 4)), rng.integers(0, 4, size=7)
    o, t = numpy_sigmoid(z), np.eye(4)[y]
    literal = -np.sum(t * np.log(o) + (1 - t) * np.log(1 - o)) / len(y)
    ours = losses.sigmoid_cross_entropy_with_integer_labels(jnp.asarray(z), jnp.asarray(y))
    np.testing.assert_allclose(ours, literal, rtol=1e-12)


def test_gaussian_nll_is_scipy_norm(x64):
    rng = np.random.default_rng(1)
    predictions, targets = rng.normal(size=30), rng.normal(size=30)
    log_sigma = np.log(0.7)
    reference = -np.mean(scipy.stats.norm.logpdf(targets, loc=predictions, scale=0.7))
    ours = losses.gaussian_negative_log_likelihood(
        jnp.asarray(predictions), jnp.asarray(targets), log_sigma
    )
    np.testing.assert_allclose(ours, reference, rtol=1e-12)
