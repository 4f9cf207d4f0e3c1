"""Synthetic sequence tasks, each a pure function of a JAX key (seeded, offline).

- :func:`adding_problem`: the long-range task of Hochreiter & Schmidhuber (1997, experiment
  4), in the form of Le, Jaitly & Hinton (2015): a sequence of T pairs (value, marker),
  values uniform in [0, 1], markers 1 at two steps (one in each half of the sequence) and 0
  elsewhere; the target is the sum of the two marked values. Always predicting the mean, 1,
  gives MSE Var(u1 + u2) = 1/6; a network solves the task when it beats that by far, which
  needs the first marked value carried over at least T/2 steps.
- :func:`noisy_sine`: a forecasting task for output-at-every-step networks: a sine and its
  quadrature (cos), i.e. a point turning on a circle at a fixed period, with random phase and
  amplitude, observed with Gaussian noise. The pair is the state of the oscillation, so the
  next value is a function of the current one.

MNIST-1D read as a sequence of 40 scalars is ``lexicon.data.load("mnist1d", flatten=False)``.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

ADDING_BASELINE_MSE = 1.0 / 6.0  # predicting 1 = E[u1 + u2]: Var(u1 + u2) = 2 / 12


@functools.partial(jax.jit, static_argnames=("batch", "length"))
def adding_problem(key: jax.Array, batch: int, length: int) -> dict[str, jax.Array]:
    """``batch`` adding-problem sequences of ``length`` steps (length >= 2).

    Returns x (batch, length, 2) float32 (value, marker) and y (batch, 1), the sum of the two
    marked values. The first marker falls uniformly in steps [0, length // 2), the second in
    [length // 2, length)."""
    values_key, first_key, second_key = jax.random.split(key, 3)
    half = length // 2
    values = jax.random.uniform(values_key, (batch, length))
    first = jax.random.randint(first_key, (batch,), 0, half)
    second = jax.random.randint(second_key, (batch,), half, length)
    steps = jnp.arange(length)[None, :]
    markers = ((steps == first[:, None]) | (steps == second[:, None])).astype(jnp.float32)
    x = jnp.stack([values, markers], axis=-1)
    y = jnp.sum(values * markers, axis=1, keepdims=True)
    return {"x": x, "y": y}


@functools.partial(jax.jit, static_argnames=("batch", "length", "period", "noise"))
def noisy_sine(
    key: jax.Array, batch: int, length: int, *, period: float = 20.0, noise: float = 0.1
) -> dict[str, jax.Array]:
    """``batch`` noisy oscillations of ``length`` steps.

    The clean signal is a (cos, sin) pair, A (cos(w t + phi), sin(w t + phi)) with
    w = 2 pi / period, phi uniform in [0, 2 pi) and A uniform in [0.5, 1]; the observed
    series adds N(0, noise^2) to each value. Returns series and clean, (batch, length, 2)."""
    phase_key, amplitude_key, noise_key = jax.random.split(key, 3)
    phase = jax.random.uniform(phase_key, (batch, 1), maxval=2 * math.pi)
    amplitude = jax.random.uniform(amplitude_key, (batch, 1), minval=0.5, maxval=1.0)
    angle = 2 * math.pi / period * jnp.arange(length)[None, :] + phase
    clean = amplitude[..., None] * jnp.stack([jnp.cos(angle), jnp.sin(angle)], axis=-1)
    series = clean + noise * jax.random.normal(noise_key, clean.shape)
    return {"series": series, "clean": clean}
