"""The recurrent speed rows: our scanned LSTM against flax's OptimizedLSTMCell under nn.scan.

Both run one training pass (forward and backward, the gradient of a sum of squared outputs
with respect to the parameters, jitted) over the same batch of sequences with the same
sizes. Ours is :class:`lexicon.nn.rnn.LSTMCell` run by :func:`lexicon.nn.rnn.recur`
(``lax.scan`` through ``nn.scan``, with the step mask and the perturbation input the designs
carry); flax's is ``nn.scan(OptimizedLSTMCell)`` with broadcast parameters. The rate is
recurrent steps per second: sequence length times batch over the median wall time.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from lexicon.bench import paired_times
from lexicon.nn import rnn


class _Ours(nn.Module):
    features: int

    @nn.compact
    def __call__(self, xs):
        return rnn.recur(rnn.LSTMCell(self.features, name="cell"), xs)[1]


class _Flax(nn.Module):
    features: int

    @nn.compact
    def __call__(self, xs):
        scan = nn.scan(
            nn.OptimizedLSTMCell,
            variable_broadcast="params",
            split_rngs={"params": False},
            in_axes=1,
            out_axes=1,
        )
        cell = scan(self.features, name="cell")
        carry = cell.initialize_carry(jax.random.key(0), xs[:, 0].shape)
        return cell(carry, xs)[1]


def rows(repeats: int, batch: int = 64, steps: int = 100, inputs: int = 32, features: int = 128):
    xs = jax.random.normal(jax.random.key(0), (batch, steps, inputs))
    timed = []
    for model in (_Ours(features), _Flax(features)):
        params = model.init(jax.random.key(1), xs)["params"]

        def loss(p, model=model):
            return jnp.sum(model.apply({"params": p}, xs) ** 2)

        grad = jax.jit(jax.grad(loss))
        timed.append(lambda grad=grad, params=params: jax.block_until_ready(grad(params)))
    ours, flax = paired_times(timed, repeats)
    shape = f"batch {batch}, T={steps}, {inputs}->{features}, forward+backward"
    return {
        f"LSTM, lexicon.nn.rnn scanned ({shape}) (steps/s)": batch * steps / ours,
        f"LSTM, flax OptimizedLSTMCell under nn.scan ({shape}) (steps/s)": batch * steps / flax,
    }
