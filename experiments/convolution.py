"""Convolution as filtering: Sobel, emboss and blur kernels, the output-size rule, learned kernels.

Three parts (SPEC §5, document 001):
1. Hand-made kernels as filters. The 2-D convolution S(i, j) = sum_m sum_n I(m, n) K(i-m, j-n)
   of scikit-learn's sample photographs (in grayscale) with the Sobel derivative kernels, the
   gradient magnitude sqrt(G_x^2 + G_y^2), the emboss kernel [[-2,-2,0],[-2,6,0],[0,0,0]] and a
   k x k box blur whose ones are divided by the kernel size k^2, which keeps the mean intensity
   (an undivided box multiplies it by k^2). Both our convolution and our cross-correlation
   S(i, j) = sum_m sum_n I(i+m, j+n) K(m, n) (lexicon.nn.conv) are checked against scipy.signal.
2. The shape rule. A bank of 32 kernels of 16 x 16 on a 256 x 256 image gives 32 maps of
   241 x 241 (image - kernel + 1); with stride s and p zeros of padding on each side,
   floor((n + 2p - k) / s) + 1. The table runs the convolution and applies the rule.
3. Feature learning. Instead of fixing the kernel's numbers, a LeNet-5 learns them from the
   digits; its first-layer kernels are drawn, and its accuracy is set next to linear
   classifiers on raw pixels and on hand-made Sobel features.
4. Convolution as a matrix product (lexicon.nn.conv_matrix): vec(S) = M vec(I), M doubly block
   Toeplitz (block circulant with wrap-around padding); the backward pass is M^T delta and the
   kernel gradient the correlation of the input with delta, checked in float64 against our
   conv, jax.vjp and scipy.signal.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lexicon import baselines, cli, data, runs, train
from lexicon.conv_studies import filter_gaps, matrix_section, picture_grid, shape_rule, signed
from lexicon.nn import conv
from lexicon.nn.cnn import lenet5_for
from lexicon.report import Figure, Report, compare, mean_std, plot_curves
from lexicon.report import figure as report_figure
from lexicon.rules import Choice, ConfigError, Range, check_batch_size, positive

EMBOSS = ((-2.0, -2.0, 0.0), (-2.0, 6.0, 0.0), (0.0, 0.0, 0.0))
# ITU-R BT.601 luma weights: the usual RGB -> grayscale conversion.
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
# (stride, padding) rows of the shape table; an int pads that many zeros on each side.
SHAPE_CASES = ((1, "valid"), (1, "same"), (1, "full"), (2, "valid"), (2, "same"), (4, 3))
GRAY = {"cmap": "gray", "vmin": 0, "vmax": 1}
SWEEPABLE = ("lr",)  # --config.sweep='lr=1e-3,3e-3': the LeNet-5's rates x seeds


def get_config():
    config = train.defaults()
    config.seeds = 3
    config.epochs = 40
    config.batch_size = 32
    config.lr = 3e-3  # Adam learning rate of the LeNet-5 trained on digits
    config.activation = "relu"  # tanh | relu: activation of that LeNet-5
    config.blur_size = 5  # side k (odd) of the box blur, whose ones are divided by k^2
    config.image_size = 256  # side of the square grayscale crop in the shape table
    config.num_kernels = 32  # kernels in the bank of the shape table
    config.kernel_size = 16  # side of each kernel of that bank
    config.matrix_size = 4  # side of the image whose convolution matrix M is drawn and checked
    return config


RULES = {
    "lr": positive(),
    "activation": Choice("tanh", "relu"),
    "blur_size": Range(1, 99),
    "image_size": Range(8, 1024),
    "num_kernels": Range(1, 256),
    "kernel_size": Range(1, 64),
    "matrix_size": Range(3, 16),
}


def check_config(config):
    """Cross-key rules; cli.run checks them before anything compiles."""
    if config.blur_size % 2 == 0:
        raise ConfigError(f"config.blur_size={config.blur_size} must be odd")
    side = min(min(image.shape[:2]) for image in data.sample_images().values())
    if config.image_size > side:
        raise ConfigError(
            f"config.image_size={config.image_size} exceeds the {side} pixels of the sample "
            f"photographs' shorter side; use a value in [8, {side}]"
        )
    if config.kernel_size > config.image_size:
        raise ConfigError(
            f"config.kernel_size={config.kernel_size} exceeds config.image_size={config.image_size}"
        )
    check_batch_size(config, cli.train_examples("digits", seed=config.data_seed))


# --- 1. hand-made kernels as filters -----------------------------------------------------------


def grayscale(rgb: np.ndarray) -> np.ndarray:
    """Y = 0.299 R + 0.587 G + 0.114 B, an (H, W) float32 image in [0, 1]."""
    return (rgb @ LUMA).astype(np.float32)


def filter_bank(blur_size: int) -> dict[str, np.ndarray]:
    """The named 2-D kernels of the documents, as float32 (KH, KW) arrays."""
    return {
        "sobel_x": np.asarray(conv.SOBEL_X, np.float32),
        "sobel_y": np.asarray(conv.SOBEL_Y, np.float32),
        "emboss": np.asarray(EMBOSS, np.float32),
        "blur": conv.box_kernel(blur_size),
    }


def filter_pictures(images: dict[str, np.ndarray], kernels: dict[str, np.ndarray]) -> list:
    """One row per image: the image and every filter output, each in a colour map that suits
    it (signed Sobel derivatives diverge around 0)."""
    rows = []
    for name, image in images.items():
        sobel = {f"Sobel {a}": conv.filter_image(image, kernels[f"sobel_{a}"]) for a in "xy"}
        magnitude = conv.gradient_magnitude(image)
        # The emboss kernel sums to 0: mid-gray marks flat regions, as in photo editors.
        emboss = np.clip(conv.filter_image(image, kernels["emboss"]) + 0.5, 0, 1)
        size = len(kernels["blur"])
        pictures = [
            ("grayscale", image, GRAY),
            *((title, values, signed(values, 99.5)) for title, values in sobel.items()),
            ("Sobel magnitude", magnitude,
             {"cmap": "gray", "vmin": 0, "vmax": np.percentile(magnitude, 99.5)}),
            ("emboss", emboss, GRAY),
            (f"blur {size}x{size}", conv.filter_image(image, kernels["blur"]), GRAY),
        ]  # fmt: skip
        rows.append([(f"{name}: {title}", values, style) for title, values, style in pictures])
    return rows


# --- 2. the shape rule -------------------------------------------------------------------------


def shape_table(config, image: np.ndarray) -> list[dict]:
    """A random normal bank of config.num_kernels kernels (k x k) on the centred square crop
    (config.image_size) of ``image``: its maps by running, by the rule and by jax.lax
    (lexicon.conv_studies.shape_rule) for every case of SHAPE_CASES."""
    n, k = config.image_size, config.kernel_size
    top, left = (image.shape[0] - n) // 2, (image.shape[1] - n) // 2
    x = jnp.asarray(image[top : top + n, left : left + n])[None, :, :, None]
    bank = jax.random.normal(jax.random.key(config.seed), (k, k, 1, config.num_kernels))
    return shape_rule(x, bank / k, SHAPE_CASES)  # dividing by k keeps the map values O(1)


# --- 3. learned kernels ------------------------------------------------------------------------


def linear_references(splits) -> dict[str, float]:
    """Test accuracy of logistic regression on raw pixels and on pixels + Sobel features
    (standardized with training statistics: it only speeds up L-BFGS)."""
    images = {"train": splits.train["x"][..., 0], "test": splits.test["x"][..., 0]}
    pixels = {k: v.reshape(len(v), -1) for k, v in images.items()}
    edges = {k: np.concatenate([pixels[k], conv.sobel_features(v)], 1) for k, v in images.items()}
    return {
        label: baselines.linear_probe(x["train"], splits.train["y"], x["test"], splits.test["y"])
        for label, x in (("raw pixels", pixels), ("pixels + Sobel x, y maps", edges))
    }


def learn_kernels(config, workdir):
    """A LeNet-5 with "same" padding (8x8 digits go 8 -> 4 -> 2 through its two stages) learns
    its kernels; returns its fit, the pictures of the first replica's C1 kernels (top row)
    and of their maps of one test digit (bottom row), and the linear references."""
    splits = data.load("digits", seed=config.data_seed, flatten=False)
    model = lenet5_for(8, splits.num_classes, config.activation)
    result = train.fit(
        config,
        # A task builder (config -> Task): in a sweep, each grid point gets its own rate.
        lambda c: train.classifier(model, optax.adam(c.lr), jnp.zeros((1, 8, 8, 1))),
        splits.train,
        workdir / "lenet5",
        eval_splits={"val": splits.val, "test": splits.test},
    )
    first = runs.replica(result.state.params)
    kernels = np.asarray(first["conv1"]["kernel"])[:, :, 0]
    digit = splits.test["x"][:1]
    _, sown = model.apply({"params": first}, digit, mutable=["intermediates"])
    maps = np.asarray(sown["intermediates"]["c1"][0][0])
    top = [("input digit", digit[0, :, :, 0], {"cmap": "gray_r"})]
    top += [(f"kernel {i}", k, signed(k)) for i, k in enumerate(np.moveaxis(kernels, -1, 0))]
    bottom = [(f"map {i}", m, {"cmap": "magma"}) for i, m in enumerate(np.moveaxis(maps, -1, 0))]
    pictures = [top, [None, *bottom]]
    return result, pictures, linear_references(splits)


# --- the run -----------------------------------------------------------------------------------


def train_and_evaluate(config, workdir):
    check_config(config)  # an even blur has no centre pixel: "same" would shift by half a pixel
    images = {name: grayscale(rgb) for name, rgb in data.sample_images().items()}
    kernels = filter_bank(config.blur_size)
    undivided = {"box (undivided)": conv.box_kernel(config.blur_size, normalized=False)}
    checks = filter_gaps(images, {**kernels, **undivided})
    shapes = shape_table(config, next(iter(images.values())))
    result, learned, references = learn_kernels(config, workdir)
    test_acc = result.final("test/accuracy")

    report = Report(workdir, "Convolution: hand-made filters, the shape rule, learned kernels")
    report.text(
        "Filtering is convolution with a small kernel. The grayscale sample photographs of "
        "scikit-learn ("
        + ", ".join(f"{n} {im.shape[0]}x{im.shape[1]}" for n, im in images.items())
        + ') are convolved ("same" zero padding) with the Sobel kernels, the emboss kernel and '
        f"a {config.blur_size}x{config.blur_size} box divided by its size."
    )
    report.figure(
        picture_grid(filter_pictures(images, kernels), cell=(2.6, 2.0)),
        "filters",
        "hand-made kernels applied by lexicon.nn.conv.convolve_2d",
    )
    report.table(
        ["filter", "kernel", "kernel sum", "mean intensity out / in",
         "max abs gap, convolve vs scipy.signal.convolve2d",
         "max abs gap, cross-correlate vs scipy.signal.correlate2d"],
        [(r["filter"], r["size"], f"{r['kernel_sum']:g}", f"{r['intensity_ratio']:.4f}",
          f"{r['convolve_gap']:.2e}", f"{r['correlate_gap']:.2e}") for r in checks],
        caption="Filters against scipy.signal (float64), both sample images; intensity ratio on "
        "the valid region",
    )  # fmt: skip
    report.text(
        f"A bank of {config.num_kernels} kernels of {config.kernel_size}x{config.kernel_size} "
        f"(random normal, seed {config.seed}) on a {config.image_size}x{config.image_size} "
        "crop: the shape of the maps from running lexicon.nn.conv and from the rule "
        "floor((n + lo + hi - k) / s) + 1, with jax.lax.conv_general_dilated as the reference "
        "for the values."
    )
    report.table(
        ["stride", "padding (lo, hi)", "maps by running", "maps by the rule", "rule", "lax maps",
         "max abs gap vs lax"],
        [(r["stride"], r["padding"], r["run"], r["rule"], r["formula"], r["lax_shape"],
          f"{r['gap']:.2e}") for r in shapes],
        caption="Output-size rule",
    )  # fmt: skip
    report.figure(
        picture_grid(learned, cell=(1.6, 1.7)),
        "learned_kernels",
        f"LeNet-5 C1 kernels (5x5) learned on digits, seed {config.seed}, and their maps",
    )
    report.table(
        ["model", "test accuracy"],
        [(f"LeNet-5 ({config.activation}), learned kernels, {config.seeds} seeds",
          mean_std(test_acc))]
        + [(f"logistic regression on {k} (scikit-learn)", f"{v:.4f}")
           for k, v in references.items()],
        caption="Feature learning vs hand-made features on the digits test split",
    )  # fmt: skip
    edges = references["pixels + Sobel x, y maps"]
    names = ("learned kernels", "Sobel features + linear classifier")
    verdict = compare(test_acc, np.full(test_acc.shape, edges), paired=True, names=names)
    report.text(f"Test accuracy on the same split: {verdict.sentence}.")
    curves = {k.split("/")[0]: result.curve(k) for k in ("train/accuracy", "val/accuracy")}
    report.figure(
        plot_curves(curves, ylabel="accuracy"),
        "curves",
        "LeNet-5 on digits: seed mean with a ±1 std band",
    )
    matrix = matrix_section(report, config.matrix_size, config.seed)
    report.write()

    valid = next(r for r in shapes if r["stride"] == 1 and r["padding"].startswith("valid"))
    filter_gap = max(max(r["convolve_gap"], r["correlate_gap"]) for r in checks)
    lax_gap = max(r["gap"] for r in shapes)
    rule = "floor((n + lo + hi - k) / s) + 1 and jax.lax"
    mismatches = sum(not r["run"] == r["rule"] == r["lax_shape"] for r in shapes)
    sobel = {
        "reference": edges,
        "source": "scikit-learn logistic regression on pixels + Sobel maps",
    }
    return {
        # equal up to float32 rounding
        "max_filter_gap": Figure(filter_gap, 0.0, "scipy.signal convolve2d / correlate2d", 1e-4),
        "valid_map_side": Figure(valid["run"][0], valid["rule"][0], "n - k + 1", 0.0),
        "shape_mismatches": Figure(mismatches, 0.0, rule, 0.0),
        "max_lax_gap": Figure(lax_gap, 0.0, "jax.lax.conv_general_dilated", 1e-4),
        # learned kernels against hand-made Sobel features under a linear classifier (in a
        # sweep, one figure per grid point)
        "test_accuracy": report_figure(result, "test/accuracy", **sobel),
        "logistic_regression_pixels": references["raw pixels"],
        # M vec(x), M^T delta and the kernel gradient against the references, float64
        "max_matrix_gap": Figure(matrix["max_gap"], 0.0, "conv, jax.vjp, scipy.signal", 1e-12),
    }


if __name__ == "__main__":
    cli.run(get_config, train_and_evaluate, RULES)
