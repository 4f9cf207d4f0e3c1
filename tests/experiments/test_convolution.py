"""experiments/convolution.py: filters vs literal sums and scipy, the shape rule, end to end."""

import json
import math

import numpy as np
import pytest
import scipy.signal

from experiments import convolution
from lexicon import cli
from lexicon.nn import conv


def literal_convolution_same(image, kernel):
    """S(i, j) = sum_m sum_n I(m, n) K(i - m, j - n), the centred H x W slice of the full sum."""
    height, width = image.shape
    kh, kw = kernel.shape
    full = np.zeros((height + kh - 1, width + kw - 1))
    for i in range(full.shape[0]):
        for j in range(full.shape[1]):
            for m in range(height):
                for n in range(width):
                    if 0 <= i - m < kh and 0 <= j - n < kw:
                        full[i, j] += image[m, n] * kernel[i - m, j - n]
    top, left = (kh - 1) // 2, (kw - 1) // 2
    return full[top : top + height, left : left + width]


def literal_correlation_same(image, kernel):
    """S(i, j) = sum_m sum_n I(i + m - p, j + n - q) K(m, n), zeros outside the image."""
    height, width = image.shape
    kh, kw = kernel.shape
    p, q = (kh - 1) // 2, (kw - 1) // 2
    out = np.zeros((height, width))
    for i in range(height):
        for j in range(width):
            for m in range(kh):
                for n in range(kw):
                    r, c = i + m - p, j + n - q
                    if 0 <= r < height and 0 <= c < width:
                        out[i, j] += image[r, c] * kernel[m, n]
    return out


def test_grayscale_is_the_luma_sum():
    rgb = np.random.default_rng(0).uniform(size=(4, 5, 3)).astype(np.float32)
    expected = 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]
    np.testing.assert_allclose(convolution.grayscale(rgb), expected, rtol=1e-6)


def test_kernels_are_the_documents():
    bank = convolution.filter_bank(5)
    np.testing.assert_array_equal(bank["emboss"], [[-2, -2, 0], [-2, 6, 0], [0, 0, 0]])
    np.testing.assert_allclose(bank["blur"], np.full((5, 5), 1 / 25))
    assert bank["blur"].sum() == pytest.approx(1.0)
    assert conv.box_kernel(4, normalized=False).sum() == 16


@pytest.mark.parametrize("name", ["sobel_x", "sobel_y", "emboss", "blur"])
def test_filters_match_the_literal_sums(name, x64):
    image = np.random.default_rng(1).uniform(size=(7, 9))
    kernel = convolution.filter_bank(3)[name].astype(np.float64)
    np.testing.assert_allclose(
        conv.filter_image(image, kernel), literal_convolution_same(image, kernel), atol=1e-12
    )
    np.testing.assert_allclose(
        conv.filter_image(image, kernel, correlate=True),
        literal_correlation_same(image, kernel),
        atol=1e-12,
    )


def test_gradient_magnitude_matches_scipy(x64):
    image = np.random.default_rng(2).uniform(size=(12, 10))
    gx = scipy.signal.convolve2d(image, np.asarray(conv.SOBEL_X), mode="same")
    gy = scipy.signal.convolve2d(image, np.asarray(conv.SOBEL_Y), mode="same")
    np.testing.assert_allclose(conv.gradient_magnitude(image), np.sqrt(gx**2 + gy**2), atol=1e-12)


def test_shape_table_runs_and_rule_agree():
    config = convolution.get_config()
    config.image_size, config.kernel_size, config.num_kernels = 40, 6, 3
    image = np.random.default_rng(3).uniform(size=(50, 60)).astype(np.float32)
    rows = convolution.shape_table(config, image)
    assert len(rows) == len(convolution.SHAPE_CASES)
    for row, (stride, padding) in zip(rows, convolution.SHAPE_CASES):
        lo, hi = {"valid": (0, 0), "full": (5, 5)}.get(padding, (None, None))
        if isinstance(padding, int):
            lo = hi = padding
        if padding == "same":
            total = max((math.ceil(40 / stride) - 1) * stride + 6 - 40, 0)
            lo, hi = total // 2, total - total // 2
        side = (40 + lo + hi - 6) // stride + 1
        assert row["run"] == row["rule"] == row["lax_shape"] == (side, side, 3)
        assert row["gap"] < 1e-4
    assert rows[0]["run"] == (35, 35, 3)  # valid, stride 1: image - kernel + 1


def test_bad_flag_stops_before_compiling(capsys):
    with pytest.raises(SystemExit) as stop:
        cli.run(
            convolution.get_config,
            convolution.train_and_evaluate,
            convolution.RULES,
            argv=["convolution", "--config.activation=sigmoid"],
        )
    assert stop.value.code == 2
    assert "activation" in capsys.readouterr().err


SCALES = {
    # tiny: through the cli, as a sweep of two learning rates x two seeds in one program
    "tiny": dict(
        epochs=1,
        seeds=2,
        image_size=16,
        kernel_size=4,
        num_kernels=2,
        matrix_size=3,
        sweep="lr=1e-4,3e-3",
    ),
    "small": dict(epochs=3, seeds=2, image_size=64, kernel_size=8, num_kernels=4),
}


@pytest.mark.parametrize("scale", ["tiny", pytest.param("small", marks=pytest.mark.slow)])
def test_experiment_end_to_end(scale, tmp_path):
    settings = SCALES[scale]
    argv = [f"--config.{key}={value}" for key, value in settings.items()]
    argv = ["convolution", *argv, "--config.progress=false", f"--workdir={tmp_path}"]
    results = cli.run(
        convolution.get_config, convolution.train_and_evaluate, convolution.RULES, argv
    )
    side = settings["image_size"] - settings["kernel_size"] + 1  # the "valid" maps
    maps = (side, side, settings["num_kernels"])
    for name in (
        "report.md",
        "filters.png",
        "learned_kernels.png",
        "curves.png",
        "conv_matrix.png",
    ):
        assert (tmp_path / name).exists(), name
    names = (
        "max_filter_gap",
        "valid_map_side",
        "shape_mismatches",
        "max_lax_gap",
        "max_matrix_gap",
    )
    for name in names:
        assert results[name].verdict() == "matches", name
    assert results["valid_map_side"].values == maps[0]
    assert results["max_filter_gap"].values < 1e-4 and results["max_lax_gap"].values < 1e-4
    report = (tmp_path / "report.md").read_text()
    assert "scipy.signal" in report and str(maps) in report
    # Convolution as a matrix product: M vec(x), M^T delta and the kernel gradient agree with
    # conv, jax.vjp and scipy.signal to float64 rounding, on every row of the table.
    assert results["max_matrix_gap"].values < 1e-12
    assert "Convolution as a matrix product" in report and "Toeplitz (gap 0)" in report
    rows = [line for line in report.splitlines() if line.startswith(("| cross-corr", "| convol"))]
    assert len(rows) == 6
    gaps = [cell for row in rows for cell in row.split("|")[6:11] if cell.strip() != "—"]
    assert len(gaps) >= 6 * 3 and max(float(cell) for cell in gaps) < 1e-12
    blur = next(line for line in report.splitlines() if line.startswith("| blur |"))
    assert float(blur.split("|")[4]) == pytest.approx(1.0, rel=0.02)  # intensity out / in
    if scale == "tiny":
        # One epoch: chance is 0.1; lr 3e-3 reaches about 0.5, lr 1e-4 stays far below, and the
        # sweep picks 3e-3 by validation accuracy. One figure per grid point.
        sweep = json.loads((tmp_path / "results.json").read_text())["sweeps"]["lenet5"]
        assert [p["point"] for p in sweep["points"]] == [{"lr": 1e-4}, {"lr": 3e-3}]
        slow, fast = (p["metrics"]["test/accuracy"]["per_seed"] for p in sweep["points"])
        assert min(fast) > 0.3 and min(fast) > max(slow) + 0.1, (slow, fast)
        assert sweep["select"]["metric"] == "val/accuracy" and sweep["best"] == 1
        assert set(results["test_accuracy"]) == {"lr=0.0001", "lr=0.003"}
        assert "## Sweep of lenet5: lr" in report
        return
    accuracy = np.asarray(results["test_accuracy"].values)
    assert accuracy.shape == (2,) and np.all(np.isfinite(accuracy))
    # Chance is 0.1; LeNet-5 on 8x8 digits reaches 0.81 and 0.86 after three epochs.
    assert np.all(accuracy > 0.6)
    assert 0.5 < results["test_accuracy"].reference <= 1.0  # pixels + Sobel maps
    assert 0.5 < results["logistic_regression_pixels"] <= 1.0
