"""lexicon.distillation: the teacher's hint, the guided student, its stages and their steps."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lexicon import distillation, losses, optim
from lexicon.nn.layers import MLP


def test_teacher_outputs_read_the_hidden_layer():
    model = MLP(features=[7, 5, 3], activation="relu")
    x = jax.random.normal(jax.random.key(0), (4, 6))
    params = model.init(jax.random.key(1), x)["params"]
    logits, hint = distillation.teacher_outputs(model, params, x, layer=1)
    h1 = np.maximum(0, np.asarray(x) @ params["Dense_0"]["kernel"] + params["Dense_0"]["bias"])
    h2 = np.maximum(0, h1 @ params["Dense_1"]["kernel"] + params["Dense_1"]["bias"])
    np.testing.assert_allclose(hint, h2, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(logits, model.apply({"params": params}, x), rtol=1e-6)
    assert (
        distillation.hint_layer_index((512,)) == 0 and distillation.hint_layer_index((8, 8, 8)) == 1
    )


def test_student_is_cut_at_the_guided_layer():
    student = distillation.GuidedStudent(hidden=(4, 4, 4, 4, 4), guided=2, hint_size=9)
    x = jnp.ones((3, 6))
    params = student.init(jax.random.key(0), x)["params"]
    assert set(params) == {"lower", "upper", "regressor"}
    assert len(params["lower"]) == 2 and len(params["upper"]) == 4
    assert params["regressor"]["kernel"].shape == (4, 9)
    logits, predicted_hint = student.apply({"params": params}, x)
    assert logits.shape == (3, 10) and predicted_hint.shape == (3, 9)


def tiny_setup(objective):
    student = distillation.GuidedStudent(hidden=(6, 6, 6), guided=1, hint_size=5)
    rng = np.random.default_rng(0)
    batch = {
        "x": jnp.asarray(rng.normal(size=(8, 4)), jnp.float32),
        "y": jnp.asarray(rng.integers(0, 10, 8)),
        "teacher_logits": jnp.asarray(rng.normal(size=(8, 10)), jnp.float32),
        "hint": jnp.asarray(rng.uniform(size=(8, 5)), jnp.float32),
    }
    task = distillation.student_task(student, optim.adam(1e-2), batch["x"][:1], objective, 2.0, 0.5)
    return task, batch


def changed(before, after, part):
    return any(
        np.any(np.asarray(a) != np.asarray(b))
        for a, b in zip(jax.tree.leaves(before[part]), jax.tree.leaves(after[part]))
    )


def test_hint_stage_trains_the_lower_layers_and_the_regressor_only():
    task, batch = tiny_setup("hints")
    step = jax.jit(task.make_step(None))
    state = task.init(jax.random.key(0))
    for t in range(3):
        new, metrics = step(state, batch, jax.random.key(t))
        assert changed(state.params, new.params, "lower")
        assert changed(state.params, new.params, "regressor")
        assert not changed(state.params, new.params, "upper")
        assert metrics["loss"] == metrics["hint_loss"]
        state = new


@pytest.mark.parametrize("objective", ["labels", "distill"])
def test_output_stages_train_everything_but_the_regressor(objective):
    task, batch = tiny_setup(objective)
    state = task.init(jax.random.key(0))
    new, metrics = jax.jit(task.make_step(None))(state, batch, jax.random.key(1))
    assert changed(state.params, new.params, "lower") and changed(state.params, new.params, "upper")
    assert not changed(state.params, new.params, "regressor")
    logits = state.apply_fn({"params": state.params}, batch["x"])[0]
    expected = losses.distillation_loss(logits, batch["teacher_logits"], batch["y"], 2.0, 0.5)
    if objective == "labels":
        expected = [losses.softmax_cross_entropy_with_integer_labels(logits, batch["y"])]
    np.testing.assert_allclose(metrics["loss"], expected[0], rtol=1e-5)
    assert metrics["loss"] == metrics["output_loss"]


def test_plan_of_each_student():
    def stages(student, hint_epochs=3):
        plan = distillation.plan(None, None, student, 7, hint_epochs, 1e-2)
        return [(s.name, s.epochs, s.tx is not None) for s in plan]

    assert stages("scratch") == [("labels", 7, False)]
    assert stages("kd") == [("distill", 7, False)]
    assert stages("hints_kd") == [("hints", 3, False), ("distill", 4, True)]
    assert stages("hints_kd", hint_epochs=0) == [("distill", 7, False)]
