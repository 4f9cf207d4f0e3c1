"""Pooling from windows against NumPy float64 loops and flax's pooling (SPEC.md section 5)."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lexicon.nn import pooling


def same_padding(n, k, s):
    out = math.ceil(n / s)
    total = max((out - 1) * s + k - n, 0)
    return total // 2, total - total // 2


def numpy_pool_2d(image, kind, window, strides, padding, count_include_pad=True):
    """P[b, i, j, c] = stat over m, n of I[b, i s_h + m, j s_w + n, c], padded cells skipped."""
    batch, height, width, channels = image.shape
    if padding == "same":
        pads = [
            same_padding(height, window[0], strides[0]),
            same_padding(width, window[1], strides[1]),
        ]
    else:
        pads = [(0, 0), (0, 0)]
    out_h = (height + sum(pads[0]) - window[0]) // strides[0] + 1
    out_w = (width + sum(pads[1]) - window[1]) // strides[1] + 1
    out = np.zeros((batch, out_h, out_w, channels))
    for b in range(batch):
        for i in range(out_h):
            for j in range(out_w):
                for c in range(channels):
                    values = []
                    for m in range(window[0]):
                        for n in range(window[1]):
                            row = i * strides[0] + m - pads[0][0]
                            col = j * strides[1] + n - pads[1][0]
                            if 0 <= row < height and 0 <= col < width:
                                values.append(image[b, row, col, c])
                    if kind == "max":
                        out[b, i, j, c] = max(values)
                    elif kind == "min":
                        out[b, i, j, c] = min(values)
                    elif kind == "sum":
                        out[b, i, j, c] = sum(values)
                    else:
                        size = window[0] * window[1] if count_include_pad else len(values)
                        out[b, i, j, c] = sum(values) / size
    return out


def numpy_pool_1d(signal, kind, window, stride, padding, count_include_pad=True):
    """P[b, i, c] = stat over m of I[b, i s + m, c]."""
    as_image = signal[:, :, None, :]
    pooled = numpy_pool_2d(as_image, kind, (window, 1), (stride, 1), padding, count_include_pad)
    return pooled[:, :, 0, :]


POOLS_2D = {
    "max": pooling.max_pool_2d,
    "min": pooling.min_pool_2d,
    "sum": pooling.sum_pool_2d,
    "avg": pooling.avg_pool_2d,
}
POOLS_1D = {
    "max": pooling.max_pool_1d,
    "min": pooling.min_pool_1d,
    "sum": pooling.sum_pool_1d,
    "avg": pooling.avg_pool_1d,
}


@pytest.mark.parametrize("kind", pooling.POOL_KINDS)
def test_pool_2d_matches_numpy_loop(kind, x64):
    rng = np.random.default_rng(0)
    image = rng.normal(size=(2, 7, 6, 3))
    for window, strides, padding in [
        ((2, 2), (2, 2), "valid"),
        ((3, 2), (1, 2), "valid"),
        ((2, 3), (3, 1), "same"),
    ]:
        ours = POOLS_2D[kind](jnp.asarray(image), window, strides, padding)
        ref = numpy_pool_2d(image, kind, window, strides, padding)
        np.testing.assert_allclose(np.asarray(ours), ref, atol=1e-12)


@pytest.mark.parametrize("kind", pooling.POOL_KINDS)
def test_pool_1d_matches_numpy_loop(kind, x64):
    rng = np.random.default_rng(1)
    signal = rng.normal(size=(3, 11, 2))
    for window, stride, padding in [
        (2, 2, "valid"),
        (3, 1, "valid"),
        (4, 3, "same"),
        (3, 2, "same"),
    ]:
        ours = POOLS_1D[kind](jnp.asarray(signal), window, stride, padding)
        ref = numpy_pool_1d(signal, kind, window, stride, padding)
        np.testing.assert_allclose(np.asarray(ours), ref, atol=1e-12)


def test_average_without_padding_count(x64):
    rng = np.random.default_rng(2)
    image = rng.normal(size=(1, 5, 5, 2))
    ours = pooling.avg_pool_2d(jnp.asarray(image), 2, 2, "same", count_include_pad=False)
    ref = numpy_pool_2d(image, "avg", (2, 2), (2, 2), "same", count_include_pad=False)
    np.testing.assert_allclose(np.asarray(ours), ref, atol=1e-12)
    signal = rng.normal(size=(2, 7, 1))
    ours = pooling.avg_pool_1d(jnp.asarray(signal), 3, 2, "same", count_include_pad=False)
    ref = numpy_pool_1d(signal, "avg", 3, 2, "same", count_include_pad=False)
    np.testing.assert_allclose(np.asarray(ours), ref, atol=1e-12)


def test_matches_flax_pooling():
    rng = np.random.default_rng(3)
    image = jnp.asarray(rng.normal(size=(2, 9, 8, 3)), jnp.float32)
    for window, strides, padding in [((2, 2), (2, 2), "VALID"), ((3, 3), (2, 1), "SAME")]:
        np.testing.assert_allclose(
            np.asarray(pooling.max_pool_2d(image, window, strides, padding)),
            np.asarray(nn.max_pool(image, window, strides, padding)),
            rtol=1e-6,
        )
        np.testing.assert_allclose(
            np.asarray(pooling.avg_pool_2d(image, window, strides, padding)),
            np.asarray(nn.avg_pool(image, window, strides, padding)),
            rtol=1e-5,
            atol=1e-6,
        )


def test_default_stride_is_the_window():
    image = jnp.arange(2 * 6 * 6 * 1, dtype=jnp.float32).reshape(2, 6, 6, 1)
    np.testing.assert_array_equal(
        np.asarray(pooling.max_pool_2d(image, 3)), np.asarray(pooling.max_pool_2d(image, 3, 3))
    )
    assert pooling.max_pool_2d(image, 3).shape == (2, 2, 2, 1)
    assert pooling.sum_pool_1d(image[:, :, 0, :], 2).shape == (2, 3, 1)


@pytest.mark.parametrize(
    "strides, padding", [((2, 2), "valid"), ((1, 1), "valid"), ((2, 1), "same")]
)
def test_max_pool_gradient_reaches_only_max_positions(strides, padding, x64):
    rng = np.random.default_rng(4)
    image = rng.normal(size=(2, 6, 7, 2))
    window = (2, 3)
    pooled, pullback = jax.vjp(
        lambda x: pooling.max_pool_2d(x, window, strides, padding), jnp.asarray(image)
    )
    cotangent = rng.normal(size=pooled.shape)
    (grad,) = pullback(jnp.asarray(cotangent))

    # Route each output's cotangent to the argmax of its window (overlaps add up).
    pads = [(0, 0), (0, 0)]
    if padding == "same":
        pads = [same_padding(6, window[0], strides[0]), same_padding(7, window[1], strides[1])]
    expected = np.zeros_like(image)
    is_a_max = np.zeros(image.shape, dtype=bool)
    for b in range(2):
        for i in range(pooled.shape[1]):
            for j in range(pooled.shape[2]):
                for c in range(2):
                    best, where = -np.inf, None
                    for m in range(window[0]):
                        for n in range(window[1]):
                            row = i * strides[0] + m - pads[0][0]
                            col = j * strides[1] + n - pads[1][0]
                            if 0 <= row < 6 and 0 <= col < 7 and image[b, row, col, c] > best:
                                best, where = image[b, row, col, c], (row, col)
                    expected[b, where[0], where[1], c] += cotangent[b, i, j, c]
                    is_a_max[b, where[0], where[1], c] = True
    np.testing.assert_allclose(np.asarray(grad), expected, atol=1e-12)
    np.testing.assert_array_equal(np.asarray(grad)[~is_a_max], 0.0)


def test_jit_and_vmap():
    rng = np.random.default_rng(5)
    maps = jnp.asarray(rng.normal(size=(3, 2, 6, 6, 4)), jnp.float32)
    jitted = jax.jit(lambda x: pooling.pool(x, "avg", (2, 2), (2, 2), "valid"))
    batched = jax.vmap(jitted)(maps)
    for index in range(3):
        np.testing.assert_allclose(
            np.asarray(batched[index]),
            np.asarray(pooling.avg_pool_2d(maps[index], 2)),
            rtol=1e-6,
            atol=1e-6,
        )


def test_integer_maps_and_errors():
    counts = jnp.arange(16, dtype=jnp.int32).reshape(1, 4, 4, 1)
    np.testing.assert_array_equal(
        np.asarray(pooling.max_pool_2d(counts, 3, 1, "same"))[0, :, :, 0],
        [[5, 6, 7, 7], [9, 10, 11, 11], [13, 14, 15, 15], [13, 14, 15, 15]],
    )
    np.testing.assert_array_equal(
        np.asarray(pooling.min_pool_2d(counts, 3, 1, "same"))[0, :, :, 0],
        [[0, 0, 1, 2], [0, 0, 1, 2], [4, 4, 5, 6], [8, 8, 9, 10]],
    )
    with pytest.raises(ValueError, match="max, avg, sum, min"):
        pooling.pool(counts, "median", 2)
    with pytest.raises(ValueError, match="2-D pooling"):
        pooling.max_pool_2d(counts[0], 2)


def test_shift_images_and_relative_change(x64):
    """shift_images against a literal loop, relative_change against a float64 transcription,
    and the invariance they measure: a global max-pool of a digit with an empty border does
    not move under a 1-pixel shift, a stride-2 subsampling does."""
    rng = np.random.default_rng(7)
    images = rng.normal(size=(2, 5, 6, 3))
    for rows, cols in (*pooling.ONE_PIXEL_SHIFTS, (2, -3)):
        want = np.zeros_like(images)
        for i in range(5):
            for j in range(6):
                if 0 <= i - rows < 5 and 0 <= j - cols < 6:
                    want[:, i, j] = images[:, i - rows, j - cols]
        np.testing.assert_array_equal(np.asarray(pooling.shift_images(images, rows, cols)), want)
    with pytest.raises(ValueError, match="out of frame"):
        pooling.shift_images(images, 5, 0)

    a, b = rng.normal(size=(4, 7)), rng.normal(size=(4, 7))
    a[2] = 0.0
    want = np.linalg.norm(b - a, axis=1) / np.where(np.linalg.norm(a, axis=1) > 0,
                                                     np.linalg.norm(a, axis=1), 1.0)  # fmt: skip
    want[2] = 0.0
    np.testing.assert_allclose(np.asarray(pooling.relative_change(a, b)), want, rtol=1e-12)

    digit = np.zeros((1, 8, 8, 1))
    digit[0, 2:6, 3:5, 0] = rng.uniform(0.5, 1.0, size=(4, 2))
    moved = np.asarray(pooling.shift_images(digit, 0, 1))
    global_max = pooling.max_pool_2d(digit, 8), pooling.max_pool_2d(moved, 8)
    assert float(pooling.relative_change(*global_max)[0]) == 0.0
    strided = digit[:, ::2, ::2], moved[:, ::2, ::2]
    assert float(pooling.relative_change(*strided)[0]) > 0.3
