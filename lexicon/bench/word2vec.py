"""The word2vec speed rows: words per second of our skip-gram against gensim's Word2Vec.

Both train one epoch of skip-gram with the same settings (100-d, window 5, 5 negatives,
sample 1e-3, min_count 5) on the same token lists: the Lee corpus of gensim's test data,
repeated ``copies`` times (300 news articles, about 60k words each copy). Ours is the very
epoch function that ``lexicon.train.fit`` runs (one seed, compiled once, then timed).
gensim's ``train`` (its vocabulary built beforehand) runs with one worker thread and with as
many as the machine has cores. Rates are given per second of wall time and per second of
the process's CPU time (all threads), which a loaded machine does not distort. Words count
the corpus tokens in the vocabulary, before subsampling, for both.
"""

from __future__ import annotations

import logging
import os
import time

import jax
import numpy as np

from lexicon.bench import paired_times
from lexicon.data import text
from lexicon.embeddings import gensim_model
from lexicon.nn import word2vec


def rows(repeats: int, copies: int = 5) -> dict[str, float]:
    sentences = text.lee() * copies
    vocab = text.Vocabulary.build(sentences, min_count=5)
    corpus = vocab.encode(sentences)
    settings = word2vec.Settings(epochs=1)
    task = word2vec.make_task(settings, corpus, vocab.counts)
    seeds = np.zeros(1, np.int32)
    state = jax.jit(jax.vmap(lambda s: task.init(jax.random.key(s))))(seeds)
    epoch = jax.jit(jax.vmap(task.epoch, in_axes=(0, 0, None)))

    def ours():
        jax.block_until_ready(epoch(state, seeds, np.int32(1)))

    threads = os.cpu_count() or 1
    logging.getLogger("gensim").setLevel(logging.ERROR)  # retraining warns about alpha

    def gensim(workers):
        model = gensim_model(settings, min_count=5, seed=0, workers=workers)
        model.build_vocab(sentences)
        return lambda: model.train(sentences, total_examples=len(sentences), epochs=1)

    fns = [ours, gensim(1), gensim(threads)]
    times = paired_times(fns, repeats)
    cpu = cpu_times(fns, repeats)
    words = len(corpus["tokens"])
    names = ["ours, 1 XLA:CPU device", "gensim, 1 thread", f"gensim, {threads} threads"]
    out = {f"word2vec skip-gram, {n} (words/s)": words / t for n, t in zip(names, times)}
    out.update(
        {f"word2vec skip-gram, {n} (words/s of CPU time)": words / t for n, t in zip(names, cpu)}
    )
    return out


def cpu_times(fns, repeats: int) -> list[float]:
    """Median CPU time of this process (every thread) per call, the functions in turn: on a
    loaded machine it counts the work done, where wall time counts the waiting too."""
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, bucket in zip(fns, times):
            start = time.process_time()
            fn()
            bucket.append(time.process_time() - start)
    return [float(np.median(t)) for t in times]
