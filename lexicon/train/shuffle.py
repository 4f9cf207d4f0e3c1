"""``jax.random.permutation(key, n)``, bit for bit, computed with sorts of one operand.

jax shuffles ``arange(n)`` by sorting it, stably, by random 32-bit keys, in as many rounds as
n needs (ceil(3 ln n / ln(2^32 - 1)): one round up to n = 1625, two up to about 2.6 million).
XLA:CPU sorts a (key, value) pair through a comparator it calls per comparison, about 4x
slower than a sort of one uint32 array. Here each round's stable argsort is two such sorts:

    left_i = #{j : k_j < k_i}                  (a binary search of k_i in sort(k))
    order  = sort(left * n + i) mod n          (tied keys share left_i and keep index order)

which is the same order as the stable sort by k, while n^2 < 2^32 (n <= 65,535: every
training split of the course); larger n go to jax's own. Every epoch's shuffle of
lexicon.train is this one, so the orders are jax's and the recorded runs are unchanged.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

MAX_N = 65_535  # n * n must fit in a uint32


def stable_argsort(keys: jax.Array) -> jax.Array:
    """The indices that sort the 1-D uint32 ``keys`` stably (ties in index order), int32."""
    n = keys.shape[0]
    if n > MAX_N:
        raise ValueError(f"stable_argsort packs rank and index in 32 bits: n={n} > {MAX_N}")
    left = jnp.searchsorted(jnp.sort(keys), keys, side="left", method="scan")
    packed = left.astype(jnp.uint32) * jnp.uint32(n) + jnp.arange(n, dtype=jnp.uint32)
    return (jnp.sort(packed) % jnp.uint32(n)).astype(jnp.int32)


def permutation(key: jax.Array, n: int) -> jax.Array:
    """A random permutation of arange(n): ``jax.random.permutation(key, n)``, bit for bit."""
    if n > MAX_N:
        return jax.random.permutation(key, n)
    rounds = int(np.ceil(3 * np.log(max(1, n)) / np.log(np.iinfo(np.uint32).max)))
    x = jnp.arange(n)
    for _ in range(rounds):
        key, subkey = jax.random.split(key)
        x = x[stable_argsort(jax.random.bits(subkey, (n,), jnp.uint32))]
    return x
