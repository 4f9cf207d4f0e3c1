"""Embeddings: cosine similarity, 3CosAdd excluding the query words, the analogy evaluator
(its skip count; its answers against gensim's on the same vectors), word similarity against
scipy and gensim, the documents' table, PCA, item2vec baskets."""

import numpy as np
import pytest

from lexicon import embeddings as emb

QUESTIONS = """\
: family
man woman king queen
boy girl king queen
man woman dragon queen
: capitals
paris france berlin germany
paris france rome italy
atlantis nowhere berlin germany
"""


def random_vectors(words, dim=6, seed=0):
    return np.random.default_rng(seed).normal(size=(len(words), dim))


def test_cosine_similarity_is_the_formula():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(3, 5)), rng.normal(size=(4, 5))
    expected = [[x @ y / (np.linalg.norm(x) * np.linalg.norm(y)) for y in b] for x in a]
    np.testing.assert_allclose(emb.cosine_similarity(a, b), expected, rtol=1e-12)
    assert np.all(emb.cosine_similarity(np.zeros(5), b) == 0)  # a zero vector has no direction


def test_3cosadd_excludes_the_query_words():
    words = ["a", "b", "c", "d", "e"]
    # b - a + c points almost exactly at c (a close to b); d is the best of the other words.
    vectors = np.array([[1, 0, 0], [1, 0.01, 0], [0, 1, 0], [0.1, 0.9, 0.3], [0, 0, 1.0]])
    target = emb.unit(vectors)[1] - emb.unit(vectors)[0] + emb.unit(vectors)[2]
    scores = emb.cosine_similarity(target, vectors)[0]
    assert np.argmax(scores) == 2  # c itself would win without the exclusion
    assert emb.analogy(words, vectors, "a", "b", "c", k=2) == [
        ("d", pytest.approx(scores[3])),
        ("e", pytest.approx(scores[4])),
    ]
    neighbours = emb.nearest(words, vectors, "c", k=10)
    assert [w for w, _ in neighbours] == ["d", "b", "a", "e"]


def test_evaluator_counts_the_questions_it_skips():
    questions = emb.read_questions(QUESTIONS)
    assert len(questions) == 6 and questions[3] == (
        "capitals",
        "paris",
        "france",
        "berlin",
        "germany",
    )
    words = ["man", "woman", "king", "queen", "boy", "girl", "paris", "france", "berlin", "germany"]
    result = emb.evaluate_analogies(words, random_vectors(words), questions)
    # dragon, rome, italy, atlantis and nowhere are out of vocabulary: the family section
    # answers 2 of its 3 questions, the capitals section 1 of 3.
    assert result.sections["family"][1:] == (2, 1)
    assert result.sections["capitals"][1:] == (1, 2)
    assert (result.answered, result.skipped) == (3, 3)
    with pytest.raises(ValueError, match="section"):
        emb.read_questions("a b c d\n")


def test_evaluator_agrees_with_gensim_on_the_same_vectors(tmp_path):
    """Our 3CosAdd answers and gensim's evaluate_word_analogies (which skips out-of-vocabulary
    questions silently) agree question by question on random vectors."""
    from gensim.models import KeyedVectors

    questions = emb.questions_words()
    words = sorted({w for q in questions[:1200] for w in q[1:]})[:150]
    vectors = random_vectors(words, dim=10, seed=3).astype(np.float32)
    kv = KeyedVectors(10)
    kv.add_vectors(words, vectors)
    path = tmp_path / "q.txt"
    path.write_text(
        QUESTIONS
        + "\n".join(f": s{i}\n" + " ".join(q[1:]) for i, q in enumerate(questions[:1200]))
        + "\n"
    )
    _, sections = kv.evaluate_word_analogies(str(path))
    ours = emb.evaluate_analogies(words, vectors, emb.read_questions(path.read_text()))
    theirs = {
        s["section"]: (len(s["correct"]), len(s["correct"]) + len(s["incorrect"])) for s in sections
    }
    assert ours.answered == theirs["Total accuracy"][1] > 20
    assert ours.correct == theirs["Total accuracy"][0]


def test_device_accuracy_matches_the_evaluator():
    import jax.numpy as jnp

    questions = emb.read_questions(QUESTIONS)
    words = ["man", "woman", "king", "queen", "boy", "girl", "paris", "france", "berlin", "germany"]
    vectors = random_vectors(words, seed=5)
    split = emb.question_ids(words, questions)
    assert len(split["a"]) == 3
    got = float(emb.analogy_accuracy(jnp.asarray(vectors, jnp.float32), split))
    assert got == pytest.approx(emb.evaluate_analogies(words, vectors, questions).accuracy)


def test_word_similarity_against_scipy_and_gensim():
    from gensim.models import KeyedVectors
    from scipy import stats

    from lexicon.data.text import gensim_test_data

    pairs = emb.read_word_pairs("wordsim353.tsv")
    assert len(pairs) == 353 and len(emb.read_word_pairs("simlex999.txt")) == 999
    words = sorted({w for a, b, _ in pairs[:200] for w in (a, b)})
    vectors = random_vectors(words, dim=8, seed=2)
    rho, used, skipped = emb.word_similarity(words, vectors, pairs)
    index = {w: i for i, w in enumerate(words)}
    inside = [(a, b, s) for a, b, s in pairs if a in index and b in index]
    assert used == len(inside) and skipped == 353 - used and 0 < skipped
    cos = [emb.cosine_similarity(vectors[index[a]], vectors[index[b]])[0, 0] for a, b, _ in inside]
    assert rho == pytest.approx(stats.spearmanr(cos, [s for *_, s in inside]).statistic)
    kv = KeyedVectors(8)
    kv.add_vectors(words, vectors.astype(np.float32))
    _, spearman, oov = kv.evaluate_word_pairs(str(gensim_test_data() / "wordsim353.tsv"))
    assert rho == pytest.approx(spearman.statistic, abs=1e-5)
    assert oov == pytest.approx(100 * skipped / 353)


def test_documents_table_holds_king_man_woman_queen_and_one_hot_does_not():
    t = emb.table_against_onehot()
    assert t["error"] == 0 and t["answer"] == "queen"
    assert t["tied"] == t["candidates"] == 6 and t["onehot_score"] == 0
    cos = emb.cosine_similarity(t["onehot"], t["onehot"])
    np.testing.assert_array_equal(cos, np.eye(9))


def test_pca_projects_on_the_top_eigenvectors_of_the_covariance():
    x = np.random.default_rng(4).normal(size=(20, 6)) * np.arange(1, 7)
    centred = x - x.mean(axis=0)
    _, eigenvectors = np.linalg.eigh(centred.T @ centred)
    expected = centred @ eigenvectors[:, ::-1][:, :2]
    np.testing.assert_allclose(np.abs(emb.pca(x)), np.abs(expected), rtol=1e-8, atol=1e-10)


def test_baskets_are_seeded_and_neighbours_find_categories():
    a, category = emb.baskets(1, count=200)
    b, _ = emb.baskets(1, count=200)
    assert a == b and a != emb.baskets(2, count=200)[0]
    assert all(3 <= len(basket) <= 5 for basket in a)
    words = sorted(category)
    # Vectors that are the one-hot category plus a little noise: neighbours share categories.
    rng = np.random.default_rng(0)
    vectors = np.eye(6)[[category[w] for w in words]] + 0.01 * rng.normal(size=(len(words), 6))
    assert emb.neighbour_precision(words, vectors, category, k=5) == 1.0
    shuffled = vectors[rng.permutation(len(words))]
    assert emb.neighbour_precision(words, shuffled, category, k=5) < 0.5


def test_gensim_reference_builds_the_same_vocabulary():
    from lexicon.data import text
    from lexicon.nn.word2vec import Settings

    sentences = text.lee()
    words, vectors, seconds = emb.gensim_word2vec(
        sentences, Settings(dim=10, epochs=1), min_count=5, seed=0, workers=1
    )
    assert set(words) == set(text.Vocabulary.build(sentences, min_count=5).words)
    assert vectors.shape == (len(words), 10) and seconds > 0


def test_project_on_factor_directions():
    rng = np.random.default_rng(6)
    d = rng.normal(size=(2, 5))
    coords = emb.project(np.vstack([d, rng.normal(size=(3, 5))]), d)
    np.testing.assert_allclose(coords[0], [np.linalg.norm(d[0]), 0], atol=1e-12)
    second = d[1] - (d[1] @ d[0]) / (d[0] @ d[0]) * d[0]  # Gram-Schmidt by hand
    np.testing.assert_allclose(coords[1, 1], np.linalg.norm(second), rtol=1e-12)
    words = list(emb.DOCUMENT_TABLE)
    table = np.asarray(list(emb.DOCUMENT_TABLE.values()), float)
    gender = emb.direction(words, table, [("man", "woman"), ("king", "queen")])
    np.testing.assert_allclose(gender, [1, 0, 0])
