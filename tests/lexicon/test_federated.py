"""FedAvg against literal computations: partitions, means, the client update, the round."""

import json
import os
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from support import run_python

from lexicon import federated
from lexicon.nn.layers import MLP

HERE = pathlib.Path(__file__).parent
LABELS = np.repeat(np.arange(10), 30)  # 300 examples, 30 per class


@pytest.mark.parametrize("kind", federated.PARTITIONS)
def test_every_example_goes_to_exactly_one_client(kind):
    parts = federated.partition(LABELS, 20, kind, seed=3)
    assert len(parts) == 20
    np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(len(LABELS)))
    again = federated.partition(LABELS, 20, kind, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again))


def test_pathological_shards_give_each_client_at_most_two_labels():
    parts = federated.partition(LABELS, 15, "shards", seed=0)
    stats = federated.client_statistics(LABELS, parts, 10)
    assert stats["labels_per_client"].max() <= 2
    assert (stats["labels_per_client"] == 2).any()  # a shard boundary falls inside some client
    assert np.all(stats["sizes"] == 20)


def test_shards_keep_one_label_each_when_classes_differ_in_size():
    labels = np.random.default_rng(4).choice(10, 997, p=np.linspace(1, 3, 10) / 20)
    parts = federated.partition(labels, 100, "shards", seed=4)
    stats = federated.client_statistics(labels, parts, 10)
    assert stats["labels_per_client"].max() <= 2
    assert stats["sizes"].sum() == 997


def test_dirichlet_skew_grows_as_alpha_falls():
    skew = {}
    for alpha in (0.1, 100.0):
        parts = federated.partition(LABELS, 10, "dirichlet", seed=1, alpha=alpha)
        hist = federated.client_statistics(LABELS, parts, 10)["histogram"]
        share = hist / np.maximum(hist.sum(1, keepdims=True), 1)
        skew[alpha] = share.max(axis=1).mean()  # mean share of a client's top label
    assert skew[0.1] > 0.5 > 0.2 > skew[100.0]


def test_iid_lognormal_sizes_are_unbalanced():
    parts = federated.partition(LABELS, 10, "iid", seed=0, sizes="lognormal")
    stats = federated.client_statistics(LABELS, parts, 10)
    assert stats["size_cv"] > 0.3 and stats["sizes"].sum() == len(LABELS)


def test_plain_and_weighted_means_equal_literal_sums():
    rng = np.random.default_rng(0)
    thetas = {"w": rng.normal(size=(4, 3, 2)), "b": rng.normal(size=(4, 2))}
    counts = np.array([1, 5, 2, 12])
    plain = federated.aggregate(jax.tree.map(jnp.asarray, thetas), jnp.asarray(counts), "mean")
    weighted = federated.aggregate(
        jax.tree.map(jnp.asarray, thetas), jnp.asarray(counts), "weighted"
    )
    for name, theta in thetas.items():
        literal_plain = sum(theta[k] for k in range(4)) / 4
        literal_weighted = sum(counts[k] / counts.sum() * theta[k] for k in range(4))
        np.testing.assert_allclose(plain[name], literal_plain, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(weighted[name], literal_weighted, rtol=1e-6, atol=1e-7)


def _setup(num_clients=4, n=40, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype(np.float32)
    y = rng.integers(0, 3, n).astype(np.int32)
    model = MLP((5, 3), activation="tanh")
    params = model.init(jax.random.key(seed), jnp.zeros((1, 6)))["params"]
    return model, params, x, y


def _loss(model):
    def loss_fn(params, x, y, mask):
        logits = model.apply({"params": params}, x)
        losses = optax.softmax_cross_entropy_with_integer_labels(logits, y)
        return jnp.sum(losses * mask) / jnp.maximum(jnp.sum(mask), 1.0)

    return loss_fn


def test_one_client_one_full_batch_epoch_is_one_gradient_step():
    model, params, x, y = _setup()
    clients = federated.client_data(x, y, [np.arange(len(x))])
    task = federated.fedavg_task(
        model, x[:1], num_clients=1, fraction=1.0, epochs=1, batch_size=0, lr=0.3
    )
    state = federated.ServerState(jnp.zeros((), jnp.int32), params, params)
    new, _ = task.make_step(None)(state, clients.as_dict(), jax.random.key(5))

    def full_loss(p):
        logits = model.apply({"params": p}, x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    grads = jax.grad(full_loss)(params)
    expected = jax.tree.map(lambda w, g: w - 0.3 * g, params, grads)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), new.params, expected
    )


def test_local_sgd_is_minibatch_sgd_over_a_shuffle_and_skips_padding():
    """Two epochs, batch 4 over a client of 10 real examples padded to 16: a literal loop over
    the same shuffles, with the short last minibatch and no step on padding."""
    model, params, x, y = _setup(n=16)
    loss_fn = _loss(model)
    key = jax.random.key(9)
    got, _ = federated.local_sgd(
        loss_fn, params, x, y, jnp.int32(10), key, epochs=2, batch_size=4, lr=0.1
    )
    w = params
    grad = jax.jit(jax.grad(loss_fn))
    for epoch_key in jax.random.split(key, 2):
        scores = np.where(np.arange(16) < 10, np.asarray(jax.random.uniform(epoch_key, (16,))), 2)
        order = np.argsort(scores, kind="stable")[:10]
        for start in range(0, 10, 4):
            idx = order[start : start + 4]
            g = grad(w, x[idx], y[idx], jnp.ones(len(idx)))
            w = jax.tree.map(lambda a, b: a - 0.1 * b, w, g)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), got, w)


def _clients_round(model, params, clients, keys):
    fn = jax.vmap(
        lambda x, y, c, k: federated.local_sgd(
            _loss(model), params, x, y, c, k, epochs=2, batch_size=5, lr=0.2
        )[0]
    )
    return fn(jnp.asarray(clients.x), jnp.asarray(clients.y), jnp.asarray(clients.count), keys)


def test_vmapped_clients_equal_a_loop_and_do_not_leak():
    model, params, x, y = _setup(n=60)
    parts = federated.partition(y, 4, "iid", seed=2, sizes="lognormal")
    clients = federated.client_data(x, y, parts)
    keys = jax.random.split(jax.random.key(1), 4)
    together = _clients_round(model, params, clients, keys)
    for k in range(4):
        alone, _ = federated.local_sgd(
            _loss(model),
            params,
            clients.x[k],
            clients.y[k],
            clients.count[k],
            keys[k],
            epochs=2,
            batch_size=5,
            lr=0.2,
        )
        jax.tree.map(
            lambda a, b, k=k: np.testing.assert_allclose(a[k], b, rtol=1e-5, atol=1e-6),
            together,
            alone,
        )
    changed = clients._replace(x=clients.x.copy(), y=clients.y.copy())
    changed.x[3] = np.random.default_rng(7).normal(size=changed.x[3].shape)
    changed.y[3] = (changed.y[3] + 1) % 3
    after = _clients_round(model, params, changed, keys)
    for a, b in zip(jax.tree.leaves(together), jax.tree.leaves(after)):
        np.testing.assert_array_equal(np.asarray(a)[:3], np.asarray(b)[:3])  # bitwise
        assert not np.array_equal(np.asarray(a)[3], np.asarray(b)[3])


def test_communication_counts_the_model_both_ways():
    _, params, _, _ = _setup()
    size = (6 * 5 + 5 + 5 * 3 + 3) * 4
    assert federated.num_bytes(params) == size
    assert federated.communication(federated.num_bytes(params), 10, 7) == {
        "down_per_round": 10 * size,
        "up_per_round": 10 * size,
        "total": 2 * 10 * size * 7,
    }
    assert federated.clients_per_round(0.0, 100) == 1
    assert federated.clients_per_round(0.1, 100) == 10


def _rounds():
    """Three weighted FedAvg rounds of 8 of 16 non-IID clients; the final parameters."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(160, 6)).astype(np.float32)
    y = rng.integers(0, 3, 160).astype(np.int32)
    clients = federated.client_data(x, y, federated.partition(y, 16, "shards", seed=0))
    task = federated.fedavg_task(
        MLP((5, 3), activation="tanh"),
        x[:1],
        num_clients=16,
        fraction=0.5,
        epochs=2,
        batch_size=4,
        lr=0.2,
        rule="weighted",
    )
    state = task.init(jax.random.key(0))
    step = jax.jit(task.make_step(None))
    for r in range(3):
        state, _ = step(state, clients.as_dict(), jax.random.key(r))
    return [np.asarray(p).tolist() for p in jax.tree.leaves(state.params)]


EIGHT = """
import json, jax
from test_federated import _rounds
print(json.dumps({"devices": jax.device_count(), "params": _rounds()}))
"""


def test_eight_host_devices_give_the_same_rounds_as_one():
    """The round's 8 clients spread over 8 devices: the same model up to float rounding."""
    done = run_python(
        ["-c", EIGHT],
        devices=8,
        env={"PYTHONPATH": os.pathsep.join([str(HERE), str(HERE.parent / "helpers")])},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["devices"] == 8
    for a, b in zip(_rounds(), out["params"]):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def test_rounds_to_a_target_is_the_first_round_that_reaches_it():
    rounds = np.array([2, 4, 6])
    accuracy = np.array([[0.5, 0.9, 0.95], [0.2, 0.3, 0.4], [0.91, 0.8, 0.99]])
    found = federated.rounds_to(rounds, accuracy, 0.9)
    expected = []
    for row in accuracy:  # a literal scan
        hits = [r for r, a in zip(rounds, row) if a >= 0.9]
        expected.append(hits[0] if hits else np.inf)
    np.testing.assert_array_equal(found, expected)
    np.testing.assert_array_equal(federated.censored(found, 6), [4, 7, 2])
