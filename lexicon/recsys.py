"""Recommender systems (SPEC.md section 12, document 004): ranking metrics, the classic
recommenders, and the training task of neural collaborative filtering.

Evaluation follows He et al. (WWW 2017) [add]: each user's held-out item is ranked among 99
sampled items the user never interacted with, and
    HR@K   = [rank < K],
    NDCG@K = [rank < K] / log2(rank + 2),
with rank 0 for the top of the list, averaged over users. Ties are broken uniformly at
random, in expectation: with g candidates scoring above the held-out item and e scoring the
same, rank = g + T, T uniform on {0, ..., e}, and the metrics are their expectations over T.
So a recommender that gives every item the same score earns the chance level, K / 100,
rather than a perfect hit (ties counted for the item) or none (ties counted against it).

The classic recommenders score the candidates of every user from the binary training
matrix R (users x items):
- most popular: the item's number of training interactions;
- item-based collaborative filtering: score(u, i) = sum_{j in I(u)} cos(r_.i, r_.j), the
  cosine between item columns of R, summed over the items u interacted with;
- user-based collaborative filtering, "users of similar taste" (document 004):
  score(u, i) = sum_{v in N_k(u)} cos(r_u., r_v.) r_vi over the k most similar users;
- content-based (document 004): the user's profile is the mean of the unit feature vectors
  (genres, decade) of the items u interacted with; an item scores its cosine to the profile,
  i.e. items near what the user liked, at a small cosine distance, come first;
- matrix factorization trained with BPR (Rendle et al., UAI 2009) [add]:
  loss = -log sigma(x_ui - x_uj) for an interaction (u, i) and a sampled negative j.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from lexicon import losses
from lexicon.data import movielens
from lexicon.train import Task, TrainState, gradient_step

BASELINES = ("most_popular", "item_knn", "user_knn", "content")
LOSSES = ("bce", "bpr")


# --- metrics ----------------------------------------------------------------------------------


def ranking_metrics(scores, k: int = 10) -> dict[str, jax.Array]:
    """Per user: HR@k and NDCG@k of the held-out item (column 0 of ``scores`` (users, C)) among
    the other C - 1 candidates, ties broken at random in expectation (see the module text)."""
    scores = jnp.asarray(scores)
    target, others = scores[:, :1], scores[:, 1:]
    above = jnp.sum(others > target, axis=1)
    ties = jnp.sum(others == target, axis=1)
    t = jnp.arange(scores.shape[1])
    rank = above[:, None] + t[None, :]
    hit = (t[None, :] <= ties[:, None]) & (rank < k)
    count = (ties + 1).astype(scores.dtype)
    hr = jnp.sum(hit, axis=1) / count
    ndcg = jnp.sum(jnp.where(hit, 1.0 / jnp.log2(rank + 2.0), 0.0), axis=1) / count
    return {"hr": hr, "ndcg": ndcg.astype(scores.dtype)}


def summary(scores, k: int = 10) -> dict[str, float]:
    """HR@k and NDCG@k averaged over users, as floats."""
    return {name: float(jnp.mean(v)) for name, v in ranking_metrics(scores, k).items()}


# --- classic recommenders ---------------------------------------------------------------------


def _unit_rows(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def gather_scores(left: np.ndarray, right: np.ndarray, candidates, chunk: int = 128):
    """score[u, c] = sum_j left[u, j] right[j, candidates[u, c]], without forming left @ right
    for every item (users x candidates x inner products, in chunks of users)."""
    candidates = np.asarray(candidates)
    right_t = np.ascontiguousarray(right.T)
    out = np.empty(candidates.shape, np.float64)
    for start in range(0, len(candidates), chunk):
        rows = slice(start, start + chunk)
        picked = right_t[candidates[rows]]  # (chunk, C, inner)
        out[rows] = np.matmul(picked, left[rows][:, :, None])[..., 0]
    return out


def most_popular(train: np.ndarray, candidates) -> np.ndarray:
    """Candidate scores: the items' training interaction counts."""
    return train.sum(axis=0)[np.asarray(candidates)].astype(np.float64)


def item_knn(train: np.ndarray, candidates) -> np.ndarray:
    """Item-based CF: sum of cosine similarities to the user's items (no item is its own
    neighbour)."""
    unit = _unit_rows(train.T.astype(np.float64))
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, 0.0)
    return gather_scores(train.astype(np.float64), similarity, candidates)


def user_knn(train: np.ndarray, candidates, neighbors: int = 50) -> np.ndarray:
    """User-based CF: similarity-weighted votes of the ``neighbors`` most similar users."""
    unit = _unit_rows(train.astype(np.float64))
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)
    k = min(neighbors, len(train) - 1)
    nearest = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
    weights = np.zeros_like(similarity)
    rows = np.arange(len(train))[:, None]
    weights[rows, nearest] = similarity[rows, nearest]
    return gather_scores(weights, train.astype(np.float64), candidates)


def content_based(train: np.ndarray, features: np.ndarray, candidates) -> np.ndarray:
    """Content-based: cosine between each candidate's features and the user's profile, the
    mean unit feature vector of the items the user interacted with."""
    unit = _unit_rows(features.astype(np.float64))
    profile = _unit_rows(train.astype(np.float64) @ unit)
    candidates = np.asarray(candidates)
    return np.einsum("uf,ucf->uc", profile, unit[candidates])


def baseline_scores(name: str, split: movielens.LeaveOneOut, features, neighbors: int = 50):
    """The candidate scores (users, 100) of the classic recommender ``name``."""
    train, candidates = split.train_matrix(), split.candidates
    if name == "most_popular":
        return most_popular(train, candidates)
    if name == "item_knn":
        return item_knn(train, candidates)
    if name == "user_knn":
        return user_knn(train, candidates, neighbors)
    if name == "content":
        return content_based(train, features, candidates)
    raise ValueError(f"unknown baseline {name!r}; choose one of {', '.join(BASELINES)}")


# --- training through lexicon.train -------------------------------------------------------------


def pointwise_loss(positive, negative) -> jax.Array:
    """The NCF log loss over all instances: positives labelled 1, sampled negatives 0
    (He et al. eq. 7), averaged over the b (1 + n) instances."""
    logits = jnp.concatenate([positive[:, None], negative], axis=1)
    labels = jnp.zeros_like(logits).at[:, 0].set(1.0)
    return losses.binary_cross_entropy_with_logits(logits, labels)


def bpr_loss(positive, negative) -> jax.Array:
    """BPR: -log sigma(x_ui - x_uj), averaged over the (positive, negative) pairs."""
    return -jnp.mean(jax.nn.log_sigmoid(positive[:, None] - negative))


def scores_of(model, params, user, items) -> jax.Array:
    """Logits of ``model`` for users (b,) and items (b, c) -> (b, c)."""
    users = jnp.broadcast_to(user[:, None], items.shape)
    return model.apply({"params": params}, users.reshape(-1), items.reshape(-1)).reshape(
        items.shape
    )


def task(
    model,
    split: movielens.LeaveOneOut,
    tx,
    *,
    negatives: int = 4,
    loss: str = "bce",
    k: int = 10,
) -> Task:
    """The training task of an implicit-feedback model for ``lexicon.train.fit``.

    The training data are the positive (user, item) pairs, shuffled and cut into minibatches
    by the core. Each step draws ``negatives`` items per positive on the device from its
    step key, uniformly among the items the user has no training interaction with: a step's
    key is fold_in(step stream, step count), so every epoch pairs each positive with fresh
    negatives, reproducibly (and identically after a resume). The evaluation split is
    ``split.test_split()``: every user's 100 candidates, ranked into HR@k and NDCG@k.
    """
    packed = jnp.asarray(split.positives)
    objective = {"bce": pointwise_loss, "bpr": bpr_loss}[loss]

    def init(key):
        params = model.init(key, jnp.zeros((1,), jnp.int32), jnp.zeros((1,), jnp.int32))
        return TrainState.create(apply_fn=model.apply, params=params["params"], tx=tx)

    def loss_fn(params, model_state, batch, key):
        user, item = batch["user"], batch["item"]
        negative = movielens.sample_negatives(key, packed, user, negatives, split.num_items)
        items = jnp.concatenate([item[:, None], negative], axis=1)
        logits = scores_of(model, params, user, items)
        return objective(logits[:, 0], logits[:, 1:]), ({}, model_state)

    def evaluate(state, test):
        metrics = ranking_metrics(scores_of(model, state.params, test["user"], test["items"]), k)
        return {name: jnp.mean(value) for name, value in metrics.items()}

    return Task(init=init, make_step=gradient_step(loss_fn), evaluate=evaluate)


def train_data(split: movielens.LeaveOneOut) -> dict[str, np.ndarray]:
    """The positive training pairs as the data of ``lexicon.train.fit``."""
    return {"user": split.train_user, "item": split.train_item}
