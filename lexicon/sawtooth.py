"""The sawtooth T^k and its exact ReLU constructions: depth buys an exponential saving.

The triangle map T(x) = 2x for x < 1/2, 2 - 2x otherwise, sends [0, 1] onto itself; composed k
times it is a sawtooth T^k with 2^(k-1) teeth and 2^k linear pieces. On [0, 1],
T(x) = 2 relu(x) - 4 relu(x - 1/2), so a deep ReLU net with k hidden layers of 2 units
computes T^k exactly with 6k + 1 parameters, while a shallow net (one hidden layer) adds at
most one breakpoint per unit and needs at least 2^k - 1 units (document 001, "Shallow vs.
Deep"; SPEC §3 and §14). Both constructions are set by hand here; :func:`exact_sizes` checks
them in float64, and :func:`matched_width` sizes nets of equal parameter counts.
"""

from __future__ import annotations

import jax
import numpy as np

from lexicon.nn.layers import MLP


def triangle(x):
    """T(x) = 2x for x < 1/2 and 2 - 2x for x >= 1/2 (maps [0, 1] onto [0, 1])."""
    return np.where(x < 0.5, 2 * x, 2 - 2 * x)


def sawtooth(x, k: int):
    """T^k(x) = T(T(... T(x))), k times: 2^(k-1) teeth, 2^k linear pieces on [0, 1]."""
    for _ in range(k):
        x = triangle(x)
    return x


def relu_net(features) -> MLP:
    """The fully connected ReLU net used everywhere here, with one linear output."""
    return MLP(features=[*features, 1], activation="relu")


def deep_construction(k: int):
    """(model, params) of the k-layer, width-2 ReLU net computing T^k exactly on [0, 1].

    Each hidden layer holds u = relu(y) and v = relu(y - 1/2) of its input y, so that
    T(y) = 2u - 4v; the next layer reads y = 2u - 4v through its kernel, and the output layer
    returns 2u - 4v of the last one. 6k + 1 parameters.
    """
    layer = {"bias": np.array([0.0, -0.5], np.float32)}
    params = {"Dense_0": {**layer, "kernel": np.array([[1.0, 1.0]], np.float32)}}
    for i in range(1, k):
        params[f"Dense_{i}"] = {**layer, "kernel": np.array([[2.0, 2.0], [-4.0, -4.0]], np.float32)}
    params[f"Dense_{k}"] = {
        "kernel": np.array([[2.0], [-4.0]], np.float32),
        "bias": np.zeros(1, np.float32),
    }
    return relu_net([2] * k), params


def shallow_construction(k: int):
    """(model, params) of the one-hidden-layer ReLU net computing T^k exactly on [0, 1].

    f(x) = 2^k relu(x) + sum_{j=1}^{2^k - 1} c_j relu(x - j / 2^k) with c_j = (-1)^j 2^(k+1):
    the slope starts at 2^k and flips sign at every breakpoint j / 2^k. 2^k units,
    3 * 2^k + 1 parameters.
    """
    units = 2**k
    j = np.arange(units)
    coefficients = np.where(j == 0, 2.0**k, (-1.0) ** j * 2.0 ** (k + 1))
    params = {
        "Dense_0": {
            "kernel": np.ones((1, units), np.float32),
            "bias": (-j / units).astype(np.float32),
        },
        "Dense_1": {
            "kernel": coefficients[:, None].astype(np.float32),
            "bias": np.zeros(1, np.float32),
        },
    }
    return relu_net([units]), params


def count_parameters(params) -> int:
    return int(sum(np.size(leaf) for leaf in jax.tree.leaves(params)))


def exact_sizes(max_k: int):
    """For k = 1..max_k: parameters of both constructions and their largest error on a grid
    of 2^(k+2) + 1 points plus 1000 random points, in float64 NumPy (literal forward pass)."""
    rows = []
    rng = np.random.default_rng(0)
    for k in range(1, max_k + 1):
        x = np.concatenate([np.linspace(0, 1, 2 ** (k + 2) + 1), rng.uniform(size=1000)])[:, None]
        errors = []
        for build in (deep_construction, shallow_construction):
            _, params = build(k)
            errors.append(np.max(np.abs(numpy_forward(params, x)[:, 0] - sawtooth(x[:, 0], k))))
        rows.append(
            {
                "k": k,
                "deep": count_parameters(deep_construction(k)[1]),
                "shallow": count_parameters(shallow_construction(k)[1]),
                "shallow_lower_bound": 3 * (2**k - 1) + 1,
                "deep_error": errors[0],
                "shallow_error": errors[1],
            }
        )
    return rows


def numpy_forward(params, x):
    """relu(... relu(x W_0 + b_0) ...) W_L + b_L in float64."""
    h = np.asarray(x, np.float64)
    layers = [params[f"Dense_{i}"] for i in range(len(params))]
    for layer in layers[:-1]:
        h = np.maximum(h @ layer["kernel"].astype(np.float64) + layer["bias"], 0.0)
    return h @ layers[-1]["kernel"].astype(np.float64) + layers[-1]["bias"]


def plot_sizes(ax, sizes):
    """Parameters of both constructions, and the shallow lower bound, against k."""
    ks = [r["k"] for r in sizes]
    ax.plot(ks, [r["deep"] for r in sizes], "*-", color="C3", label="deep construction, 6k + 1")
    ax.plot(ks, [r["shallow"] for r in sizes], "P-", color="C0",
            label="shallow construction, 3 2^k + 1")  # fmt: skip
    ax.plot(ks, [r["shallow_lower_bound"] for r in sizes], ":", color="C0",
            label="any shallow net: >= 3 (2^k - 1) + 1")  # fmt: skip
    ax.set(yscale="log", xlabel="k (compositions of the triangle map)")
    ax.set(ylabel="parameters for an exact fit", title="exact representation of T^k")
    ax.legend(fontsize=7)


def sizes_table(report, sizes) -> None:
    report.table(
        ["k", "deep construction: parameters", "max error", "shallow construction: parameters"]
        + ["max error", "shallow lower bound"],
        [
            (r["k"], r["deep"], f"{r['deep_error']:.1e}", r["shallow"])
            + (f"{r['shallow_error']:.1e}", r["shallow_lower_bound"])
            for r in sizes
        ],
        caption="Exact constructions, checked in float64 on a fine grid plus random points",
    )


def mlp_parameters(widths) -> int:
    """Parameters of a ReLU net 1 -> widths... -> 1 (kernels and biases)."""
    sizes = [1, *widths, 1]
    return int(sum(m * n + n for m, n in zip(sizes[:-1], sizes[1:])))


def matched_width(budget: int, depth: int) -> int:
    """The width whose depth-layer net has the parameter count closest to ``budget``."""
    widths = np.arange(1, 4 * budget + 2)
    counts = np.array([mlp_parameters([w] * depth) for w in widths])
    return int(widths[np.argmin(np.abs(counts - budget))])


def sawtooth_data(k: int, num_train: int, num_test: int, seed: int):
    """(train, test) regression splits of T^k: x ~ U(0, 1) seeded, and an even test grid."""
    rng = np.random.default_rng(seed)
    x_train = rng.uniform(size=(num_train, 1)).astype(np.float32)
    x_test = np.linspace(0.0, 1.0, num_test, dtype=np.float32)[:, None]
    return (
        {"x": x_train, "y": sawtooth(x_train, k).astype(np.float32)},
        {"x": x_test, "y": sawtooth(x_test, k).astype(np.float32)},
    )
