"""HR@K and NDCG@K against a literal per-user computation; the classic recommenders against
brute force and scikit-learn; the losses and the training task."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
from sklearn.metrics.pairwise import cosine_similarity

from lexicon import recsys
from lexicon.data import movielens


def literal_metrics(scores, k):
    """Per user, in plain Python: the held-out item's rank under every tie order, averaged."""
    hrs, ndcgs = [], []
    for row in scores.tolist():
        target, others = row[0], row[1:]
        above = sum(1 for s in others if s > target)
        ties = sum(1 for s in others if s == target)
        hr = ndcg = 0.0
        for t in range(ties + 1):  # the held-out item lands t places into its tie group
            rank = above + t
            if rank < k:
                hr += 1.0
                ndcg += 1.0 / math.log2(rank + 2)
        hrs.append(hr / (ties + 1))
        ndcgs.append(ndcg / (ties + 1))
    return np.array(hrs), np.array(ndcgs)


def test_metrics_equal_a_literal_per_user_computation(x64):
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(200, 100))
    scores[:50] = np.round(scores[:50])  # many ties
    scores[50:60] = 1.0  # every candidate tied: chance, K / 100
    for k in (1, 5, 10, 100):
        ours = jax.jit(recsys.ranking_metrics, static_argnums=1)(jnp.asarray(scores), k)
        hr, ndcg = literal_metrics(scores, k)
        np.testing.assert_allclose(ours["hr"], hr, rtol=1e-12)
        np.testing.assert_allclose(ours["ndcg"], ndcg, rtol=1e-12)
    np.testing.assert_allclose(recsys.ranking_metrics(scores[50:60], 10)["hr"], 0.1)
    # Without ties: the usual definition, hit iff fewer than k candidates beat the item.
    top = np.array([[5.0, 1, 2, 3], [0.0, 1, 2, 3], [2.5, 1, 2, 3]])
    out = recsys.ranking_metrics(top, 2)
    np.testing.assert_allclose(out["hr"], [1, 0, 1])
    np.testing.assert_allclose(out["ndcg"], [1, 0, 1 / math.log2(3)], rtol=1e-6)


def small_split():
    data = movielens.synthetic(num_users=60, num_items=150, mean_items=25, seed=2)
    return data, movielens.leave_one_out(data, seed=1)


def test_classic_recommenders_against_brute_force():
    data, split = small_split()
    train, cand = split.train_matrix(), split.candidates
    popular = recsys.most_popular(train, cand)
    np.testing.assert_array_equal(popular, train.sum(0)[cand])

    item_sim = cosine_similarity(train.T.astype(np.float64))
    np.fill_diagonal(item_sim, 0)
    knn = recsys.item_knn(train, cand)
    user_sim = cosine_similarity(train.astype(np.float64))
    users = recsys.user_knn(train, cand, neighbors=5)
    for u in (0, 17, 59):
        liked = np.flatnonzero(train[u])
        for c in range(0, 100, 9):
            i = cand[u, c]
            np.testing.assert_allclose(knn[u, c], item_sim[liked, i].sum(), rtol=1e-9)
    checked = 0
    for u in range(60):
        others = np.delete(np.arange(60), u)
        ordered = others[np.argsort(-user_sim[u, others], kind="stable")]
        if user_sim[u, ordered[4]] == user_sim[u, ordered[5]]:
            continue  # a tie at the 5th neighbour: either user is a valid neighbour
        nearest = ordered[:5]
        expected = user_sim[u, nearest] @ train[nearest][:, cand[u]]
        np.testing.assert_allclose(users[u], expected, rtol=1e-6)
        checked += 1
    assert checked >= 30
    features = data.item_features.astype(np.float64)
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    assert np.any(norms == 0)  # an item with no genre has no direction and scores 0
    profile = train @ np.divide(features, norms, out=np.zeros_like(features), where=norms > 0)
    content = cosine_similarity(profile, features)
    scores = recsys.content_based(train, data.item_features, cand)
    np.testing.assert_allclose(scores, np.take_along_axis(content, cand, 1), rtol=1e-6, atol=1e-12)
    assert recsys.summary(popular)["hr"] > 0.2  # the popularity skew shows


def test_losses_match_their_formulas(x64):
    rng = np.random.default_rng(3)
    pos, neg = rng.normal(size=6), rng.normal(size=(6, 4))

    def log_sigmoid(z):
        return -np.log1p(np.exp(-z))

    bce = -(log_sigmoid(pos).sum() + log_sigmoid(-neg).sum()) / 30
    np.testing.assert_allclose(recsys.pointwise_loss(jnp.asarray(pos), jnp.asarray(neg)), bce)
    bpr = -np.mean(log_sigmoid(pos[:, None] - neg))
    np.testing.assert_allclose(recsys.bpr_loss(jnp.asarray(pos), jnp.asarray(neg)), bpr)


def test_training_step_draws_fresh_negatives_and_learns():
    from lexicon.nn import ncf

    _, split = small_split()
    model = ncf.GMF(split.num_users, split.num_items, 4)
    task = recsys.task(model, split, optax.adam(0.05), negatives=3)
    step = jax.jit(task.make_step(None))
    state = task.init(jax.random.key(0))
    batch = jax.tree.map(jnp.asarray, recsys.train_data(split))
    first, metrics = step(state, batch, jax.random.key(1))
    again, _ = step(state, batch, jax.random.key(1))
    other, _ = step(state, batch, jax.random.key(2))
    leaves = jax.tree.leaves
    assert all(np.array_equal(a, b) for a, b in zip(leaves(first.params), leaves(again.params)))
    assert not all(np.array_equal(a, b) for a, b in zip(leaves(first.params), leaves(other.params)))
    np.testing.assert_allclose(metrics["loss"], math.log(2), atol=1e-3)  # logits start near 0
    for i in range(30):
        state, metrics = step(state, batch, jax.random.key(i))
    assert metrics["loss"] < 0.5
    evaluated = task.evaluate(state, jax.tree.map(jnp.asarray, split.test_split()))
    assert set(evaluated) == {"hr", "ndcg"} and 0 <= evaluated["ndcg"] <= evaluated["hr"] <= 1
