"""Convolution as a matrix product: M against the literal window sums, the forward pass, M^T delta
and the kernel gradient against lexicon.nn.conv, jax.vjp and scipy.signal (float64)."""

import jax.numpy as jnp
import numpy as np
import pytest
import scipy.signal

from lexicon.nn import conv_matrix


def literal_pads(n, k, stride, padding, flip=False, axis=0):
    """(lo, hi) zeros for one axis, transcribed from the rules of lexicon/nn/conv.py (the
    convolution's "same" puts the extra zero of an even kernel before)."""
    if isinstance(padding, tuple):  # one (lo, hi) pair per axis
        return padding[axis]
    if padding == "valid":
        return 0, 0
    if padding == "full":
        return k - 1, k - 1
    if isinstance(padding, int):
        return padding, padding
    total = max((-(-n // stride) - 1) * stride + k - n, 0)  # "same" and "circular"
    lo, hi = total // 2, total - total // 2
    return (hi, lo) if flip else (lo, hi)


def literal_correlation(image, kernel, stride, padding, flip=False):
    """S[i, j, o] = sum_c sum_m sum_n I_pad[i s + m, j s + n, c] K[m, n, c, o], one loop per
    index; I_pad is the input with zeros around it, or wrapped around for "circular"."""
    (h, w, channels), (kh, kw, _, outs) = image.shape, kernel.shape
    (top, bottom), (left, right) = (literal_pads(h, kh, stride, padding, flip, 0),
                                    literal_pads(w, kw, stride, padding, flip, 1))  # fmt: skip
    oh, ow = (h + top + bottom - kh) // stride + 1, (w + left + right - kw) // stride + 1
    out = np.zeros((oh, ow, outs))
    for i in range(oh):
        for j in range(ow):
            for o in range(outs):
                for c in range(channels):
                    for m in range(kh):
                        for n in range(kw):
                            r, q = i * stride + m - top, j * stride + n - left
                            if padding == "circular":
                                r, q = r % h, q % w
                            if 0 <= r < h and 0 <= q < w:
                                out[i, j, o] += image[r, q, c] * kernel[m, n, c, o]
    return out


def literal_matrix(kernel, shape, stride, padding, flip):
    """Column k of M is the operator applied to the k-th unit image."""
    if flip:
        kernel = kernel[::-1, ::-1]
    columns = []
    for k in range(int(np.prod(shape))):
        unit = np.zeros(int(np.prod(shape)))
        unit[k] = 1.0
        found = literal_correlation(unit.reshape(shape), kernel, stride, padding, flip)
        columns.append(found.ravel())
    return np.stack(columns, axis=1)


# (input H, W, C; kernel KH, KW, O; stride; padding; flip: convolution rather than correlation).
# Beside conv_matrix.TABLE_CASES (tested below at the experiment's shapes): even kernels, whose
# "same" zeros split unevenly, strides, explicit pads and several channels.
CASES = [
    ((4, 5, 1), (2, 3, 1), 1, "same", True),  # the extra zero of an even kernel goes first
    ((6, 5, 1), (3, 2, 1), 2, "same", False),
    ((5, 4, 1), (2, 3, 1), 2, "circular", True),
    ((5, 6, 2), (3, 2, 3), 1, ((1, 0), (2, 1)), False),
    ((4, 4, 2), (3, 3, 2), 2, 1, True),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c)).replace(" ", ""))
def test_matrix_forward_backward_and_kernel_gradient(x64, case):
    (h, w, c), (kh, kw, o), stride, padding, flip = case
    rng = np.random.default_rng(CASES.index(case))
    kernel = rng.normal(size=(kh, kw, c, o))
    x = rng.normal(size=(1, h, w, c))
    m = np.asarray(conv_matrix.matrix(kernel, (h, w, c), stride, padding, flip=flip))
    np.testing.assert_array_equal(m, literal_matrix(kernel, (h, w, c), stride, padding, flip))
    out = conv_matrix.output_shape(kernel.shape, (h, w), stride, padding)
    assert m.shape == (int(np.prod(out)), h * w * c)
    delta = rng.normal(size=(1, *out))
    gaps = conv_matrix.check(jnp.asarray(x), jnp.asarray(kernel), jnp.asarray(delta), stride,
                             padding, flip=flip)  # fmt: skip
    assert set(gaps) >= {"forward", "backward", "kernel"}
    if c == o == 1:  # one channel: scipy.signal is a second reference for all three
        assert set(gaps) >= {"scipy_forward", "scipy_backward", "scipy_kernel"}
    for name, gap in gaps.items():
        assert gap < 1e-12, (name, gap)


def test_check_table_at_the_experiment_cases():
    # The experiment's table (4 x 4 images, 3 x 3 kernels): every gap at float64 rounding, M as
    # the literal window sums, stride-1 one-channel matrices exactly block Toeplitz/circulant.
    rows = conv_matrix.check_table(4, 3, seed=0)
    assert len(rows) == len(conv_matrix.TABLE_CASES)
    for row, (operation, stride, padding, c_in, c_out) in zip(rows, conv_matrix.TABLE_CASES):
        gaps = {k: v for k, v in row.items() if k in conv_matrix.GAPS}
        assert len(gaps) == (7 if c_in == c_out == 1 else 4), row
        assert max(gaps.values()) < 1e-12, row
        assert row["structure"] == (0.0 if stride == 1 and c_in == c_out == 1 else None)
        kernel = np.random.default_rng(stride).normal(size=(3, 3, c_in, c_out))
        flip = operation == "convolution"
        expected = literal_matrix(kernel, (4, 4, c_in), stride, padding, flip)
        m = conv_matrix.matrix(kernel, (4, 4, c_in), stride, padding, flip=flip)
        assert row["shape"] == expected.shape
        np.testing.assert_array_equal(np.asarray(m), expected.astype(np.float32))
    summary = conv_matrix.summary(4, seed=0)
    assert summary["defect"] == 0.0 and summary["max_gap"] < 1e-12
    assert len(summary["rows"]) == len(rows)
    assert all(len(r) == len(summary["headers"]) for r in summary["rows"])


def test_kernel_gradient_is_the_correlation_of_input_and_output_gradient(x64):
    rng = np.random.default_rng(0)
    image, delta = rng.normal(size=(7, 6)), rng.normal(size=(5, 3))  # a 3 x 4 kernel, valid
    found = conv_matrix.kernel_gradient(jnp.asarray(image)[None, ..., None],
                                        jnp.asarray(delta)[None, ..., None], (3, 4))  # fmt: skip
    expected = scipy.signal.correlate2d(image, delta, mode="valid")
    np.testing.assert_allclose(np.asarray(found)[..., 0, 0], expected, rtol=1e-13, atol=1e-13)
    # The input gradient M^T delta is the full convolution of delta with the kernel.
    kernel = rng.normal(size=(3, 4))
    m = conv_matrix.correlation_matrix(kernel, (7, 6))
    back = conv_matrix.input_gradient(m, jnp.asarray(delta)[None, ..., None], (7, 6, 1))
    full = scipy.signal.convolve2d(delta, kernel, mode="full")
    np.testing.assert_allclose(np.asarray(back)[0, ..., 0], full, rtol=1e-13, atol=1e-13)


def test_stride_one_matrix_is_doubly_block_toeplitz_and_circular_is_circulant(x64):
    kernel = np.arange(1.0, 10.0).reshape(3, 3)
    m = np.asarray(conv_matrix.correlation_matrix(kernel, (4, 5), 1, "same"))
    blocks = m.reshape(4, 5, 4, 5)
    # Block (i, r) depends on r - i only, and each block's entry (j, c) on c - j only.
    np.testing.assert_array_equal(blocks[0, :, 1, :], blocks[2, :, 3, :])
    # Output (1, 0) with "same" padding: the kernel centre sits on input (1, 0).
    np.testing.assert_array_equal(blocks[1, 0, 1], [*kernel[1, 1:], 0, 0, 0])
    np.testing.assert_array_equal(blocks[1, 0, 0], [*kernel[0, 1:], 0, 0, 0])
    assert conv_matrix.structure_defect(m, (4, 5), (4, 5)) == 0.0
    # Zero padding breaks the wrap-around: it is not block circulant.
    assert conv_matrix.structure_defect(m, (4, 5), (4, 5), circular=True) > 0
    wrapped = np.asarray(conv_matrix.correlation_matrix(kernel, (4, 5), 1, "circular"))
    assert conv_matrix.structure_defect(wrapped, (4, 5), (4, 5), circular=True) == 0.0
    # Its eigenvectors are the Fourier modes f_pq, its eigenvalues the DFT of the kernel.
    eigen = conv_matrix.circulant_eigenvalues(kernel, (4, 5))
    r, c = np.meshgrid(np.arange(4), np.arange(5), indexing="ij")
    for p in range(4):
        for q in range(5):
            mode = np.exp(2j * np.pi * (p * r / 4 + q * c / 5)).ravel()
            np.testing.assert_allclose(wrapped @ mode, eigen[p, q] * mode, atol=1e-12)


def test_refuses_what_it_cannot_build():
    with pytest.raises(ValueError, match="circular"):
        conv_matrix.matrix(np.ones((5, 5)), (4, 4), 1, "circular")
    with pytest.raises(ValueError, match="does not fit"):
        conv_matrix.matrix(np.ones((3, 3, 2, 1)), (4, 4, 3))
    with pytest.raises(ValueError, match="kernel"):
        conv_matrix.matrix(np.ones(3), (4, 4))
