"""Federated averaging: clients as a vmap axis, one round as one step of lexicon.train.

Document 004's round: the server sends the model; each participant trains it on its own
data and sends the parameters back; the server averages them, by the arithmetic mean,
    theta <- (1/m) sum_k theta_k,
and the round repeats. The rest is McMahan et al., "Communication-Efficient Learning of Deep
Networks from Decentralized Data" (AISTATS 2017) [add]: a fraction C of the K clients takes
part in a round (at least one); each runs E local epochs of minibatch SGD with batch size B
(B = the whole client, E = 1 is FedSGD); the server's mean may be weighted by the clients'
data sizes, theta <- sum_k (n_k / n) theta_k. Server momentum (FedAvgM, Hsu et al. 2019
[add]) treats the averaged change as a gradient: v <- beta v + (theta - mean), theta <- theta - v.

Each client's data is its own slice of a padded (K, n_max, ...) array with a count per
client; a client's update reads its slice and nothing else. The round is a pure step
``step(state, clients, key)``: ``fit`` runs it with the clients as a full batch, so one
epoch is one round, and the seeds stay a vmap axis next to the client axis. On several
devices the clients of a round are spread over them (a sharding constraint on the client
axis), with the same result up to float rounding.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from lexicon.train.loop import Task
from lexicon.train.tasks import evaluate_in_chunks

PARTITIONS = ("iid", "shards", "dirichlet")
AGGREGATES = ("mean", "weighted")

# --- partitions of the training data over the clients ----------------------------------------


def partition(
    labels,
    num_clients: int,
    kind: str,
    *,
    seed: int,
    shards_per_client: int = 2,
    alpha: float = 0.5,
    sizes: str = "equal",
) -> list[np.ndarray]:
    """Indices of each client's examples.

    iid: a seeded shuffle cut into K parts (equal sizes, or ``sizes="lognormal"`` for
    unbalanced clients, sizes ~ LogNormal(0, 1) normalized to the data). shards: McMahan's
    pathological non-IID split: sort by label, cut into K * shards_per_client shards (of one
    label each, see ``label_shards``), deal each client ``shards_per_client`` of them at
    random (so at most that many labels).
    dirichlet: for each class, its examples go to the clients in proportions drawn from
    Dirichlet(alpha, ..., alpha) (label skew; small alpha, strong skew).
    """
    labels = np.asarray(labels)
    n = len(labels)
    rng = np.random.default_rng(seed)
    if kind == "iid":
        order = rng.permutation(n)
        if sizes == "equal":
            return [np.sort(p) for p in np.array_split(order, num_clients)]
        weights = rng.lognormal(0.0, 1.0, num_clients)
        counts = np.maximum(1, np.floor(weights / weights.sum() * n)).astype(int)
        counts[-1] = n - counts[:-1].sum()
        return [np.sort(p) for p in np.split(order, np.cumsum(counts)[:-1])]
    if kind == "shards":
        shards = label_shards(labels, num_clients * shards_per_client, rng)
        dealt = rng.permutation(len(shards)).reshape(num_clients, shards_per_client)
        return [np.sort(np.concatenate([shards[s] for s in row])) for row in dealt]
    if kind == "dirichlet":
        parts = [[] for _ in range(num_clients)]
        for c in np.unique(labels):
            members = rng.permutation(np.flatnonzero(labels == c))
            share = rng.dirichlet(np.full(num_clients, alpha))
            cuts = (np.cumsum(share)[:-1] * len(members)).astype(int)
            for k, piece in enumerate(np.split(members, cuts)):
                parts[k].append(piece)
        return [np.sort(np.concatenate(p)) for p in parts]
    raise ValueError(f"unknown partition {kind!r}; choose one of {', '.join(PARTITIONS)}")


def label_shards(labels, num_shards: int, rng) -> list[np.ndarray]:
    """Cuts the examples, sorted by label, into ``num_shards`` shards of one label each.

    McMahan et al. cut the sorted data into equal shards, so a shard may straddle two labels
    when class sizes are not multiples of the shard size; here each class is cut into a
    number of shards proportional to its size (largest remainders, at least one), so that
    two shards per client mean at most two labels per client.
    """
    classes, counts = np.unique(labels, return_counts=True)
    if num_shards < len(classes):
        raise ValueError(f"{num_shards} shards cannot keep {len(classes)} labels apart")
    quota = counts / counts.sum() * num_shards
    per_class = np.maximum(np.floor(quota).astype(int), 1)
    while per_class.sum() != num_shards:
        if per_class.sum() < num_shards:
            per_class[np.argmax(quota - per_class)] += 1
        else:
            spare = np.where(per_class > 1, quota - per_class, np.inf)
            per_class[np.argmin(spare)] -= 1
    shards = []
    for c, k in zip(classes, per_class):
        members = rng.permutation(np.flatnonzero(labels == c))
        shards.extend(np.array_split(members, k))
    return shards


class Clients(NamedTuple):
    """Every client's data in its own slice: x (K, n_max, ...), y (K, n_max), count (K,)."""

    x: np.ndarray
    y: np.ndarray
    count: np.ndarray

    def as_dict(self) -> dict:
        return {"x": self.x, "y": self.y, "count": self.count}


def client_data(x, y, parts) -> Clients:
    """Pads each client's examples to the largest client; ``count`` says how many are real."""
    n_max = max(len(p) for p in parts)
    xs = np.zeros((len(parts), n_max, *x.shape[1:]), x.dtype)
    ys = np.zeros((len(parts), n_max), y.dtype)
    for k, p in enumerate(parts):
        xs[k, : len(p)], ys[k, : len(p)] = x[p], y[p]
    return Clients(xs, ys, np.array([len(p) for p in parts], np.int32))


def client_statistics(labels, parts, num_classes: int) -> dict:
    """Per client: its size and its label histogram; and the share of clients per label count."""
    hist = np.stack([np.bincount(labels[p], minlength=num_classes) for p in parts])
    sizes = hist.sum(axis=1)
    return {
        "sizes": sizes,
        "histogram": hist,
        "labels_per_client": (hist > 0).sum(axis=1),
        "size_cv": float(sizes.std() / sizes.mean()),
    }


# --- one client, one round ----------------------------------------------------------------------


def local_sgd(loss_fn, params, x, y, count, key, *, epochs: int, batch_size: int, lr: float):
    """E epochs of minibatch SGD, w <- w - lr grad, on one client's first ``count`` examples.

    ``batch_size`` 0 is the whole client (one step per epoch). Each epoch is a fresh shuffle of
    the real examples; the last minibatch of an epoch may be short, and steps past the client's
    data (a small client padded to a large one) leave w unchanged. ``loss_fn(params, x, y,
    mask)`` is the masked mean loss. Returns (w, mean loss of the steps taken).
    """
    x, y = jnp.asarray(x), jnp.asarray(y)
    n_max = x.shape[0]
    b = batch_size or n_max
    steps = math.ceil(n_max / b)
    positions = jnp.arange(steps * b).reshape(steps, b)

    def one_epoch(carry, epoch_key):
        params, total, taken = carry
        # Real examples first, in random order; padding last.
        scores = jnp.where(jnp.arange(n_max) < count, jax.random.uniform(epoch_key, (n_max,)), 2.0)
        order = jnp.argsort(scores)
        order = jnp.concatenate([order, jnp.zeros(steps * b - n_max, order.dtype)])

        def one_step(carry, pos):
            params, total, taken = carry
            mask = (pos < count).astype(x.dtype)
            idx = order[pos]
            loss, grads = jax.value_and_grad(loss_fn)(params, x[idx], y[idx], mask)
            live = jnp.any(pos < count)
            new = jax.tree.map(lambda w, g: w - lr * g, params, grads)
            params = jax.tree.map(lambda n, o: jnp.where(live, n, o), new, params)
            return (params, total + jnp.where(live, loss, 0.0), taken + live), None

        (params, total, taken), _ = jax.lax.scan(one_step, (params, total, taken), positions)
        return (params, total, taken), None

    zero = jnp.zeros((), jnp.float32)
    (params, total, taken), _ = jax.lax.scan(
        one_epoch, (params, zero, zero), jax.random.split(key, epochs)
    )
    return params, total / jnp.maximum(taken, 1.0)


def aggregate(client_params, counts, rule: str):
    """The server's mean over the leading client axis: plain (document 004) or weighted by the
    clients' data sizes (McMahan et al.)."""
    if rule == "mean":
        return jax.tree.map(lambda p: jnp.mean(p, axis=0), client_params)
    if rule == "weighted":
        w = counts.astype(jnp.float32) / jnp.sum(counts)
        return jax.tree.map(lambda p: jnp.tensordot(w, p, axes=1), client_params)
    raise ValueError(f"unknown aggregate {rule!r}; choose one of {', '.join(AGGREGATES)}")


def clients_per_round(fraction: float, num_clients: int) -> int:
    """m = max(C K, 1): C = 0 is one client per round, as in McMahan et al.'s tables."""
    return max(int(round(fraction * num_clients)), 1)


class ServerState(struct.PyTreeNode):
    """The federated model of one replica: its parameters, server momentum, round count."""

    step: jax.Array
    params: Any
    momentum: Any


def num_bytes(params) -> int:
    """Bytes of one copy of the model: what a client downloads and uploads per round."""
    return int(
        sum(np.prod(np.shape(p)) * jnp.dtype(p.dtype).itemsize for p in jax.tree.leaves(params))
    )


def model_bytes(model, example_x) -> int:
    """Bytes of the parameters of a Flax ``model`` on inputs like ``example_x`` (no compute)."""
    return num_bytes(jax.eval_shape(model.init, jax.random.key(0), example_x)["params"])


def communication(model_size: int, clients: int, rounds: int) -> dict:
    """Bytes sent down (server to clients) and up (clients to server), per round and in all,
    for a model of ``model_size`` bytes and ``clients`` clients per round."""
    per_round = model_size * clients
    return {"down_per_round": per_round, "up_per_round": per_round, "total": 2 * per_round * rounds}


def fedavg_task(
    model,
    example_x,
    *,
    num_clients: int,
    fraction: float,
    epochs: int,
    batch_size: int,
    lr: float,
    rule: str = "mean",
    server_momentum: float = 0.0,
    eval_chunk: int = 2048,
) -> Task:
    """A Task whose step is one FedAvg round of ``model`` (a Flax classifier, logits out).

    Run it with ``fit(config, task, clients.as_dict(), ...)`` and ``config.batch_size = 0``:
    every round sees all K clients, picks m = max(C K, 1) of them with the round's key, trains
    them in parallel (vmap over the client axis), and aggregates.
    """
    m = clients_per_round(fraction, num_clients)
    per_round = model_bytes(model, example_x) * m

    def loss_fn(params, x, y, mask):
        logits = model.apply({"params": params}, x)
        losses = optax.softmax_cross_entropy_with_integer_labels(logits, y)
        return jnp.sum(losses * mask) / jnp.maximum(jnp.sum(mask), 1.0)

    def init(key):
        params = model.init(key, example_x)["params"]
        return ServerState(jnp.zeros((), jnp.int32), params, jax.tree.map(jnp.zeros_like, params))

    def make_step(axis_name):
        del axis_name

        def step(state, clients, key):
            pick_key, train_key = jax.random.split(key)
            chosen = jax.random.choice(pick_key, num_clients, (m,), replace=False)
            x, y, count = (clients[k][chosen] for k in ("x", "y", "count"))
            x, y, count = _spread((x, y, count))
            local = jax.vmap(
                lambda x, y, c, k: local_sgd(
                    loss_fn, state.params, x, y, c, k, epochs=epochs, batch_size=batch_size, lr=lr
                )
            )
            client_params, losses = local(x, y, count, jax.random.split(train_key, m))
            mean = aggregate(client_params, count, rule)
            if server_momentum:
                v = jax.tree.map(
                    lambda v, w, a: server_momentum * v + (w - a),
                    state.momentum,
                    state.params,
                    mean,
                )
                params = jax.tree.map(lambda w, v: w - v, state.params, v)
            else:
                v, params = state.momentum, mean
            metrics = {
                "loss": jnp.mean(losses),
                "clients": jnp.float32(m),
                "bytes_up": jnp.float32(per_round),
            }
            return state.replace(step=state.step + 1, params=params, momentum=v), metrics

        return step

    def evaluate(state, split):
        def per_example(batch):
            logits = model.apply({"params": state.params}, batch["x"])
            return {
                "loss": optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]),
                "accuracy": (jnp.argmax(logits, -1) == batch["y"]).astype(jnp.float32),
            }

        return evaluate_in_chunks(per_example, split, eval_chunk)

    return Task(init=init, make_step=make_step, evaluate=evaluate)


def _spread(arrays):
    """Lays the round's clients out over the devices, when they divide evenly among them."""
    devices = jax.devices()
    m = arrays[0].shape[0]
    if len(devices) == 1 or m % len(devices):
        return arrays
    mesh = jax.sharding.Mesh(np.array(devices), ("clients",))
    spec = jax.sharding.PartitionSpec("clients")
    return tuple(
        jax.lax.with_sharding_constraint(a, jax.sharding.NamedSharding(mesh, spec)) for a in arrays
    )


__all__ = [
    "AGGREGATES",
    "PARTITIONS",
    "Clients",
    "ServerState",
    "aggregate",
    "client_data",
    "client_statistics",
    "clients_per_round",
    "communication",
    "fedavg_task",
    "label_shards",
    "local_sgd",
    "model_bytes",
    "num_bytes",
    "partition",
]


# --- what the rounds achieved ------------------------------------------------------------------


def rounds_to(rounds, accuracy, target: float) -> np.ndarray:
    """Per replica: the first of ``rounds`` at which ``accuracy`` (replicas x evaluations,
    measured after those rounds) reaches ``target``; inf where it never does."""
    reached = np.asarray(accuracy) >= target
    first = np.where(reached.any(axis=1), np.argmax(reached, axis=1), -1)
    return np.where(first >= 0, np.asarray(rounds)[first], np.inf)


def censored(values, rounds: int) -> np.ndarray:
    """Rounds to a target for statistics: a run that never reached it (inf) counts as
    ``rounds + 1``, one more than it trained."""
    return np.where(np.isfinite(values), values, rounds + 1)
