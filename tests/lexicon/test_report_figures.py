"""lexicon.report's standard figures and its rule for claims across seeds; lexicon.baselines."""

import matplotlib
import numpy as np
import pytest
from scipy import stats

from lexicon import baselines, data, report


def test_paired_compare_is_a_t_interval_on_the_differences():
    a = np.array([0.90, 0.92, 0.91, 0.95])
    b = np.array([0.88, 0.90, 0.91, 0.91])
    result = report.compare(a, b, paired=True, names=("new", "old"))
    d = a - b
    half = stats.t.ppf(0.975, 3) * d.std(ddof=1) / 2
    np.testing.assert_allclose([result.low, result.high], [d.mean() - half, d.mean() + half])
    ttest = stats.ttest_rel(a, b)
    # The interval excludes 0 exactly when the two-sided paired t-test rejects at 5%.
    assert (result.low > 0) == (ttest.pvalue < 0.05)
    assert result.wins == 3 and result.seeds == 4
    assert result.verdict == ("holds" if result.low > 0 else "undecided")
    assert result.sentence.startswith("new is ")


def test_unpaired_compare_is_welchs_interval_and_direction_matters():
    rng = np.random.default_rng(0)
    a, b = rng.normal(1.0, 0.1, 6), rng.normal(0.0, 0.2, 5)
    result = report.compare(a, b, paired=False)
    welch = stats.ttest_ind(a, b, equal_var=False)
    low, high = welch.confidence_interval(0.95)
    np.testing.assert_allclose([result.low, result.high], [low, high])
    assert result.verdict == "holds" and result.wins == 30
    lower = report.compare(a, b, paired=False, higher_is_better=False)
    assert lower.verdict == "reversed" and "opposite" in lower.sentence
    assert report.compare([1.0], [0.0], paired=True).verdict == "undecided"
    noisy = report.compare([1.0, -1.0, 0.5], [0.0, 0.0, 0.0], paired=True)
    assert noisy.verdict == "undecided"


def test_standard_figures_return_figures_that_a_report_embeds(tmp_path):
    x = np.arange(5)
    figures = {
        "curves": report.plot_curves(
            {"a": (x, np.ones((3, 5))), "b": (x, np.zeros((3, 5)))}, ylabel="loss"
        ),
        "bars": report.plot_bars({"a": [1, 2], "b": [3, 4]}, baseline=2.5),
        "images": report.plot_images(np.zeros((12, 8, 8, 1)), columns=5, titles=range(12)),
        "scatter": report.plot_scatter(np.zeros((10, 2)), np.arange(10) % 3),
        "heatmap": report.plot_heatmap(np.eye(3), row_labels="abc", col_labels="xyz"),
    }
    page = report.Report(tmp_path, "figures")
    for name, fig in figures.items():
        assert isinstance(fig, matplotlib.figure.Figure)
        page.figure(fig, name, caption=name)
    text = page.write().read_text()
    for name in figures:
        assert (tmp_path / f"{name}.png").stat().st_size > 1000
        assert f"({name}.png)" in text
    images = figures["images"].axes
    assert len(images) == 15 and sum(ax.get_images() != [] for ax in images) == 12


@pytest.fixture(scope="module")
def digits():
    return data.load("digits", seed=0)


def test_baselines_are_seeded_and_above_chance(digits):
    logistic = baselines.logistic_regression(digits.train, digits.test)
    assert logistic > 0.9
    mlp = baselines.mlp_classifier(digits.train, digits.test, (16,), max_iter=300)
    assert mlp == baselines.mlp_classifier(digits.train, digits.test, (16,), max_iter=300)
    assert mlp > 0.85
    probe = baselines.linear_probe(
        digits.train["x"], digits.train["y"], digits.test["x"], digits.test["y"]
    )
    assert probe > 0.9
