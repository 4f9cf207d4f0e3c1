"""Tests for lexicon.data.augment: translation, rotation, noise, per-example seeding."""

import functools
import itertools

import jax
import numpy as np
import scipy.ndimage

from lexicon.data import augment


def uniform(seed, shape, high=1.0):
    return np.random.default_rng(seed).uniform(0.0, high, size=shape).astype(np.float32)


def normal(seed, shape, dtype=np.float32):
    return np.random.default_rng(seed).normal(size=shape).astype(dtype)


rotate = jax.jit(augment.rotate)


def numpy_shift_with_zeros(image, dy, dx):
    """np.roll, then zero the rows/columns that wrapped around."""
    out = np.roll(image, (dy, dx), axis=(0, 1))
    height, width = image.shape[:2]
    if dy > 0:
        out[: min(dy, height)] = 0
    elif dy < 0:
        out[max(height + dy, 0) :] = 0
    if dx > 0:
        out[:, : min(dx, width)] = 0
    elif dx < 0:
        out[:, max(width + dx, 0) :] = 0
    return out


def test_translation_matches_numpy_roll_with_zeros():
    image = np.arange(1, 8 * 6 * 2 + 1, dtype=np.float32).reshape(8, 6, 2)
    shift_fn = jax.jit(augment.translate)
    for dy, dx in [(0, 0), (1, 0), (0, -2), (-3, 2), (2, 5), (8, 0), (-9, 1)]:
        expected = numpy_shift_with_zeros(image, dy, dx)
        np.testing.assert_array_equal(shift_fn(image, np.array([dy, dx])), expected)


def test_random_translation_is_an_integer_shift_within_range():
    image = uniform(0, (8, 8, 1)) + 1.0  # no zero pixels
    max_shift = 2
    shift_fn = jax.jit(functools.partial(augment.random_translate, max_shift=max_shift))
    for seed in range(4):
        out = np.asarray(shift_fn(image, jax.random.key(seed)))
        matches = [
            (dy, dx)
            for dy, dx in itertools.product(range(-max_shift, max_shift + 1), repeat=2)
            if np.array_equal(out, numpy_shift_with_zeros(np.asarray(image), dy, dx))
        ]
        assert len(matches) == 1


def test_zero_degree_rotation_is_identity():
    image = normal(1, (6, 6, 2))
    np.testing.assert_array_equal(rotate(image, 0.0), image)


def test_rotation_matches_scipy_bilinear_rotate(x64):
    image = normal(2, (8, 11), np.float64)
    for angle in (17.0, -30.0, 90.0):
        expected = scipy.ndimage.rotate(
            image, angle, reshape=False, order=1, mode="grid-constant", cval=0.0
        )
        got = rotate(image[..., None], angle)[..., 0]
        np.testing.assert_allclose(got, expected, atol=1e-12)


def test_ninety_degree_rotation_of_square_image_is_rot90():
    image = normal(3, (6, 6, 2))
    np.testing.assert_allclose(rotate(image, 90.0), np.rot90(image, k=1, axes=(0, 1)), atol=1e-5)


def test_gaussian_noise_statistics():
    image = np.zeros((200, 200, 1), np.float32)
    sigma = 0.7
    noisy = jax.jit(augment.add_gaussian_noise)(image, jax.random.key(4), sigma)
    noise = np.asarray(noisy, np.float64)
    n = noise.size
    # 6-sigma bounds for the sample mean and the sample standard deviation.
    assert abs(noise.mean()) < 6 * sigma / np.sqrt(n)
    assert abs(noise.std() - sigma) < 6 * sigma / np.sqrt(2 * n)


SETTINGS = dict(max_shift=1, max_degrees=15.0, noise_sigma=0.5, clip_range=(0.0, 16.0))
# Compiled once per input shape; eager dispatch of the vmapped resampling is much slower.
augment_batch = jax.jit(functools.partial(augment.augment_batch, **SETTINGS))
augment_image = jax.jit(functools.partial(augment.augment_image, **SETTINGS))


def test_batch_keeps_labels_and_shapes_and_is_seed_deterministic():
    images = uniform(5, (4, 8, 8, 1), high=16.0)
    labels = np.arange(4, dtype=np.int32)
    out, out_labels = augment_batch(images, labels, jax.random.key(7))
    assert out.shape == images.shape and out.dtype == images.dtype
    np.testing.assert_array_equal(out_labels, labels)
    assert float(out.min()) >= 0.0 and float(out.max()) <= 16.0

    again, _ = augment_batch(images, labels, jax.random.key(7))
    np.testing.assert_array_equal(np.asarray(again), np.asarray(out))
    other, _ = augment_batch(images, labels, jax.random.key(8))
    assert not np.array_equal(np.asarray(other), np.asarray(out))
    # Examples get different augmentations from one another.
    same_image = np.broadcast_to(images[:1], images.shape)
    varied, _ = augment_batch(same_image, labels, jax.random.key(7))
    assert not np.array_equal(np.asarray(varied[0]), np.asarray(varied[1]))


def test_example_i_uses_fold_in_key_i_and_vmaps_over_seeds():
    images = uniform(9, (4, 8, 8, 1), high=16.0)
    labels = np.zeros(4, np.int32)
    key = jax.random.key(10)
    out, _ = augment_batch(images, labels, key)
    # Pixel values reach 16, so float32 rounding differences between the batched and the
    # single-image programs are up to a few 16 * 2^-24 ~ 1e-6.
    tolerance = dict(rtol=0, atol=2e-5)
    for i in range(4):
        single = augment_image(images[i], jax.random.fold_in(key, i))
        np.testing.assert_allclose(out[i], single, **tolerance)

    seeds = jax.random.split(jax.random.key(11), 3)
    by_seed, _ = jax.jit(jax.vmap(augment_batch, in_axes=(None, None, 0)))(images, labels, seeds)
    assert by_seed.shape == (3,) + images.shape
    for s in range(3):
        separate, _ = augment_batch(images, labels, seeds[s])
        np.testing.assert_allclose(by_seed[s], separate, **tolerance)


def test_zero_settings_are_identity():
    """Static zeros skip the steps at trace time; traced zeros run them and still change nothing
    (shift 0, angle 0 samples pixel centres, x + 0 * z = x)."""
    images = normal(12, (3, 5, 5, 2))
    labels = np.zeros(3, np.int32)
    skipped = functools.partial(
        augment.augment_batch, max_shift=0, max_degrees=0.0, noise_sigma=0.0
    )
    out, _ = jax.jit(skipped)(images, labels, jax.random.key(0))
    np.testing.assert_array_equal(out, images)

    @jax.jit
    def traced(shift, degrees, sigma):
        return augment.augment_batch(
            images,
            labels,
            jax.random.key(0),
            max_shift=shift,
            max_degrees=degrees,
            noise_sigma=sigma,
        )[0]

    np.testing.assert_array_equal(traced(0, 0.0, 0.0), images)
    assert not np.array_equal(traced(1, 20.0, 0.1), images)


def test_flat_digit_helpers():
    flat = uniform(13, (4, 64), high=16.0)
    images = augment.flat_to_images(flat)
    assert images.shape == (4, 8, 8, 1)
    np.testing.assert_array_equal(images[2, 1, 3, 0], flat[2, 1 * 8 + 3])
    np.testing.assert_array_equal(augment.images_to_flat(images), flat)

    labels = np.arange(4, dtype=np.int32)
    key = jax.random.key(14)
    out_flat, out_labels = jax.jit(functools.partial(augment.augment_flat_batch, **SETTINGS))(
        flat, labels, key
    )
    out_images, _ = augment_batch(images, labels, key)
    assert out_flat.shape == (4, 64)
    np.testing.assert_array_equal(out_labels, labels)
    # Two compiled programs: equal up to float32 rounding at pixel values up to 16.
    np.testing.assert_allclose(out_flat, augment.images_to_flat(out_images), rtol=0, atol=2e-5)
