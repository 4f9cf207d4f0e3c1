"""The optimizer studies' shared analysis against brute force, and its fits against their twins."""

import pathlib

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import pytest

from lexicon import losses, optim, regularizers, sweeping, train
from lexicon.data.splits import Splits
from lexicon.nn.layers import MLP
from lexicon.optim import problems, studies
from lexicon.report import compare


def tiny_problem(tmp_path, **changes):
    """Logistic regression on 48 separable points in 3-D: a fit compiles in a second."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 3)).astype(np.float32)
    y = (x @ np.array([1.0, -2.0, 0.5]) > 0).astype(np.int32)
    split = {"x": x[:48], "y": y[:48]}
    splits = Splits(split, split, {"x": x[48:], "y": y[48:]})
    config = train.defaults()
    config.update({**dict(seeds=2, epochs=3, batch_size=16, progress=False, lr=0.5), **changes})
    model = MLP(features=(2,), activation="identity")

    def penalty(params):
        return regularizers.l2_penalty(params, 1e-3)

    return problems.Problem(config, "tiny", model, splits, penalty, tmp_path, True)


@pytest.mark.slow
def test_fit_with_a_builder_is_fit_with_the_transform_bitwise(tmp_path):
    built = tiny_problem(tmp_path / "a").fit(lambda c: optim.momentum(c.lr), "m", batch_size=16)
    plain = tiny_problem(tmp_path / "b").fit(optim.momentum(0.5), "m", batch_size=16)
    for key in ("loss", "objective", "test_accuracy"):
        np.testing.assert_array_equal(built.final[key], plain.final[key])
    assert built.result.history == plain.result.history
    assert built.result.sweep is None


@pytest.mark.slow
def test_fit_sweeps_the_builder_over_the_grid(tmp_path):
    """lr=0.05,0.5 x 2 seeds as one program: each point is its own run, to float rounding; a
    larger rate descends further in 3 epochs; sweeping.figure names one Figure per point."""
    problem = tiny_problem(tmp_path / "swept", sweep="lr=0.05,0.5")
    swept = problem.fit(lambda c: optim.sgd(c.lr), "sgd", batch_size=16)
    objective = swept.final["objective"].reshape(2, 2)  # (points, seeds)
    for g, lr in enumerate((0.05, 0.5)):
        alone = tiny_problem(tmp_path / f"lr{lr}", lr=lr)
        run = alone.fit(lambda c: optim.sgd(c.lr), "sgd", batch_size=16)
        np.testing.assert_allclose(objective[g], run.final["objective"], rtol=1e-6)
    assert (objective[1] < objective[0]).all()
    assert (tmp_path / "swept" / "tiny_sgd_m16_e3" / "sweep.json").exists()
    figures = sweeping.figure(swept.result, swept.final["objective"])
    assert list(figures) == ["lr=0.05", "lr=0.5"]
    np.testing.assert_array_equal(figures["lr=0.5"].values, objective[1])
    assert figures["lr=0.5"].verdict() is None


def test_objective_rows_and_lower():
    finals = {"a": [1.0, 1.2], "b": [1.5, 1.7]}
    runs = {
        k: problems.Run(None, {"objective": np.array(v), "test_accuracy": np.array([0.5, 0.7])})
        for k, v in finals.items()
    }
    rows = studies.objective_rows(runs, {"objective": 0.9}, {"a": ["x"], "b": ["y"]})
    assert rows[0] == ["a", "x", "1.10000 ± 0.10000", "2.000e-01 ± 1.0e-01", "0.6000 ± 0.1000"]
    short = studies.objective_rows(runs, {"objective": 0.9}, {"a": [], "b": []}, accuracy=False)
    assert short[1] == ["b", "1.60000 ± 0.10000", "7.000e-01 ± 1.0e-01"]
    verdict = studies.lower({k: np.array(v) for k, v in finals.items()}, "a", "b")
    expected = compare(
        np.array(finals["a"]),
        np.array(finals["b"]),
        paired=True,
        higher_is_better=False,
        names=("a", "b"),
    )
    assert verdict == expected and verdict.verdict == "holds" and "a is lower" in verdict.sentence


def test_event_table_counts_by_brute_force():
    """Two seeds, three steps: the event per step, its first step, the longest step."""
    paths = np.array(
        [[[0, 0], [1, 0], [1, 2], [1, 2.5]], [[0, 0], [0, 0.5], [0, 1], [np.nan, np.nan]]]
    )
    values = np.array([[3.0, 2.0, 1.0, 0.5], [3.0, 2.5, 2.0, np.nan]])
    rows, per_label = studies.event_table({"m": (paths, values)}, lambda p, v: v < 2.2, "end")
    counted, first, longest = per_label["m"]
    np.testing.assert_array_equal(counted, [True, False])  # seed 1 ends in NaN: not counted
    np.testing.assert_array_equal(first, [1, 2])
    np.testing.assert_array_equal(longest, [2.0, 0.5])
    assert rows == [["m", "1/2", "1.5 ± 0.5", "1.250e+00 ± 7.5e-01", "1.250e+00 ± 7.5e-01"]]
    _, ever = studies.event_table({"m": (paths, values)}, lambda p, v: v < 2.2, "any")
    np.testing.assert_array_equal(ever["m"][0], [True, True])
    _, never = studies.event_table({"m": (paths, values)}, lambda p, v: v < 0, "any")
    assert np.isnan(never["m"][1]).all()


def test_paths_figure_draws_every_label_on_its_panel():
    matplotlib.use("Agg")
    path = np.stack([np.linspace(-1, 0, 5), np.linspace(1, 0, 5)], axis=1)[None]  # 1 seed
    panels = {
        "bowl": (lambda t: t[0] ** 2 + t[1] ** 2, (-2, 2, -2, 2), {"a": path, "b": -path}, 0, None),
        "min": (lambda t: t[0] ** 2, (-2, 2, -2, 2), {"a": path}, 0, (0.0, 0.0)),
    }
    fig = studies.paths_figure(panels, size=(8, 4), title="both", log_levels=True)
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == ["bowl", "min"] and fig._suptitle.get_text() == "both"
    labels = [[line.get_label() for line in ax.get_lines()] for ax in axes]
    assert labels == [["a", "b", "start (seed 0)"], ["a", "start (seed 0)", "known minimum"]]
    np.testing.assert_array_equal(axes[0].get_lines()[1].get_xydata(), -path[0])


@pytest.mark.slow
def test_problem_data_loss_is_cross_entropy(tmp_path):
    """The tiny problem's objective: mean cross-entropy + the penalty, at the trained theta."""
    problem = tiny_problem(pathlib.Path(tmp_path))
    run = problem.fit(lambda c: optim.sgd(c.lr), "sgd", batch_size=0)
    params = run.result.state.params
    for seed in range(2):
        theta = jax.tree.map(lambda w, seed=seed: w[seed], params)
        logits = problem.model.apply({"params": theta}, problem.splits.train["x"])
        loss = losses.softmax_cross_entropy_with_integer_labels(logits, problem.splits.train["y"])
        expected = loss + problem.penalty(theta)
        assert run.final["objective"][seed] == pytest.approx(float(expected), rel=1e-6)


def test_gradient_noise_at_is_gradient_noise_per_replica(tmp_path):
    """Replica i: problems.gradient_noise of the mean cross-entropy at its own parameters, with
    minibatches drawn from seed seeds[i]'s data stream (folded apart from training's)."""
    problem = tiny_problem(tmp_path)
    init = train.classifier(problem.model, optim.sgd(0.1), problem.splits.train["x"][:1]).init
    seeds = jnp.array([3, 5, 3])  # a sweep repeats the seeds at every grid point
    params = jax.vmap(lambda s: init(train.stream(s, "init")).params)(seeds)
    measured = studies.gradient_noise_at(problem, params, seeds, (1, 4), 8)
    assert [m.shape for m in measured] == [(3, 2)] * 3
    x, y = jnp.asarray(problem.splits.train["x"]), jnp.asarray(problem.splits.train["y"])

    def data_loss(theta, xb, yb):
        logits = problem.model.apply({"params": theta}, xb)
        return losses.softmax_cross_entropy_with_integer_labels(logits, yb)

    noise = jax.jit(
        lambda theta, key: problems.gradient_noise(data_loss, theta, x, y, (1, 4), 8, key)
    )
    for i in range(2):
        theta = jax.tree.map(lambda w, i=i: w[i], params)
        alone = noise(theta, jax.random.fold_in(train.stream(int(seeds[i]), "data"), 2**20))
        for ours, expected in zip(measured, alone):
            np.testing.assert_allclose(ours[i], expected, rtol=1e-5)
    np.testing.assert_array_equal(measured[0][0], measured[0][2])  # same seed and parameters


def test_curves_and_bars_draws_both_panels():
    matplotlib.use("Agg")
    curves = {"a": (np.arange(3), np.array([[1.0, 0.1, 0.01], [2.0, 0.2, 0.02]]))}
    bars = {"a": [0.5, 0.7], "b": [0.2, 0.4]}
    fig = studies.curves_and_bars(curves, bars, "t", ylabel="loss", baseline=0.9)
    left, right = fig.axes
    assert left.get_yscale() == "log" and left.get_ylabel() == "loss"
    np.testing.assert_allclose(left.get_lines()[0].get_ydata(), [1.5, 0.15, 0.015])
    heights = [patch.get_height() for patch in right.patches]
    np.testing.assert_allclose(heights, [0.6, 0.3])
    assert right.get_ylabel() == "test accuracy" and fig._suptitle.get_text() == "t"
    assert right.get_lines()[-1].get_ydata()[0] == 0.9  # the baseline
