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
import matplotlib.pyplot as plt
import numpy as np
import optax
import scipy.signal

from lexicon import baselines, cli, data, train
from lexicon.nn import conv, conv_matrix
from lexicon.nn.cnn import LeNet5, lenet5_for
from lexicon.report import Figure, Report, compare, mean_std, plot_curves, plot_heatmap
from lexicon.rules import Choice, ConfigError, Range, check_batch_size, positive

EMBOSS = ((-2.0, -2.0, 0.0), (-2.0, 6.0, 0.0), (0.0, 0.0, 0.0))
# ITU-R BT.601 luma weights: the usual RGB -> grayscale conversion.
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
# (stride, padding) rows of the shape table; an int pads that many zeros on each side.
SHAPE_CASES = ((1, "valid"), (1, "same"), (1, "full"), (2, "valid"), (2, "same"), (4, 3))


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


def filter_checks(images: dict[str, np.ndarray], kernels: dict[str, np.ndarray]) -> list[dict]:
    """Per filter: kernel sum, mean-intensity ratio and the largest gap to scipy.signal.

    The ratio mean(valid output) / mean(image) is 1 for a kernel summing to 1 on a smooth
    image, and scales with the kernel sum otherwise. scipy works in float64 on the same image.
    """
    rows = []
    extra = {"box (undivided)": conv.box_kernel(len(kernels["blur"]), normalized=False)}
    for name, kernel in {**kernels, **extra}.items():
        conv_gap = corr_gap = 0.0
        ratios = []
        for image in images.values():
            reference = image.astype(np.float64)
            ours = conv.filter_image(image, kernel)
            theirs = scipy.signal.convolve2d(reference, kernel.astype(np.float64), mode="same")
            conv_gap = max(conv_gap, float(np.max(np.abs(ours - theirs))))
            ours = conv.filter_image(image, kernel, correlate=True)
            theirs = scipy.signal.correlate2d(reference, kernel.astype(np.float64), mode="same")
            corr_gap = max(corr_gap, float(np.max(np.abs(ours - theirs))))
            valid = conv.filter_image(image, kernel, padding="valid")
            ratios.append(float(valid.mean() / image.mean()))
        rows.append({"filter": name, "size": "x".join(map(str, kernel.shape)),
                     "kernel_sum": float(kernel.sum()), "intensity_ratio": float(np.mean(ratios)),
                     "convolve_gap": conv_gap, "correlate_gap": corr_gap})  # fmt: skip
    return rows


def filtered_images(images: dict[str, np.ndarray], kernels: dict[str, np.ndarray]) -> dict:
    """image name -> {panel title: 2-D array} of the original and every filter output."""
    panels = {}
    for name, image in images.items():
        panels[name] = {
            "grayscale": image,
            "Sobel x": conv.filter_image(image, kernels["sobel_x"]),
            "Sobel y": conv.filter_image(image, kernels["sobel_y"]),
            "Sobel magnitude": conv.gradient_magnitude(image),
            "emboss": conv.filter_image(image, kernels["emboss"]),
            f"blur {len(kernels['blur'])}x{len(kernels['blur'])}": conv.filter_image(
                image, kernels["blur"]
            ),
        }
    return panels


def filter_figure(panels: dict):
    rows, cols = len(panels), len(next(iter(panels.values())))
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.0 * rows), squeeze=False)
    for ax_row, (image_name, outputs) in zip(axes, panels.items()):
        for ax, (title, values) in zip(ax_row, outputs.items()):
            if title.startswith("Sobel ") and title != "Sobel magnitude":
                limit = np.percentile(np.abs(values), 99.5)
                ax.imshow(values, cmap="RdBu_r", vmin=-limit, vmax=limit)
            elif title == "emboss":
                # The emboss kernel sums to 0: mid-gray marks flat regions, as in photo editors.
                ax.imshow(np.clip(values + 0.5, 0, 1), cmap="gray", vmin=0, vmax=1)
            elif title == "Sobel magnitude":
                ax.imshow(values, cmap="gray", vmin=0, vmax=np.percentile(values, 99.5))
            else:
                ax.imshow(values, cmap="gray", vmin=0, vmax=1)
            ax.set_title(f"{image_name}: {title}", fontsize=8)
            ax.axis("off")
    fig.tight_layout()
    return fig


# --- 2. the shape rule -------------------------------------------------------------------------


def shape_table(config, image: np.ndarray) -> list[dict]:
    """Output maps of a random kernel bank on a square crop, by running it and by the rule.

    The run uses lexicon.nn.conv.cross_correlate_2d (gathered windows); jax.lax's convolution
    on the same operands is the independent reference for the values.
    """
    n, k = config.image_size, config.kernel_size
    top, left = (image.shape[0] - n) // 2, (image.shape[1] - n) // 2
    if top < 0 or left < 0:
        raise ValueError(f"image_size={n} exceeds the sample image {image.shape}")
    x = jnp.asarray(image[top : top + n, left : left + n])[None, :, :, None]
    bank = jax.random.normal(jax.random.key(config.seed), (k, k, 1, config.num_kernels))
    bank = bank / k  # keeps the map values O(1)
    rows = []
    for stride, padding in SHAPE_CASES:
        maps = conv.cross_correlate_2d(x, bank, stride, padding)
        pads = conv.resolve_padding((n, n), (k, k), (stride, stride), padding)
        reference = jax.lax.conv_general_dilated(
            x, bank, (stride, stride), pads, dimension_numbers=("NHWC", "HWIO", "NHWC"),
            precision=jax.lax.Precision.HIGHEST,
        )  # fmt: skip
        side = conv.output_size(n, k, stride, padding)
        lo, hi = pads[0]
        rows.append({"stride": stride, "padding": f"{padding} ({lo}, {hi})",
                     "run": tuple(int(d) for d in maps.shape[1:]),
                     "rule": (side, side, config.num_kernels),
                     "formula": f"floor(({n} + {lo} + {hi} - {k}) / {stride}) + 1 = {side}",
                     "gap": float(jnp.max(jnp.abs(maps - reference))),
                     "lax_shape": tuple(int(d) for d in reference.shape[1:])})  # fmt: skip
    return rows


# --- 3. learned kernels ------------------------------------------------------------------------


def make_model(config, num_classes: int) -> LeNet5:
    """LeNet-5 with "same" padding, so 8x8 digits go 8 -> 4 -> 2 through its two stages."""
    return lenet5_for(8, num_classes, config.activation)


def linear_references(splits) -> dict[str, float]:
    """Test accuracy of logistic regression on raw pixels and on pixels + Sobel features
    (standardized with training statistics: it only speeds up L-BFGS)."""

    def features(split, with_edges):
        images = split["x"][..., 0]
        flat = images.reshape(len(images), -1)
        x = np.concatenate([flat, conv.sobel_features(images)], axis=1) if with_edges else flat
        return {"x": x, "y": split["y"]}

    return {
        label: baselines.logistic_regression(
            features(splits.train, edges), features(splits.test, edges), standardize=True
        )
        for label, edges in (("raw pixels", False), ("pixels + Sobel x, y maps", True))
    }


def kernel_figure(kernels: np.ndarray, maps: np.ndarray, digit: np.ndarray):
    """Top row: the first-layer kernels of seed 0; bottom: their maps of one test digit."""
    count = kernels.shape[-1]
    fig, axes = plt.subplots(2, count + 1, figsize=(1.6 * (count + 1), 3.4))
    for ax in axes.ravel():
        ax.axis("off")
    axes[0, 0].imshow(digit, cmap="gray_r")
    axes[0, 0].set_title("input digit", fontsize=8)
    for index in range(count):
        kernel = kernels[:, :, 0, index]
        limit = np.abs(kernel).max()
        axes[0, index + 1].imshow(kernel, cmap="RdBu_r", vmin=-limit, vmax=limit)
        axes[0, index + 1].set_title(f"kernel {index}", fontsize=8)
        axes[1, index + 1].imshow(maps[:, :, index], cmap="magma")
        axes[1, index + 1].set_title(f"map {index}", fontsize=8)
    fig.tight_layout()
    return fig


def learn_kernels(config, workdir):
    splits = data.load("digits", seed=config.data_seed, flatten=False)
    model = make_model(config, splits.num_classes)
    task = train.classifier(model, optax.adam(config.lr), jnp.zeros((1, 8, 8, 1)))
    result = train.fit(
        config,
        task,
        splits.train,
        workdir / "lenet5",
        eval_splits={"val": splits.val, "test": splits.test},
    )
    first = jax.tree.map(lambda a: a[0], result.state.params)
    kernels = np.asarray(first["conv1"]["kernel"])
    digit = splits.test["x"][:1]
    _, sown = model.apply({"params": first}, digit, mutable=["intermediates"])
    maps = np.asarray(sown["intermediates"]["c1"][0][0])
    return result, kernels, maps, digit[0, :, :, 0], linear_references(splits)


# --- the run -----------------------------------------------------------------------------------


def train_and_evaluate(config, workdir):
    check_config(config)  # an even blur has no centre pixel: "same" would shift by half a pixel
    images = {name: grayscale(rgb) for name, rgb in data.sample_images().items()}
    kernels = filter_bank(config.blur_size)
    checks = filter_checks(images, kernels)
    shapes = shape_table(config, next(iter(images.values())))
    result, learned, maps, digit, references = learn_kernels(config, workdir)
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
        filter_figure(filtered_images(images, kernels)),
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
        kernel_figure(learned, maps, digit),
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
    verdict = compare(
        test_acc,
        np.full(test_acc.shape, edges),
        paired=True,
        names=("learned kernels", "Sobel features + linear classifier"),
    )
    report.text(f"Test accuracy on the same split: {verdict.sentence}.")
    curves = {k.split("/")[0]: result.curve(k) for k in ("train/accuracy", "val/accuracy")}
    report.figure(
        plot_curves(curves, ylabel="accuracy"),
        "curves",
        "LeNet-5 on digits: seed mean with a ±1 std band",
    )
    n, matrix = config.matrix_size, conv_matrix.summary(config.matrix_size, config.seed)
    report.text(
        f"Convolution as a matrix product: on a {n}x{n} image vec(S) = M vec(I), with M[(i, j), "
        '(r, c)] = K[r - i + 1, c - j + 1] for the 3x3 Sobel x kernel and "same" zeros. Block '
        f"(i, r) depends on r - i only, and each block is Toeplitz (gap {matrix['defect']:g}). The "
        "table checks M vec(x), the backward pass M^T delta and the kernel gradient (input "
        "correlated with delta) in float64 on standard-normal operands (NumPy seed "
        f"{config.seed}); with one channel, scipy.signal is the second reference."
    )
    labels = [f"({i},{j})" for i in range(n) for j in range(n)]
    report.figure(
        plot_heatmap(matrix["matrix"], row_labels=labels, col_labels=labels, cmap="RdBu_r",
                     title="M: rows output (i, j), columns input (r, c)"),
        "conv_matrix", f"the matrix of the Sobel x cross-correlation on a {n}x{n} image",
    )  # fmt: skip
    report.table(matrix["headers"], matrix["rows"], caption="Convolution as a matrix product")
    report.write()

    valid = next(r for r in shapes if r["stride"] == 1 and r["padding"].startswith("valid"))
    return {
        "max_filter_gap": Figure(
            max(max(r["convolve_gap"], r["correlate_gap"]) for r in checks),
            reference=0.0,
            source="scipy.signal convolve2d / correlate2d",
            tolerance=1e-4,  # equal up to float32 rounding
        ),
        "valid_map_side": Figure(
            valid["run"][0], reference=valid["rule"][0], source="n - k + 1", tolerance=0.0
        ),
        "shape_mismatches": Figure(
            sum(not r["run"] == r["rule"] == r["lax_shape"] for r in shapes),
            reference=0.0,
            source="floor((n + lo + hi - k) / s) + 1 and jax.lax",
            tolerance=0.0,
        ),
        "max_lax_gap": Figure(
            max(r["gap"] for r in shapes),
            reference=0.0,
            source="jax.lax.conv_general_dilated",
            tolerance=1e-4,
        ),
        # learned kernels against hand-made Sobel features under a linear classifier
        "test_accuracy": Figure(
            test_acc,
            reference=edges,
            source="scikit-learn logistic regression on pixels + Sobel maps",
        ),
        "logistic_regression_pixels": references["raw pixels"],
        # M vec(x), M^T delta and the kernel gradient against the references, float64
        "max_matrix_gap": Figure(matrix["max_gap"], 0.0, "conv, jax.vjp, scipy.signal", 1e-12),
    }


if __name__ == "__main__":
    cli.run(get_config, train_and_evaluate, RULES)
