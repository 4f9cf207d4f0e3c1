"""Recurrent cells and designs (SPEC.md section 8): equations, flax, unfolding, masking, forcing."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lexicon.nn import rnn

KINDS = ("elman", "lstm", "gru")
FLAX = {"elman": nn.SimpleCell, "lstm": nn.LSTMCell, "gru": nn.GRUCell}


def sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def numpy_run(kind, p, x):
    """The cell's equations, one step after another, in float64 NumPy."""
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), p)
    batch, steps, _ = x.shape
    H = p["W"].shape[0]
    h, c = np.zeros((batch, H)), np.zeros((batch, H))
    hs = []
    for t in range(steps):
        xt = x[:, t]
        if kind == "elman":
            h = np.tanh(h @ p["W"] + xt @ p["U"] + p["b"])
        elif kind == "lstm":
            U = {g: p["U"][:, k * H : (k + 1) * H] for k, g in enumerate("ifgo")}
            W = {g: p["W"][:, k * H : (k + 1) * H] for k, g in enumerate("ifgo")}
            b = {g: p["b"][k * H : (k + 1) * H] for k, g in enumerate("ifgo")}
            i = sigmoid(xt @ U["i"] + h @ W["i"] + b["i"])
            f = sigmoid(xt @ U["f"] + h @ W["f"] + b["f"])
            g = np.tanh(xt @ U["g"] + h @ W["g"] + b["g"])
            o = sigmoid(xt @ U["o"] + h @ W["o"] + b["o"])
            c = f * c + i * g
            h = o * np.tanh(c)
        else:
            U = {g: p["U"][:, k * H : (k + 1) * H] for k, g in enumerate("rzn")}
            W = {g: p["W"][:, k * H : (k + 1) * H] for k, g in enumerate("rzn")}
            b = {g: p["b"][k * H : (k + 1) * H] for k, g in enumerate("rzn")}
            r = sigmoid(xt @ U["r"] + b["r"] + h @ W["r"])
            z = sigmoid(xt @ U["z"] + b["z"] + h @ W["z"])
            n = np.tanh(xt @ U["n"] + b["n"] + r * (h @ W["n"] + p["b_hn"]))
            h = (1 - z) * n + z * h
        hs.append(h)
    return np.stack(hs, axis=1)


def random_params(module, seed, *args, **kwargs):
    """Every parameter of ``module.init(key, *args)`` drawn afresh from N(0, 0.25) by NumPy
    (nonzero biases, a forget bias off its init), the shapes found by tracing alone."""
    shapes = jax.eval_shape(lambda: module.init(jax.random.key(0), *args, **kwargs))["params"]
    rng = np.random.default_rng(seed)
    dtype = jnp.zeros(()).dtype  # float64 under the x64 fixture
    return jax.tree.map(lambda a: jnp.asarray(0.5 * rng.normal(size=a.shape), dtype), shapes)


@pytest.mark.parametrize("kind", KINDS)
def test_cells_are_their_equations_and_the_flax_cells(kind, x64):
    """Each cell over 6 steps equals the NumPy float64 transcription of its equations, and the
    flax.linen cell of the same kind given the same weights."""
    x = jnp.asarray(np.random.default_rng(1).normal(size=(3, 6, 4)))
    model = rnn.SequenceToSequence(rnn.make_cell(kind, 5), 2)
    params = random_params(model, 2, x)
    states = jax.jit(lambda p: model.apply({"params": p}, x, method=_states)[1])
    np.testing.assert_allclose(
        states(params), numpy_run(kind, params["cell"], np.asarray(x)), rtol=1e-12, atol=1e-12
    )

    flax_cell = FLAX[kind](features=5, param_dtype=jnp.float64)
    carry = flax_cell.initialize_carry(jax.random.key(4), x[:, 0].shape)
    flax_params = random_params(flax_cell, 5, carry, x[:, 0])

    @jax.jit
    def flax_run(p, carry):
        hs = []
        for t in range(6):
            carry, h = flax_cell.apply({"params": p}, carry, x[:, t])
            hs.append(h)
        return jnp.stack(hs, axis=1)

    ours = states({**params, "cell": rnn.from_flax(kind, flax_params)})
    np.testing.assert_allclose(ours, flax_run(flax_params, carry), rtol=1e-12, atol=1e-12)


def _states(module, xs, lengths=None):
    return rnn.recur(module.cell, xs, lengths=lengths)


@pytest.mark.parametrize("kind", KINDS)
def test_scan_equals_the_explicit_unroll(kind, x64):
    """lax.scan and the Python-level unfolded graph give the same outputs and parameter
    gradients (to 1e-6, in fact to rounding), on masked sequences (one of full length)."""
    x = jnp.asarray(np.random.default_rng(0).normal(size=(3, 8, 2)))
    lengths = jnp.array([8, 5, 1])
    scanned = rnn.SequenceToSequence(rnn.make_cell(kind, 4), 3)
    unrolled = rnn.SequenceToSequence(rnn.make_cell(kind, 4), 3, unroll=True)
    params = random_params(scanned, 7, x)

    def outputs_and_grads(model):
        def loss(p):
            out = model.apply({"params": p}, x, lengths)
            return jnp.sum(jnp.sin(out)), out

        return jax.jit(jax.grad(loss, has_aux=True))(params)

    (g_scan, out_scan), (g_unroll, out_unroll) = map(outputs_and_grads, (scanned, unrolled))
    np.testing.assert_allclose(out_scan, out_unroll, atol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), g_scan, g_unroll)
    # The plain helper: T applications of the cell with the same parameters.
    carries, ys = jax.jit(lambda p: rnn.unroll(scanned.cell, p, x))(params["cell"])
    hs = jax.jit(lambda p: scanned.apply({"params": p}, x, method=_states)[1])(params)
    np.testing.assert_allclose(jnp.stack(ys, axis=1), hs, atol=1e-12)
    assert len(carries) == 8


@pytest.mark.parametrize("kind", KINDS)
def test_masking_ignores_padding_and_reads_the_last_valid_state(kind):
    """Outputs do not depend on what fills the padding; sequence-to-one reads the state of each
    example's last valid step, i.e. equals the model run on the unpadded sequence."""
    x = jnp.asarray(np.random.default_rng(0).normal(size=(3, 9, 2)), jnp.float32)
    lengths = jnp.array([9, 4, 2])
    pad = jnp.arange(9)[None, :, None] >= lengths[:, None, None]
    other = jnp.where(pad, 1e3 * jnp.asarray(np.random.default_rng(1).normal(size=x.shape)), x)
    seq = rnn.SequenceToSequence(rnn.make_cell(kind, 4), 2)
    one = rnn.SequenceToOne(rnn.make_cell(kind, 4), 2)
    p_seq, p_one = random_params(seq, 0, x), random_params(one, 1, x)

    @jax.jit
    def run(x, lengths):
        return seq.apply({"params": p_seq}, x, lengths), one.apply({"params": p_one}, x, lengths)

    (seq_x, one_x), (seq_other, one_other) = run(x, lengths), run(other, lengths)
    np.testing.assert_array_equal(seq_x, seq_other)
    np.testing.assert_array_equal(one_x, one_other)
    assert np.all(np.asarray(seq_x)[np.asarray(pad[..., 0])] == 0)
    alone = jax.jit(lambda x: one.apply({"params": p_one}, x))(x[1:2, :4])  # length 4, unpadded
    np.testing.assert_allclose(one_x[1], alone[0], rtol=1e-6, atol=1e-6)


def test_teacher_forcing_feeds_targets_and_free_running_feeds_outputs(x64):
    """JordanCell: with force the hidden layer reads y(t-1); without it reads o(t-1). Both
    against a NumPy loop of h = tanh(W fed + U x + b), o = V h + c."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 6, 1))
    targets = rng.normal(size=(2, 6, 3))
    model = rnn.Recurrent(rnn.JordanCell(features=5, outputs=3))
    force = np.array([True, True, False, True, False, False])
    inputs = rnn.teacher_inputs(jnp.asarray(x), jnp.asarray(targets), force)
    params = random_params(model, 1, inputs)

    @jax.jit
    def run(targets, force):
        return model.apply({"params": params}, rnn.teacher_inputs(jnp.asarray(x), targets, force))

    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params["cell"])
    o = np.zeros((2, 3))
    expected = []
    for t in range(6):
        fed = (targets[:, t - 1] if t else np.zeros((2, 3))) if force[t] else o
        h = np.tanh(fed @ p["W"] + x[:, t] @ p["U"] + p["b"])
        o = h @ p["V"] + p["c"]
        expected.append(o)
    outs = run(jnp.asarray(targets), force)
    np.testing.assert_allclose(outs, np.stack(expected, axis=1), rtol=1e-12, atol=1e-12)

    # Forcing at step 3 feeds y(2) to it; free running never reads the targets.
    def later(force):
        f = lambda y2: run(jnp.asarray(targets).at[:, 2].set(y2), force)[:, 3].sum()  # noqa: E731
        return jax.grad(f)(jnp.asarray(targets[:, 2]))

    assert np.all(np.abs(np.asarray(later(np.ones(6, bool)))) > 0)
    np.testing.assert_array_equal(later(np.zeros(6, bool)), 0.0)


def test_state_gradient_norms_at_the_last_step_are_the_readout(x64):
    """For loss = sum of the outputs of a sequence-to-one Elman network, d loss / d h(T) is the
    readout's row sums for every example; earlier steps get the chain rule through W."""
    x = jnp.asarray(np.random.default_rng(0).normal(size=(4, 7, 2)))
    model = rnn.SequenceToOne(rnn.ElmanCell(3), 2)
    params = random_params(model, 1, x)
    norms = jax.jit(lambda p: rnn.state_gradient_norms(model, p, x, jnp.sum))(params)
    v = np.asarray(params["readout"]["kernel"]).sum(axis=1)
    np.testing.assert_allclose(norms[-1], np.linalg.norm(v), rtol=1e-12)
    # One step back: d h(T) / d h(T-1) = diag(1 - h(T)^2) W^T.
    hT = np.asarray(jax.jit(lambda p: rnn.unroll(model.cell, p, x)[0][-1])(params["cell"]))
    back = (v * (1 - hT**2)) @ np.asarray(params["cell"]["W"]).T
    np.testing.assert_allclose(norms[-2], np.linalg.norm(back, axis=1).mean(), rtol=1e-12)


def test_bidirectional_reads_the_sequence_backwards():
    """The backward half of a bidirectional all-steps readout is the backward cell run on the
    time-reversed sequence, its states flipped back into step order."""
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 5, 1)), jnp.float32)
    model = rnn.SequenceToOne(rnn.GRUCell(3), 4, readout="all", bidirectional=True)
    params = random_params(model, 1, x)
    assert set(params) == {"cell", "backward", "readout"}

    @jax.jit
    def both(params):
        forward, _ = rnn.unroll(model.cell, params["cell"], x)
        backward, _ = rnn.unroll(model.cell, params["backward"]["cell"], x[:, ::-1])
        features = jnp.concatenate(
            [jnp.stack(forward, 1).reshape(2, -1), jnp.stack(backward[::-1], 1).reshape(2, -1)],
            axis=-1,
        )
        expected = features @ params["readout"]["kernel"] + params["readout"]["bias"]
        return model.apply({"params": params}, x), expected

    np.testing.assert_allclose(*both(params), rtol=1e-5, atol=1e-6)


def test_lstm_forget_bias_and_gate_blocks():
    """b_f starts at forget_bias, the other gates at 0; each gate's recurrent block is
    orthogonal on its own."""
    cell = rnn.LSTMCell(4, forget_bias=1.0)
    carry = cell.initial_carry((1,))
    p = jax.jit(cell.init)(jax.random.key(0), carry, jnp.zeros((1, 3)))["params"]
    np.testing.assert_array_equal(p["b"], np.r_[np.zeros(4), np.ones(4), np.zeros(8)])
    for k in range(4):
        block = np.asarray(p["W"][:, 4 * k : 4 * k + 4])
        np.testing.assert_allclose(block @ block.T, np.eye(4), atol=1e-5)
