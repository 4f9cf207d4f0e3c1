"""Tests for lexicon.train.early_stopping."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lexicon.train import early_stopping as es

# Validation losses per evaluation; the best (2.0) is at step 3. With patience 3 the
# evaluations at steps 4, 5, 6 do not improve, so the run stops at step 6. Step 8 would be
# better still, but it comes after the stop and must be ignored.
LOSSES = [5.0, 4.0, 3.0, 2.0, 2.5, 2.1, 2.2, 2.3, 1.0, 0.5]
BEST_STEP, STOP_STEP = 3, 6


def params_at(step):
    """Params that identify the step they were recorded at."""
    step = jnp.asarray(step, jnp.float32)
    return {"dense": {"kernel": jnp.full((2, 3), step), "bias": jnp.full((3,), -step)}}


def run_python_loop(stopper, losses):
    state = stopper.init(params_at(-1))
    history = []
    for step, loss in enumerate(losses):
        state = stopper.update(state, loss, params_at(step), step)
        history.append(bool(state.should_stop))
    return state, history


def test_restores_best_params_and_step():
    stopper = es.early_stopping(patience=3)
    state, history = run_python_loop(stopper, LOSSES)
    assert int(state.best_step) == BEST_STEP
    assert float(state.best_metric) == 2.0
    best = es.restore_best_params(state)
    for got, want in zip(jax.tree.leaves(best), jax.tree.leaves(params_at(BEST_STEP)), strict=True):
        np.testing.assert_array_equal(got, want)
    assert history.index(True) == STOP_STEP
    assert all(history[STOP_STEP:])
    assert int(state.patience_count) == 3


def test_inside_jit_scan_and_vmap_over_seeds():
    stopper = es.early_stopping(patience=3)

    def run(losses):
        def body(state, inputs):
            step, loss = inputs
            state = stopper.update(state, loss, params_at(step), step)
            return state, state.should_stop

        steps = jnp.arange(losses.shape[0])
        return jax.lax.scan(body, stopper.init(params_at(-1)), (steps, losses))

    losses = jnp.array(LOSSES)
    state, stops = jax.jit(run)(losses)
    assert int(state.best_step) == BEST_STEP
    np.testing.assert_array_equal(state.best_params["dense"]["kernel"], np.full((2, 3), 3.0))
    assert int(np.argmax(np.asarray(stops))) == STOP_STEP

    # A second "seed" that keeps improving never stops and keeps its last step.
    improving = jnp.arange(len(LOSSES), 0, -1, dtype=jnp.float32)
    states, _ = jax.jit(jax.vmap(run))(jnp.stack([losses, improving]))
    np.testing.assert_array_equal(states.best_step, [BEST_STEP, len(LOSSES) - 1])
    np.testing.assert_array_equal(states.should_stop, [True, False])
    np.testing.assert_array_equal(
        states.best_params["dense"]["bias"][:, 0], [-BEST_STEP, -(len(LOSSES) - 1)]
    )


def test_max_mode_and_min_delta():
    accuracies = [0.5, 0.7, 0.705, 0.71, 0.6]
    stopper = es.early_stopping(patience=2, min_delta=0.02, mode="max")
    state, history = run_python_loop(stopper, accuracies)
    # 0.705 and 0.71 are within min_delta of 0.7, so they do not count as improvements.
    assert int(state.best_step) == 1
    assert np.isclose(float(state.best_metric), 0.7)
    assert history == [False, False, False, True, True]

    stopper = es.early_stopping(patience=2, mode="max")
    state, _ = run_python_loop(stopper, accuracies)
    assert int(state.best_step) == 3


def test_nan_never_improves():
    stopper = es.early_stopping(patience=2)
    state, history = run_python_loop(stopper, [1.0, float("nan"), float("nan")])
    assert int(state.best_step) == 0
    assert float(state.best_metric) == 1.0
    assert history == [False, False, True]


def test_initial_state_and_invalid_arguments():
    state = es.early_stopping(patience=1).init(params_at(0))
    assert float(state.best_metric) == np.inf and int(state.best_step) == -1
    assert not bool(state.should_stop)
    assert float(es.early_stopping(patience=1, mode="max").init({}).best_metric) == -np.inf
    with pytest.raises(ValueError, match="patience"):
        es.early_stopping(patience=0)
    with pytest.raises(ValueError, match="min_delta"):
        es.early_stopping(patience=1, min_delta=-1.0)
    with pytest.raises(ValueError, match="mode"):
        es.early_stopping(patience=1, mode="lowest")
