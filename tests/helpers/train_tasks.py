"""Small tasks that the tests of lexicon.train and lexicon.cli build for themselves."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from lexicon import train
from lexicon.nn.layers import MLP


def regression_data(n=40, dim=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, dim)).astype(np.float32)
    w = rng.normal(size=dim).astype(np.float32)
    return {"x": x, "y": (x @ w + 0.1 * rng.normal(size=n)).astype(np.float32)}


def least_squares(tx=None, *, poison_step=None, poison_params=False, watch=("loss",)):
    """Linear least squares with an unwatched metric ``noise``. ``poison_step``: from that step
    on the loss (or, with ``poison_params``, the parameters) turn NaN/inf."""
    tx = tx or optax.sgd(0.1)

    def init(key):
        params = {"w": 0.1 * jax.random.normal(key, (3,)), "b": jnp.zeros(())}
        return train.TrainState.create(apply_fn=None, params=params, tx=tx)

    def loss(params, model_state, batch, key):
        err = jnp.mean((batch["x"] @ params["w"] + params["b"] - batch["y"]) ** 2)
        return err, ({"noise": jax.random.normal(key, ())}, model_state)

    def make_step(axis_name):
        base = train.gradient_step(loss)(axis_name)

        def step(state, batch, key):
            state, metrics = base(state, batch, key)
            if poison_step is None:
                return state, metrics
            hit = state.step >= poison_step
            if poison_params:
                w = jnp.where(hit, jnp.inf, state.params["w"])
                return state.replace(params={**state.params, "w": w}), metrics
            return state, {**metrics, "loss": metrics["loss"] + jnp.where(hit, jnp.nan, 0.0)}

        return step

    def evaluate(state, split):
        err = jnp.mean((split["x"] @ state.params["w"] + state.params["b"] - split["y"]) ** 2)
        return {"loss": err}

    return train.Task(init=init, make_step=make_step, evaluate=evaluate, watch=watch)


def classifier_task(hidden=(16,), lr=0.5):
    model = MLP(features=[*hidden, 10], activation="tanh")
    return train.classifier(model, optax.sgd(lr), jnp.zeros((1, 64)))


def config(**overrides):
    cfg = train.defaults()
    cfg.update(dict(epochs=2, seeds=1, batch_size=10, progress=False))
    cfg.update(overrides)
    return cfg


class Duel(struct.PyTreeNode):
    """A two-player state: the generator moves on even steps, the discriminator on odd ones."""

    step: jax.Array
    gen: train.TrainState
    disc: train.TrainState


def duel_task():
    """Two players with their own optax optimizers, each minimizing its own quadratic."""

    def init(key):
        g, d = jax.random.split(key)
        gen = train.TrainState.create(
            apply_fn=None, params={"a": jax.random.normal(g, (4,))}, tx=optax.adam(0.1)
        )
        disc = train.TrainState.create(
            apply_fn=None, params={"b": jax.random.normal(d, (2, 3))}, tx=optax.sgd(0.2, 0.9)
        )
        return Duel(step=jnp.zeros((), jnp.int32), gen=gen, disc=disc)

    def make_step(axis_name):
        def step(state, batch, key):
            assert batch is None
            noise = jax.random.normal(key, (4,))

            def gen_loss(p):
                return jnp.sum((p["a"] - noise) ** 2) + jnp.sum(state.disc.params["b"]) * 0.0

            def disc_loss(p):
                return jnp.sum(p["b"] ** 2) + jnp.sum(state.gen.params["a"])

            def move_gen(state):
                loss, grads = jax.value_and_grad(gen_loss)(state.gen.params)
                return state.replace(gen=state.gen.apply_gradients(grads)), loss

            def move_disc(state):
                loss, grads = jax.value_and_grad(disc_loss)(state.disc.params)
                return state.replace(disc=state.disc.apply_gradients(grads)), loss

            state, loss = jax.lax.cond(state.step % 2 == 0, move_gen, move_disc, state)
            return state.replace(step=state.step + 1), {"loss": loss}

        return step

    return train.Task(init=init, make_step=make_step)
