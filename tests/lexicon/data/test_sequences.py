"""The synthetic sequence tasks: the adding problem and the noisy oscillation."""

import jax
import numpy as np

from lexicon.data import sequences


def test_adding_problem_marks_one_value_in_each_half_and_sums_them():
    d = jax.tree.map(np.asarray, sequences.adding_problem(jax.random.key(0), 500, 21))
    x, y = d["x"], d["y"]
    assert x.shape == (500, 21, 2) and y.shape == (500, 1)
    values, markers = x[..., 0], x[..., 1]
    assert np.all((values >= 0) & (values < 1))
    assert set(np.unique(markers)) == {0.0, 1.0}
    assert np.all(markers.sum(axis=1) == 2)
    assert np.all(markers[:, :10].sum(axis=1) == 1) and np.all(markers[:, 10:].sum(axis=1) == 1)
    for i in range(500):
        first, second = np.flatnonzero(markers[i])
        np.testing.assert_allclose(y[i, 0], values[i, first] + values[i, second], rtol=1e-6)
    # Predicting 1 = E[u1 + u2] leaves MSE Var(u1 + u2) = 1/6 (within 4 standard errors).
    big = np.asarray(sequences.adding_problem(jax.random.key(1), 20_000, 10)["y"])
    se = np.std((big - 1) ** 2) / np.sqrt(big.size)
    assert abs(np.mean((big - 1) ** 2) - sequences.ADDING_BASELINE_MSE) < 4 * se


def test_tasks_are_functions_of_their_key():
    a = sequences.adding_problem(jax.random.key(3), 8, 12)
    b = sequences.adding_problem(jax.random.key(3), 8, 12)
    c = sequences.adding_problem(jax.random.key(4), 8, 12)
    np.testing.assert_array_equal(a["x"], b["x"])
    assert not np.array_equal(a["x"], c["x"])
    s = sequences.noisy_sine(jax.random.key(3), 4, 30)
    np.testing.assert_array_equal(
        s["series"], sequences.noisy_sine(jax.random.key(3), 4, 30)["series"]
    )


def test_noisy_sine_turns_at_its_period_with_the_given_noise():
    d = jax.tree.map(
        np.asarray, sequences.noisy_sine(jax.random.key(0), 200, 60, period=12, noise=0.2)
    )
    clean, series = d["clean"], d["series"]
    radius = np.linalg.norm(clean, axis=-1)  # constant amplitude A in [0.5, 1]
    np.testing.assert_allclose(radius, radius[:, :1].repeat(60, 1), rtol=1e-5)
    assert np.all((radius > 0.5 - 1e-6) & (radius < 1 + 1e-6))
    np.testing.assert_allclose(clean[:, 12:], clean[:, :-12], atol=1e-5)  # one period later
    angle = 2 * np.pi / 12  # each step turns the point by 2 pi / period
    c, s = np.cos(angle), np.sin(angle)
    turned = clean[:, :-1] @ np.array([[c, s], [-s, c]])
    np.testing.assert_allclose(turned, clean[:, 1:], atol=1e-5)
    assert abs(np.std(series - clean) - 0.2) < 0.01
