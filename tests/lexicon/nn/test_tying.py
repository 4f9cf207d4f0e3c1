"""Tests for lexicon.nn.tying: tied autoencoder and Siamese weight sharing."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lexicon.nn import tying


def count_params(params):
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(params))


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def test_tied_autoencoder_has_one_shared_kernel():
    d, h = 12, 5
    model = tying.TiedAutoencoder(features=d, latent_features=h)
    params = jax.jit(model.init)(jax.random.key(0), np.ones((2, d), np.float32))["params"]
    assert set(params) == {"kernel", "hidden_bias", "visible_bias"}
    assert params["kernel"].shape == (d, h)
    assert count_params(params) == d * h + h + d
    matrices = [leaf for leaf in jax.tree.leaves(params) if leaf.ndim == 2]
    assert len(matrices) == 1
    untied = 2 * d * h + h + d
    assert untied - count_params(params) == d * h


def test_tied_autoencoder_forward_and_gradient_match_numpy(x64):
    """r = sigmoid(x W + b_h) W^T + b_x; for L = 1/2 ||r - x||^2 summed over the batch:

    dL/dr = r - x;  decoder part of dL/dW = (dL/dr)^T h;
    dL/dz = (dL/dr W) * h (1 - h);  encoder part = x^T dL/dz;  dL/dW = sum of both.
    """
    d, h = 7, 3
    model = tying.TiedAutoencoder(features=d, latent_features=h)
    x = np.random.default_rng(1).normal(size=(4, d))
    rng = np.random.default_rng(2)
    params = {
        "kernel": rng.normal(size=(d, h)),
        "hidden_bias": rng.normal(size=h),
        "visible_bias": rng.normal(size=d),
    }
    w = np.asarray(params["kernel"])
    b_h = np.asarray(params["hidden_bias"])
    b_x = np.asarray(params["visible_bias"])

    code = sigmoid(x @ w + b_h)
    recon = code @ w.T + b_x

    def loss(p):
        r = model.apply({"params": p}, x)
        return 0.5 * jnp.sum((r - x) ** 2)

    @jax.jit
    def compute(p):
        variables = {"params": p}
        return {
            "recon": model.apply(variables, x),
            "code": model.apply(variables, x, method=model.encode),
            "decoded": model.apply(variables, code, method=model.decode),
            "grads": jax.grad(loss)(p),
        }

    out = compute(params)
    np.testing.assert_allclose(out["recon"], recon, rtol=1e-13)
    np.testing.assert_allclose(out["code"], code, rtol=1e-13)
    np.testing.assert_allclose(out["decoded"], recon, rtol=1e-13)
    grads = out["grads"]
    d_recon = recon - x
    d_kernel_decoder = d_recon.T @ code
    d_pre = (d_recon @ w) * code * (1.0 - code)
    d_kernel_encoder = x.T @ d_pre
    np.testing.assert_allclose(grads["kernel"], d_kernel_encoder + d_kernel_decoder, rtol=1e-12)
    np.testing.assert_allclose(grads["hidden_bias"], d_pre.sum(0), rtol=1e-12)
    np.testing.assert_allclose(grads["visible_bias"], d_recon.sum(0), rtol=1e-12)
    # Both paths contribute: neither part alone is the whole gradient.
    assert not np.allclose(grads["kernel"], d_kernel_encoder)
    assert not np.allclose(grads["kernel"], d_kernel_decoder)


class Branch(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(3)(nn.relu(nn.Dense(8)(x)))


def test_siamese_applies_the_same_weights_to_both_inputs():
    model = tying.Siamese(branch=Branch())
    rng = np.random.default_rng(3)
    x1 = rng.normal(size=(5, 4)).astype(np.float32)
    x2 = rng.normal(size=(5, 4)).astype(np.float32)
    params = jax.jit(model.init)(jax.random.key(5), x1, x2)["params"]
    assert list(params) == ["branch"]
    branch_alone = jax.eval_shape(Branch().init, jax.random.key(6), x1)["params"]
    assert count_params(params) == count_params(branch_alone) == 4 * 8 + 8 + 8 * 3 + 3

    def pair_loss(p):
        a, b = model.apply({"params": p}, x1, x2)
        return jnp.sum(a**2) + jnp.sum(jnp.sin(b))

    def branch_apply(p, x):
        return Branch().apply({"params": p}, x)

    @jax.jit
    def compute(p):
        return {
            "pair": model.apply({"params": p}, x1, x2),
            "swapped": model.apply({"params": p}, x2, x1),
            "branch_1": branch_apply(p["branch"], x1),
            "branch_2": branch_apply(p["branch"], x2),
            # The shared weights' gradient is the sum of the two branches' gradients.
            "grads": jax.grad(pair_loss)(p)["branch"],
            "g1": jax.grad(lambda q: jnp.sum(branch_apply(q, x1) ** 2))(p["branch"]),
            "g2": jax.grad(lambda q: jnp.sum(jnp.sin(branch_apply(q, x2))))(p["branch"]),
        }

    out = compute(params)
    e1, e2 = out["pair"]
    np.testing.assert_array_equal(e1, out["branch_1"])
    np.testing.assert_array_equal(e2, out["branch_2"])
    s1, s2 = out["swapped"]
    np.testing.assert_array_equal(s1, e2)
    np.testing.assert_array_equal(s2, e1)
    for total, a, b in zip(
        jax.tree.leaves(out["grads"]),
        jax.tree.leaves(out["g1"]),
        jax.tree.leaves(out["g2"]),
        strict=True,
    ):
        np.testing.assert_allclose(total, a + b, rtol=1e-5, atol=1e-6)
