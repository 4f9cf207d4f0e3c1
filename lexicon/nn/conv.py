"""Discrete convolution and cross-correlation written from the window sums (SPEC.md section 5).

The documents define, for an input I and a kernel K,

    convolution        S(i, j) = (I * K)(i, j) = sum_m sum_n I(m, n) K(i - m, j - n)
    cross-correlation  S(i, j) = sum_m sum_n I(i + m, j + n) K(m, n)

and the 1-D case s(t) = sum_a x(a) w(t - a). Convolution is the cross-correlation of the input
with the kernel flipped along every spatial axis, and it is commutative; cross-correlation is
what CNN libraries (and ``flax.linen.Conv``) call "convolution".

This module computes both without ``lax.conv``: it pads the input, gathers every window into a
patch tensor, and contracts the patches with the kernel. That makes it an independent reference
for the library convolution, and it is jittable, vmappable and differentiable.

Layouts follow flax: inputs are batched and channels-last, ``(N, W, C)`` in 1-D and
``(N, H, W, C)`` in 2-D; kernels are ``(K, C_in, C_out)`` (WIO) and ``(KH, KW, C_in, C_out)``
(HWIO). Channels are summed, so one output map is

    S[b, i, j, o] = sum_c sum_m sum_n I[b, i*s + m, j*s + n, c] K[m, n, c, o]   (correlation)

over the zero-padded input.

Padding (per spatial axis, n input samples, k kernel taps, stride s):

=========  ==================================  =============================================
mode       zeros added (before, after)         output length
=========  ==================================  =============================================
valid      (0, 0)                              floor((n - k) / s) + 1
same       total = max((ceil(n/s) - 1) s       ceil(n / s)
           + k - n, 0), before = total // 2
full       (k - 1, k - 1)                      floor((n + k - 2) / s) + 1
int p      (p, p)                              floor((n + 2p - k) / s) + 1
(lo, hi)   (lo, hi)                            floor((n + lo + hi - k) / s) + 1
=========  ==================================  =============================================

"same" splits the zeros as ``lax``/flax do (the extra one after) for cross-correlation. For the
flipped convolution it puts the extra zero before, so that with stride 1 the result is the
centred slice of the full convolution, as ``numpy.convolve`` and ``scipy.signal.convolve2d``
define "same"; the two splits only differ for even kernels.
"""

from __future__ import annotations

import functools
import itertools
import math
import operator
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

PADDING_MODES = ("valid", "same", "full")

Padding = str | int | tuple[int, int] | Sequence[tuple[int, int]]

# Sobel derivative kernels (edge filters named in the documents), written for
# cross-correlation: SOBEL_X responds to intensity increasing along the width axis (j),
# SOBEL_Y along the height axis (i).
SOBEL_X = ((-1.0, 0.0, 1.0), (-2.0, 0.0, 2.0), (-1.0, 0.0, 1.0))
SOBEL_Y = ((-1.0, -2.0, -1.0), (0.0, 0.0, 0.0), (1.0, 2.0, 1.0))


def spatial_tuple(value: int | Sequence[int], ndim: int, name: str) -> tuple[int, ...]:
    """One int per spatial axis: an int is repeated ``ndim`` times, a sequence is checked."""
    if isinstance(value, int):
        return (value,) * ndim
    value = tuple(int(v) for v in value)
    if len(value) != ndim:
        raise ValueError(f"{name} needs {ndim} entries, got {value}")
    return value


def padding_amounts(n: int, k: int, stride: int = 1, padding: Padding = "valid") -> tuple[int, int]:
    """Zeros added (before, after) one spatial axis of length ``n`` for a ``k``-tap window.

    ``padding`` is "valid", "same", "full" (any case), an int p (p zeros on both sides) or a
    pair (lo, hi). See the module docstring for the rule of each mode.
    """
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    if isinstance(padding, str):
        mode = padding.lower()
        if mode == "valid":
            return 0, 0
        if mode == "full":
            return k - 1, k - 1
        if mode == "same":
            out = -(-n // stride)
            total = max((out - 1) * stride + k - n, 0)
            return total // 2, total - total // 2
        raise ValueError(f"unknown padding {padding!r}; valid choices: {', '.join(PADDING_MODES)}")
    if isinstance(padding, int):
        lo = hi = padding
    else:
        lo, hi = (int(p) for p in padding)
    if lo < 0 or hi < 0:
        raise ValueError(f"padding amounts must be >= 0, got {(lo, hi)}")
    return lo, hi


def output_size(n: int, k: int, stride: int = 1, padding: Padding = "valid") -> int:
    """Output length along one axis: floor((n + lo + hi - k) / s) + 1 with (lo, hi) the padding.

    valid: floor((n - k)/s) + 1 (the documents' example: a 16x16 kernel on a 256x256 image
    gives 241x241 maps); same: ceil(n/s); full: floor((n + k - 2)/s) + 1.
    """
    lo, hi = padding_amounts(n, k, stride, padding)
    if n + lo + hi < k:
        raise ValueError(f"window of {k} does not fit an input of {n} padded by {(lo, hi)}")
    return (n + lo + hi - k) // stride + 1


def resolve_padding(
    spatial: Sequence[int], window: Sequence[int], strides: Sequence[int], padding: Padding
) -> tuple[tuple[int, int], ...]:
    """One (lo, hi) pair per spatial axis from a mode string, an int or explicit pairs.

    A string or int applies to every axis; otherwise give one entry (an int or a pair) per axis
    (a single pair is accepted for one spatial axis).
    """
    ndim = len(spatial)
    if isinstance(padding, (str, int)):
        per_axis = [padding] * ndim
    else:
        padding = list(padding)
        if ndim == 1 and len(padding) == 2 and all(isinstance(p, int) for p in padding):
            per_axis = [tuple(padding)]
        elif len(padding) == ndim:
            per_axis = padding
        else:
            raise ValueError(f"padding needs one (lo, hi) pair per spatial axis, got {padding}")
    return tuple(
        padding_amounts(n, k, s, p)
        for n, k, s, p in zip(spatial, window, strides, per_axis, strict=True)
    )


@functools.partial(jax.jit, static_argnames=("window", "strides", "pads", "pad_value"))
def _gather_windows(
    x: jax.Array,
    *,
    window: tuple[int, ...],
    strides: tuple[int, ...],
    pads: tuple[tuple[int, int], ...],
    pad_value: float,
) -> jax.Array:
    ndim = len(window)
    out_shape = [
        output_size(n, k, s, pad)
        for n, k, s, pad in zip(x.shape[1:-1], window, strides, pads, strict=True)
    ]
    padded = jnp.pad(x, ((0, 0), *pads, (0, 0)), constant_values=pad_value)
    # Gather one axis at a time: indices (out, k) replace the axis by two axes (out, k).
    for axis, (out, k, s) in enumerate(zip(out_shape, window, strides, strict=True)):
        index = jnp.arange(out)[:, None] * s + jnp.arange(k)[None, :]
        padded = jnp.take(padded, index, axis=1 + 2 * axis, mode="clip")
    # Layout is now (N, out_0, k_0, out_1, k_1, ..., C); bring the window axes after the outputs.
    order = [0, *range(1, 2 * ndim, 2), *range(2, 2 * ndim + 1, 2), 2 * ndim + 1]
    return jnp.transpose(padded, order)


def extract_patches(
    x: jax.Array,
    window_shape: int | Sequence[int],
    strides: int | Sequence[int] = 1,
    padding: Padding = "valid",
    pad_value: float = 0.0,
) -> jax.Array:
    """Every window of a padded channels-last batch: ``(N, *spatial, C) -> (N, *out, *window, C)``.

    patches[b, i, j, m, n, c] = I_pad[b, i*s_h + m, j*s_w + n, c], where I_pad is ``x`` padded
    with ``pad_value`` (0 for convolution; -inf / +inf let max / min pooling ignore the border).
    The windows are gathered with integer index grids, so the result is differentiable in ``x``.
    """
    ndim = x.ndim - 2
    if ndim < 1:
        raise ValueError(f"expected a batched channels-last input (N, ..., C), got {x.shape}")
    window = spatial_tuple(window_shape, ndim, "window_shape")
    steps = spatial_tuple(strides, ndim, "strides")
    pads = resolve_padding(x.shape[1:-1], window, steps, padding)
    return _gather_windows(x, window=window, strides=steps, pads=pads, pad_value=pad_value)


def flip_kernel(kernel: jax.Array) -> jax.Array:
    """K(-m, -n): reverses every spatial axis of a (*window, C_in, C_out) kernel."""
    return jnp.flip(kernel, axis=tuple(range(kernel.ndim - 2)))


def _check_operands(x: jax.Array, kernel: jax.Array, ndim: int | None) -> int:
    spatial = kernel.ndim - 2
    if ndim is not None and spatial != ndim:
        raise ValueError(f"expected a {ndim}-D kernel (*window, C_in, C_out), got {kernel.shape}")
    if x.ndim != spatial + 2:
        raise ValueError(f"input {x.shape} and kernel {kernel.shape} disagree on spatial rank")
    if x.shape[-1] != kernel.shape[-2]:
        raise ValueError(f"input has {x.shape[-1]} channels, kernel expects {kernel.shape[-2]}")
    return spatial


@functools.partial(jax.jit, static_argnames=("strides", "pads", "flip"))
def _windows_dot_kernel(
    x: jax.Array,
    kernel: jax.Array,
    *,
    strides: tuple[int, ...],
    pads: tuple[tuple[int, int], ...],
    flip: bool,
) -> jax.Array:
    """Patches of x contracted with the kernel over (window, input channel); one compiled call."""
    spatial = kernel.ndim - 2
    if flip:
        kernel = flip_kernel(kernel)
    patches = _gather_windows(
        x, window=kernel.shape[:spatial], strides=strides, pads=pads, pad_value=0.0
    )
    window_and_channel_axes = tuple(range(1 + spatial, 2 + 2 * spatial))
    return jnp.tensordot(
        patches,
        kernel,
        axes=(window_and_channel_axes, tuple(range(spatial + 1))),
        precision=lax.Precision.HIGHEST,
    )


def cross_correlate(
    x: jax.Array,
    kernel: jax.Array,
    strides: int | Sequence[int] = 1,
    padding: Padding = "valid",
    ndim: int | None = None,
) -> jax.Array:
    """S[b, i, j, o] = sum_c sum_m sum_n I_pad[b, i*s + m, j*s + n, c] K[m, n, c, o].

    Works for any number of spatial axes (1-D: ``(N, W, C)`` with ``(K, C, O)``; 2-D:
    ``(N, H, W, C)`` with ``(KH, KW, C, O)``). This is the operation CNN libraries call
    convolution.
    """
    spatial = _check_operands(x, kernel, ndim)
    window = kernel.shape[:spatial]
    steps = spatial_tuple(strides, spatial, "strides")
    pads = resolve_padding(x.shape[1:-1], window, steps, padding)
    return _windows_dot_kernel(x, kernel, strides=steps, pads=pads, flip=False)


def convolve(
    x: jax.Array,
    kernel: jax.Array,
    strides: int | Sequence[int] = 1,
    padding: Padding = "valid",
    ndim: int | None = None,
) -> jax.Array:
    """S(i, j) = sum_m sum_n I(m, n) K(i - m, j - n), summed over input channels.

    Computed as the cross-correlation with the explicitly flipped kernel K(-m, -n). "full"
    gives every i with a nonzero term (length n + k - 1), "valid" the i where the flipped
    kernel lies inside the input, and "same" the centred length-n slice of "full" (zeros split
    with the extra one before, mirroring the cross-correlation rule; see the module docstring).
    """
    spatial = _check_operands(x, kernel, ndim)
    window = kernel.shape[:spatial]
    steps = spatial_tuple(strides, spatial, "strides")
    pads = resolve_padding(x.shape[1:-1], window, steps, padding)
    if isinstance(padding, str) and padding.lower() == "same":
        pads = tuple((hi, lo) for lo, hi in pads)
    return _windows_dot_kernel(x, kernel, strides=steps, pads=pads, flip=True)


def cross_correlate_1d(
    x: jax.Array, kernel: jax.Array, stride: int = 1, padding: Padding = "valid"
) -> jax.Array:
    """1-D cross-correlation s(t) = sum_a x(t*s + a) w(a); x ``(N, W, C)``, kernel ``(K, C, O)``."""
    return cross_correlate(x, kernel, stride, padding, ndim=1)


def convolve_1d(
    x: jax.Array, kernel: jax.Array, stride: int = 1, padding: Padding = "valid"
) -> jax.Array:
    """1-D convolution s(t) = (x * w)(t) = sum_a x(a) w(t - a); ``(N, W, C)`` with ``(K, C, O)``."""
    return convolve(x, kernel, stride, padding, ndim=1)


def cross_correlate_2d(
    x: jax.Array,
    kernel: jax.Array,
    strides: int | Sequence[int] = 1,
    padding: Padding = "valid",
) -> jax.Array:
    """2-D cross-correlation S(i, j) = sum_m sum_n I(i + m, j + n) K(m, n); NHWC and HWIO."""
    return cross_correlate(x, kernel, strides, padding, ndim=2)


def convolve_2d(
    x: jax.Array,
    kernel: jax.Array,
    strides: int | Sequence[int] = 1,
    padding: Padding = "valid",
) -> jax.Array:
    """2-D convolution S(i, j) = sum_m sum_n I(m, n) K(i - m, j - n); NHWC and HWIO."""
    return convolve(x, kernel, strides, padding, ndim=2)


# --- im2col: convolution layers as one matrix product ------------------------------------------

CONV_IMPLS = ("auto", "xla", "im2col")
# Which form of im2col a convolution takes (:func:`im2col_form`). The thresholds were measured
# on the 2-core development machine, each form against the plain patch matrix inside the
# compiled epoch: LeNet-5's 5x5 convolution from 6 to 16 channels (width kw * C_in = 30) is
# faster as shifted rows; VGG-small's and ResNet-small's 3x3 convolutions (3 shifts) are not
# (1.0 and 1.05-1.09 of the time), so the shifted-rows form needs a first axis of at least
# SHIFTED_ROWS_MIN_TAPS taps and patches of the other axes at least SHIFTED_ROWS_MIN_WIDTH
# wide. LeNet-5's first convolution (width 5, 6 output channels) is faster blocked: the
# blocked form takes narrower patches (the only kind measured) with at most BLOCKED_MAX_C_OUT
# output channels.
SHIFTED_ROWS_MIN_TAPS = 5
SHIFTED_ROWS_MIN_WIDTH = 16
BLOCKED_MAX_C_OUT = 8
IM2COL_FORMS = ("patches", "shifted rows", "blocked")


def im2col_form(window, c_in, c_out, strides, rhs_dilation, groups=1) -> str:
    """The form of im2col that :func:`im2col_conv_general_dilated` takes for a kernel
    ``window`` (spatial sizes) from ``c_in`` to ``c_out`` channels (see its docstring)."""
    if groups != 1:
        return "patches"
    wide = math.prod(window[1:]) * c_in >= SHIFTED_ROWS_MIN_WIDTH
    if wide and len(window) >= 2 and window[0] >= SHIFTED_ROWS_MIN_TAPS:
        return "shifted rows"
    if not wide and c_out <= BLOCKED_MAX_C_OUT and set(strides) | set(rhs_dilation) == {1}:
        return "blocked"
    return "patches"


def default_conv_impl(platform: str | None = None) -> str:
    """The faster implementation on ``platform`` (the default backend when None).

    On CPU, im2col: measured on the 2-core development machine (experiments/speed.py), a
    LeNet-5 Adam step at batch 128 inside the epoch's ``lax.scan`` runs several times faster
    as im2col + matmul than with XLA:CPU's convolution, whose weight-gradient convolutions
    keep a slow operand layout inside compiled loops. On GPU and TPU the library
    convolutions (cuDNN, the TPU's) are the fast path, so ``xla``.
    """
    platform = platform or jax.default_backend()
    return "im2col" if platform == "cpu" else "xla"


def resolve_conv_impl(impl: str) -> str:
    """``auto`` -> :func:`default_conv_impl`; ``xla`` and ``im2col`` as given."""
    if impl not in CONV_IMPLS:
        raise ValueError(f"unknown conv_impl {impl!r}; valid choices: {', '.join(CONV_IMPLS)}")
    return default_conv_impl() if impl == "auto" else impl


def _channels_last_numbers(ndim: int, dimension_numbers) -> lax.ConvDimensionNumbers:
    # lax's default (None) is NCHW / OIHW / NCHW; flax passes channels-last numbers.
    shape = (1,) * ndim
    return lax.conv_dimension_numbers(shape, shape, dimension_numbers)


def im2col_conv_general_dilated(
    lhs: jax.Array,
    rhs: jax.Array,
    window_strides: Sequence[int],
    padding: str | Sequence[tuple[int, int]],
    lhs_dilation: Sequence[int] | None = None,
    rhs_dilation: Sequence[int] | None = None,
    dimension_numbers=None,
    feature_group_count: int = 1,
    batch_group_count: int = 1,
    precision=None,
    preferred_element_type=None,
) -> jax.Array:
    """``lax.conv_general_dilated`` computed as im2col plus one matrix product.

    The input is brought to channels-last (N, *spatial, C) and the kernel to (*window, C_in,
    C_out); the input is dilated (``lhs_dilation``: zeros between samples) and padded with
    ``lax.pad``; then for every kernel tap (m, n) the strided slice

        X_mn[b, i, j, c] = X_pad[b, i*s_h + m*d_h, j*s_w + n*d_w, c]

    is taken, and the kh*kw slices are concatenated on the channel axis, tap-major, into the
    patch matrix P of shape (N*out_h*out_w, kh*kw*C_in) (built axis by axis: kw slices along
    the width, then kh slices of that along the height). The output is

        Y = P @ K.reshape(kh*kw*C_in, C_out),

    the same sum S[b, i, j, o] = sum_{m,n,c} X_pad[b, i*s + m*d, j*s + n*d, c] K[m, n, c, o]
    as the library convolution, in one GEMM ("patches"). Two other forms of the same sum are
    faster on XLA:CPU where they apply (:func:`im2col_form` picks one):

    - "shifted rows", when the first spatial axis has at least ``SHIFTED_ROWS_MIN_TAPS`` taps
      and the patches of the other axes are at least ``SHIFTED_ROWS_MIN_WIDTH`` wide (kw*C_in
      in 2-D; one group): the first spatial axis is moved in front and summed as kh matmuls
      of shifted row blocks,

          Y[i] = sum_m P_w[i*s_h + m*d_h] @ K[m].reshape(kw*C_in, C_out),

      with P_w the patches of the width alone; each block is a contiguous slice, so neither
      the kh-fold patch matrix nor its gradient is built;
    - "blocked", for narrower patches with at most ``BLOCKED_MAX_C_OUT`` output channels,
      stride 1 and no kernel dilation: each patch row covers 2 outputs per spatial axis,
      a (kh+1) x (kw+1) window taken at stride 2, and the kernel matrix holds K zero-padded
      at each of the 4 offsets (dy, dx),

          Y[2I+dy, 2J+dx, o] = sum_{m',n',c} X_pad[2I+m', 2J+n', c] K_(dy,dx)[m', n', c, o],
          K_(dy,dx)[m', n'] = K[m'-dy, n'-dx] (0 outside the kernel),

      one GEMM 4*C_out wide instead of C_out. The gradients are again slices, pads
    and matmuls, which XLA:CPU runs at matmul speed inside a compiled loop. Same signature as
    ``lax.conv_general_dilated`` (so ``flax.linen.Conv(conv_general_dilated=...)`` takes it),
    for any number of spatial axes; ``feature_group_count`` > 1 contracts each group with its
    own block of the kernel. ``batch_group_count`` > 1 (which only the weight gradient of a
    grouped convolution uses) is handed to ``lax.conv_general_dilated`` itself.
    """
    if batch_group_count != 1:
        return lax.conv_general_dilated(
            lhs,
            rhs,
            window_strides,
            padding,
            lhs_dilation=lhs_dilation,
            rhs_dilation=rhs_dilation,
            dimension_numbers=dimension_numbers,
            feature_group_count=feature_group_count,
            batch_group_count=batch_group_count,
            precision=precision,
            preferred_element_type=preferred_element_type,
        )
    spatial = lhs.ndim - 2
    return _im2col(
        lhs,
        rhs,
        strides=tuple(window_strides),
        padding=padding if isinstance(padding, str) else tuple(tuple(p) for p in padding),
        lhs_dilation=tuple(lhs_dilation or (1,) * spatial),
        rhs_dilation=tuple(rhs_dilation or (1,) * spatial),
        numbers=_channels_last_numbers(lhs.ndim, dimension_numbers),
        groups=feature_group_count,
        precision=precision,
        preferred_element_type=preferred_element_type,
    )


@functools.partial(
    jax.jit,
    static_argnames=(
        "strides", "padding", "lhs_dilation", "rhs_dilation", "numbers", "groups", "precision",
        "preferred_element_type",
    ),
)  # fmt: skip
def _im2col(
    lhs, rhs, *, strides, padding, lhs_dilation, rhs_dilation, numbers, groups, precision,
    preferred_element_type,
):  # fmt: skip
    # One compiled unit, so that eager calls (model.init, tests) do not dispatch every slice.
    spatial = lhs.ndim - 2
    lhs_perm = (numbers.lhs_spec[0], *numbers.lhs_spec[2:], numbers.lhs_spec[1])
    rhs_perm = (*numbers.rhs_spec[2:], numbers.rhs_spec[1], numbers.rhs_spec[0])
    x = jnp.transpose(lhs, lhs_perm)  # (N, *spatial, C); a no-op for flax's layout
    kernel = jnp.transpose(rhs, rhs_perm)  # (*window, C_in / groups, C_out)
    window = kernel.shape[:spatial]
    dilated_in = [(n - 1) * d + 1 for n, d in zip(x.shape[1:-1], lhs_dilation)]
    dilated_window = [(k - 1) * d + 1 for k, d in zip(window, rhs_dilation)]
    if isinstance(padding, str):
        pads = lax.padtype_to_pads(dilated_in, dilated_window, strides, padding)
    else:
        pads = list(padding)
    config = [(0, 0, 0)] + [(lo, hi, d - 1) for (lo, hi), d in zip(pads, lhs_dilation)]
    x = lax.pad(x, jnp.zeros((), x.dtype), config + [(0, 0, 0)])
    out = [(n - w) // s + 1 for n, w, s in zip(x.shape[1:-1], dilated_window, strides)]
    c_in, c_out = kernel.shape[-2:]
    dot = functools.partial(
        lax.dot, precision=precision, preferred_element_type=preferred_element_type
    )
    form = im2col_form(window, c_in, c_out, strides, rhs_dilation, groups)
    if form == "shifted rows":
        # The first spatial axis as a sum of shifted matmuls: with that axis moved in front,
        # its kh taps are contiguous blocks of the patches of the other axes (no copy), and
        #     Y = sum_m P[m*d : m*d + (out-1)*s + 1 : s] @ K[m].reshape(-1, C_out).
        # The patch matrix is kh times narrower than the full one (whose interleaved
        # concatenation, and its gradient's, cost XLA:CPU more than the matmuls).
        first = _window_taps(jnp.moveaxis(x, 1, 0), window[1:], rhs_dilation[1:],
                             strides[1:], out[1:], first_axis=2)  # fmt: skip
        k, d, s, o = window[0], rhs_dilation[0], strides[0], out[0]
        shifted = [lax.slice_in_dim(first, m * d, m * d + (o - 1) * s + 1, s, 0) for m in range(k)]
        y = functools.reduce(
            operator.add,
            (dot(p.reshape(-1, p.shape[-1]), kernel[m].reshape(-1, c_out))
             for m, p in enumerate(shifted)),
        )  # fmt: skip
        y = jnp.moveaxis(y.reshape(o, x.shape[0], *out[1:], c_out), 0, 1)
        return _to_layout(y, lhs.ndim, numbers)
    if form == "blocked":
        # 2 outputs per spatial axis from one patch row: windows of k + 1 taps at stride 2,
        # against the kernel zero-padded into each of the 2^d offsets. The output matrix is
        # 2^d C_out wide instead of C_out (6 would fill few lanes of a vector register), and
        # the patch matrix (k + 1)^d / (2 k)^d of the full one's size.
        blocks = [-(-o // 2) for o in out]
        x = jnp.pad(x, [(0, 0)] + [(0, 2 * b - o) for b, o in zip(blocks, out)] + [(0, 0)])
        patches = _window_taps(x, [k + 1 for k in window], (1,) * spatial, (2,) * spatial,
                               blocks, first_axis=1)  # fmt: skip
        offsets = list(itertools.product((0, 1), repeat=spatial))
        shifted = [
            jnp.pad(kernel, [(d, 1 - d) for d in offset] + [(0, 0)] * 2) for offset in offsets
        ]
        weights = jnp.stack(shifted, axis=-2).reshape(-1, len(offsets) * c_out)
        y = dot(patches.reshape(-1, patches.shape[-1]), weights)
        y = y.reshape(x.shape[0], *blocks, *(2,) * spatial, c_out)
        interleave = [0] + [a for i in range(spatial) for a in (1 + i, 1 + spatial + i)]
        y = jnp.transpose(y, [*interleave, 1 + 2 * spatial])
        y = y.reshape(x.shape[0], *(2 * b for b in blocks), c_out)
        y = y[(slice(None), *(slice(o) for o in out))]
        return _to_layout(y, lhs.ndim, numbers)
    patches = _window_taps(x, window, rhs_dilation, strides, out, first_axis=1)
    taps = math.prod(window)
    rows = patches.reshape(-1, taps, groups, c_in)
    if groups == 1:
        y = dot(rows.reshape(-1, taps * c_in), kernel.reshape(-1, c_out))
    else:
        weights = kernel.reshape(taps, c_in, groups, c_out // groups)
        y = jnp.einsum(
            "rtgc,tcgo->rgo",
            rows,
            weights,
            precision=precision,
            preferred_element_type=preferred_element_type,
        )
    return _to_layout(y.reshape(x.shape[0], *out, c_out), lhs.ndim, numbers)


def _window_taps(x, window, dilation, strides, out, first_axis):
    """The patches of the spatial axes ``first_axis``, ``first_axis + 1``, ... of a
    channels-last array: shifted slices one axis at a time, the last first, concatenated on
    the channel axis; after axis W the channels are (n, c), after axis H (m, n, c), the row
    order of K.reshape(kh*kw*C_in, C_out). kh + kw slices instead of kh * kw keep the program
    (and its compile time) small."""
    patches = x
    for i in reversed(range(len(window))):
        k, d, s, o, axis = window[i], dilation[i], strides[i], out[i], first_axis + i
        taps = [
            lax.slice_in_dim(patches, t * d, t * d + (o - 1) * s + 1, s, axis) for t in range(k)
        ]
        patches = taps[0] if k == 1 else jnp.concatenate(taps, axis=-1)
    return patches


def _to_layout(y, ndim, numbers):
    """A channels-last (N, *spatial, C) result in the requested output layout."""
    out_perm = [0] * ndim
    for position, axis in enumerate((numbers.out_spec[0], *numbers.out_spec[2:])):
        out_perm[axis] = position
    out_perm[numbers.out_spec[1]] = ndim - 1
    return jnp.transpose(y, out_perm)


def conv_general_dilated_for(impl: str = "auto"):
    """The ``conv_general_dilated`` callable of an implementation name (``CONV_IMPLS``)."""
    impl = resolve_conv_impl(impl)
    return im2col_conv_general_dilated if impl == "im2col" else lax.conv_general_dilated


def Conv(features: int, kernel_size, *, impl: str = "auto", **kwargs) -> nn.Conv:
    """``flax.linen.Conv`` with its convolution computed by ``impl`` (``auto`` | ``xla`` |
    ``im2col``). The parameters (``kernel`` HWIO, ``bias``) are the same for every impl, so a
    trained model may be evaluated with another one."""
    return nn.Conv(
        features, kernel_size, conv_general_dilated=conv_general_dilated_for(impl), **kwargs
    )


# --- filtering single images with hand-made kernels ---------------------------------------------


def filter_image(image, kernel, *, correlate: bool = False, padding: Padding = "same"):
    """One grayscale image (H, W) filtered by one kernel (KH, KW): :func:`convolve_2d`, or
    :func:`cross_correlate_2d` with ``correlate``; returns a NumPy (H', W') array."""
    import numpy as np

    x = jnp.asarray(image)[None, :, :, None]
    k = jnp.asarray(kernel)[:, :, None, None]
    op = cross_correlate_2d if correlate else convolve_2d
    return np.asarray(op(x, k, 1, padding)[0, :, :, 0])


def gradient_magnitude(image):
    """sqrt(G_x^2 + G_y^2) with G = Sobel kernel * image (convolution, "same" zero padding)."""
    import numpy as np

    gx = filter_image(image, np.asarray(SOBEL_X, np.float32))
    gy = filter_image(image, np.asarray(SOBEL_Y, np.float32))
    return np.sqrt(gx**2 + gy**2)


def sobel_features(images):
    """(n, H, W) images -> (n, 2 H W): the Sobel x and y maps ("same" padding), flattened and
    concatenated, the hand-made features a linear classifier can use."""
    import numpy as np

    x = jnp.asarray(images)[..., None]
    maps = [
        convolve_2d(x, jnp.asarray(k, jnp.float32)[:, :, None, None], 1, "same")
        for k in (SOBEL_X, SOBEL_Y)
    ]
    return np.concatenate([np.asarray(m).reshape(len(images), -1) for m in maps], axis=1)


def box_kernel(size: int, normalized: bool = True):
    """A size x size float32 box of ones, divided by size^2 when ``normalized`` (a mean filter:
    it keeps the mean intensity, where the undivided box multiplies it by size^2)."""
    import numpy as np

    ones = np.ones((size, size), np.float32)
    return ones / size**2 if normalized else ones
