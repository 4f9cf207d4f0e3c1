"""lexicon.conv_studies: filters vs scipy, the shape rule, pictures, the shift section."""

import math

import matplotlib.pyplot as plt
import numpy as np
import pytest

from lexicon import conv_studies, data
from lexicon.nn import conv
from lexicon.report import Report


def test_filter_gaps_on_a_photo_crop():
    rgb = data.sample_images()["china"][100:164, 200:264]
    photo = (rgb @ np.array([0.299, 0.587, 0.114], np.float32)).astype(np.float32)
    kernels = {
        "sobel_x": np.asarray(conv.SOBEL_X, np.float32),
        "blur": conv.box_kernel(3),
        "box (undivided)": conv.box_kernel(3, normalized=False),
    }
    rows = {r["filter"]: r for r in conv_studies.filter_gaps({"crop": photo}, kernels)}
    assert list(rows) == list(kernels)
    for row in rows.values():
        assert row["convolve_gap"] < 1e-5 and row["correlate_gap"] < 1e-5
        assert row["size"] == "3x3"
    assert rows["sobel_x"]["kernel_sum"] == 0.0
    # Dividing the box by its size keeps the mean intensity; the undivided box multiplies it.
    assert rows["blur"]["kernel_sum"] == pytest.approx(1.0)
    assert rows["blur"]["intensity_ratio"] == pytest.approx(1.0, rel=0.02)
    assert rows["box (undivided)"]["intensity_ratio"] == pytest.approx(9.0, rel=0.02)
    # The ratio is mean(valid output) / mean(image), transcribed with scipy in float64.
    import scipy.signal

    valid = scipy.signal.convolve2d(photo.astype(np.float64), kernels["blur"], mode="valid")
    assert rows["blur"]["intensity_ratio"] == pytest.approx(valid.mean() / photo.mean(), 1e-5)


def test_shape_rule_on_a_rectangular_image():
    """floor((n + lo + hi - k) / s) + 1 per side, for a 9 x 12 image and a 3 x 2 kernel."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1, 9, 12, 2)).astype(np.float32)
    bank = rng.normal(size=(3, 2, 2, 4)).astype(np.float32)
    cases = ((1, "valid"), (2, "same"), (3, 1))
    rows = conv_studies.shape_rule(x, bank, cases)
    expected = [(7, 11, 4), (5, 6, 4), ((9 + 2 - 3) // 3 + 1, (12 + 2 - 2) // 3 + 1, 4)]
    for row, shape in zip(rows, expected):
        assert row["run"] == row["rule"] == row["lax_shape"] == shape
        assert row["gap"] < 1e-5
    assert rows[0]["formula"] == "floor((9 + 0 + 0 - 3) / 1) + 1 = 7"
    assert rows[2]["padding"] == "1 (1, 1)"
    same = math.ceil(9 / 2)
    assert rows[1]["rule"][0] == same


def test_signed_style_is_centred_on_zero():
    values = np.array([[-4.0, 1.0], [2.0, 0.5]])
    assert conv_studies.signed(values) == {"cmap": "RdBu_r", "vmin": -4.0, "vmax": 4.0}
    style = conv_studies.signed(values, percentile=50)
    assert style["vmax"] == -style["vmin"] == pytest.approx(np.median(np.abs(values)))


def test_picture_grid_leaves_blank_cells_off():
    picture = np.arange(6.0).reshape(2, 3)
    rows = [[("a", picture, {"cmap": "gray"}), ("b", picture, {})], [None]]
    fig = conv_studies.picture_grid(rows, cell=(1.0, 1.5))
    axes = fig.axes
    assert len(axes) == 4 and tuple(fig.get_size_inches()) == (2.0, 3.0)
    assert [ax.get_title() for ax in axes] == ["a", "b", "", ""]
    assert [len(ax.images) for ax in axes] == [1, 1, 0, 0]
    assert not any(ax.axison for ax in axes)
    plt.close(fig)


def test_labelled_points_sit_at_the_seed_means():
    points = {"small": (10, [0.5, 0.7]), "large": (1000, [0.9, 0.9])}
    fig = conv_studies.labelled_points(points, xlabel="params", ylabel="acc", log_x=True)
    ax = fig.axes[0]
    centres = [line.get_xydata()[0] for line in ax.lines if line.get_marker() == "o"]
    np.testing.assert_allclose(centres, [[10, 0.6], [1000, 0.9]])
    assert [t.get_text() for t in ax.texts] == ["small", "large"]
    assert ax.get_xscale() == "log"
    plt.close(fig)


def test_shift_section_table_verdicts_and_figures(tmp_path):
    """Per net the mean ± std table, two unpaired verdicts (lower is better) and the bars."""
    shifts = {
        "max": {"feature_change": np.array([0.3, 0.32]), "accuracy": np.array([0.9, 0.9]),
                "shifted_accuracy": np.array([0.8, 0.82]), "accuracy_drop": np.array([0.1, 0.08])},
        "stride": {"feature_change": np.array([0.5, 0.52]), "accuracy": np.array([0.9, 0.9]),
                   "shifted_accuracy": np.array([0.7, 0.7]), "accuracy_drop": np.array([0.2, 0.2])},
    }  # fmt: skip
    names = {"max": ("2x2 max-pool", "max-pool"), "stride": ("stride 2", "stride-only")}
    report = Report(tmp_path, "t")
    figures = conv_studies.shift_section(report, shifts, names, "caption")
    assert figures["max"]["feature_change"].values is shifts["max"]["feature_change"]
    assert set(figures["stride"]) == {"feature_change", "accuracy_drop"}
    text = report.write().read_text()
    assert "| 2x2 max-pool | 0.3100 ± 0.0100 | 0.9000 ± 0.0000 | 0.8100 ± 0.0100 |" in text
    assert "max-pool - stride-only = -0.2000" in text  # the feature change, lower is better
    assert "1-pixel shifts: max-pool vs stride-only (± 1 std)" in text
    assert (tmp_path / "shift_invariance.png").exists()
