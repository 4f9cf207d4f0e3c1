"""FitNets experiment: hint and distillation losses, the two-stage step, end to end."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import fitnets
from lexicon import losses
from lexicon.nn.layers import MLP
from lexicon.rules import ConfigError


def numpy_softmax(z):
    z = np.asarray(z, np.float64)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def test_hint_loss_is_half_the_mean_squared_norm(x64):
    rng = np.random.default_rng(0)
    hint, predicted = rng.normal(size=(6, 9)), rng.normal(size=(6, 9))
    expected = 0.5 * np.mean([np.sum((hint[n] - predicted[n]) ** 2) for n in range(6)])
    np.testing.assert_allclose(fitnets.hint_loss(predicted, hint), expected, rtol=1e-12)


@pytest.mark.parametrize("temperature, alpha", [(1.0, 0.5), (4.0, 0.9), (20.0, 1.0), (2.0, 0.0)])
def test_distillation_loss_is_the_documented_mixture(x64, temperature, alpha):
    rng = np.random.default_rng(1)
    student, teacher = rng.normal(size=(5, 10)) * 3, rng.normal(size=(5, 10)) * 3
    labels = rng.integers(0, 10, 5)
    p = numpy_softmax(teacher / temperature)
    q = numpy_softmax(student / temperature)
    soft = np.mean(-np.sum(p * np.log(q), axis=1))
    hard = np.mean(-np.log(numpy_softmax(student)[np.arange(5), labels]))
    total, soft_term, hard_term = fitnets.distillation_loss(
        student, teacher, labels, temperature, alpha
    )
    np.testing.assert_allclose(soft_term, soft, rtol=1e-12)
    np.testing.assert_allclose(hard_term, hard, rtol=1e-12)
    np.testing.assert_allclose(
        total, alpha * temperature**2 * soft + (1 - alpha) * hard, rtol=1e-12
    )


def test_soft_term_gradient_is_t_times_q_minus_p(x64):
    """d/dz_i of T^2 H(p^T, q^T) = T (q_i^T - p_i^T) per example (Hinton et al. 2015)."""
    rng = np.random.default_rng(2)
    student, teacher = rng.normal(size=(4, 10)), rng.normal(size=(4, 10))
    labels = np.zeros(4, int)
    temperature = 3.0
    grad = jax.grad(
        lambda z: fitnets.distillation_loss(z, teacher, labels, temperature, alpha=1.0)[0]
    )(jnp.asarray(student))
    expected = temperature * (numpy_softmax(student / temperature) - numpy_softmax(teacher / 3))
    np.testing.assert_allclose(grad, expected / 4, rtol=1e-10, atol=1e-14)
    # H(p, q) = H(p) + KL(p || q): the soft term and the KL differ by a constant in z.
    p, q = jax.nn.softmax(teacher / 3.0), jax.nn.softmax(student / 3.0)
    kl_plus_entropy = jnp.mean(losses.kl_divergence(p, q) + losses.entropy(p))
    soft = fitnets.distillation_loss(student, teacher, labels, 3.0, 1.0)[1]
    np.testing.assert_allclose(soft, kl_plus_entropy, rtol=1e-12)


def test_teacher_outputs_read_the_hidden_layer():
    model = MLP(features=[7, 5, 3], activation="relu")
    x = jax.random.normal(jax.random.key(0), (4, 6))
    params = model.init(jax.random.key(1), x)["params"]
    logits, hint = fitnets.teacher_outputs(model, params, x, layer=1)
    h1 = np.maximum(0, np.asarray(x) @ params["Dense_0"]["kernel"] + params["Dense_0"]["bias"])
    h2 = np.maximum(0, h1 @ params["Dense_1"]["kernel"] + params["Dense_1"]["bias"])
    np.testing.assert_allclose(hint, h2, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(logits, model.apply({"params": params}, x), rtol=1e-6)
    assert fitnets.hint_layer_index((512,)) == 0 and fitnets.hint_layer_index((8, 8, 8)) == 1


def test_student_is_cut_at_the_guided_layer():
    student = fitnets.Student(hidden=(4, 4, 4, 4, 4), guided=2, hint_size=9)
    x = jnp.ones((3, 6))
    params = student.init(jax.random.key(0), x)["params"]
    assert set(params) == {"lower", "upper", "regressor"}
    assert len(params["lower"]) == 2 and len(params["upper"]) == 4
    assert params["regressor"]["kernel"].shape == (4, 9)
    logits, predicted_hint = student.apply({"params": params}, x)
    assert logits.shape == (3, 10) and predicted_hint.shape == (3, 9)


def tiny_setup(mode, hint_steps=3):
    config = fitnets.get_config()
    config.update(lr=1e-2, temperature=2.0, alpha=0.5)
    student = fitnets.Student(hidden=(6, 6, 6), guided=1, hint_size=5)
    rng = np.random.default_rng(0)
    batch = {
        "x": jnp.asarray(rng.normal(size=(8, 4)), jnp.float32),
        "y": jnp.asarray(rng.integers(0, 10, 8)),
        "teacher_logits": jnp.asarray(rng.normal(size=(8, 10)), jnp.float32),
        "hint": jnp.asarray(rng.uniform(size=(8, 5)), jnp.float32),
    }
    task = fitnets.make_student_task(config, student, batch["x"][:1], mode, hint_steps)
    return task, batch


def changed(before, after, part):
    return any(
        np.any(np.asarray(a) != np.asarray(b))
        for a, b in zip(jax.tree.leaves(before[part]), jax.tree.leaves(after[part]))
    )


def test_hints_stage_trains_lower_layers_and_regressor_only_then_resets_adam():
    task, batch = tiny_setup("hints_kd", hint_steps=3)
    step = jax.jit(task.make_step(None))
    state = task.init(jax.random.key(0))
    snapshots = [state.params]
    for t in range(6):
        state, metrics = step(state, batch, jax.random.key(t))
        snapshots.append(state.params)
        if t == 2:
            assert int(state.opt_state[0].count) == 3
        if t == 3:  # the first step of stage 2 starts from a fresh Adam state
            assert int(state.opt_state[0].count) == 1
    for t in range(3):  # stage 1
        before, after = snapshots[t], snapshots[t + 1]
        assert changed(before, after, "lower") and changed(before, after, "regressor")
        assert not changed(before, after, "upper")
    for t in range(3, 6):  # stage 2: the regressor no longer moves
        before, after = snapshots[t], snapshots[t + 1]
        assert changed(before, after, "lower") and changed(before, after, "upper")
        assert not changed(before, after, "regressor")
    assert np.isfinite(float(metrics["loss"]))


@pytest.mark.parametrize("mode", ["scratch", "kd"])
def test_students_without_hints_train_everything_but_the_regressor(mode):
    task, batch = tiny_setup(mode)
    state = task.init(jax.random.key(0))
    new, metrics = jax.jit(task.make_step(None))(state, batch, jax.random.key(1))
    assert changed(state.params, new.params, "lower") and changed(state.params, new.params, "upper")
    assert not changed(state.params, new.params, "regressor")
    expected = fitnets.distillation_loss(
        state.apply_fn({"params": state.params}, batch["x"])[0],
        batch["teacher_logits"],
        batch["y"],
        2.0,
        0.5,
    )[0]
    if mode == "kd":
        np.testing.assert_allclose(metrics["loss"], expected, rtol=1e-5)


def test_unknown_student_is_refused():
    with pytest.raises(ValueError, match="hints_kd"):
        fitnets.make_student_task(fitnets.get_config(), None, None, "teacherless", 0)


def tiny_config(**changes):
    config = fitnets.get_config()
    config.update(
        seeds=2,
        epochs=3,
        hint_epochs=1,
        teacher_epochs=2,
        teacher_hidden=(32,),
        student_hidden=(8, 8, 8, 8),
        guided=2,
        batch_size=64,
        lr=1e-2,
        progress=False,
    )
    config.update(changes)
    return config


def test_one_student_through_train_fit(tmp_path):
    """The fast variant of the end-to-end run: one hints student, two stages, in train.fit."""
    splits = fitnets.data.load("digits")
    rng = np.random.default_rng(0)

    def with_teacher(split):
        return {
            **split,
            "teacher_logits": rng.normal(size=(len(split["y"]), 10)).astype(np.float32),
            "hint": rng.uniform(size=(len(split["y"]), 12)).astype(np.float32),
        }

    train_split, test_split = with_teacher(splits.train), with_teacher(splits.test)
    config = tiny_config()
    student = fitnets.Student(hidden=(8, 8, 8, 8), guided=2, hint_size=12)
    steps_per_epoch = len(train_split["y"]) // 64
    task = fitnets.make_student_task(
        config, student, train_split["x"][:1], "hints_kd", steps_per_epoch
    )
    result = fitnets.train.fit(
        config, task, train_split, tmp_path, eval_splits={"test": test_split}
    )
    hint_losses = [r["test/hint_loss"] for r in result.history]
    assert np.all(np.isfinite(hint_losses))
    # The hint stage lowers the hint loss; in stage 2 the output loss takes over.
    stage1 = result.step_metrics[0]
    assert np.all(stage1["hint_loss"][:, -1] < stage1["hint_loss"][:, 0])
    np.testing.assert_allclose(stage1["loss"], stage1["hint_loss"])
    stage2 = result.step_metrics[1]
    np.testing.assert_allclose(stage2["loss"], stage2["output_loss"])


def test_a_guided_layer_outside_the_student_stops_before_training(tmp_path):
    with pytest.raises(ConfigError, match="guided"):
        fitnets.train_and_evaluate(tiny_config(guided=5), tmp_path)
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
def test_experiment_end_to_end(tmp_path):
    out = fitnets.train_and_evaluate(tiny_config(), tmp_path)
    for name in ("report.md", "curves.png"):
        assert (tmp_path / name).exists(), name
    report = (tmp_path / "report.md").read_text()
    assert "Hinton" in report and "Romero" in report
    assert 0.5 < out["teacher_accuracy"] <= 1
    for mode in fitnets.STUDENTS:
        values = np.asarray(out["test_accuracy"][mode])
        assert values.shape == (2,) and np.all((values >= 0) & (values <= 1))
        assert np.all(np.isfinite(out["teacher_agreement"][mode]))
    assert np.mean(out["test_accuracy"]["scratch"]) > 0.2  # chance is 0.1
    assert 0.5 < out["reference"] <= 1


def test_experiment_end_to_end_tiny(tmp_path):
    config = tiny_config(seeds=1, epochs=1, teacher_epochs=1, batch_size=128)
    out = fitnets.train_and_evaluate(config, tmp_path)
    assert (tmp_path / "report.md").exists() and (tmp_path / "curves.png").exists()
    for mode in fitnets.STUDENTS:
        values = np.asarray(out["test_accuracy"][mode])
        assert values.shape == (1,) and 0 <= values[0] <= 1
