"""The device replay buffer: FIFO, wraparound, uniform sampling."""

import jax
import jax.numpy as jnp
import numpy as np

from lexicon.rl import replay


def test_fifo_with_wraparound_against_a_list_model():
    buffer = replay.init({"x": jnp.zeros(2), "i": jnp.zeros((), jnp.int32)}, capacity=5)
    model = []
    for start, n in ((0, 2), (2, 2), (4, 3), (7, 1), (8, 4)):
        items = {"i": jnp.arange(start, start + n), "x": jnp.ones((n, 2)) * start}
        buffer = replay.add(buffer, items)
        model = (model + list(range(start, start + n)))[-5:]  # the last 5, oldest dropped
        assert int(buffer.size) == len(model)
        held = np.asarray(buffer.data["i"])[: int(buffer.size)]
        assert sorted(held.tolist()) == model
    # Slot k holds item k mod 5: the ring wrapped, and the next write goes to slot 12 mod 5.
    np.testing.assert_array_equal(np.asarray(buffer.data["i"]), [10, 11, 7, 8, 9])
    assert int(buffer.position) == 12 % 5


def test_uniform_sampling_over_the_items_held():
    buffer = replay.init(jnp.zeros((), jnp.int32), capacity=8)
    buffer = replay.add(buffer, jnp.arange(6))  # 6 of 8 slots filled
    draws = np.asarray(replay.sample(buffer, jax.random.key(0), 60_000))
    counts = np.bincount(draws, minlength=8)
    assert counts[6:].sum() == 0  # never an empty slot
    expected = 60_000 / 6
    chi2 = ((counts[:6] - expected) ** 2 / expected).sum()
    assert chi2 < 20.5  # chi-square, 5 degrees of freedom, p = 0.001
