"""lexicon.train.shuffle: jax.random.permutation, bit for bit, from sorts of one operand."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lexicon.train import shuffle


@pytest.mark.parametrize("n", [1, 2, 7, 1437, 1625, 1626, 4096, 60_000])
def test_permutation_is_jax_random_permutation(n):
    """One round of sorting up to n = 1625, two above: the same order as jax's, every key."""
    keys = jax.random.split(jax.random.key(n), 3)
    ours = jax.jit(jax.vmap(lambda k: shuffle.permutation(k, n)))(keys)
    theirs = jax.vmap(lambda k: jax.random.permutation(k, n))(keys)
    np.testing.assert_array_equal(ours, theirs)
    assert sorted(np.asarray(ours[0]).tolist()) == list(range(n))


def test_stable_argsort_keeps_tied_keys_in_index_order():
    rng = np.random.default_rng(0)
    for values in (3, 40, 2**32 - 1):  # many ties, some, almost none
        keys = rng.integers(0, values, size=1000, dtype=np.uint64).astype(np.uint32)
        got = shuffle.stable_argsort(jnp.asarray(keys))
        np.testing.assert_array_equal(got, np.argsort(keys, kind="stable"))
    extremes = np.array([2**32 - 1, 0, 2**32 - 1, 0, 5], np.uint32)
    np.testing.assert_array_equal(shuffle.stable_argsort(jnp.asarray(extremes)), [1, 3, 4, 0, 2])


def test_past_the_packing_limit_it_is_jax_own():
    n = shuffle.MAX_N + 1
    key = jax.random.key(1)
    np.testing.assert_array_equal(shuffle.permutation(key, n), jax.random.permutation(key, n))
    with pytest.raises(ValueError, match="packs rank and index"):
        shuffle.stable_argsort(jnp.zeros(n, jnp.uint32))
