"""word2vec: skip-gram and CBOW, trained by the "fake task" of document 003 (SPEC §10).

Each word w has an input vector v_w (the embedding, a row of ``params["input"]``) and an
output vector u_w (a row of ``params["output"]``). Skip-gram predicts each context word o of
a center word c from v_c; CBOW predicts the center from the mean h of its context vectors.
The documents name the two tasks; the objectives come from the papers [add]:
- full softmax (Mikolov et al. 2013a, "Efficient estimation of word representations"):
      loss = -log softmax(U h)_target,   for small vocabularies;
- negative sampling (Mikolov et al. 2013b, "Distributed representations of words and
  phrases", eq. 4): with K noise words n_k drawn from P_n(w) = count(w)^0.75 / Z,
      loss = -log sigma(u_target . h) - sum_k log sigma(-u_{n_k} . h),
  where a noise word equal to the target is skipped, as the word2vec C code and gensim do.
Training is word2vec's: plain SGD with a learning rate that falls linearly from ``alpha`` to
``min_alpha`` over all epochs, sparse updates of the rows a batch touches, subsampling of
frequent words and reduced windows drawn afresh every epoch (lexicon.data.text). A batch is
``batch`` pairs (skip-gram) or windows (CBOW) whose per-example gradients are summed, the
batched form of word2vec's one-pair-at-a-time updates. CBOW adds the gradient of h to every
context vector in full, as the C code and gensim (cbow_mean=1) do, rather than 1/count of it.

One replica's epoch is a pure function (``Task.epoch``), so ``lexicon.train.fit`` trains
every seed at once as a vmap axis; each seed draws its own init, subsample, windows and noise.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax import lax

from lexicon.data import text
from lexicon.train.loop import Task
from lexicon.train.program import stream

MODELS = ("skipgram", "cbow")
OBJECTIVES = ("negative", "softmax")


@dataclasses.dataclass(frozen=True)
class Settings:
    """The hyperparameters of one word2vec run (gensim's names in brackets)."""

    model: str = "skipgram"  # skipgram (sg=1) | cbow (sg=0)
    objective: str = "negative"  # negative (negative=K) | softmax (the full softmax)
    dim: int = 100  # (vector_size)
    window: int = 5  # (window)
    negative: int = 5  # K noise words per example (negative)
    sample: float = 1e-3  # subsampling threshold t (sample); 0 keeps every word
    alpha: float = 0.025  # first learning rate (alpha)
    min_alpha: float = 1e-4  # last learning rate (min_alpha)
    epochs: int = 5  # the linear decay spans this many epochs (epochs)
    batch: int = 1024  # pairs (skip-gram) or windows (CBOW) per SGD step
    shrink_windows: bool = True  # draw each position's window in 1..window (shrink_windows)
    power: float = 0.75  # exponent of the noise distribution (ns_exponent)


class State(struct.PyTreeNode):
    """One replica: the step count and the two tables {"input", "output"} of shape (V, dim)."""

    step: jax.Array
    params: dict


def noise_distribution(counts, power: float = 0.75) -> np.ndarray:
    """P_n(w) = count(w)^power / sum_w' count(w')^power (Mikolov et al. 2013b)."""
    weights = np.asarray(counts, np.float64) ** power
    return weights / weights.sum()


def init(key, vocab_size: int, dim: int) -> dict:
    """word2vec's start: input vectors uniform in [-0.5/dim, 0.5/dim), output vectors zero."""
    bound = 0.5 / dim
    return {
        "input": jax.random.uniform(key, (vocab_size, dim), jnp.float32, -bound, bound),
        "output": jnp.zeros((vocab_size, dim), jnp.float32),
    }


def sample_noise(key, cumulative, shape) -> jax.Array:
    """Draws word ids from the distribution whose cumulative sums are ``cumulative`` (V,)."""
    u = jax.random.uniform(key, shape, cumulative.dtype) * cumulative[-1]
    return jnp.minimum(jnp.searchsorted(cumulative, u, side="right"), cumulative.shape[0] - 1)


def negative_sampling_loss(h, u_target, u_noise, noise_mask) -> jax.Array:
    """Per example: -log sigma(u_target . h) - sum_k noise_mask_k log sigma(-u_noise_k . h).

    h, u_target: (B, dim); u_noise: (B, K, dim); noise_mask: (B, K), 0 where a noise word is
    the target itself."""
    positive = jax.nn.log_sigmoid(jnp.sum(u_target * h, axis=-1))
    scores = jnp.einsum("bkd,bd->bk", u_noise, h)
    return -positive - jnp.sum(noise_mask * jax.nn.log_sigmoid(-scores), axis=-1)


def softmax_loss(h, output, target) -> jax.Array:
    """Per example: -log softmax(output h)_target over the whole vocabulary."""
    logits = h @ output.T
    return -jnp.take_along_axis(jax.nn.log_softmax(logits), target[:, None], axis=1)[:, 0]


def cbow_hidden(table, contexts, context_mask):
    """h = the mean of the context rows of ``table`` that ``context_mask`` keeps."""
    rows = table[contexts] * context_mask[..., None]
    return rows.sum(axis=1) / jnp.maximum(context_mask.sum(axis=1), 1)[:, None]


def _target_loss(settings: Settings, h, output, target, mask, key, cumulative):
    """Summed loss of a batch and its gradients: (loss, g_h, output-table update rows/values)."""
    if settings.objective == "softmax":

        def total(h, output):
            return jnp.sum(mask * softmax_loss(h, output, target))

        loss, (g_h, g_out) = jax.value_and_grad(total, argnums=(0, 1))(h, output)
        return loss, g_h, lambda table, lr: table - lr * g_out
    noise = sample_noise(key, cumulative, (target.shape[0], settings.negative))
    noise_mask = (noise != target[:, None]).astype(h.dtype)

    def total(h, u_target, u_noise):
        return jnp.sum(mask * negative_sampling_loss(h, u_target, u_noise, noise_mask))

    loss, (g_h, g_target, g_noise) = jax.value_and_grad(total, argnums=(0, 1, 2))(
        h, output[target], output[noise]
    )

    def apply(table, lr):
        return table.at[target].add(-lr * g_target).at[noise].add(-lr * g_noise)

    return loss, g_h, apply


def update(settings: Settings, params, batch, key, lr, cumulative=None):
    """One SGD step on a batch; returns (params, summed loss).

    Skip-gram batch: {"centers" (B,), "contexts" (B,), "mask" (B,)}; CBOW batch: {"centers"
    (B,), "contexts" (B, 2 window), "context_mask" (B, 2 window), "mask" (B,)}. ``mask`` is 0 for
    padding examples. ``cumulative`` holds the cumulative noise weights (negative sampling)."""
    mask = batch["mask"].astype(jnp.float32)
    table_in, table_out = params["input"], params["output"]
    if settings.model == "skipgram":
        h = table_in[batch["centers"]]
        loss, g_h, apply = _target_loss(
            settings, h, table_out, batch["contexts"], mask, key, cumulative
        )
        table_in = table_in.at[batch["centers"]].add(-lr * g_h)
    else:
        context_mask = batch["context_mask"].astype(jnp.float32)
        h = cbow_hidden(table_in, batch["contexts"], context_mask)
        loss, g_h, apply = _target_loss(
            settings, h, table_out, batch["centers"], mask, key, cumulative
        )
        table_in = table_in.at[batch["contexts"]].add(-lr * g_h[:, None] * context_mask[..., None])
    return {"input": table_in, "output": apply(table_out, lr)}, loss


def learning_rate(settings: Settings, epoch, fraction):
    """alpha falling linearly to min_alpha over all epochs (epoch counts from 1, fraction of
    the epoch done in [0, 1))."""
    progress = (epoch - 1 + fraction) / settings.epochs
    return jnp.maximum(
        settings.min_alpha, settings.alpha - (settings.alpha - settings.min_alpha) * progress
    )


def epoch_fn(settings: Settings, corpus: dict, counts):
    """The pure epoch of one replica over an encoded corpus ({"tokens", "sentence"}, see
    lexicon.data.text.Vocabulary.encode) with vocabulary ``counts``.

    Draws the epoch's subsample and reduced windows from the replica's ``data`` stream, builds
    every pair (or window) on the device, and runs SGD over them in corpus order in batches of
    ``settings.batch``; noise words come from the ``step`` stream folded with the step count.
    Metrics: the mean loss per example, the words kept by subsampling, the examples."""
    tokens = jnp.asarray(corpus["tokens"], jnp.int32)
    sentence = jnp.asarray(corpus["sentence"], jnp.int32)
    keep_prob = jnp.asarray(text.keep_probabilities(counts, settings.sample), jnp.float32)
    cumulative = jnp.asarray(np.cumsum(noise_distribution(counts, settings.power)), jnp.float32)
    n, window, size = tokens.shape[0], settings.window, settings.batch

    def pad(a):
        return jnp.concatenate([a, jnp.zeros((size,) + a.shape[1:], a.dtype)])

    def run(state, seed, epoch):
        sub_key, window_key = jax.random.split(jax.random.fold_in(stream(seed, "data"), epoch))
        packed, packed_sentence, kept = text.subsample(sub_key, tokens, sentence, keep_prob)
        reduced = text.reduced_windows(window_key, n, window, settings.shrink_windows)
        if settings.model == "skipgram":
            centers, contexts, count = text.skipgram_pairs(
                packed, packed_sentence, kept, reduced, window
            )
            examples = {"centers": pad(centers), "contexts": pad(contexts)}
        else:
            centers, contexts, context_mask, count = text.cbow_windows(
                packed, packed_sentence, kept, reduced, window
            )
            examples = {
                "centers": pad(centers),
                "contexts": pad(contexts),
                "context_mask": pad(context_mask),
            }
        batches = (count + size - 1) // size
        step_key = stream(seed, "step")

        def body(carry):
            b, state, total = carry
            start = b * size
            batch = {k: lax.dynamic_slice_in_dim(v, start, size) for k, v in examples.items()}
            batch["mask"] = start + jnp.arange(size) < count
            lr = learning_rate(settings, epoch, b / jnp.maximum(batches, 1))
            key = jax.random.fold_in(step_key, state.step)
            params, loss = update(settings, state.params, batch, key, lr, cumulative)
            return b + 1, State(step=state.step + 1, params=params), total + loss

        _, state, total = lax.while_loop(
            lambda c: c[0] < batches, body, (jnp.int32(0), state, jnp.float32(0))
        )
        metrics = {"loss": total / jnp.maximum(count, 1), "words": kept, "examples": count}
        return state, metrics

    return run


def make_task(settings: Settings, corpus: dict, counts, evaluate=None) -> Task:
    """The ``lexicon.train`` task of one word2vec run: ``fit(config, task, None, workdir)``
    trains ``config.seeds`` replicas for ``config.epochs`` (which should equal
    ``settings.epochs``, the span of the learning-rate decay)."""
    check(settings)
    vocab_size = len(counts)

    def start(key):
        return State(step=jnp.zeros((), jnp.int32), params=init(key, vocab_size, settings.dim))

    return Task(init=start, epoch=epoch_fn(settings, corpus, counts), evaluate=evaluate)


def check(settings: Settings) -> None:
    if settings.model not in MODELS:
        raise ValueError(f"model must be one of {MODELS}, not {settings.model!r}")
    if settings.objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, not {settings.objective!r}")
