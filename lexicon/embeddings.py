"""Using word vectors: cosine similarity, nearest neighbours, analogies by 3CosAdd, the
analogy and word-similarity benchmarks, gensim's Word2Vec as the reference, and item2vec.

Document 003 (SPEC §10): cos(A, B) = A.B / (|A| |B|), and analogies such as
king - man + woman = queen. An analogy a : b :: c : ? is answered by 3CosAdd [add]
(Mikolov et al. 2013c, "Linguistic regularities"; the name is Levy & Goldberg 2014's):
    d* = argmax_{d not in {a, b, c}} cos(d, b - a + c)   over unit vectors,
the rule of word2vec's compute-accuracy and of gensim. The question file format is
Mikolov's questions-words.txt: ``: section`` lines, then ``a b c d`` lines. A question with
a word outside the vocabulary is counted as skipped, per section and in total, and the
accuracy is over the questions answered; the skips are always reported beside it.
"""

from __future__ import annotations

import dataclasses
import time

import jax.numpy as jnp
import numpy as np

from lexicon.data.text import gensim_test_data

# The hand-made 3-D embedding of document 003's nine words (SPEC §10): the axes are
# gender (woman = 1), age (young = 1) and royalty (royal = 1).
DOCUMENT_TABLE = {
    "man": (0, 0, 0),
    "woman": (1, 0, 0),
    "boy": (0, 1, 0),
    "girl": (1, 1, 0),
    "prince": (0, 1, 1),
    "princess": (1, 1, 1),
    "queen": (1, 0, 1),
    "king": (0, 0, 1),
    "monarch": (0.5, 0.5, 1),
}


def unit(vectors, eps: float = 1e-12):
    """Rows scaled to unit length (a zero row stays zero)."""
    vectors = np.asarray(vectors, np.float64)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, eps)


def cosine_similarity(a, b) -> np.ndarray:
    """cos(A, B) = A.B / (|A| |B|) for every row of a against every row of b."""
    return unit(np.atleast_2d(a)) @ unit(np.atleast_2d(b)).T


def nearest(words, vectors, query, k: int = 5, exclude=()) -> list[tuple[str, float]]:
    """The k words whose vectors are most cosine-similar to ``query`` (a word or a vector),
    leaving out the query word itself and ``exclude``."""
    index = {w: i for i, w in enumerate(words)}
    skip = set(exclude)
    if isinstance(query, str):
        skip.add(query)
        query = np.asarray(vectors)[index[query]]
    scores = cosine_similarity(query, vectors)[0]
    order = np.argsort(-scores, kind="stable")
    return [(words[i], float(scores[i])) for i in order if words[i] not in skip][:k]


def analogy(words, vectors, a: str, b: str, c: str, k: int = 1) -> list[tuple[str, float]]:
    """a : b :: c : ? by 3CosAdd: the k words d (not a, b or c) with the largest
    cos(d, b - a + c), the three given words' vectors taken at unit length."""
    index = {w: i for i, w in enumerate(words)}
    u = unit(vectors)
    target = u[index[b]] - u[index[a]] + u[index[c]]
    return nearest(words, vectors, target, k, exclude=(a, b, c))


# --- the analogy benchmark -----------------------------------------------------------------------


def read_questions(text: str) -> list[tuple[str, str, str, str, str]]:
    """(section, a, b, c, d) for each question of a ``: section`` / ``a b c d`` file, lower
    case (as gensim's case_insensitive evaluation)."""
    section, out = None, []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        if line.startswith(":"):
            section = line[1:].strip()
            continue
        parts = line.lower().split()
        if section is None or len(parts) != 4:
            raise ValueError(f"line {number} is not a question under a ': section' line: {line}")
        out.append((section, *parts))
    return out


def questions_words() -> list[tuple[str, str, str, str, str]]:
    """Mikolov's 19,544 analogy questions in 14 sections (gensim's questions-words.txt)."""
    return read_questions((gensim_test_data() / "questions-words.txt").read_text())


@dataclasses.dataclass(frozen=True)
class Analogies:
    """Per section: correct, answered and skipped (a word out of the vocabulary) questions."""

    sections: dict[str, tuple[int, int, int]]

    @property
    def correct(self) -> int:
        return sum(c for c, _, _ in self.sections.values())

    @property
    def answered(self) -> int:
        return sum(a for _, a, _ in self.sections.values())

    @property
    def skipped(self) -> int:
        return sum(s for _, _, s in self.sections.values())

    @property
    def accuracy(self) -> float:
        """Correct over answered (NaN when nothing could be answered)."""
        return self.correct / self.answered if self.answered else float("nan")

    def section_accuracy(self, section: str) -> float:
        correct, answered, _ = self.sections[section]
        return correct / answered if answered else float("nan")


def evaluate_analogies(words, vectors, questions, chunk: int = 1024) -> Analogies:
    """Answers every question whose four words are in ``words`` by 3CosAdd and counts, per
    section, the correct answers, the questions answered and those skipped."""
    index = {w: i for i, w in enumerate(words)}
    u = unit(vectors).astype(np.float32)
    sections: dict[str, list[int]] = {}
    answerable = []
    for section, *quad in questions:
        tally = sections.setdefault(section, [0, 0, 0])
        if all(w in index for w in quad):
            tally[1] += 1
            answerable.append((section, *(index[w] for w in quad)))
        else:
            tally[2] += 1
    for start in range(0, len(answerable), chunk):
        part = answerable[start : start + chunk]
        ids = np.asarray([q[1:] for q in part], np.int64)
        scores = (u[ids[:, 1]] - u[ids[:, 0]] + u[ids[:, 2]]) @ u.T
        rows = np.arange(len(part))[:, None]
        scores[rows, ids[:, :3]] = -np.inf
        guesses = scores.argmax(axis=1)
        for (section, *_), guess, answer in zip(part, guesses, ids[:, 3]):
            sections[section][0] += int(guess == answer)
    return Analogies({s: tuple(t) for s, t in sections.items()})


def question_ids(words, questions) -> dict[str, np.ndarray]:
    """The answerable questions as id arrays {"a", "b", "c", "d"} for ``analogy_accuracy``."""
    index = {w: i for i, w in enumerate(words)}
    ids = np.asarray(
        [[index[w] for w in q[1:]] for q in questions if all(w in index for w in q[1:])], np.int32
    ).reshape(-1, 4)
    return {k: ids[:, i] for i, k in enumerate("abcd")}


def analogy_accuracy(vectors, split) -> jnp.ndarray:
    """3CosAdd accuracy on device (jnp) over the questions of ``question_ids``: a
    ``Task.evaluate`` metric that follows training."""
    u = vectors / jnp.maximum(jnp.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    a, b, c = (split[k] for k in "abc")
    scores = (u[b] - u[a] + u[c]) @ u.T
    rows = jnp.arange(a.shape[0])
    for query in (a, b, c):
        scores = scores.at[rows, query].set(-jnp.inf)
    return jnp.mean(jnp.argmax(scores, axis=1) == split["d"])


# --- word similarity -----------------------------------------------------------------------------


def read_word_pairs(name: str) -> list[tuple[str, str, float]]:
    """(word, word, human score) from gensim's ``wordsim353.tsv`` or ``simlex999.txt``."""
    out = []
    for line in (gensim_test_data() / name).read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            a, b, score = line.split("\t")[:3]
            out.append((a.lower(), b.lower(), float(score)))
    return out


WORD_SIMILARITY = {"wordsim353": "wordsim353.tsv", "simlex999": "simlex999.txt"}


def word_similarity(words, vectors, pairs) -> tuple[float, int, int]:
    """Spearman's rho between cos(w1, w2) and the human scores over the pairs with both words
    in the vocabulary; returns (rho, pairs used, pairs skipped)."""
    from scipy import stats

    index = {w: i for i, w in enumerate(words)}
    used = [(index[a], index[b], s) for a, b, s in pairs if a in index and b in index]
    if len(used) < 3:
        return float("nan"), len(used), len(pairs) - len(used)
    u = unit(vectors)
    cos = np.asarray([u[i] @ u[j] for i, j, _ in used])
    rho = stats.spearmanr(cos, [s for *_, s in used]).statistic
    return float(rho), len(used), len(pairs) - len(used)


# --- gensim, the reference -----------------------------------------------------------------------


def gensim_model(settings, *, min_count: int, seed: int, workers: int):
    """An untrained gensim Word2Vec with the settings of ``lexicon.nn.word2vec.Settings``
    (negative sampling or, for objective=softmax, hierarchical softmax: gensim has no full
    softmax)."""
    from gensim.models import Word2Vec

    softmax = settings.objective == "softmax"
    return Word2Vec(
        vector_size=settings.dim,
        window=settings.window,
        min_count=min_count,
        sg=int(settings.model == "skipgram"),
        hs=int(softmax),
        negative=0 if softmax else settings.negative,
        ns_exponent=settings.power,
        sample=settings.sample,
        alpha=settings.alpha,
        min_alpha=settings.min_alpha,
        shrink_windows=settings.shrink_windows,
        seed=seed,
        workers=workers,
    )


def gensim_word2vec(sentences, settings, *, min_count: int, seed: int, workers: int):
    """gensim's Word2Vec trained on ``sentences`` (``gensim_model``); returns (words,
    vectors, seconds of training, the vocabulary scan left out)."""
    model = gensim_model(settings, min_count=min_count, seed=seed, workers=workers)
    model.build_vocab(sentences)
    start = time.perf_counter()
    model.train(sentences, total_examples=len(sentences), epochs=settings.epochs)
    seconds = time.perf_counter() - start
    return list(model.wv.index_to_key), np.asarray(model.wv.vectors), seconds


# --- item2vec ------------------------------------------------------------------------------------


def baskets(
    seed: int, count: int = 5000, categories: int = 6, items: int = 8, size=(3, 6), noise=0.1
):
    """Synthetic shopping baskets: each basket holds 3-5 items of one category (item names
    ``c<category>_i<item>``), and each item is swapped for an item of any category with
    probability ``noise``. Returns (baskets, category of each item name)."""
    rng = np.random.default_rng(seed)
    names = [[f"c{c}_i{i}" for i in range(items)] for c in range(categories)]
    out = []
    for _ in range(count):
        category = rng.integers(categories)
        length = rng.integers(size[0], size[1])
        basket = []
        for _ in range(length):
            c = rng.integers(categories) if rng.random() < noise else category
            basket.append(names[c][rng.integers(items)])
        out.append(basket)
    return out, {n: c for c, group in enumerate(names) for n in group}


def neighbour_precision(words, vectors, category: dict, k: int = 5) -> float:
    """The mean share of each item's k nearest items (cosine) that are of its category."""
    hits = [
        np.mean([category[n] == category[w] for n, _ in nearest(words, vectors, w, k)])
        for w in words
    ]
    return float(np.mean(hits))


def pca(vectors, components: int = 2) -> np.ndarray:
    """The rows of ``vectors`` projected on their top principal components (centred SVD)."""
    centred = np.asarray(vectors, np.float64) - np.mean(vectors, axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[:components].T


def direction(words, vectors, pairs) -> np.ndarray:
    """The mean offset v_b - v_a over the word pairs (a, b): a factor's direction, e.g.
    gender from (man, woman), (king, queen), ..."""
    index = {w: i for i, w in enumerate(words)}
    vectors = np.asarray(vectors, np.float64)
    return np.mean([vectors[index[b]] - vectors[index[a]] for a, b in pairs], axis=0)


def neighbours_text(words, vectors, word: str, k: int = 5, scores: bool = True) -> str:
    """'w1 0.93, w2 0.88, ...': the k nearest neighbours of ``word`` as a table cell."""
    found = nearest(words, vectors, word, k)
    return ", ".join(f"{n} {s:.2f}" if scores else n for n, s in found)


def benchmark(words, vectors, questions, pairs: dict) -> dict:
    """The figures of one set of word vectors: analogy accuracy (overall and per section,
    with the questions answered and skipped), Spearman's rho on each word-pair set of
    ``pairs`` (name -> pairs), and the 3CosAdd answer to man : woman :: king : ?."""
    result = evaluate_analogies(words, vectors, questions)
    out = {
        "analogy": result.accuracy,
        "answered": result.answered,
        "skipped": result.skipped,
        "sections": {s: result.section_accuracy(s) for s in result.sections},
    }
    for name, data in pairs.items():
        out[name], out[f"{name}_pairs"], _ = word_similarity(words, vectors, data)
    known = all(w in words for w in ("man", "woman", "king"))
    out["king_man_woman"] = analogy(words, vectors, "man", "woman", "king")[0][0] if known else "-"
    return out


def table_against_onehot(table: dict = DOCUMENT_TABLE) -> dict:
    """king - man + woman in a table of vectors and in the one-hot codes of its words: the
    largest component of king - man + woman - queen in the table, the table's 3CosAdd answer,
    and how many candidates tie for the one-hot answer (every one: all cosines are 0)."""
    words = list(table)
    dense = np.asarray([table[w] for w in words], np.float64)
    onehot = np.eye(len(words))
    i = {w: k for k, w in enumerate(words)}
    error = np.abs(dense[i["king"]] - dense[i["man"]] + dense[i["woman"]] - dense[i["queen"]])
    target = onehot[i["king"]] - onehot[i["man"]] + onehot[i["woman"]]
    scores = cosine_similarity(target, onehot)[0]
    candidates = [i[w] for w in words if w not in ("king", "man", "woman")]
    return {
        "words": words,
        "dense": dense,
        "onehot": onehot,
        "error": float(error.max()),
        "answer": analogy(words, dense, "man", "woman", "king")[0][0],
        "tied": int(np.sum(np.isclose(scores[candidates], scores[candidates].max()))),
        "candidates": len(candidates),
        "onehot_score": float(scores[i["queen"]]),
    }


def project(vectors, directions) -> np.ndarray:
    """Coordinates of the rows of ``vectors`` in the orthonormal basis that Gram-Schmidt makes
    of ``directions`` (k, dim), in their order: the first axis is the first direction."""
    basis, _ = np.linalg.qr(np.asarray(directions, np.float64).T)
    signs = np.sign(np.sum(basis * np.asarray(directions, np.float64).T, axis=0))
    return np.asarray(vectors, np.float64) @ (basis * signs)
