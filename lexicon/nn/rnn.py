"""Recurrent networks: cells, the three designs of the documents, unfolding, masking.

SPEC.md section 8 (documents 000, 001). A recurrent network applies one function with shared
parameters at every step, h(t) = f(h(t-1), x(t); theta); unfolding it over T steps gives an
ordinary (deep) computation graph, and backprop through time is backprop on that graph
(Werbos 1990, "Backpropagation through time: what it does and how to do it") [add].

**Cells.** A cell is a Flax module ``cell(carry, x) -> (carry, y)`` with
``initial_carry(batch_shape)`` (zeros) and ``hidden(carry)`` (the vector the designs read out).
- :class:`ElmanCell`: h(t) = f(W h(t-1) + U x(t) + b) (Elman 1990), the documents' equation.
- :class:`JordanCell`: output feedback, h(t) = f(W o(t-1) + U x(t) + b), o(t) = V h(t) + c
  (Jordan 1986): the documents' second design, whose only memory is its output. With teacher
  forcing [add] (Williams & Zipser 1989) the observed target y(t-1) replaces o(t-1).
- :class:`LSTMCell` [add]: Hochreiter & Schmidhuber (1997) with the forget gate of Gers,
  Schmidhuber & Cummins (2000):
      i = sigma(U_i x + W_i h + b_i),  f = sigma(U_f x + W_f h + b_f),
      g = tanh(U_g x + W_g h + b_g),   o = sigma(U_o x + W_o h + b_o),
      c(t) = f * c(t-1) + i * g,       h(t) = o * tanh(c(t)).
- :class:`GRUCell` [add]: Cho et al. (2014), with the reset gate applied after the recurrent
  product (the form of cuDNN and flax):
      r = sigma(U_r x + b_r + W_r h),  z = sigma(U_z x + b_z + W_z h),
      n = tanh(U_n x + b_n + r * (W_n h + b_hn)),  h(t) = (1 - z) * n + z * h(t-1).
The gates share one product: U and W hold the gates side by side (LSTM order i, f, g, o; GRU
order r, z, n). ``from_flax`` copies the weights of the flax.linen cells (the reference the
tests hold these to) into this layout.

**Designs.** :func:`recur` runs a cell over a batch of sequences under ``lax.scan`` (Flax's
lifted ``nn.scan``), or, with ``unroll=True``, as an explicit Python loop of T calls (the
same parameters); :func:`unroll` is that loop as a plain function of the parameters, which
keeps every intermediate state for pictures and tests. Masking: past an example's length the
carry stops changing and the outputs are zero, so nothing depends on the padding.
:class:`SequenceToSequence` reads an output at every step; :class:`SequenceToOne` reads the
final valid state (or, as the published MNIST-1D GRU does, every step's state, optionally in
both directions). :func:`state_gradient_norms` gives || d loss / d h(t) || for every t, the
gradient that reaches each step (vanishing gradients, Bengio, Simard & Frasconi 1994) [add].
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
default_kernel_init = nn.initializers.lecun_normal()
default_recurrent_init = nn.initializers.orthogonal()


def _zeros(batch_shape, features, dtype=jnp.float32):
    return jnp.zeros((*batch_shape, features), dtype)


# --- cells --------------------------------------------------------------------------------------


class ElmanCell(nn.Module):
    """h(t) = f(W h(t-1) + U x(t) + b); the output is h(t)."""

    features: int
    activation: Callable = jnp.tanh
    kernel_init: Callable = default_kernel_init
    recurrent_init: Callable = default_recurrent_init

    @nn.compact
    def __call__(self, carry, x):
        H = self.features
        U = self.param("U", self.kernel_init, (x.shape[-1], H))
        W = self.param("W", self.recurrent_init, (H, H))
        b = self.param("b", nn.initializers.zeros_init(), (H,))
        h = self.activation(carry @ W + x @ U + b)
        return h, h

    @nn.nowrap
    def initial_carry(self, batch_shape, dtype=jnp.float32):
        return _zeros(batch_shape, self.features, dtype)

    @nn.nowrap
    def hidden(self, carry):
        return carry


class JordanCell(nn.Module):
    """Output feedback: h(t) = f(W o(t-1) + U x(t) + b), o(t) = V h(t) + c.

    The carry is o(t-1) alone. The step's input is (x(t), y(t-1), force(t)): where force(t) is
    True the observed target y(t-1) feeds the hidden layer in place of the cell's own o(t-1)
    (teacher forcing, Williams & Zipser 1989); where False the cell runs free on its output.
    """

    features: int  # hidden units
    outputs: int  # size of o(t)
    activation: Callable = jnp.tanh
    kernel_init: Callable = default_kernel_init

    @nn.compact
    def __call__(self, carry, inputs):
        x, y_prev, force = inputs
        H, K = self.features, self.outputs
        U = self.param("U", self.kernel_init, (x.shape[-1], H))
        W = self.param("W", self.kernel_init, (K, H))
        b = self.param("b", nn.initializers.zeros_init(), (H,))
        V = self.param("V", self.kernel_init, (H, K))
        c = self.param("c", nn.initializers.zeros_init(), (K,))
        fed = jnp.where(force[..., None], y_prev, carry)
        h = self.activation(fed @ W + x @ U + b)
        o = h @ V + c
        return o, o

    @nn.nowrap
    def initial_carry(self, batch_shape, dtype=jnp.float32):
        return _zeros(batch_shape, self.outputs, dtype)

    @nn.nowrap
    def hidden(self, carry):
        return carry


def _forget_bias(value: float, features: int, index: int = 1):
    def init(key, shape, dtype=jnp.float32):
        del key
        return jnp.zeros(shape, dtype).at[index * features : (index + 1) * features].set(value)

    return init


class LSTMCell(nn.Module):
    """The LSTM of Hochreiter & Schmidhuber (1997) with a forget gate (Gers et al. 2000).

    Carry (c, h), as flax's; gates in the order i, f, g, o of one product
    ``x U + h W + b``. ``forget_bias`` initializes b_f (1 keeps the cell state early in
    training, Gers et al. 2000; Jozefowicz et al. 2015)."""

    features: int
    forget_bias: float = 1.0
    kernel_init: Callable = default_kernel_init
    recurrent_init: Callable = default_recurrent_init

    @nn.compact
    def __call__(self, carry, x):
        c, h = carry
        H = self.features
        U = self.param("U", _stacked(self.kernel_init, 4), (x.shape[-1], 4 * H))
        W = self.param("W", _stacked(self.recurrent_init, 4), (H, 4 * H))
        b = self.param("b", _forget_bias(self.forget_bias, H), (4 * H,))
        z = x @ U + h @ W + b
        i, f, g, o = jnp.split(z, 4, axis=-1)
        i, f, g, o = nn.sigmoid(i), nn.sigmoid(f), jnp.tanh(g), nn.sigmoid(o)
        c = f * c + i * g
        h = o * jnp.tanh(c)
        return (c, h), h

    @nn.nowrap
    def initial_carry(self, batch_shape, dtype=jnp.float32):
        zeros = _zeros(batch_shape, self.features, dtype)
        return (zeros, zeros)

    @nn.nowrap
    def hidden(self, carry):
        return carry[1]


class GRUCell(nn.Module):
    """The gated recurrent unit of Cho et al. (2014), reset gate after the recurrent product.

    Gates r, z, n side by side in U (with bias b) and W; b_hn is the recurrent bias of n."""

    features: int
    kernel_init: Callable = default_kernel_init
    recurrent_init: Callable = default_recurrent_init

    @nn.compact
    def __call__(self, h, x):
        H = self.features
        U = self.param("U", _stacked(self.kernel_init, 3), (x.shape[-1], 3 * H))
        b = self.param("b", nn.initializers.zeros_init(), (3 * H,))
        W = self.param("W", _stacked(self.recurrent_init, 3), (H, 3 * H))
        b_hn = self.param("b_hn", nn.initializers.zeros_init(), (H,))
        xr, xz, xn = jnp.split(x @ U + b, 3, axis=-1)
        hr, hz, hn = jnp.split(h @ W, 3, axis=-1)
        r = nn.sigmoid(xr + hr)
        z = nn.sigmoid(xz + hz)
        n = jnp.tanh(xn + r * (hn + b_hn))
        h = (1.0 - z) * n + z * h
        return h, h

    @nn.nowrap
    def initial_carry(self, batch_shape, dtype=jnp.float32):
        return _zeros(batch_shape, self.features, dtype)

    @nn.nowrap
    def hidden(self, carry):
        return carry


def _stacked(init, gates: int):
    """Initializes each gate's block of a stacked kernel on its own (as separate layers would:
    an orthogonal recurrent matrix per gate, a fan-in of one gate's width)."""

    def stacked(key, shape, dtype=jnp.float32):
        rows, cols = shape
        keys = jax.random.split(key, gates)
        return jnp.concatenate([init(k, (rows, cols // gates), dtype) for k in keys], axis=-1)

    return stacked


CELLS = {"elman": ElmanCell, "lstm": LSTMCell, "gru": GRUCell}


def make_cell(kind: str, features: int, **kwargs) -> nn.Module:
    """A cell by name: elman | lstm | gru."""
    return CELLS[kind](features=features, **kwargs)


def from_flax(kind: str, params: dict) -> dict:
    """The parameters of flax.linen's SimpleCell / LSTMCell / GRUCell in this module's layout
    (for comparing the cells on the same weights)."""
    p = params
    if kind == "elman":
        return {"U": p["i"]["kernel"], "W": p["h"]["kernel"], "b": p["i"]["bias"]}
    if kind == "lstm":
        gates = ("i", "f", "g", "o")
        return {
            "U": jnp.concatenate([p[f"i{g}"]["kernel"] for g in gates], axis=-1),
            "W": jnp.concatenate([p[f"h{g}"]["kernel"] for g in gates], axis=-1),
            "b": jnp.concatenate([p[f"h{g}"]["bias"] for g in gates], axis=-1),
        }
    if kind == "gru":
        gates = ("r", "z", "n")
        return {
            "U": jnp.concatenate([p[f"i{g}"]["kernel"] for g in gates], axis=-1),
            "b": jnp.concatenate([p[f"i{g}"]["bias"] for g in gates], axis=-1),
            "W": jnp.concatenate([p[f"h{g}"]["kernel"] for g in gates], axis=-1),
            "b_hn": p["hn"]["bias"],
        }
    raise ValueError(f"unknown cell {kind!r}; choose one of {', '.join(CELLS)}")


# --- running a cell over sequences ----------------------------------------------------------------


def _at(tree, t: int):
    """Step t of every (batch, T, ...) leaf."""
    return jax.tree.map(lambda a: a[:, t], tree)


def _select(keep, new, old):
    """Per example: the new pytree where ``keep`` (batch,), the old one elsewhere."""
    return jax.tree.map(
        lambda n, o: jnp.where(keep.reshape(keep.shape + (1,) * (n.ndim - 1)), n, o), new, old
    )


def _step(cell, carry, inputs):
    """One masked step: past the length the carry is kept and the output is zero; ``delta``
    (zeros) is added to the new carry so that d loss / d delta = d loss / d carry(t)."""
    x, keep, delta = inputs
    new, y = cell(carry, x)
    new = jax.tree.map(jnp.add, new, delta)
    carry = _select(keep, new, carry)
    y = _select(keep, y, jax.tree.map(jnp.zeros_like, y))
    return carry, (y, carry)


def float_dtype(xs):
    """The dtype of the floating-point inputs (the carry's dtype)."""
    floats = [a.dtype for a in jax.tree.leaves(xs) if jnp.issubdtype(a.dtype, jnp.floating)]
    return jnp.result_type(*floats) if floats else jnp.float32


def step_mask(lengths, batch: int, steps: int):
    """(batch, steps) booleans: t < length (all True without lengths)."""
    if lengths is None:
        return jnp.ones((batch, steps), bool)
    return jnp.arange(steps)[None, :] < jnp.asarray(lengths)[:, None]


def recur(
    cell, xs, *, lengths=None, carry=None, perturb=None, unroll=False, reverse=False, chunk=1
):
    """Runs the bound ``cell`` over ``xs`` (a pytree of (batch, T, ...) arrays), inside a Flax
    module's method; its parameters are shared across steps.

    Returns (final carry, outputs (batch, T, ...), carries (batch, T, ...)). With ``lengths``
    the final carry is that of each example's last valid step. ``perturb`` (a pytree shaped
    like the carries, or None) is added to the carry after every step; its gradient is
    d loss / d carry(t). ``unroll=True`` writes the loop out in Python (T calls of the cell,
    the unfolded graph) instead of ``lax.scan``; ``reverse`` reads the sequences backwards
    (all lengths equal). ``chunk`` steps share one iteration of the scan's loop (its
    ``unroll``): the same arithmetic with less loop overhead."""
    leaf = jax.tree.leaves(xs)[0]
    batch, steps = leaf.shape[:2]
    if reverse:
        if lengths is not None:
            raise ValueError("reverse reads sequences of equal length; give lengths=None")
        xs = jax.tree.map(lambda a: jnp.flip(a, axis=1), xs)
    carry = cell.initial_carry((batch,), float_dtype(xs)) if carry is None else carry
    if perturb is None:
        perturb = jax.tree.map(lambda c: jnp.zeros((batch, steps, *c.shape[1:]), c.dtype), carry)
    inputs = (xs, step_mask(lengths, batch, steps), perturb)
    if unroll:
        ys, carries = [], []
        for t in range(steps):
            carry, (y, kept) = _step(cell, carry, _at(inputs, t))
            ys.append(y)
            carries.append(kept)
        stack = lambda trees: jax.tree.map(lambda *a: jnp.stack(a, axis=1), *trees)  # noqa: E731
        ys, carries = stack(ys), stack(carries)
    else:
        scan = nn.scan(
            _step,
            variable_broadcast="params",
            split_rngs={"params": False},
            in_axes=1,
            out_axes=1,
            unroll=chunk,
        )
        carry, (ys, carries) = scan(cell, carry, inputs)
    if reverse:
        ys, carries = jax.tree.map(lambda a: jnp.flip(a, axis=1), (ys, carries))
    return carry, ys, carries


def unroll(cell: nn.Module, params, xs, carry=None) -> tuple[list, list]:
    """The explicit unfolded computation: T Python-level applications of one cell with the
    same ``params`` to ``xs`` (batch, T, ...). Returns the lists of carries h(1..T) and
    outputs y(1..T)."""
    leaf = jax.tree.leaves(xs)[0]
    carry = cell.initial_carry(leaf.shape[:1], float_dtype(xs)) if carry is None else carry
    carries, ys = [], []
    for t in range(leaf.shape[1]):
        carry, y = cell.apply({"params": params}, carry, _at(xs, t))
        carries.append(carry)
        ys.append(y)
    return carries, ys


# --- the designs ----------------------------------------------------------------------------------


class Recurrent(nn.Module):
    """The cell's own output at every step (zero past each example's length): the design for a
    cell whose output is its forecast, such as :class:`JordanCell`."""

    cell: nn.Module
    unroll: bool = False
    chunk: int = 1  # steps per iteration of the scan loop

    @nn.compact
    def __call__(self, xs, lengths=None, perturb=None):
        kw = dict(lengths=lengths, perturb=perturb, unroll=self.unroll, chunk=self.chunk)
        return recur(self.cell, xs, **kw)[1]


class SequenceToSequence(nn.Module):
    """An output at every step: y(t) = V h(t) + c, zero past each example's length."""

    cell: nn.Module
    outputs: int
    unroll: bool = False
    chunk: int = 1  # steps per iteration of the scan loop

    @nn.compact
    def __call__(self, xs, lengths=None, perturb=None):
        _, hs, _ = recur(
            self.cell, xs, lengths=lengths, perturb=perturb, unroll=self.unroll, chunk=self.chunk
        )
        ys = nn.Dense(self.outputs, name="readout")(hs)
        return ys * step_mask(lengths, *hs.shape[:2])[..., None]


class SequenceToOne(nn.Module):
    """Reads a whole sequence, emits one output from the final valid state.

    ``readout="all"`` instead reads the states of every step, flattened (the published
    MNIST-1D GRU); ``bidirectional`` adds a second cell that reads the sequence backwards
    (its states joined to the first's)."""

    cell: nn.Module
    outputs: int
    readout: str = "final"  # final | all
    bidirectional: bool = False
    unroll: bool = False
    chunk: int = 1  # steps per iteration of the scan loop

    @nn.compact
    def __call__(self, xs, lengths=None, perturb=None):
        carry, _, carries = recur(
            self.cell, xs, lengths=lengths, perturb=perturb, unroll=self.unroll, chunk=self.chunk
        )
        if self.readout == "final":
            features = [self.cell.hidden(carry)]
        else:
            features = [self.cell.hidden(carries).reshape(carries_batch(carries), -1)]
        if self.bidirectional:
            back = self.cell.clone(parent=None, name=None)
            back = _Backward(back, name="backward")
            features.append(back(xs, self.readout, self.unroll, self.chunk))
        return nn.Dense(self.outputs, name="readout")(jnp.concatenate(features, axis=-1))


def carries_batch(carries) -> int:
    return jax.tree.leaves(carries)[0].shape[0]


class _Backward(nn.Module):
    cell: nn.Module

    @nn.compact
    def __call__(self, xs, readout, unroll, chunk):
        carry, _, carries = recur(self.cell, xs, unroll=unroll, reverse=True, chunk=chunk)
        if readout == "final":
            return self.cell.hidden(carry)
        return self.cell.hidden(carries).reshape(carries_batch(carries), -1)


def zero_perturbation(cell: nn.Module, batch: int, steps: int, dtype=jnp.float32):
    """Zeros shaped like the carries (batch, steps, ...), the ``perturb`` whose gradient is
    d loss / d carry(t)."""
    carry = cell.initial_carry((batch,), dtype)
    return jax.tree.map(lambda c: jnp.zeros((batch, steps, *c.shape[1:]), c.dtype), carry)


def state_gradient_norms(model: nn.Module, params, xs, loss: Callable[[Array], Array], **kw):
    """|| d loss / d h(t) || for t = 1..T, averaged over the batch: the gradient that reaches
    each step's state (for an LSTM the hidden and cell state together), where
    ``loss(model outputs) -> scalar`` sums the per-example losses."""
    batch, steps = jax.tree.leaves(xs)[0].shape[:2]
    zeros = zero_perturbation(model.cell, batch, steps, float_dtype(xs))

    def objective(perturb):
        return loss(model.apply({"params": params}, xs, perturb=perturb, **kw))

    grads = jax.grad(objective)(zeros)
    squares = sum(
        jnp.sum(g.reshape(batch, steps, -1) ** 2, axis=-1) for g in jax.tree.leaves(grads)
    )
    return jnp.mean(jnp.sqrt(squares), axis=0)


def teacher_inputs(x, targets, force, first=None):
    """The inputs of a :class:`JordanCell` over a sequence: (x(t), y(t-1), force(t)).

    ``targets`` (batch, T, K): y(t-1) is targets shifted one step (``first``, or zeros, at
    t = 0); ``force`` (T,) or (batch, T) booleans say where the target is fed (teacher
    forcing) rather than the cell's own previous output (free running)."""
    first = jnp.zeros_like(targets[:, :1]) if first is None else first
    y_prev = jnp.concatenate([first, targets[:, :-1]], axis=1)
    force = jnp.broadcast_to(jnp.asarray(force, bool), targets.shape[:2])
    return x, y_prev, force


def count_params(params: Any) -> int:
    return int(sum(np.prod(np.shape(leaf)) for leaf in jax.tree.leaves(params)))
