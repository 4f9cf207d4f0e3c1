"""Pooling written from windows (SPEC.md section 5, the third step of a convolutional layer).

Pooling replaces each window of a feature map by one summary statistic. With a window of
k_h x k_w taps and strides (s_h, s_w) on a channels-last map I, for every channel c:

    max:      P[b, i, j, c] = max_{m, n} I[b, i*s_h + m, j*s_w + n, c]
    min:      P[b, i, j, c] = min_{m, n} I[b, i*s_h + m, j*s_w + n, c]
    sum:      P[b, i, j, c] = sum_{m, n} I[b, i*s_h + m, j*s_w + n, c]
    average:  P[b, i, j, c] = (1 / (k_h k_w)) sum_{m, n} I[b, i*s_h + m, j*s_w + n, c]

(1-D: drop j and n.) The windows come from :func:`lexicon.nn.conv.extract_patches`, so the
output size and padding rules are the ones of :func:`lexicon.nn.conv.output_size`. The stride
defaults to the window (non-overlapping windows), as subsampling layers use them.

Padding cells never win: max pads with -inf, min with +inf, sum and average with 0. The
average divides by the full window size by default (padded zeros count, as
``flax.linen.avg_pool`` does); ``count_include_pad=False`` divides by the number of real cells.

Max pooling's gradient is the one ``jnp.max`` has: each output's cotangent goes only to the
position of its window maximum (split evenly on exact ties), and positions that are the
maximum of several overlapping windows add up what they receive.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from lexicon.nn import conv

POOL_KINDS = ("max", "avg", "sum", "min")


def _extreme(dtype: jnp.dtype, lowest: bool) -> float | int:
    if jnp.issubdtype(dtype, jnp.floating):
        return -jnp.inf if lowest else jnp.inf
    info = jnp.iinfo(dtype)
    return int(info.min) if lowest else int(info.max)


@functools.partial(
    jax.jit, static_argnames=("kind", "window", "strides", "pads", "count_include_pad")
)
def _pool_windows(
    x: jax.Array,
    *,
    kind: str,
    window: tuple[int, ...],
    strides: tuple[int, ...],
    pads: tuple[tuple[int, int], ...],
    count_include_pad: bool,
) -> jax.Array:
    ndim = len(window)
    pad_value = {
        "max": _extreme(x.dtype, lowest=True),
        "min": _extreme(x.dtype, lowest=False),
        "sum": 0,
        "avg": 0,
    }[kind]
    patches = conv.extract_patches(x, window, strides, pads, pad_value=pad_value)
    window_axes = tuple(range(1 + ndim, 1 + 2 * ndim))
    if kind == "max":
        return jnp.max(patches, axis=window_axes)
    if kind == "min":
        return jnp.min(patches, axis=window_axes)
    total = jnp.sum(patches, axis=window_axes)
    if kind == "sum":
        return total
    if count_include_pad:
        return total / math.prod(window)
    # Pooling a map of ones with zero padding counts the real cells of each window.
    ones = jnp.ones((1, *x.shape[1:-1], 1), dtype=total.dtype)
    counts = jnp.sum(conv.extract_patches(ones, window, strides, pads), axis=window_axes)
    return total / counts


def pool(
    x: jax.Array,
    kind: str,
    window_shape: int | Sequence[int],
    strides: int | Sequence[int] | None = None,
    padding: conv.Padding = "valid",
    count_include_pad: bool = True,
) -> jax.Array:
    """Pools a channels-last batch ``(N, *spatial, C)`` over windows of ``window_shape``.

    ``kind`` is one of "max", "avg", "sum", "min"; ``strides`` defaults to ``window_shape``.
    Works for any number of spatial axes (1-D maps ``(N, W, C)``, 2-D maps ``(N, H, W, C)``).
    """
    if kind not in POOL_KINDS:
        raise ValueError(f"unknown pooling {kind!r}; valid choices: {', '.join(POOL_KINDS)}")
    ndim = x.ndim - 2
    if ndim < 1:
        raise ValueError(f"expected a batched channels-last input (N, ..., C), got {x.shape}")
    window = conv.spatial_tuple(window_shape, ndim, "window_shape")
    steps = window if strides is None else conv.spatial_tuple(strides, ndim, "strides")
    pads = conv.resolve_padding(x.shape[1:-1], window, steps, padding)
    return _pool_windows(
        x,
        kind=kind,
        window=window,
        strides=steps,
        pads=pads,
        count_include_pad=bool(count_include_pad),
    )


def _check_rank(x: jax.Array, ndim: int) -> None:
    if x.ndim != ndim + 2:
        layout = "(N, W, C)" if ndim == 1 else "(N, H, W, C)"
        raise ValueError(f"{ndim}-D pooling expects {layout}, got shape {x.shape}")


def max_pool_1d(
    x: jax.Array, window: int, stride: int | None = None, padding: conv.Padding = "valid"
) -> jax.Array:
    """1-D max pooling of ``(N, W, C)``: P[b, i, c] = max_m I[b, i*s + m, c]."""
    _check_rank(x, 1)
    return pool(x, "max", window, stride, padding)


def min_pool_1d(
    x: jax.Array, window: int, stride: int | None = None, padding: conv.Padding = "valid"
) -> jax.Array:
    """1-D min pooling of ``(N, W, C)``: P[b, i, c] = min_m I[b, i*s + m, c]."""
    _check_rank(x, 1)
    return pool(x, "min", window, stride, padding)


def sum_pool_1d(
    x: jax.Array, window: int, stride: int | None = None, padding: conv.Padding = "valid"
) -> jax.Array:
    """1-D sum pooling of ``(N, W, C)``: P[b, i, c] = sum_m I[b, i*s + m, c]."""
    _check_rank(x, 1)
    return pool(x, "sum", window, stride, padding)


def avg_pool_1d(
    x: jax.Array,
    window: int,
    stride: int | None = None,
    padding: conv.Padding = "valid",
    count_include_pad: bool = True,
) -> jax.Array:
    """1-D average pooling of ``(N, W, C)``: P[b, i, c] = (1/k) sum_m I[b, i*s + m, c]."""
    _check_rank(x, 1)
    return pool(x, "avg", window, stride, padding, count_include_pad)


def max_pool_2d(
    x: jax.Array,
    window: int | Sequence[int],
    strides: int | Sequence[int] | None = None,
    padding: conv.Padding = "valid",
) -> jax.Array:
    """2-D max pooling of ``(N, H, W, C)``: P[b,i,j,c] = max_{m,n} I[b, i s_h + m, j s_w + n, c]."""
    _check_rank(x, 2)
    return pool(x, "max", window, strides, padding)


def min_pool_2d(
    x: jax.Array,
    window: int | Sequence[int],
    strides: int | Sequence[int] | None = None,
    padding: conv.Padding = "valid",
) -> jax.Array:
    """2-D min pooling of ``(N, H, W, C)``: P[b,i,j,c] = min_{m,n} I[b, i s_h + m, j s_w + n, c]."""
    _check_rank(x, 2)
    return pool(x, "min", window, strides, padding)


def sum_pool_2d(
    x: jax.Array,
    window: int | Sequence[int],
    strides: int | Sequence[int] | None = None,
    padding: conv.Padding = "valid",
) -> jax.Array:
    """2-D sum pooling of ``(N, H, W, C)``: P[b,i,j,c] = sum_{m,n} I[b, i s_h + m, j s_w + n, c]."""
    _check_rank(x, 2)
    return pool(x, "sum", window, strides, padding)


def avg_pool_2d(
    x: jax.Array,
    window: int | Sequence[int],
    strides: int | Sequence[int] | None = None,
    padding: conv.Padding = "valid",
    count_include_pad: bool = True,
) -> jax.Array:
    """2-D average pooling of ``(N, H, W, C)``: the sum pooling divided by k_h k_w."""
    _check_rank(x, 2)
    return pool(x, "avg", window, strides, padding, count_include_pad)


# --- invariance to small translations -----------------------------------------------------------

# The four 1-pixel translations (rows, columns): up, down, left, right.
ONE_PIXEL_SHIFTS = ((-1, 0), (1, 0), (0, -1), (0, 1))


def shift_images(x: jax.Array, rows: int, cols: int) -> jax.Array:
    """Translate channels-last images ``(N, H, W, C)`` by (rows, cols) pixels, zero fill:

        T x[b, i, j, c] = x[b, i - rows, j - cols, c]  if that pixel lies in the image, else 0.

    Positive ``rows`` moves the content down, positive ``cols`` to the right.
    """
    height, width = x.shape[1:3]
    if abs(rows) >= height or abs(cols) >= width:
        raise ValueError(f"shift {(rows, cols)} moves a {height}x{width} image out of frame")
    pads = ((0, 0), (max(rows, 0), max(-rows, 0)), (max(cols, 0), max(-cols, 0)), (0, 0))
    padded = jnp.pad(x, pads)
    top, left = max(-rows, 0), max(-cols, 0)
    return padded[:, top : top + height, left : left + width, :]


def relative_change(features: jax.Array, shifted: jax.Array) -> jax.Array:
    """Per example, ||f(T x) - f(x)||_2 / ||f(x)||_2 over the flattened features (0 where
    f(x) = 0): how much a representation moves under a translation T, in units of its size.
    0 is exact invariance."""
    a = features.reshape(features.shape[0], -1)
    b = shifted.reshape(shifted.shape[0], -1)
    norm = jnp.linalg.norm(a, axis=1)
    change = jnp.linalg.norm(b - a, axis=1)
    return jnp.where(norm > 0, change / jnp.where(norm > 0, norm, 1.0), 0.0)
