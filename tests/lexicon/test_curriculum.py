"""lexicon.curriculum: the pacing function, easy-to-hard orders, the in-step paced sampler."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lexicon import baselines, curriculum, data, optim, train
from lexicon.nn.layers import MLP


def test_pool_size_is_the_linear_pacing_function():
    n, f0, ramp = 1000, 0.2, 300
    n0 = max(1, math.ceil(f0 * n))
    for t in (0, 1, 7, 150, 299, 300, 301, 5000):
        expected = n0 + math.floor((n - n0) * min(t, ramp) / ramp)
        assert int(curriculum.pool_size(t, n, f0, ramp)) == expected, t
    steps = jnp.arange(400)
    pools = np.asarray(jax.jit(lambda t: curriculum.pool_size(t, n, f0, ramp))(steps))
    assert np.all(np.diff(pools) >= 0) and pools[0] == 200 and pools[-1] == n
    assert int(curriculum.pool_size(0, n, 0.0, ramp)) == 1  # never an empty pool


def test_draw_batch_samples_only_the_pool_and_all_of_it():
    ordered = {"x": jnp.arange(50.0)[:, None], "y": jnp.arange(50)}
    batch = jax.jit(curriculum.draw_batch, static_argnums=3)(jax.random.key(0), ordered, 12, 4000)
    drawn = np.asarray(batch["y"])
    assert drawn.shape == (4000,) and drawn.min() == 0 and drawn.max() == 11
    np.testing.assert_array_equal(np.asarray(batch["x"])[:, 0], drawn)
    counts = np.bincount(drawn, minlength=12)
    # Uniform: 4000 / 12 = 333 per example; a 5-sigma band of the binomial.
    assert np.all(np.abs(counts - 4000 / 12) < 5 * np.sqrt(4000 / 12))


def test_curriculum_order_unbalanced_is_by_difficulty():
    difficulty = np.array([0.5, 0.1, 2.0, 0.3, 1.0])
    labels = np.zeros(5, int)
    np.testing.assert_array_equal(
        curriculum.curriculum_order(difficulty, labels, balanced=False), [1, 3, 0, 4, 2]
    )


def test_balanced_order_keeps_classes_in_proportion_and_easy_first_within():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 200)
    # Class 3 is far harder than the rest: unbalanced, it would come last.
    difficulty = rng.uniform(size=200) + 10.0 * (labels == 3)
    order = curriculum.curriculum_order(difficulty, labels, balanced=True)
    assert sorted(order) == list(range(200))
    sizes = np.bincount(labels)
    for k in range(1, 201):
        counts = np.bincount(labels[order[:k]], minlength=4)
        assert np.all(np.abs(counts - k * sizes / 200) < 2), k
    for c in range(4):
        within = difficulty[order][labels[order] == c]
        assert np.all(np.diff(within) >= 0)
    unbalanced = curriculum.curriculum_order(difficulty, labels, balanced=False)
    assert np.all(labels[unbalanced[-sizes[3] :]] == 3)


def test_schedule_orders():
    easy_to_hard = np.array([4, 2, 0, 1, 3])
    np.testing.assert_array_equal(
        curriculum.schedule_order("hard_first", easy_to_hard, 0), [3, 1, 0, 2, 4]
    )
    np.testing.assert_array_equal(
        curriculum.schedule_order("easy_first", easy_to_hard, 0), easy_to_hard
    )
    shuffled = curriculum.schedule_order("random", easy_to_hard, 0)
    assert sorted(shuffled) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="easy_first"):
        curriculum.schedule_order("backwards", easy_to_hard, 0)


def test_fold_ids_are_balanced_and_seeded():
    folds = curriculum.fold_ids(103, 4, seed=3)
    assert set(np.bincount(folds)) <= {25, 26}
    np.testing.assert_array_equal(folds, curriculum.fold_ids(103, 4, seed=3))


def test_held_out_log_loss_of_logistic_regression():
    x, y = np.random.default_rng(0).normal(size=(60, 3)), np.arange(60) % 3
    d = baselines.held_out_log_loss(x, y, curriculum.fold_ids(60, 2, seed=0))
    assert d.shape == (60,) and np.all(d > 0)
    # Pure-noise inputs: held-out, the loss is near log(3) on average, far from memorized 0.
    assert 0.7 < d.mean() < 2.5


def test_paced_student_trains_from_the_growing_pool(tmp_path):
    """One schedule through a data-free train.fit: the pool follows pool(t), each step draws
    a full minibatch, and the student learns."""
    splits = data.load("digits")
    x, y = splits.train["x"][:320], splits.train["y"][:320]
    config = train.defaults()
    config.update(seeds=2, epochs=4, batch_size=32, progress=False)
    config.steps_per_epoch = 10
    model = MLP(features=[16, 10], activation="relu")
    pacing = (0.2, 25)
    task = curriculum.paced_classifier(model, optim.sgd(0.2), {"x": x, "y": y}, 32, pacing)
    result = train.fit(config, task, None, tmp_path, eval_splits={"test": splits.test})
    assert result.history[-1]["step"] == 40
    pools = np.concatenate([m["pool"] for m in result.step_metrics], axis=1)
    expected = [int(curriculum.pool_size(t, 320, *pacing)) for t in range(40)]
    np.testing.assert_array_equal(pools, [expected, expected])
    # Each step's accuracy is a count over a drawn minibatch of config.batch_size examples.
    hits = np.concatenate([m["accuracy"] for m in result.step_metrics], axis=1) * 32
    np.testing.assert_allclose(hits, np.round(hits), atol=1e-4)
    assert np.mean(result.final("test/accuracy")) > 0.3  # chance is 0.1


def test_teacher_difficulty_is_the_held_out_cross_entropy(tmp_path, monkeypatch):
    """Each example's d is its cross-entropy (NumPy, float64) under the teachers trained on the
    other fold (ReLU MLPs by distillation.fit_teacher, out of the students' grid sweep),
    averaged over the teacher seeds."""
    from lexicon import distillation

    fitted = []

    def spy(config, hidden, data, workdir, **kw):
        model, result = fit_teacher(config, hidden, data, workdir, **kw)
        fitted.append((model, result, data))
        return model, result

    fit_teacher = distillation.fit_teacher
    monkeypatch.setattr(distillation, "fit_teacher", spy)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 3)).astype(np.float32), np.arange(40) % 3
    folds = curriculum.fold_ids(40, 2, seed=0)
    config = train.defaults()
    config.update(seeds=2, epochs=1, batch_size=10, progress=False)
    config.sweep = "lr=0.1,1"  # the students' grid: the teachers do not take it
    d = curriculum.teacher_difficulty(
        config, tmp_path, x, y, folds, hidden=(4,), lr=0.05, epochs=2, num_classes=3
    )
    for k, (model, result, seen) in enumerate(fitted):
        held = folds == k
        np.testing.assert_array_equal(seen["x"], x[~held])
        assert (model.features, model.activation) == ((4, 3), "relu") and result.sweep is None
        assert [r["epoch"] for r in result.history] == [1, 2]  # 2 steps of 10 per epoch
        np.testing.assert_array_equal(result.state.step, [4, 4])
        p = jax.tree.map(lambda a: np.asarray(a, np.float64), result.state.params)
        h = np.maximum(0, x[held] @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"][:, None])
        z = h @ p["Dense_1"]["kernel"] + p["Dense_1"]["bias"][:, None]  # (seeds, n, 3)
        nll = np.log(np.exp(z).sum(-1)) - np.take_along_axis(z, y[held][None, :, None], -1)[..., 0]
        np.testing.assert_allclose(d[held], nll.mean(axis=0), rtol=1e-5)
    assert len(fitted) == 2 and (config.epochs, config.sweep) == (1, "lr=0.1,1")  # kept
