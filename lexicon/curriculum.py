"""Curriculum learning: easy-to-hard orders, the linear pacing function, a paced sampler.

Curriculum learning (SPEC §4; Bengio et al. 2009) presents easy examples first and harder
ones later. Given a difficulty d_i per example, :func:`curriculum_order` sorts the examples
from easy to hard (optionally within each class), :func:`schedule_order` gives the orders of
the usual controls, and the pacing function

    pool(t) = n_0 + floor((N - n_0) min(t, T) / T),   n_0 = max(1, ceil(f_0 N))

sets how much of the sorted list is available at step t. :func:`paced_classifier` draws each
minibatch uniformly (with replacement) from the first pool(t) examples inside the compiled
step, with the step's key: a data-free train.fit. :func:`fold_ids` assigns examples to the
folds whose held-out teachers score the difficulty (:func:`teacher_difficulty`).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from lexicon import losses, train

SCHEDULES = ("all", "random", "easy_first", "hard_first")


def fold_ids(num_examples: int, folds: int, seed: int) -> np.ndarray:
    """A seeded assignment of the examples to ``folds`` folds of (nearly) equal size."""
    return np.random.default_rng(seed).permutation(np.arange(num_examples) % folds)


def teacher_difficulty(config, workdir, x, y, folds, *, hidden, lr, epochs, num_classes=10):
    """d_i = mean over teacher seeds of -log p_teacher(y_i | x_i), x_i held out: each example is
    scored by the teachers trained on the other folds (``folds``: :func:`fold_ids`), so it is
    hard when a model of the rest of the data cannot predict it. The teachers of fold k are
    config.seeds ReLU MLPs with hidden layers ``hidden`` and ``num_classes`` outputs, trained by
    Adam(lr) for ``epochs`` epochs in ``workdir/teacher-fold{k}`` (``distillation.fit_teacher``)."""
    from lexicon.distillation import fit_teacher

    def losses_of(model, params, x, y):  # -log softmax(f(x))_y for each example
        logits = model.apply({"params": params}, x)
        return losses.softmax_cross_entropy_with_integer_labels(logits, y, reduction="none")

    difficulty = np.zeros(len(y))
    for k in range(int(np.max(folds)) + 1):
        seen, held_out = folds != k, folds == k
        model, result = fit_teacher(config, hidden, {"x": x[seen], "y": y[seen]},
                                    workdir / f"teacher-fold{k}", lr=lr, epochs=epochs,
                                    num_classes=num_classes)  # fmt: skip
        per_teacher = jax.vmap(functools.partial(losses_of, model), in_axes=(0, None, None))
        losses_k = per_teacher(result.state.params, x[held_out], y[held_out])
        difficulty[held_out] = np.asarray(losses_k).mean(axis=0)
    return difficulty


def curriculum_order(difficulty, labels, balanced: bool) -> np.ndarray:
    """Indices from easiest to hardest.

    Unbalanced: by d alone. Balanced: by the example's rank within its class divided by the
    class size (ties broken by d), so any prefix holds each class in proportion to its size.
    """
    difficulty, labels = np.asarray(difficulty), np.asarray(labels)
    if not balanced:
        return np.argsort(difficulty, kind="stable")
    quantile = np.zeros(len(labels))
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        ranks = np.argsort(np.argsort(difficulty[members], kind="stable"), kind="stable")
        quantile[members] = ranks / len(members)
    return np.lexsort((difficulty, quantile))


def schedule_order(schedule: str, easy_to_hard: np.ndarray, seed: int) -> np.ndarray:
    if schedule == "easy_first" or schedule == "all":
        return easy_to_hard
    if schedule == "hard_first":
        return easy_to_hard[::-1]
    if schedule == "random":
        return np.random.default_rng(seed).permutation(easy_to_hard)
    raise ValueError(f"unknown schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")


def pool_size(step, num_examples: int, start_fraction: float, ramp_steps: int):
    """pool(t) = n_0 + floor((N - n_0) min(t, T) / T), n_0 = max(1, ceil(f_0 N)).

    The linear pacing function in integer arithmetic (int32, traceable), so that the pool
    is exact at every step: n_0 examples at t = 0, all N from t = T on.
    """
    start = max(1, math.ceil(start_fraction * num_examples))
    ramp_steps = max(int(ramp_steps), 1)
    if (num_examples - start) * ramp_steps >= 2**31:
        raise ValueError("pool_size works in int32: (N - n_0) T must stay below 2^31")
    t = jnp.minimum(jnp.asarray(step, jnp.int32), ramp_steps)
    return start + (num_examples - start) * t // ramp_steps


def draw_batch(key, ordered: dict, pool, size: int) -> dict:
    """``size`` examples drawn uniformly, with replacement, among the first ``pool``."""
    index = jax.random.randint(key, (size,), 0, pool)
    return jax.tree.map(lambda a: a[index], ordered)


def paced_classifier(model, tx, ordered: dict, batch_size: int, pacing=None) -> train.Task:
    """A classifier whose minibatch of ``batch_size`` (0: N) examples is drawn from the first
    pool(t) examples of ``ordered`` (easiest first), for a data-free train.fit (the step gets
    batch=None). ``pacing`` = (start_fraction, ramp_steps) of :func:`pool_size`, or None for
    the whole set from the start. The step also reports the pool size."""
    x, y = jnp.asarray(ordered["x"]), jnp.asarray(ordered["y"])
    n = len(y)

    def init(key):
        params = model.init(key, x[:1])["params"]
        return train.TrainState.create(apply_fn=model.apply, params=params, tx=tx)

    def objective(params, model_state, batch, key):
        logits = model.apply({"params": params}, batch["x"])
        loss = losses.softmax_cross_entropy_with_integer_labels(logits, batch["y"])
        return loss, ({"accuracy": train.accuracy(logits, batch["y"])}, model_state)

    def make_step(axis_name):
        update = train.gradient_step(objective)(axis_name)

        def step(state, batch, key):
            pool = pool_size(state.step, n, *pacing) if pacing else n
            drawn = draw_batch(key, {"x": x, "y": y}, pool, batch_size or n)
            state, metrics = update(state, drawn, key)
            return state, {**metrics, "pool": jnp.asarray(pool, jnp.float32)}

        return step

    def evaluate(state, split):
        logits = model.apply({"params": state.params}, split["x"])
        return {
            "loss": losses.softmax_cross_entropy_with_integer_labels(logits, split["y"]),
            "accuracy": train.accuracy(logits, split["y"]),
        }

    return train.Task(init=init, make_step=make_step, evaluate=evaluate)
