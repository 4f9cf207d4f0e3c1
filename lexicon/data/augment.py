"""Image dataset augmentation inside the compiled step (SPEC.md section 4).

Document 001 suggests enlarging an image training set by translating the pixels a little,
adding noise and rotating, and applying the same augmentation to every algorithm being
compared. The functions here work on one HWC image and on NHWC batches, are pure functions of
an explicit key, and contain no Python control flow on array values, so they run under
``jax.jit`` and ``jax.vmap`` (for example over seeds). Labels are never changed.

Per-example randomness: example i of a batch uses ``jax.random.fold_in(key, i)``, so an
example's augmentation does not depend on the batch size or on its neighbours.

Flat 64-vectors of the 8x8 scikit-learn digits go through :func:`flat_to_images` and
:func:`images_to_flat`, or directly through :func:`augment_flat_batch`.
"""

import jax
import jax.numpy as jnp
from jax.scipy import ndimage


def translate(image: jax.Array, shift: jax.Array) -> jax.Array:
    """Shift an HWC image by integer (dy, dx) pixels with zero fill.

        out[r, c] = image[r - dy, c - dx]  if 0 <= r - dy < H and 0 <= c - dx < W, else 0.

    Positive dy moves content down, positive dx moves it right. ``shift`` may be traced.
    """
    height, width = image.shape[0], image.shape[1]
    dy, dx = shift[0], shift[1]
    rolled = jnp.roll(image, (dy, dx), axis=(0, 1))
    rows = jnp.arange(height)[:, None]
    cols = jnp.arange(width)[None, :]
    source_inside = (rows - dy >= 0) & (rows - dy < height) & (cols - dx >= 0) & (cols - dx < width)
    source_inside = source_inside.reshape(source_inside.shape + (1,) * (image.ndim - 2))
    return jnp.where(source_inside, rolled, jnp.zeros_like(rolled))


def rotate(image: jax.Array, angle_degrees: jax.Array) -> jax.Array:
    """Rotate an HWC image counterclockwise (as displayed) about its centre, bilinear, zero fill.

    With centre (c_y, c_x) = ((H - 1) / 2, (W - 1) / 2), y = r - c_y, x = c - c_x and
    theta in radians, output pixel (r, c) reads the input at

        (c_y + cos(theta) y + sin(theta) x,  c_x - sin(theta) y + cos(theta) x)

    by bilinear interpolation (``jax.scipy.ndimage.map_coordinates``, order 1, points outside
    the image read 0). This is the convention of ``scipy.ndimage.rotate(reshape=False)``. At
    angle 0 every sample falls on a pixel centre, so the result is the input exactly.
    """
    height, width = image.shape[0], image.shape[1]
    dtype = image.dtype if jnp.issubdtype(image.dtype, jnp.floating) else jnp.float32
    theta = jnp.deg2rad(jnp.asarray(angle_degrees, dtype))
    cos, sin = jnp.cos(theta), jnp.sin(theta)
    center_y, center_x = (height - 1) / 2, (width - 1) / 2
    rows, cols = jnp.meshgrid(
        jnp.arange(height, dtype=dtype), jnp.arange(width, dtype=dtype), indexing="ij"
    )
    y, x = rows - center_y, cols - center_x
    source_rows = center_y + (cos * y + sin * x)
    source_cols = center_x + (cos * x - sin * y)

    def resample(channel):
        return ndimage.map_coordinates(
            channel, [source_rows, source_cols], order=1, mode="constant", cval=0.0
        )

    channels_last = image.reshape(height, width, -1).astype(dtype)
    rotated = jax.vmap(resample, in_axes=2, out_axes=2)(channels_last)
    return rotated.reshape(image.shape)


def add_gaussian_noise(image: jax.Array, key: jax.Array, sigma: float) -> jax.Array:
    """x + sigma * z with z ~ N(0, I) of the image's shape."""
    return image + sigma * jax.random.normal(key, image.shape, image.dtype)


def random_translate(image: jax.Array, key: jax.Array, max_shift: int) -> jax.Array:
    """Translate by (dy, dx) drawn uniformly from the integers in [-max_shift, max_shift]."""
    shift = jax.random.randint(key, (2,), -max_shift, max_shift + 1)
    return translate(image, shift)


def random_rotate(image: jax.Array, key: jax.Array, max_degrees: float) -> jax.Array:
    """Rotate by an angle drawn uniformly from [-max_degrees, max_degrees] degrees."""
    angle = jax.random.uniform(key, (), minval=-max_degrees, maxval=max_degrees)
    return rotate(image, angle)


def _is_static_zero(value) -> bool:
    return isinstance(value, (int, float)) and value == 0


def augment_image(
    image: jax.Array,
    key: jax.Array,
    *,
    max_shift: int = 1,
    max_degrees: float = 10.0,
    noise_sigma: float = 0.0,
    clip_range: tuple[float, float] | None = None,
) -> jax.Array:
    """Random translation, then random rotation, then additive Gaussian noise on one image.

    The key is split into three streams (translation, rotation, noise). A step whose
    hyperparameter is the Python number 0 is skipped at trace time (it would be the identity
    anyway). ``clip_range=(lo, hi)`` clips the result to the valid pixel range.
    """
    translate_key, rotate_key, noise_key = jax.random.split(key, 3)
    out = image
    if not _is_static_zero(max_shift):
        out = random_translate(out, translate_key, max_shift)
    if not _is_static_zero(max_degrees):
        out = random_rotate(out, rotate_key, max_degrees)
    if not _is_static_zero(noise_sigma):
        out = add_gaussian_noise(out, noise_key, noise_sigma)
    if clip_range is not None:
        out = jnp.clip(out, clip_range[0], clip_range[1])
    return out


def example_keys(key: jax.Array, batch_size: int) -> jax.Array:
    """Per-example keys fold_in(key, i) for i = 0 .. batch_size - 1."""
    return jax.vmap(lambda index: jax.random.fold_in(key, index))(jnp.arange(batch_size))


def augment_batch(
    images: jax.Array,
    labels: jax.Array,
    key: jax.Array,
    *,
    max_shift: int = 1,
    max_degrees: float = 10.0,
    noise_sigma: float = 0.0,
    clip_range: tuple[float, float] | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Augment an NHWC batch, example i with key fold_in(key, i); labels pass through unchanged.

    See :func:`augment_image` for the transformations. Returns (augmented_images, labels).
    """

    def one(image, example_key):
        return augment_image(
            image,
            example_key,
            max_shift=max_shift,
            max_degrees=max_degrees,
            noise_sigma=noise_sigma,
            clip_range=clip_range,
        )

    augmented = jax.vmap(one)(images, example_keys(key, images.shape[0]))
    return augmented, labels


def flat_to_images(flat: jax.Array, height: int = 8, width: int = 8) -> jax.Array:
    """Reshape (..., height * width) vectors into (..., height, width, 1) single-channel images."""
    return flat.reshape(flat.shape[:-1] + (height, width, 1))


def images_to_flat(images: jax.Array) -> jax.Array:
    """Reshape (..., H, W, C) images back into (..., H * W * C) vectors."""
    return images.reshape(images.shape[:-3] + (-1,))


def augment_flat_batch(
    flat: jax.Array,
    labels: jax.Array,
    key: jax.Array,
    *,
    height: int = 8,
    width: int = 8,
    max_shift: int = 1,
    max_degrees: float = 10.0,
    noise_sigma: float = 0.0,
    clip_range: tuple[float, float] | None = None,
) -> tuple[jax.Array, jax.Array]:
    """:func:`augment_batch` for flat vectors (N, height * width), e.g. the 8x8 digits."""
    augmented, labels = augment_batch(
        flat_to_images(flat, height, width),
        labels,
        key,
        max_shift=max_shift,
        max_degrees=max_degrees,
        noise_sigma=noise_sigma,
        clip_range=clip_range,
    )
    return images_to_flat(augmented), labels
