"""Hand-written convolution and cross-correlation against their definitions (SPEC.md section 5).

References: literal NumPy float64 loops over the documents' sums, ``jax.lax.conv_general_dilated``
(cross-correlation), ``numpy.convolve`` and ``scipy.signal.convolve2d`` (true convolution).
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.signal
from jax import lax

from lexicon.nn import conv

DIMENSION_NUMBERS_2D = ("NHWC", "HWIO", "NHWC")
DIMENSION_NUMBERS_1D = ("NWC", "WIO", "NWC")
DIMENSION_NUMBERS_3D = ("NDHWC", "DHWIO", "NDHWC")


def literal_padding(n, k, s, mode):
    """The padding table of the module docstring, transcribed."""
    if mode == "valid":
        return 0, 0
    if mode == "full":
        return k - 1, k - 1
    out = math.ceil(n / s)
    total = max((out - 1) * s + k - n, 0)
    return total // 2, total - total // 2


def lax_correlation(x, kernel, strides, pads):
    numbers = DIMENSION_NUMBERS_1D if x.ndim == 3 else DIMENSION_NUMBERS_2D
    return lax.conv_general_dilated(
        x, kernel, strides, pads, dimension_numbers=numbers, precision=lax.Precision.HIGHEST
    )


def numpy_full_convolution_2d(image, kernel):
    """S[b, i, j, o] = sum_c sum_m sum_n I[b, m, n, c] K[i - m, j - n, c, o] for every i, j."""
    batch, height, width, channels = image.shape
    kh, kw, _, outputs = kernel.shape
    out = np.zeros((batch, height + kh - 1, width + kw - 1, outputs))
    for b in range(batch):
        for i in range(height + kh - 1):
            for j in range(width + kw - 1):
                for o in range(outputs):
                    total = 0.0
                    for c in range(channels):
                        for m in range(height):
                            for n in range(width):
                                if 0 <= i - m < kh and 0 <= j - n < kw:
                                    total += image[b, m, n, c] * kernel[i - m, j - n, c, o]
                    out[b, i, j, o] = total
    return out


def numpy_cross_correlation_2d(image, kernel, strides, pads):
    """S[b, i, j, o] = sum_c sum_m sum_n I_pad[b, i s_h + m, j s_w + n, c] K[m, n, c, o]."""
    padded = np.pad(image, ((0, 0), pads[0], pads[1], (0, 0)))
    batch, height, width, channels = padded.shape
    kh, kw, _, outputs = kernel.shape
    out_h = (height - kh) // strides[0] + 1
    out_w = (width - kw) // strides[1] + 1
    out = np.zeros((batch, out_h, out_w, outputs))
    for b in range(batch):
        for i in range(out_h):
            for j in range(out_w):
                for o in range(outputs):
                    total = 0.0
                    for c in range(channels):
                        for m in range(kh):
                            for n in range(kw):
                                row, col = i * strides[0] + m, j * strides[1] + n
                                total += padded[b, row, col, c] * kernel[m, n, c, o]
                    out[b, i, j, o] = total
    return out


def test_document_shape_example():
    # A bank of 32 kernels of 16x16 on a 256x256 image: 32 maps of 241x241 (256 - 16 + 1).
    assert conv.output_size(256, 16) == 241
    image = jnp.ones((1, 256, 256, 1), jnp.float32)
    bank = jnp.ones((16, 16, 1, 32), jnp.float32)
    maps = conv.cross_correlate_2d(image, bank)
    assert maps.shape == (1, 241, 241, 32)
    np.testing.assert_allclose(np.asarray(maps[0, :3, :3, :2]), 256.0)
    # Under a stride and "same" padding, shapes agree with the rule and with lax.
    for strides, padding in [(2, "valid"), (2, "same"), (3, "same"), (1, "same"), (2, "full")]:
        ours = jax.eval_shape(
            functools.partial(conv.cross_correlate_2d, strides=strides, padding=padding),
            image,
            bank,
        )
        lax_pads = [literal_padding(256, 16, strides, padding)] * 2
        ref = jax.eval_shape(
            functools.partial(lax_correlation, strides=(strides, strides), pads=lax_pads),
            image,
            bank,
        )
        side = conv.output_size(256, 16, strides, padding)
        assert ours.shape == ref.shape == (1, side, side, 32)
    assert conv.output_size(256, 16, 2, "valid") == 121
    assert conv.output_size(256, 16, 2, "same") == 128
    assert conv.output_size(256, 16, 1, "full") == 271


def test_output_size_closed_forms():
    for n in range(1, 14):
        for k in range(1, n + 1):
            for s in range(1, 5):
                assert conv.output_size(n, k, s, "valid") == math.floor((n - k) / s) + 1
                assert conv.output_size(n, k, s, "same") == math.ceil(n / s)
                assert conv.output_size(n, k, s, "full") == math.floor((n + k - 2) / s) + 1
                for p in range(3):
                    assert conv.output_size(n, k, s, p) == math.floor((n + 2 * p - k) / s) + 1
                for mode in ("valid", "same", "full"):
                    assert conv.padding_amounts(n, k, s, mode) == literal_padding(n, k, s, mode)
    assert conv.output_size(10, 3, 2, (1, 2)) == (10 + 3 - 3) // 2 + 1
    assert conv.output_size(10, 3, 1, "SAME") == 10


def test_resolve_padding_per_axis():
    assert conv.resolve_padding((9, 8), (3, 2), (2, 1), "same") == (
        literal_padding(9, 3, 2, "same"),
        literal_padding(8, 2, 1, "same"),
    )
    assert conv.resolve_padding((9, 8), (3, 2), (1, 1), 2) == ((2, 2), (2, 2))
    assert conv.resolve_padding((9, 8), (3, 2), (1, 1), (1, 2)) == ((1, 1), (2, 2))
    assert conv.resolve_padding((9, 8), (3, 2), (1, 1), [(0, 1), (2, 3)]) == ((0, 1), (2, 3))
    assert conv.resolve_padding((9,), (3,), (1,), (0, 2)) == ((0, 2),)
    assert conv.resolve_padding((9,), (3,), (1,), "full") == ((2, 2),)
    assert conv.spatial_tuple(3, 2, "window") == (3, 3)
    assert conv.spatial_tuple([2, 5], 2, "window") == (2, 5)
    with pytest.raises(ValueError, match="one \\(lo, hi\\) pair per spatial axis"):
        conv.resolve_padding((9, 8), (3, 2), (1, 1), [(0, 1)] * 3)
    with pytest.raises(ValueError, match="strides needs 2 entries"):
        conv.spatial_tuple((1, 2, 3), 2, "strides")
    with pytest.raises(ValueError, match=">= 0"):
        conv.padding_amounts(5, 3, 1, (-1, 0))


def test_padding_errors():
    with pytest.raises(ValueError, match="valid, same, full"):
        conv.output_size(10, 3, 1, "circular")
    with pytest.raises(ValueError, match="does not fit"):
        conv.output_size(3, 5, 1, "valid")
    with pytest.raises(ValueError, match="stride"):
        conv.output_size(10, 3, 0, "valid")
    with pytest.raises(ValueError, match="channels"):
        conv.cross_correlate_2d(jnp.ones((1, 5, 5, 2)), jnp.ones((3, 3, 3, 1)))
    with pytest.raises(ValueError, match="2-D kernel"):
        conv.convolve_2d(jnp.ones((1, 5, 1)), jnp.ones((3, 1, 1)))


def test_extract_patches_literal(x64):
    rng = np.random.default_rng(0)
    image = rng.normal(size=(2, 7, 6, 3))
    patches = np.asarray(conv.extract_patches(jnp.asarray(image), (3, 2), (2, 1), "same", 0.0))
    pads = [literal_padding(7, 3, 2, "same"), literal_padding(6, 2, 1, "same")]
    padded = np.pad(image, ((0, 0), pads[0], pads[1], (0, 0)))
    assert patches.shape == (2, 4, 6, 3, 2, 3)
    for i in range(4):
        for j in range(6):
            for m in range(3):
                for n in range(2):
                    np.testing.assert_array_equal(
                        patches[:, i, j, m, n], padded[:, 2 * i + m, j + n]
                    )


CASES_2D = [
    # (batch, height, width, c_in, kh, kw, c_out, strides, padding)
    (2, 9, 11, 3, 4, 3, 5, (1, 1), "valid"),
    (1, 8, 8, 1, 3, 3, 2, (2, 2), "same"),
    (3, 10, 7, 2, 2, 4, 3, (2, 3), "same"),
    (2, 6, 5, 2, 3, 2, 4, (1, 2), "full"),
    (2, 7, 9, 3, 3, 3, 2, (3, 1), 1),
    (1, 7, 9, 2, 3, 2, 2, (2, 1), [(2, 0), (1, 3)]),
]


@pytest.mark.parametrize("case", CASES_2D)
def test_2d_matches_lax(case, x64):
    batch, height, width, c_in, kh, kw, c_out, strides, padding = case
    rng = np.random.default_rng(CASES_2D.index(case))
    image = jnp.asarray(rng.normal(size=(batch, height, width, c_in)))
    kernel = jnp.asarray(rng.normal(size=(kh, kw, c_in, c_out)))
    if isinstance(padding, str):
        pads = [literal_padding(height, kh, strides[0], padding)]
        pads.append(literal_padding(width, kw, strides[1], padding))
    elif isinstance(padding, int):
        pads = [(padding, padding)] * 2
    else:
        pads = padding
    correlation = conv.cross_correlate_2d(image, kernel, strides, padding)
    ref = lax_correlation(image, kernel, strides, pads)
    assert correlation.shape == ref.shape
    np.testing.assert_allclose(np.asarray(correlation), np.asarray(ref), rtol=1e-5, atol=1e-5)
    if height * width * batch <= 100:
        literal = numpy_cross_correlation_2d(np.asarray(image), np.asarray(kernel), strides, pads)
        np.testing.assert_allclose(np.asarray(correlation), literal, rtol=1e-10, atol=1e-10)

    # convolution = correlation with the flipped kernel; "same" puts the odd zero before
    if padding == "same":
        pads = [(hi, lo) for lo, hi in pads]
    flipped = jnp.asarray(np.asarray(kernel)[::-1, ::-1].copy())
    convolution = conv.convolve_2d(image, kernel, strides, padding)
    ref = lax_correlation(image, flipped, strides, pads)
    np.testing.assert_allclose(np.asarray(convolution), np.asarray(ref), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "length, taps, c_in, c_out, stride, padding",
    [
        (40, 5, 1, 25, 2, 1),
        (12, 4, 2, 3, 1, "same"),
        (13, 3, 2, 3, 3, "same"),
        (10, 3, 1, 2, 1, "full"),
        (9, 9, 2, 2, 1, "valid"),
        (11, 2, 3, 1, 2, (0, 3)),
    ],
)
def test_1d_matches_lax(length, taps, c_in, c_out, stride, padding, x64):
    rng = np.random.default_rng(length * 100 + taps)
    signal = jnp.asarray(rng.normal(size=(3, length, c_in)))
    kernel = jnp.asarray(rng.normal(size=(taps, c_in, c_out)))
    if isinstance(padding, str):
        pads = [literal_padding(length, taps, stride, padding)]
    elif isinstance(padding, int):
        pads = [(padding, padding)]
    else:
        pads = [padding]
    correlation = conv.cross_correlate_1d(signal, kernel, stride, padding)
    ref = lax_correlation(signal, kernel, (stride,), pads)
    np.testing.assert_allclose(np.asarray(correlation), np.asarray(ref), rtol=1e-5, atol=1e-5)
    if padding == "same":
        pads = [(hi, lo) for lo, hi in pads]
    convolution = conv.convolve_1d(signal, kernel, stride, padding)
    ref = lax_correlation(signal, jnp.flip(kernel, 0), (stride,), pads)
    np.testing.assert_allclose(np.asarray(convolution), np.asarray(ref), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", ["valid", "same", "full"])
@pytest.mark.parametrize("kernel_shape", [(3, 3), (2, 4)])
def test_convolve_2d_matches_scipy(mode, kernel_shape, x64):
    rng = np.random.default_rng(7)
    image = rng.normal(size=(8, 9))
    kernel = rng.normal(size=kernel_shape)
    ours = conv.convolve_2d(
        jnp.asarray(image)[None, :, :, None], jnp.asarray(kernel)[:, :, None, None], 1, mode
    )
    np.testing.assert_allclose(
        np.asarray(ours[0, :, :, 0]), scipy.signal.convolve2d(image, kernel, mode), atol=1e-10
    )


@pytest.mark.parametrize("mode", ["valid", "same", "full"])
@pytest.mark.parametrize("taps", [4, 7])
def test_convolve_1d_matches_numpy(mode, taps, x64):
    rng = np.random.default_rng(taps)
    signal = rng.normal(size=11)
    kernel = rng.normal(size=taps)
    ours = conv.convolve_1d(
        jnp.asarray(signal)[None, :, None], jnp.asarray(kernel)[:, None, None], 1, mode
    )
    np.testing.assert_allclose(
        np.asarray(ours[0, :, 0]), np.convolve(signal, kernel, mode), atol=1e-10
    )


def test_convolution_literal_sum_multichannel(x64):
    rng = np.random.default_rng(3)
    image = rng.normal(size=(2, 5, 4, 3))
    kernel = rng.normal(size=(3, 2, 3, 2))
    full = numpy_full_convolution_2d(image, kernel)
    ours = conv.convolve_2d(jnp.asarray(image), jnp.asarray(kernel), 1, "full")
    np.testing.assert_allclose(np.asarray(ours), full, atol=1e-10)
    # "valid" keeps the outputs whose flipped kernel lies inside, taken every s-th position.
    valid = conv.convolve_2d(jnp.asarray(image), jnp.asarray(kernel), (2, 1), "valid")
    np.testing.assert_allclose(np.asarray(valid), full[:, 2:5:2, 1:4:1], atol=1e-10)


def test_convolution_is_commutative_1d_full(x64):
    rng = np.random.default_rng(11)
    x = rng.normal(size=9)
    w = rng.normal(size=4)
    x_star_w = conv.convolve_1d(
        jnp.asarray(x)[None, :, None], jnp.asarray(w)[:, None, None], 1, "full"
    )
    w_star_x = conv.convolve_1d(
        jnp.asarray(w)[None, :, None], jnp.asarray(x)[:, None, None], 1, "full"
    )
    assert x_star_w.shape == (1, 12, 1)
    np.testing.assert_allclose(np.asarray(x_star_w), np.asarray(w_star_x), atol=1e-12)
    # the discrete sum s(t) = sum_a x(a) w(t - a), transcribed
    literal = [sum(x[a] * w[t - a] for a in range(9) if 0 <= t - a < 4) for t in range(12)]
    np.testing.assert_allclose(np.asarray(x_star_w[0, :, 0]), literal, atol=1e-12)


def test_convolution_is_correlation_with_flipped_kernel(x64):
    rng = np.random.default_rng(5)
    image = jnp.asarray(rng.normal(size=(2, 7, 8, 2)))
    kernel = jnp.asarray(rng.normal(size=(3, 3, 2, 4)))
    np.testing.assert_array_equal(
        np.asarray(conv.flip_kernel(kernel)), np.asarray(kernel)[::-1, ::-1]
    )
    for padding in ("valid", "same", "full"):
        # odd kernels: both "same" splits coincide
        np.testing.assert_allclose(
            np.asarray(conv.convolve_2d(image, kernel, 1, padding)),
            np.asarray(conv.cross_correlate_2d(image, conv.flip_kernel(kernel), 1, padding)),
            atol=1e-12,
        )


def test_sobel_kernels_are_derivative_filters():
    rows, cols = np.meshgrid(np.arange(6.0), np.arange(7.0), indexing="ij")
    ramp_along_width = jnp.asarray(cols)[None, :, :, None]
    ramp_along_height = jnp.asarray(rows)[None, :, :, None]
    sobel_x = jnp.asarray(conv.SOBEL_X)[:, :, None, None]
    sobel_y = jnp.asarray(conv.SOBEL_Y)[:, :, None, None]
    # a unit slope times the 1 + 2 + 1 smoothing times the distance 2 between taps = 8
    np.testing.assert_allclose(np.asarray(conv.cross_correlate_2d(ramp_along_width, sobel_x)), 8.0)
    np.testing.assert_allclose(np.asarray(conv.cross_correlate_2d(ramp_along_width, sobel_y)), 0.0)
    np.testing.assert_allclose(np.asarray(conv.cross_correlate_2d(ramp_along_height, sobel_y)), 8.0)


def test_jit_vmap_and_grad_agree_with_lax():
    rng = np.random.default_rng(2)
    image = jnp.asarray(rng.normal(size=(2, 9, 8, 3)), jnp.float32)
    kernels = jnp.asarray(rng.normal(size=(4, 3, 3, 3, 5)), jnp.float32)
    strides, padding = (2, 1), "same"
    pads = [literal_padding(9, 3, 2, "same"), literal_padding(8, 3, 1, "same")]

    jitted = jax.jit(conv.cross_correlate_2d, static_argnums=(2, 3))
    np.testing.assert_allclose(
        np.asarray(jitted(image, kernels[0], strides, padding)),
        np.asarray(conv.cross_correlate_2d(image, kernels[0], strides, padding)),
        rtol=1e-6,
        atol=1e-6,
    )
    batched = jax.vmap(lambda k: conv.cross_correlate_2d(image, k, strides, padding))(kernels)
    for index in range(kernels.shape[0]):
        ref = lax_correlation(image, kernels[index], strides, pads)
        np.testing.assert_allclose(
            np.asarray(batched[index]), np.asarray(ref), rtol=1e-5, atol=1e-5
        )

    cotangent = jnp.asarray(rng.normal(size=batched.shape[1:]), jnp.float32)

    def ours(x, k):
        return jnp.sum(conv.cross_correlate_2d(x, k, strides, padding) * cotangent)

    def reference(x, k):
        return jnp.sum(lax_correlation(x, k, strides, pads) * cotangent)

    grads = jax.grad(ours, argnums=(0, 1))(image, kernels[0])
    ref_grads = jax.grad(reference, argnums=(0, 1))(image, kernels[0])
    for got, want in zip(grads, ref_grads, strict=True):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-4)


# --- im2col: the library convolution as one matrix product ---------------------------------------

IM2COL_CASES = [
    # (input shape, kernel window, C_out, strides, padding, rhs dilation, lhs dilation, groups)
    ((2, 11, 3), (3,), 4, (2,), "SAME", (1,), (1,), 1),
    ((2, 12, 2), (4,), 3, (1,), ((2, 1),), (2,), (1,), 1),
    ((1, 9, 4), (5,), 4, (3,), ((0, 1),), (1,), (2,), 2),
    ((2, 9, 8, 3), (3, 3), 5, (2, 1), "SAME", (1, 1), (1, 1), 1),
    ((1, 10, 9, 2), (2, 3), 4, (1, 2), ((1, 2), (0, 3)), (2, 1), (1, 1), 1),
    ((2, 7, 7, 4), (3, 2), 6, (1, 1), "VALID", (1, 2), (1, 1), 2),
    ((1, 6, 5, 2), (3, 3), 2, (1, 1), ((1, 1), (2, 0)), (1, 1), (2, 3), 1),
    # stride 1, narrow patches, few output channels: the blocked form (odd sizes, dilated input)
    ((2, 9, 7, 1), (3, 3), 5, (1, 1), "SAME", (1, 1), (1, 1), 1),
    ((1, 7, 6, 2), (2, 3), 3, (1, 1), ((1, 0), (2, 1)), (1, 1), (2, 1), 1),
    ((2, 11, 2), (3,), 4, (1,), "VALID", (1,), (1,), 1),
    # patches of the width at least SHIFTED_ROWS_MIN_WIDTH wide: the shifted-rows form
    ((2, 9, 8, 6), (5, 3), 5, (2, 1), "SAME", (1, 1), (1, 1), 1),
    ((1, 12, 9, 8), (5, 3), 4, (1, 2), ((1, 2), (0, 3)), (2, 1), (2, 1), 1),
    ((1, 8, 7, 5, 4), (5, 3, 2), 3, (2, 1, 2), "SAME", (1, 1, 1), (1, 1, 1), 1),
]


def conv_of(op, case):
    """The convolution of one IM2COL_CASES entry as a function of (input, kernel)."""
    shape, _, _, strides, padding, rhs_dil, lhs_dil, groups = case
    numbers = {3: DIMENSION_NUMBERS_1D, 4: DIMENSION_NUMBERS_2D, 5: DIMENSION_NUMBERS_3D}[
        len(shape)
    ]
    return lambda a, k: op(
        a, k, strides, padding, lhs_dil, rhs_dil, numbers, groups, precision="highest"
    )


def test_im2col_equals_lax_conv_in_outputs_and_gradients():
    """Outputs and the vjp (input and kernel cotangents) of the im2col convolution equal
    lax.conv_general_dilated's to float32 rounding, 1-D and 2-D, with stride, padding
    (VALID/SAME/explicit), kernel and input dilation and feature groups. All cases go
    through one compiled function per implementation."""
    rng = np.random.default_rng(0)
    operands, cotangents = [], []
    for case in IM2COL_CASES:
        shape, window, c_out, *_, groups = case
        x = rng.normal(size=shape).astype(np.float32)
        kernel = rng.normal(size=(*window, shape[-1] // groups, c_out)).astype(np.float32)
        out = jax.eval_shape(conv_of(lax.conv_general_dilated, case), x, kernel)
        operands.append((x, kernel))
        cotangents.append(rng.normal(size=out.shape).astype(np.float32))

    def run(op, operands, cotangents):
        results = []
        for (x, kernel), case, cotangent in zip(operands, IM2COL_CASES, cotangents, strict=True):
            y, vjp = jax.vjp(conv_of(op, case), x, kernel)
            results.append((y, *vjp(cotangent)))
        return results

    want = jax.jit(functools.partial(run, lax.conv_general_dilated))(operands, cotangents)
    got = jax.jit(functools.partial(run, conv.im2col_conv_general_dilated))(operands, cotangents)
    for case, g_case, w_case in zip(IM2COL_CASES, got, want, strict=True):
        for name, g, w in zip(("output", "d input", "d kernel"), g_case, w_case, strict=True):
            np.testing.assert_allclose(
                np.asarray(g), np.asarray(w), rtol=1e-5, atol=1e-5, err_msg=f"{name} {case}"
            )


def test_im2col_takes_each_form_where_it_applies():
    """The cases above cover the three forms; LeNet-5's first convolution (5x5, 1 -> 6) is
    blocked (one GEMM 4 x 6 wide for 2 x 2 outputs per row: 2 x 4 x 4 rows on 2 12x12
    images), its second (6 -> 16) shifted rows (5 GEMMs), and a strided narrow one the plain
    patch matrix (one GEMM 6 wide)."""
    forms = {
        conv.im2col_form(window, shape[-1] // groups, c_out, strides, rhs_dil, groups)
        for shape, window, c_out, strides, _, rhs_dil, _, groups in IM2COL_CASES
    }
    assert forms == set(conv.IM2COL_FORMS)

    def dots(c_in, c_out, strides):
        op = functools.partial(conv.im2col_conv_general_dilated, window_strides=strides,
                               padding="VALID", dimension_numbers=DIMENSION_NUMBERS_2D)  # fmt: skip
        jaxpr = str(
            jax.make_jaxpr(op)(jnp.zeros((2, 12, 12, c_in)), jnp.zeros((5, 5, c_in, c_out)))
        )
        return [line for line in jaxpr.splitlines() if "dot_general" in line]

    assert conv.im2col_form((5, 5), 1, 6, (1, 1), (1, 1)) == "blocked"
    (blocked,) = dots(1, 6, (1, 1))
    assert "f32[32,24] = dot_general" in blocked
    assert conv.im2col_form((5, 5), 6, 16, (1, 1), (1, 1)) == "shifted rows"
    assert len(dots(6, 16, (1, 1))) == 5
    assert conv.im2col_form((3, 3), 16, 16, (1, 1), (1, 1)) == "patches"  # VGG's, ResNet's
    assert conv.im2col_form((3, 3), 32, 1, (1, 1), (1, 1)) == "patches"  # a decoder's output
    assert conv.im2col_form((5, 5), 1, 6, (2, 2), (1, 1)) == "patches"
    (patches,) = dots(1, 6, (2, 2))
    assert "f32[32,6] = dot_general" in patches


def test_im2col_follows_any_dimension_numbers_and_flax_conv():
    """lax's default NCHW/OIHW layout, and flax.linen.Conv with either impl: same params, same
    outputs."""
    rng = np.random.default_rng(5)
    x = jnp.asarray(rng.normal(size=(2, 3, 8, 7)), jnp.float32)  # NCHW
    kernel = jnp.asarray(rng.normal(size=(4, 3, 3, 2)), jnp.float32)  # OIHW
    want = lax.conv_general_dilated(x, kernel, (2, 1), "SAME", precision="highest")
    got = conv.im2col_conv_general_dilated(x, kernel, (2, 1), "SAME", precision="highest")
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-5)

    images = jnp.transpose(x, (0, 2, 3, 1))
    xla = conv.Conv(4, (3, 3), impl="xla", strides=2, padding="SAME")
    im2col = conv.Conv(4, (3, 3), impl="im2col", strides=2, padding="SAME")
    params = xla.init(jax.random.key(0), images)
    assert jax.tree.structure(params) == jax.tree.structure(im2col.init(jax.random.key(0), images))
    np.testing.assert_allclose(
        np.asarray(im2col.apply(params, images)),
        np.asarray(xla.apply(params, images)),
        rtol=1e-5,
        atol=1e-5,
    )
    assert conv.default_conv_impl("cpu") == "im2col"
    assert conv.default_conv_impl("gpu") == conv.default_conv_impl("tpu") == "xla"
    with pytest.raises(ValueError, match="valid choices"):
        conv.resolve_conv_impl("winograd")


def test_im2col_hands_batch_groups_to_lax_and_matches_it():
    """batch_group_count > 1 (a grouped convolution's weight gradient) goes to lax itself."""
    x = jax.random.normal(jax.random.key(0), (4, 6, 6, 3))
    k = jax.random.normal(jax.random.key(1), (3, 3, 3, 4))
    dims = ("NHWC", "HWIO", "NHWC")
    args = dict(padding="VALID", dimension_numbers=dims, batch_group_count=2)
    ours = conv.im2col_conv_general_dilated(x, k, (1, 1), **args)
    theirs = jax.lax.conv_general_dilated(x, k, (1, 1), **args)
    assert ours.shape == (2, 4, 4, 4)
    np.testing.assert_array_equal(ours, theirs)
