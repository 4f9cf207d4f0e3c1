"""word2vec: the losses against NumPy float64 transcriptions, the noise distribution, the
sparse SGD step against jax.grad, and training through lexicon.train (seeds, determinism)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lexicon import train
from lexicon.data import text
from lexicon.nn import word2vec as w2v


def log_sigmoid(x):
    return -np.log1p(np.exp(-x))


def test_negative_sampling_loss_is_the_formula(x64):
    rng = np.random.default_rng(0)
    h, u_target = rng.normal(size=(4, 6)), rng.normal(size=(4, 6))
    u_noise, mask = (
        rng.normal(size=(4, 3, 6)),
        np.array([[1, 1, 0], [1, 1, 1], [0, 1, 1], [1, 0, 1.0]]),
    )
    expected = [
        -log_sigmoid(u_target[b] @ h[b])
        - sum(mask[b, k] * log_sigmoid(-(u_noise[b, k] @ h[b])) for k in range(3))
        for b in range(4)
    ]
    got = w2v.negative_sampling_loss(*map(jnp.asarray, (h, u_target, u_noise, mask)))
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_softmax_loss_is_the_formula(x64):
    rng = np.random.default_rng(1)
    h, output, target = rng.normal(size=(5, 4)), rng.normal(size=(7, 4)), np.array([0, 6, 3, 3, 1])
    logits = h @ output.T
    expected = [np.log(np.exp(logits[b]).sum()) - logits[b, target[b]] for b in range(5)]
    got = w2v.softmax_loss(jnp.asarray(h), jnp.asarray(output), jnp.asarray(target))
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_noise_is_the_normalized_unigram_to_the_three_quarters():
    counts = np.array([900, 400, 100, 10, 1])
    p = w2v.noise_distribution(counts)
    np.testing.assert_allclose(p, counts**0.75 / np.sum(counts**0.75), rtol=1e-14)
    draws = w2v.sample_noise(jax.random.key(0), jnp.asarray(np.cumsum(p), jnp.float32), (200_000,))
    freq = np.bincount(np.asarray(draws), minlength=5) / 200_000
    assert np.all(np.abs(freq - p) < 4 * np.sqrt(p * (1 - p) / 200_000) + 1e-4), (freq, p)


def batch_and_params(model, vocab=12, dim=5, size=16, seed=0):
    rng = np.random.default_rng(seed)
    params = {k: jnp.asarray(rng.normal(size=(vocab, dim)) * 0.3) for k in ("input", "output")}
    batch = {"centers": jnp.asarray(rng.integers(0, vocab, size)), "mask": jnp.arange(size) < 13}
    if model == "skipgram":
        batch["contexts"] = jnp.asarray(rng.integers(0, vocab, size))
    else:
        batch["contexts"] = jnp.asarray(rng.integers(0, vocab, (size, 4)))
        batch["context_mask"] = jnp.asarray(rng.random((size, 4)) < 0.7)
    return params, batch


@pytest.mark.parametrize("objective", ["negative", "softmax"])
def test_skipgram_step_is_sgd_on_the_summed_loss(objective, x64):
    """The sparse update equals params - lr * jax.grad(sum of the batch's losses) over the
    whole tables, with the same noise words."""
    settings = w2v.Settings(objective=objective, negative=4)
    params, batch = batch_and_params("skipgram")
    cumulative = jnp.asarray(np.cumsum(w2v.noise_distribution(np.arange(12, 0, -1))))
    key, lr = jax.random.key(3), 0.1
    noise = w2v.sample_noise(key, cumulative, (16, 4))
    mask = batch["mask"].astype(jnp.float64)

    def total(p):
        h = p["input"][batch["centers"]]
        if objective == "softmax":
            return jnp.sum(mask * w2v.softmax_loss(h, p["output"], batch["contexts"]))
        u_noise, keep = p["output"][noise], (noise != batch["contexts"][:, None]).astype(float)
        loss = w2v.negative_sampling_loss(h, p["output"][batch["contexts"]], u_noise, keep)
        return jnp.sum(mask * loss)

    grads = jax.grad(total)(params)
    new, loss = w2v.update(settings, params, batch, key, lr, cumulative)
    np.testing.assert_allclose(loss, total(params), rtol=1e-12)
    for k in params:
        np.testing.assert_allclose(new[k], params[k] - lr * grads[k], rtol=1e-10, atol=1e-12)


def test_cbow_step_adds_the_hidden_gradient_to_every_context_word(x64):
    """CBOW: h = mean of the kept context vectors; the output rows move by -lr * their
    gradient, and each context row by -lr * dL/dh in full (the word2vec C code's rule)."""
    settings = w2v.Settings(model="cbow", objective="softmax")
    params, batch = batch_and_params("cbow", seed=1)
    lr = 0.05
    mask, cmask = np.asarray(batch["mask"], float), np.asarray(batch["context_mask"], float)
    contexts = np.asarray(batch["contexts"])
    table_in = np.asarray(params["input"])
    h = (table_in[contexts] * cmask[..., None]).sum(1) / np.maximum(cmask.sum(1), 1)[:, None]

    def total(h, output):
        return jnp.sum(mask * w2v.softmax_loss(h, output, batch["centers"]))

    g_h, g_out = jax.grad(total, argnums=(0, 1))(jnp.asarray(h), params["output"])
    expected_in = table_in.copy()
    for b in range(16):
        for j in range(4):
            expected_in[contexts[b, j]] -= lr * cmask[b, j] * np.asarray(g_h[b])
    new, _ = w2v.update(settings, params, batch, jax.random.key(0), lr)
    np.testing.assert_allclose(new["input"], expected_in, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(new["output"], params["output"] - lr * g_out, rtol=1e-10)


def test_learning_rate_falls_linearly_over_all_epochs():
    s = w2v.Settings(alpha=0.025, min_alpha=1e-4, epochs=4)
    np.testing.assert_allclose(w2v.learning_rate(s, 1, 0.0), 0.025)
    np.testing.assert_allclose(w2v.learning_rate(s, 3, 0.0), 0.025 - 0.5 * (0.025 - 1e-4))
    np.testing.assert_allclose(w2v.learning_rate(s, 4, 1.0), 1e-4, rtol=1e-5)


def test_training_through_fit_is_reproducible_with_independent_seeds(tmp_path):
    """Two runs of the same config give bitwise-identical metrics and vectors; the seeds of
    one run differ in their vectors and subsamples; the loss falls."""
    sentences = text.synthetic(0, sentences=400)
    vocab = text.Vocabulary.build(sentences, min_count=1)
    settings = w2v.Settings(dim=8, epochs=2, batch=64, sample=1e-2)
    task = w2v.make_task(settings, vocab.encode(sentences), vocab.counts)
    config = train.defaults()
    config.update(seeds=2, epochs=2, progress=False)
    runs = [train.fit(config, task, None, tmp_path / str(i), log=lambda *_: None) for i in (0, 1)]
    a, b = (np.asarray(r.state.params["input"]) for r in runs)
    np.testing.assert_array_equal(a, b)
    assert runs[0].history == runs[1].history
    assert not np.allclose(a[0], a[1])
    words = runs[0].final("train/words")
    assert words[0] != words[1] and np.all(words < len(vocab.encode(sentences)["tokens"]))
    _, loss = runs[0].curve("train/loss")
    assert np.all(loss[:, 1] < loss[:, 0])
    with pytest.raises(ValueError, match="model must be"):
        w2v.make_task(w2v.Settings(model="glove"), vocab.encode(sentences), vocab.counts)
