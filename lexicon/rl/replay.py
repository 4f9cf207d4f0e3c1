"""A replay buffer on the device: a FIFO ring of fixed capacity with uniform sampling.

Experience replay (Mnih et al. 2015) [add]: transitions are stored as they come and the
Q-network learns from minibatches drawn uniformly from the last ``capacity`` of them.

The buffer is our own rather than flashbax's: it is a plain pytree (a flax struct of arrays,
a write position and a size), so it travels inside the train state through vmap over seeds,
lax.scan, orbax checkpoints and resume with nothing to adapt; it is the forty lines the
algorithm needs (write with wraparound, sample uniformly with replacement), tested here
against a literal model; and flashbax is not a declared dependency of the project.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct


class Buffer(struct.PyTreeNode):
    data: Any  # a pytree whose leaves lead with the capacity axis
    position: jax.Array  # the slot the next item goes to
    size: jax.Array  # items held, at most capacity

    @property
    def capacity(self) -> int:
        return jax.tree.leaves(self.data)[0].shape[0]


def init(example, capacity: int) -> Buffer:
    """An empty buffer for items shaped like ``example`` (one item, no leading axis)."""
    data = jax.tree.map(
        lambda x: jnp.zeros((capacity, *jnp.shape(x)), jnp.asarray(x).dtype), example
    )
    return Buffer(data, jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))


def add(buffer: Buffer, items) -> Buffer:
    """Appends a batch of items (leaves lead with the batch axis); the oldest are overwritten
    once the buffer is full (first in, first out)."""
    n = jax.tree.leaves(items)[0].shape[0]
    if n > buffer.capacity:
        raise ValueError(f"cannot add {n} items to a buffer of capacity {buffer.capacity}")
    slots = (buffer.position + jnp.arange(n)) % buffer.capacity
    data = jax.tree.map(lambda d, x: d.at[slots].set(x), buffer.data, items)
    return Buffer(
        data,
        (buffer.position + n) % buffer.capacity,
        jnp.minimum(buffer.size + n, buffer.capacity),
    )


def sample(buffer: Buffer, key, batch_size: int):
    """``batch_size`` items drawn uniformly, with replacement, from those held."""
    slots = jax.random.randint(key, (batch_size,), 0, jnp.maximum(buffer.size, 1))
    return jax.tree.map(lambda d: d[slots], buffer.data)
