"""The word2vec speed rows: words per second of our skip-gram against gensim's Word2Vec.

Both train one epoch of skip-gram with the same settings (100-d, window 5, 5 negatives,
sample 1e-3, min_count 5) on the same token lists: the Lee corpus of gensim's test data,
repeated ``copies`` times (300 news articles, about 60k words each copy). Ours is the very
epoch function that ``lexicon.train.fit`` runs (one seed, compiled once, then timed).
gensim's ``train`` (its vocabulary built beforehand) runs with one worker thread and with as
many as the machine has cores. Words per second count the corpus tokens in the vocabulary,
before subsampling, for both.
"""

from __future__ import annotations

import logging
import os

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

    times = paired_times([ours, gensim(1), gensim(threads)], repeats)
    words = len(corpus["tokens"])
    return {
        "word2vec skip-gram, ours, 1 XLA:CPU device (words/s)": words / times[0],
        "word2vec skip-gram, gensim, 1 thread (words/s)": words / times[1],
        f"word2vec skip-gram, gensim, {threads} threads (words/s)": words / times[2],
    }
