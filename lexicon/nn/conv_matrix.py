"""Convolution as a matrix product, its backward pass and its kernel gradient (SPEC.md §5, §14).

On a fixed input shape a 2-D convolution is linear in its input, so it is one matrix M. With
vec the row-major flattening of an (H, W, C) input and of the (OH, OW, O) output (the order of
``x.reshape(n, -1)`` for channels-last arrays), the cross-correlation of :mod:`lexicon.nn.conv`,
S[i, j, o] = sum_c sum_m sum_n I_pad[i s_h + m, j s_w + n, c] K[m, n, c, o], is

    vec(S) = M vec(I),   M[(i, j, o), (r, c, ch)] = K[r + lo_h - i s_h, c + lo_w - j s_w, ch, o]

with M zero where the kernel index falls outside the kernel ((lo_h, lo_w) are the zeros padded
before each axis). The convolution S(i, j) = sum_m sum_n I(m, n) K(i - m, j - n) is the same
matrix built from the flipped kernel K(-m, -n), with the padding rule of ``conv.convolve``.

Row (i, j) of M is the kernel laid on the input at output position (i, j). With stride 1, the
block of M at block-row i and block-column r (an OW x W matrix over j and c) depends only on
r - i, and inside each block the entry depends only on c - j: M is doubly block Toeplitz. With
circular padding (``padding="circular"``: the input wraps around instead of being padded with
zeros) both differences are taken modulo the side, and M is doubly block circulant; its
eigenvectors are then the 2-D Fourier modes and its eigenvalues the discrete Fourier transform
of the kernel (:func:`circulant_eigenvalues`).

The backward pass of a loss L through S = conv(I), with delta = dL/dS:

    dL/dvec(I) = M^T vec(delta)    (the transpose; a "transposed convolution")
    dL/dK[m, n, c, o] = sum_b sum_{i, j} I_pad[b, i s_h + m, j s_w + n, c] delta[b, i, j, o]

The kernel gradient is the cross-correlation of the padded input with the output gradient
(spread out by the stride): :func:`kernel_gradient` computes it with ``conv.cross_correlate``,
the batch taking the place of the channels.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import scipy.signal
from jax import lax

from lexicon.nn import conv

PADDINGS = ("valid", "same", "full", "circular")


def _pairs(shape, window, strides, padding, flip):
    """(lo, hi) zeros per spatial axis: conv's rule ("circular" wraps as many as "same" pads);
    the convolution puts the extra "same" zero before, as ``conv.convolve`` does."""
    rule = "same" if padding == "circular" else padding
    pads = conv.resolve_padding(shape, window, strides, rule)
    if flip and isinstance(padding, str) and padding.lower() in ("same", "circular"):
        pads = tuple((hi, lo) for lo, hi in pads)
    return pads


def _kernel4(kernel) -> jax.Array:
    """A (KH, KW) kernel as (KH, KW, 1, 1); an HWIO kernel unchanged."""
    kernel = jnp.asarray(kernel)
    if kernel.ndim == 2:
        kernel = kernel[:, :, None, None]
    if kernel.ndim != 4:
        raise ValueError(f"expected a (KH, KW) or (KH, KW, C_in, C_out) kernel, got {kernel.shape}")
    return kernel


def _check(kernel, input_shape, strides, padding):
    shape = tuple(int(d) for d in input_shape)
    if len(shape) == 2:
        shape = (*shape, 1)
    if len(shape) != 3 or shape[-1] != kernel.shape[2]:
        raise ValueError(f"input shape {input_shape} does not fit the kernel {kernel.shape}")
    steps = conv.spatial_tuple(strides, 2, "strides")
    if padding == "circular" and any(k > n for k, n in zip(kernel.shape[:2], shape[:2])):
        raise ValueError(f"circular padding needs a kernel no larger than the input {shape[:2]}")
    return shape, steps


def output_shape(kernel_shape, input_shape, strides=1, padding="valid") -> tuple[int, int, int]:
    """(OH, OW, O) of a kernel (KH, KW[, C, O]) on an (H, W[, C]) input: floor((n + lo + hi -
    k) / s) + 1 per axis, as conv.output_size; "circular" keeps ceil(n / s), as "same" does."""
    kernel_shape = tuple(kernel_shape) + (1, 1)[: 4 - len(kernel_shape)]
    steps = conv.spatial_tuple(strides, 2, "strides")
    pads = _pairs(tuple(input_shape[:2]), kernel_shape[:2], steps, padding, False)
    sides = [
        (n + lo + hi - k) // s + 1
        for n, k, s, (lo, hi) in zip(input_shape[:2], kernel_shape[:2], steps, pads)
    ]
    if min(sides) < 1:
        raise ValueError(f"a {kernel_shape[:2]} kernel does not fit the input {input_shape}")
    return (*sides, kernel_shape[3])


def _tap_index(n: int, k: int, stride: int, lo: int, out: int, circular: bool):
    """(out, n) integer array m = r + lo - i s (mod n when circular) and where 0 <= m < k."""
    m = np.arange(n)[None, :] + lo - np.arange(out)[:, None] * stride
    if circular:
        m = np.mod(m, n)
    return np.clip(m, 0, k - 1), (m >= 0) & (m < k)


def matrix(kernel, input_shape, strides=1, padding="valid", *, flip: bool = False) -> jax.Array:
    """M with vec(conv(I)) = M vec(I): (OH OW O, H W C), rows (i, j, o), columns (r, c, ch).

    ``kernel`` is (KH, KW) or HWIO (KH, KW, C, O); ``input_shape`` (H, W) or (H, W, C);
    ``padding`` "valid", "same", "full", an int, (lo, hi) pairs, or "circular". ``flip=False``
    gives cross-correlation (``conv.cross_correlate``), ``flip=True`` convolution
    (``conv.convolve``). Built by gathering kernel entries, so it is differentiable in K.
    """
    kernel = _kernel4(kernel)
    shape, steps = _check(kernel, input_shape, strides, padding)
    if flip:
        kernel = conv.flip_kernel(kernel)
    (kh, kw), circular = kernel.shape[:2], padding == "circular"
    pads = _pairs(shape[:2], (kh, kw), steps, padding, flip)
    oh, ow, _ = output_shape(kernel.shape, shape[:2], steps, padding)
    mh, vh = _tap_index(shape[0], kh, steps[0], pads[0][0], oh, circular)
    mw, vw = _tap_index(shape[1], kw, steps[1], pads[1][0], ow, circular)
    taps = kernel[mh[:, :, None, None], mw[None, None, :, :]]  # (OH, H, OW, W, C, O)
    inside = (vh[:, :, None, None] & vw[None, None, :, :])[..., None, None]
    blocks = jnp.where(inside, taps, jnp.zeros((), kernel.dtype))
    return blocks.transpose(0, 2, 5, 1, 3, 4).reshape(oh * ow * kernel.shape[3], -1)


def correlation_matrix(kernel, input_shape, strides=1, padding="valid") -> jax.Array:
    """M of S(i, j) = sum_m sum_n I(i + m, j + n) K(m, n) (``conv.cross_correlate``)."""
    return matrix(kernel, input_shape, strides, padding, flip=False)


def convolution_matrix(kernel, input_shape, strides=1, padding="valid") -> jax.Array:
    """M of S(i, j) = sum_m sum_n I(m, n) K(i - m, j - n) (``conv.convolve``)."""
    return matrix(kernel, input_shape, strides, padding, flip=True)


def apply(m: jax.Array, x: jax.Array, out_shape: Sequence[int]) -> jax.Array:
    """The forward pass M vec(x) of a batch x (N, H, W, C): (N, OH, OW, O)."""
    flat = jnp.matmul(x.reshape(len(x), -1), m.T, precision=lax.Precision.HIGHEST)
    return flat.reshape(len(x), *out_shape)


def input_gradient(m: jax.Array, delta: jax.Array, input_shape: Sequence[int]) -> jax.Array:
    """The backward pass M^T vec(delta) of an output gradient delta (N, OH, OW, O): (N, H, W, C)."""
    flat = jnp.matmul(delta.reshape(len(delta), -1), m, precision=lax.Precision.HIGHEST)
    return flat.reshape(len(delta), *input_shape)


def _padded(x, pads, circular):
    widths = ((0, 0), *pads, (0, 0))
    return jnp.pad(x, widths, mode="wrap" if circular else "constant")


def cross_correlate(x, kernel, strides=1, padding="valid", *, flip: bool = False) -> jax.Array:
    """``conv.cross_correlate`` (or ``conv.convolve`` with ``flip``), also for "circular"
    padding, which pads the input with its own wrapped-around rows and columns."""
    kernel = _kernel4(kernel)
    if padding != "circular":
        op = conv.convolve if flip else conv.cross_correlate
        return op(x, kernel, strides, padding, ndim=2)
    _, steps = _check(kernel, x.shape[1:], strides, padding)
    pads = _pairs(x.shape[1:3], kernel.shape[:2], steps, padding, flip)
    op = conv.convolve if flip else conv.cross_correlate
    return op(_padded(x, pads, True), kernel, steps, "valid", ndim=2)


def kernel_gradient(x, delta, window, strides=1, padding="valid", *, flip: bool = False):
    """dL/dK (KH, KW, C, O): the cross-correlation of the padded input x (N, H, W, C) with the
    output gradient delta (N, OH, OW, O), spread out by the stride (zeros between its rows).

    dL/dK[m, n, c, o] = sum_b sum_{i, j} I_pad[b, i s + m, j s + n, c] delta[b, i, j, o]; the
    batch b is summed as the channel axis of ``conv.cross_correlate``. With ``flip`` (the
    convolution) the result is flipped back, K being used as K(-m, -n).
    """
    window = tuple(int(k) for k in window)
    steps = conv.spatial_tuple(strides, 2, "strides")
    pads = _pairs(x.shape[1:3], window, steps, padding, flip)
    padded = _padded(x, pads, padding == "circular")
    dilated = delta
    for axis, s in ((1, steps[0]), (2, steps[1])):
        dilated = lax.pad(dilated, jnp.zeros((), delta.dtype), [(0, 0, s - 1 if a == axis else 0)
                          for a in range(4)])  # fmt: skip
    # Roles swapped: (C, Hp, Wp, N) correlated with the (OH', OW', N, O) gradient.
    grad = conv.cross_correlate(
        padded.transpose(3, 1, 2, 0), dilated.transpose(1, 2, 0, 3), 1, "valid", ndim=2
    )[:, : window[0], : window[1], :].transpose(1, 2, 0, 3)
    return conv.flip_kernel(grad) if flip else grad


def structure_defect(m, out_shape, in_shape, *, circular: bool = False) -> float:
    """Largest gap to the doubly block Toeplitz (block circulant when ``circular``) pattern
    of a one-channel stride-1 M: entry ((i, j), (r, c)) depends only on (r - i, c - j)
    (taken modulo (H, W) when circular). Zero for every stride-1 convolution matrix."""
    blocks = np.asarray(m).reshape(*out_shape[:2], *in_shape[:2])
    oh, ow, h, w = blocks.shape
    i, j, r, c = np.meshgrid(*map(np.arange, blocks.shape), indexing="ij")
    du, dv = r - i, c - j
    if circular:
        du, dv = np.mod(du, h), np.mod(dv, w)
    keys = (du - du.min()) * (dv.max() - dv.min() + 1) + (dv - dv.min())
    worst = 0.0
    for key in np.unique(keys):
        values = blocks[keys == key]
        worst = max(worst, float(values.max() - values.min()))
    return worst


def circulant_eigenvalues(kernel, input_shape, *, flip: bool = False) -> np.ndarray:
    """The eigenvalues of the doubly block-circulant M of a (KH, KW) kernel on an (H, W) input,
    in the order of the Fourier modes (p, q): lambda_pq = sum_m sum_n K[m, n] e^{2 pi i
    (p (m - lo_h) / H + q (n - lo_w) / W)}, for M f_pq = lambda_pq f_pq with
    f_pq[r, c] = e^{2 pi i (p r / H + q c / W)}."""
    kernel = np.asarray(kernel, np.float64)
    if flip:
        kernel = kernel[::-1, ::-1]
    (h, w), (kh, kw) = input_shape[:2], kernel.shape
    pads = _pairs((h, w), (kh, kw), (1, 1), "circular", flip)
    embedded = np.zeros((h, w))
    for m in range(kh):
        for n in range(kw):
            embedded[(m - pads[0][0]) % h, (n - pads[1][0]) % w] += kernel[m, n]
    return h * w * np.fft.ifft2(embedded)


def scipy_reference(x, kernel, delta, strides=1, padding="valid", *, flip: bool = False):
    """Forward pass, input gradient and kernel gradient of one (H, W) image and (KH, KW)
    kernel by ``scipy.signal`` in float64: the input padded by NumPy (zeros or wrapped), then
    correlate2d / convolve2d in "valid" (forward, kernel gradient) and "full" (input
    gradient) mode, the stride applied by subsampling and by spreading delta out."""
    x, kernel, delta = (np.asarray(a, np.float64) for a in (x, kernel, delta))
    steps = conv.spatial_tuple(strides, 2, "strides")
    pads = _pairs(x.shape, kernel.shape, steps, padding, flip)
    circular = padding == "circular"
    padded = np.pad(x, pads, mode="wrap" if circular else "constant")
    forward_op = scipy.signal.convolve2d if flip else scipy.signal.correlate2d
    forward = forward_op(padded, kernel, mode="valid")[:: steps[0], :: steps[1]]
    spread = np.zeros(((len(delta) - 1) * steps[0] + 1, (delta.shape[1] - 1) * steps[1] + 1))
    spread[:: steps[0], :: steps[1]] = delta
    backward_op = scipy.signal.correlate2d if flip else scipy.signal.convolve2d
    grad_padded = np.zeros_like(padded)
    full = backward_op(spread, kernel, mode="full")
    grad_padded[: full.shape[0], : full.shape[1]] = full
    (top, _), (left, _) = pads
    h, w = x.shape
    if circular:  # a wrapped copy passes its gradient back to the pixel it copies
        rows = np.mod(np.arange(padded.shape[0]) - top, h)
        cols = np.mod(np.arange(padded.shape[1]) - left, w)
        grad_x = np.zeros_like(x)
        np.add.at(grad_x, (rows[:, None], cols[None, :]), grad_padded)
    else:
        grad_x = grad_padded[top : top + h, left : left + w]
    grad_k = scipy.signal.correlate2d(padded, spread, mode="valid")[
        : kernel.shape[0], : kernel.shape[1]
    ]
    return forward, grad_x, grad_k[::-1, ::-1] if flip else grad_k


def _static(padding):
    """A hashable padding: str and int unchanged, pairs as tuples."""
    if isinstance(padding, (str, int)):
        return padding
    return tuple(p if isinstance(p, int) else tuple(int(v) for v in p) for p in padding)


@functools.partial(jax.jit, static_argnames=("strides", "padding", "flip"))
def _passes(x, kernel, delta, *, strides, padding, flip):
    """Both sides of the three identities in one compiled call (see :func:`check`)."""
    m = matrix(kernel, x.shape[1:], strides, padding, flip=flip)
    out_shape = output_shape(kernel.shape, x.shape[1:3], strides, padding)
    reference, pullback = jax.vjp(
        lambda xx, kk: cross_correlate(xx, kk, strides, padding, flip=flip), x, kernel
    )
    dx, dk = pullback(delta)
    _, through_m = jax.vjp(
        lambda kk: apply(matrix(kk, x.shape[1:], strides, padding, flip=flip), x, out_shape),
        kernel,
    )
    return {
        "forward": (apply(m, x, out_shape), reference),
        "backward": (input_gradient(m, delta, x.shape[1:]), dx),
        "kernel": (kernel_gradient(x, delta, kernel.shape[:2], strides, padding, flip=flip), dk),
        "kernel_through_m": (through_m(delta)[0], dk),
    }


def check(x, kernel, delta, strides=1, padding="valid", *, flip: bool = False) -> dict:
    """The three identities on one case, as largest absolute gaps (run it in float64).

    x (N, H, W, C), kernel HWIO or (KH, KW), delta (N, OH, OW, O). forward: M vec(x) against
    the project's conv; backward: M^T delta against ``jax.vjp`` of that conv in x; kernel:
    :func:`kernel_gradient` against ``jax.vjp`` in K; kernel_through_m: the gradient of
    K -> M(K) vec(x) (M built from K) against the same. With one image and one channel,
    scipy_forward, scipy_backward and scipy_kernel hold ours against :func:`scipy_reference`.
    """
    kernel = _kernel4(kernel)
    strides = conv.spatial_tuple(strides, 2, "strides")
    pairs = _passes(x, kernel, delta, strides=strides, padding=_static(padding), flip=flip)
    gaps = {name: _gap(a, b) for name, (a, b) in pairs.items()}
    if x.shape[0] == 1 and x.shape[-1] == 1 and kernel.shape[-1] == 1:
        found = scipy_reference(x[0, ..., 0], kernel[..., 0, 0], delta[0, ..., 0], strides,
                                padding, flip=flip)  # fmt: skip
        for name, expected in zip(("forward", "backward", "kernel"), found):
            gaps[f"scipy_{name}"] = _gap(np.asarray(pairs[name][0]).reshape(expected.shape),
                                         expected)  # fmt: skip
    return gaps


def _gap(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


# (operation, stride, padding, input channels, output channels) of :func:`check_table`.
TABLE_CASES = (
    ("cross-correlation", 1, "valid", 1, 1),
    ("cross-correlation", 2, "same", 1, 1),
    ("cross-correlation", 1, "circular", 1, 1),
    ("convolution", 1, "same", 1, 1),
    ("convolution", 1, "full", 1, 1),
    ("convolution", 2, "valid", 2, 3),
)


def check_table(size: int, kernel_size: int, seed: int, cases=TABLE_CASES) -> list[dict]:
    """:func:`check` on float64 standard-normal operands (an image of size x size, a
    kernel_size x kernel_size kernel and an output gradient; NumPy generator ``seed``) for
    each case, with the shape of M and, for stride 1 and one channel, the gap to the doubly
    block Toeplitz pattern (block circulant for "circular")."""
    rng = np.random.default_rng(seed)
    rows = []
    with jax.enable_x64(True):
        for operation, stride, padding, c_in, c_out in cases:
            flip = operation == "convolution"
            x = rng.standard_normal((1, size, size, c_in))
            kernel = rng.standard_normal((kernel_size, kernel_size, c_in, c_out))
            out = output_shape(kernel.shape, (size, size), stride, padding)
            delta = rng.standard_normal((1, *out))
            gaps = check(*map(jnp.asarray, (x, kernel, delta)), stride, padding, flip=flip)
            m = matrix(kernel, (size, size, c_in), stride, padding, flip=flip)
            one = stride == 1 and c_in == c_out == 1
            circular = padding == "circular"
            defect = structure_defect(m, out, (size, size), circular=circular) if one else None
            rows.append({"operation": operation, "stride": stride, "padding": padding,
                         "channels": (c_in, c_out), "shape": tuple(m.shape), **gaps,
                         "structure": defect})  # fmt: skip
    return rows


# The keys of :func:`check` (each a largest absolute gap).
GAPS = (
    "forward", "backward", "kernel", "kernel_through_m", "scipy_forward", "scipy_backward",
    "scipy_kernel",
)  # fmt: skip


def _worst(row, *names):
    found = [row[k] for k in names if k in row]
    return max(found) if found else None


def summary(size: int, seed: int, kernel=None) -> dict:
    """A report's worth of the matrix view: ``matrix``, the M of the cross-correlation of
    ``kernel`` (default: Sobel x) on a size x size image with "same" zeros; ``defect``, its gap
    to the doubly block Toeplitz pattern; ``headers`` and ``rows`` (strings) of a table of
    :func:`check_table` (3 x 3 kernels, NumPy seed ``seed``); ``max_gap``, its largest gap."""
    kernel = np.asarray(conv.SOBEL_X if kernel is None else kernel, np.float64)
    with jax.enable_x64(True):
        m = np.asarray(correlation_matrix(kernel, (size, size), 1, "same"))
    found = check_table(size, 3, seed)
    headers = ["operation", "stride", "padding", "channels in, out", "M", "M vec(x) vs conv",
               "M^T delta vs jax.vjp", "kernel gradient vs jax.vjp", "all three vs scipy.signal",
               "gap to block Toeplitz / circulant"]  # fmt: skip
    rows = [(r["operation"], r["stride"], r["padding"], r["channels"], r["shape"],
             *("—" if v is None else f"{v:.1e}" for v in (
                 r["forward"], r["backward"], _worst(r, "kernel", "kernel_through_m"),
                 _worst(r, "scipy_forward", "scipy_backward", "scipy_kernel"), r["structure"])))
            for r in found]  # fmt: skip
    return {
        "matrix": m,
        "defect": structure_defect(m, (size, size), (size, size)),
        "headers": headers,
        "rows": rows,
        "max_gap": max(max(v for k, v in r.items() if k in GAPS) for r in found),
    }
