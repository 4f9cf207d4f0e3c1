"""PReLU, Maxout, BatchNorm (against the document's formula and flax) and the MLP.

Modules are initialized and applied through ``jax.jit`` (one compilation per call instead of
one per primitive), which also checks that they trace.
"""

from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lexicon.nn import init, layers


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def jit_init(module, key, *args, **static):
    return jax.jit(partial(module.init, **static))(key, *args)


def jit_init_with_output(module, key, *args, **static):
    return jax.jit(partial(module.init_with_output, **static))(key, *args)


def jit_apply(module, variables, *args, **static):
    return jax.jit(partial(module.apply, **static))(variables, *args)


# ----------------------------------------------------------------------------- PReLU


def test_prelu_values_per_feature_and_shared(x64, rng):
    x = rng.normal(size=(6, 3))
    slopes = np.array([0.1, 0.2, 0.3])
    per_feature = layers.PReLU(param_dtype=jnp.float64)
    got = jit_apply(
        per_feature, {"params": {"negative_slope": jnp.asarray(slopes)}}, jnp.asarray(x)
    )
    expected = np.array([[v if v >= 0 else slopes[j] * v for j, v in enumerate(row)] for row in x])
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-15)

    shared = layers.PReLU(per_feature=False, negative_slope_init=0.05)
    variables = jit_init(shared, jax.random.key(0), jnp.ones((2, 3), jnp.float32))
    assert variables["params"]["negative_slope"].shape == ()
    reference = nn.PReLU(negative_slope_init=0.05)
    x32 = jnp.asarray(x, jnp.float32)
    np.testing.assert_array_equal(
        np.asarray(jit_apply(shared, variables, x32)),
        np.asarray(jit_apply(reference, variables, x32)),
    )


def test_prelu_initial_slope_and_gradient(x64, rng):
    x = jnp.asarray(rng.normal(size=(10, 4)))
    module = layers.PReLU(param_dtype=jnp.float64)
    variables = jit_init(module, jax.random.key(0), x)
    np.testing.assert_array_equal(np.asarray(variables["params"]["negative_slope"]), [0.25] * 4)

    def total(params):
        return jnp.sum(module.apply({"params": params}, x))

    grad = np.asarray(jax.jit(jax.grad(total))(variables["params"])["negative_slope"])
    # d/da_j sum_i g(x_ij) = sum over the negative inputs of feature j.
    x_np = np.asarray(x)
    expected = np.array([sum(v for v in x_np[:, j] if v < 0) for j in range(4)])
    np.testing.assert_allclose(grad, expected, rtol=1e-14)
    assert np.all(grad != 0.0)


# ----------------------------------------------------------------------------- Maxout


def test_maxout_with_one_piece_is_a_linear_layer(rng):
    x = jnp.asarray(rng.normal(size=(5, 7)), jnp.float32)
    maxout = layers.Maxout(features=4, k=1)
    variables = jit_init(maxout, jax.random.key(0), x)
    dense_out = jit_apply(nn.Dense(4), variables, x)
    np.testing.assert_array_equal(
        np.asarray(jit_apply(maxout, variables, x)), np.asarray(dense_out)
    )


def test_maxout_matches_transcription(x64, rng):
    features, k, inputs = 3, 4, 5
    x = rng.normal(size=(6, inputs))
    kernel = rng.normal(size=(inputs, k * features))
    bias = rng.normal(size=(k * features,))
    module = layers.Maxout(features=features, k=k, param_dtype=jnp.float64)
    got = jit_apply(module, {"params": {"kernel": kernel, "bias": bias}}, jnp.asarray(x))
    expected = np.empty((6, features))
    for n in range(6):
        for i in range(features):
            expected[n, i] = max(
                sum(x[n, a] * kernel[a, j * features + i] for a in range(inputs))
                + bias[j * features + i]
                for j in range(k)
            )
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-13)


def test_maxout_rejects_bad_piece_counts():
    with pytest.raises(ValueError, match="k >= 1"):
        layers.Maxout(features=2, k=0).init(jax.random.key(0), jnp.ones((1, 3)))
    with pytest.raises(ValueError, match="not a multiple"):
        layers.max_over_pieces(jnp.ones((2, 5)), 2)


# -------------------------------------------------------------------------- BatchNorm


def np_batch_norm(h, gamma, beta, delta):
    """The document's formula, literally: rows of h are the m examples of the minibatch."""
    m = h.shape[0]
    mu = sum(h[i] for i in range(m)) / m
    sigma = np.sqrt(delta + sum((h[i] - mu) ** 2 for i in range(m)) / m)
    return gamma * (h - mu) / sigma + beta, mu, (sigma**2 - delta)


def test_batch_norm_train_mode_matches_formula(x64, rng):
    h = rng.normal(loc=3.0, scale=2.0, size=(16, 5))
    gamma, beta = rng.normal(size=5), rng.normal(size=5)
    module = layers.BatchNorm(use_running_average=False, epsilon=1e-3, momentum=0.9)
    variables = {
        "params": {"scale": jnp.asarray(gamma), "bias": jnp.asarray(beta)},
        "batch_stats": {"mean": jnp.zeros(5), "var": jnp.ones(5)},
    }
    out, updated = jit_apply(module, variables, jnp.asarray(h), mutable=["batch_stats"])
    expected, mu, var = np_batch_norm(h, gamma, beta, 1e-3)
    np.testing.assert_allclose(np.asarray(out), expected, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(np.asarray(updated["batch_stats"]["mean"]), 0.1 * mu, rtol=1e-12)
    np.testing.assert_allclose(
        np.asarray(updated["batch_stats"]["var"]), 0.9 + 0.1 * var, rtol=1e-12
    )


def np_literal_batch_norm(h, delta):
    """The slide's batch norm, literally: H' = (H - mu) / sigma, sigma = sqrt(delta + mean of
    (H - mu)^2 over the m rows); no gamma, no beta."""
    m = h.shape[0]
    mu = sum(h[i] for i in range(m)) / m
    sigma = np.sqrt(delta + sum((h[i] - mu) ** 2 for i in range(m)) / m)
    return (h - mu) / sigma


def test_literal_batch_norm_is_the_slides_formula_with_no_variables(x64, rng):
    h = rng.normal(loc=-2.0, scale=3.0, size=(12, 4))
    module = layers.BatchNorm(affine=False, epsilon=1e-3)
    out, variables = jit_init_with_output(module, jax.random.key(0), jnp.asarray(h), False)
    assert variables == {}  # no gamma, beta or running averages
    expected = np_literal_batch_norm(h, 1e-3)
    np.testing.assert_allclose(np.asarray(out), expected, rtol=1e-12, atol=1e-13)
    # Eval mode has no averages to use: it is the same formula on the batch it is given.
    evaluated = jit_apply(module, {}, jnp.asarray(h), True)
    np.testing.assert_array_equal(np.asarray(evaluated), np.asarray(out))
    # In an MLP: no Dense bias before it, no BatchNorm variables, train = eval.
    model = layers.MLP(features=[6, 3], activation="relu", batch_norm=True, batch_norm_affine=False)
    variables = jit_init(model, jax.random.key(1), jnp.asarray(h), train=True)
    assert set(variables) == {"params"} and set(variables["params"]) == {"Dense_0", "Dense_1"}
    assert "bias" not in variables["params"]["Dense_0"]
    kernel = np.asarray(variables["params"]["Dense_0"]["kernel"])
    hidden = np.maximum(np_literal_batch_norm(h @ kernel, 1e-5), 0.0)
    out = variables["params"]["Dense_1"]
    expected = hidden @ np.asarray(out["kernel"]) + np.asarray(out["bias"])
    for train in (True, False):
        got = jit_apply(model, variables, jnp.asarray(h), train=train)
        np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-10, atol=1e-12)


def test_batch_norm_matches_flax_in_train_and_eval_modes(rng):
    batches = [
        jnp.asarray(rng.normal(loc=2.0, scale=3.0, size=(32, 6)), jnp.float32) for _ in range(4)
    ]
    ours, theirs = layers.BatchNorm(), nn.BatchNorm()
    assert (ours.momentum, ours.epsilon) == (theirs.momentum, theirs.epsilon) == (0.99, 1e-5)
    v_ours = jit_init(ours, jax.random.key(0), batches[0], use_running_average=False)
    v_theirs = jit_init(theirs, jax.random.key(0), batches[0], use_running_average=False)
    assert jax.tree.structure(v_ours) == jax.tree.structure(v_theirs)
    for leaf_ours, leaf_theirs in zip(
        jax.tree.leaves(v_ours), jax.tree.leaves(v_theirs), strict=True
    ):
        np.testing.assert_array_equal(np.asarray(leaf_ours), np.asarray(leaf_theirs))
    # Learned scale/shift away from their initial values, shared by both.
    params = {
        "scale": jnp.asarray(rng.uniform(0.5, 2.0, size=6), jnp.float32),
        "bias": jnp.asarray(rng.normal(size=6), jnp.float32),
    }
    v_ours = {**v_ours, "params": params}
    v_theirs = {**v_theirs, "params": params}

    train_ours = jax.jit(partial(ours.apply, use_running_average=False, mutable=["batch_stats"]))
    train_theirs = jax.jit(
        partial(theirs.apply, use_running_average=False, mutable=["batch_stats"])
    )
    for batch in batches:
        out_ours, stats_ours = train_ours(v_ours, batch)
        out_theirs, stats_theirs = train_theirs(v_theirs, batch)
        np.testing.assert_allclose(np.asarray(out_ours), np.asarray(out_theirs), atol=1e-5)
        for name in ("mean", "var"):
            np.testing.assert_allclose(
                np.asarray(stats_ours["batch_stats"][name]),
                np.asarray(stats_theirs["batch_stats"][name]),
                atol=1e-5,
            )
        v_ours = {**v_ours, **stats_ours}
        v_theirs = {**v_theirs, **stats_theirs}

    # The running averages moved away from (0, 1) and eval mode uses them.
    assert np.all(np.abs(np.asarray(v_ours["batch_stats"]["mean"])) > 0.01)
    test_batch = jnp.asarray(rng.normal(size=(7, 6)), jnp.float32)
    eval_ours = jit_apply(ours, v_ours, test_batch, use_running_average=True)
    eval_theirs = jit_apply(theirs, v_theirs, test_batch, use_running_average=True)
    np.testing.assert_allclose(np.asarray(eval_ours), np.asarray(eval_theirs), atol=1e-5)
    stats = v_ours["batch_stats"]
    expected_eval = (np.asarray(test_batch) - np.asarray(stats["mean"])) / np.sqrt(
        1e-5 + np.asarray(stats["var"])
    ) * np.asarray(params["scale"]) + np.asarray(params["bias"])
    np.testing.assert_allclose(np.asarray(eval_ours), expected_eval, atol=1e-5)


def test_batch_norm_conv_maps_and_feature_axis(rng):
    x = jnp.asarray(rng.normal(size=(4, 5, 5, 3)), jnp.float32)
    out, _ = jit_init_with_output(layers.BatchNorm(use_running_average=False), jax.random.key(0), x)
    reference, _ = jit_init_with_output(
        nn.BatchNorm(use_running_average=False), jax.random.key(0), x
    )
    np.testing.assert_allclose(np.asarray(out), np.asarray(reference), atol=1e-5)
    channels_first = jnp.moveaxis(x, -1, 1)
    out_axis1, variables = jit_init_with_output(
        layers.BatchNorm(use_running_average=False, axis=1), jax.random.key(0), channels_first
    )
    assert variables["params"]["scale"].shape == (3,)
    np.testing.assert_allclose(
        np.asarray(out_axis1), np.asarray(jnp.moveaxis(out, -1, 1)), atol=1e-6
    )


def test_batch_norm_init_leaves_running_averages_and_axis_name_pools_shards(rng):
    x = jnp.asarray(rng.normal(loc=1.0, size=(8, 3)), jnp.float32)
    module = layers.BatchNorm(use_running_average=False, axis_name="shards")
    variables = jit_init(module, jax.random.key(0), x)
    np.testing.assert_array_equal(np.asarray(variables["batch_stats"]["mean"]), 0.0)
    np.testing.assert_array_equal(np.asarray(variables["batch_stats"]["var"]), 1.0)

    # Two shards of 4 rows, statistics pooled over the named axis = one batch of 8 rows.
    def shard_step(shard):
        return module.apply(variables, shard, mutable=["batch_stats"])

    sharded_out, sharded_stats = jax.vmap(shard_step, axis_name="shards")(x.reshape(2, 4, 3))
    whole_out, whole_stats = jit_apply(
        layers.BatchNorm(use_running_average=False), variables, x, mutable=["batch_stats"]
    )
    np.testing.assert_allclose(
        np.asarray(sharded_out).reshape(8, 3), np.asarray(whole_out), atol=1e-6
    )
    for name in ("mean", "var"):
        np.testing.assert_allclose(
            np.asarray(sharded_stats["batch_stats"][name][0]),
            np.asarray(whole_stats["batch_stats"][name]),
            atol=1e-6,
        )


def test_batch_norm_stats_keep_dtype_as_scan_carry(x64, rng):
    xs = jnp.asarray(rng.normal(size=(3, 8, 2)))  # float64 inputs, float32 statistics
    module = layers.BatchNorm(use_running_average=False)
    variables = jit_init(module, jax.random.key(0), xs[0])

    def step(stats, batch):
        _, updated = module.apply(
            {"params": variables["params"], "batch_stats": stats}, batch, mutable=["batch_stats"]
        )
        return updated["batch_stats"], None

    final, _ = jax.lax.scan(step, variables["batch_stats"], xs)
    assert final["mean"].dtype == jnp.float32
    expected_mean = np.zeros(2)
    for batch in np.asarray(xs):
        expected_mean = 0.99 * expected_mean + 0.01 * batch.mean(axis=0)
    np.testing.assert_allclose(np.asarray(final["mean"]), expected_mean, rtol=1e-5)


# ------------------------------------------------------------------------------- MLP


def test_mlp_forward_matches_transcription_and_sows_every_layer(x64, rng):
    model = layers.MLP(features=[5, 4, 2], activation="tanh", output_activation="sigmoid")
    x = jnp.asarray(rng.normal(size=(3, 6)))
    variables = jit_init(model, jax.random.key(0), x)
    params = jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape)), variables["params"])
    out, state = jit_apply(model, {"params": params}, x, mutable=["intermediates"])

    a = np.asarray(x)
    pre_activations, activations_ = [], []
    for i in range(3):
        w = np.asarray(params[f"Dense_{i}"]["kernel"])
        b = np.asarray(params[f"Dense_{i}"]["bias"])
        z = np.array(
            [
                [
                    sum(a[n, j] * w[j, u] for j in range(w.shape[0])) + b[u]
                    for u in range(w.shape[1])
                ]
                for n in range(a.shape[0])
            ]
        )
        a = np.tanh(z) if i < 2 else 1.0 / (1.0 + np.exp(-z))
        pre_activations.append(z)
        activations_.append(a)
    np.testing.assert_allclose(np.asarray(out), a, rtol=1e-13)
    sown = state["intermediates"]
    assert len(sown["pre_activations"]) == len(sown["activations"]) == 3
    for got, expected in zip(sown["pre_activations"], pre_activations, strict=True):
        np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-12, atol=1e-14)
    for got, expected in zip(sown["activations"], activations_, strict=True):
        np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-12, atol=1e-14)


def test_deep_mlp_vmaps_over_seeds_and_reports_per_layer_gradients(rng):
    depth = 10
    model = layers.MLP(
        features=[16] * depth + [3], activation="sigmoid", kernel_init="glorot_uniform"
    )
    x = jnp.asarray(rng.normal(size=(8, 10)), jnp.float32)
    labels = jnp.asarray(rng.integers(0, 3, size=8))

    def per_layer_grad_norms(key):
        params = model.init(key, x)["params"]

        def loss(p):
            logits = model.apply({"params": p}, x)
            return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(8), labels])

        grads = jax.grad(loss)(params)
        norms = [jnp.linalg.norm(grads[f"Dense_{i}"]["kernel"]) for i in range(depth + 1)]
        return jnp.stack(norms), params["Dense_5"]["kernel"]

    norms, kernels = jax.jit(jax.vmap(per_layer_grad_norms))(jax.random.split(jax.random.key(1), 3))
    norms = np.asarray(norms)
    assert norms.shape == (3, depth + 1) and np.all(np.isfinite(norms))
    # Deep sigmoid nets: the first layer gets far smaller gradients than the last hidden one.
    assert np.all(norms[:, 0] < 0.1 * norms[:, depth - 1])
    # The string kernel_init resolved to Glorot, and every seed drew different weights.
    assert np.abs(np.asarray(kernels)).max() <= np.float32(init.glorot_bound((16, 16)))
    assert not np.allclose(np.asarray(kernels[0]), np.asarray(kernels[1]))


def test_mlp_with_batch_norm_train_and_eval(rng):
    model = layers.MLP(features=[8, 8, 2], activation="relu", batch_norm=True)
    x = jnp.asarray(rng.normal(loc=4.0, scale=3.0, size=(16, 5)), jnp.float32)
    variables = jit_init(model, jax.random.key(0), x, train=True)
    params = variables["params"]
    assert "bias" not in params["Dense_0"] and "bias" in params["Dense_2"]
    assert set(variables["batch_stats"]) == {"BatchNorm_0", "BatchNorm_1"}

    out, state = jit_apply(
        model, variables, x, train=True, mutable=["batch_stats", "intermediates"]
    )
    # In train mode the first hidden layer's pre-activations are normalized per feature.
    first = np.asarray(state["intermediates"]["pre_activations"][0])
    h = np.asarray(x, np.float64) @ np.asarray(params["Dense_0"]["kernel"], np.float64)
    np.testing.assert_allclose(first.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(first.var(axis=0), h.var(axis=0) / (h.var(axis=0) + 1e-5), rtol=1e-4)
    np.testing.assert_allclose(
        np.asarray(state["batch_stats"]["BatchNorm_0"]["mean"]), 0.01 * h.mean(axis=0), rtol=1e-4
    )
    # Eval mode uses the running statistics, so it differs from train mode after one update
    # and needs no mutable collection.
    updated = {"params": params, "batch_stats": state["batch_stats"]}
    eval_out = jit_apply(model, updated, x, train=False)
    assert eval_out.shape == out.shape == (16, 2)
    assert not np.allclose(np.asarray(eval_out), np.asarray(out))


def test_mlp_learned_activations(rng):
    x = jnp.asarray(rng.normal(size=(4, 3)), jnp.float32)
    prelu_net = layers.MLP(features=[6, 2], activation="prelu")
    params = jit_init(prelu_net, jax.random.key(0), x)["params"]
    assert params["PReLU_0"]["negative_slope"].shape == (6,)

    maxout_net = layers.MLP(features=[6, 2], activation="maxout", maxout_pieces=3)
    params = jit_init(maxout_net, jax.random.key(0), x)["params"]
    assert params["Dense_0"]["kernel"].shape == (3, 18)
    assert params["Dense_1"]["kernel"].shape == (6, 2)
    p = jax.tree.map(np.asarray, params)
    pieces = np.asarray(x) @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"]
    hidden = pieces.reshape(4, 3, 6).max(axis=1)  # piece j of unit i is column 6 j + i
    expected = hidden @ p["Dense_1"]["kernel"] + p["Dense_1"]["bias"]
    np.testing.assert_allclose(
        np.asarray(jit_apply(maxout_net, {"params": params}, x)), np.asarray(expected), rtol=1e-5
    )


def test_mlp_rejects_unknown_names():
    x = jnp.ones((1, 2))
    with pytest.raises(ValueError, match="unknown activation 'gelu'; valid names: .*prelu, maxout"):
        layers.MLP(features=[3, 1], activation="gelu").init(jax.random.key(0), x)
    with pytest.raises(ValueError, match="unknown activation 'softmax'"):
        layers.MLP(features=[3, 1], activation="relu", output_activation="softmax").init(
            jax.random.key(0), x
        )
    with pytest.raises(ValueError, match="at least one layer"):
        layers.MLP(features=[], activation="relu").init(jax.random.key(0), x)
    with pytest.raises(ValueError, match="unknown initializer 'ones'"):
        layers.MLP(features=[3, 1], activation="relu", kernel_init="ones").init(
            jax.random.key(0), x
        )


def test_mlp_flatten_takes_images_as_they_are():
    images = jax.random.normal(jax.random.key(0), (5, 8, 8, 1))
    flat = layers.MLP(features=[7, 3], activation="relu")
    shaped = layers.MLP(features=[7, 3], activation="relu", flatten=True)
    variables = flat.init(jax.random.key(1), images.reshape(5, -1))
    np.testing.assert_array_equal(
        shaped.apply(variables, images), flat.apply(variables, images.reshape(5, -1))
    )
