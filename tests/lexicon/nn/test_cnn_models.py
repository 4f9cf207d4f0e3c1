"""The CNN models (SPEC.md section 5): shapes, parameter counts, features, training steps."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.ndimage

from lexicon.nn import cnn

# Compiling the training steps dominates this file's run time on a CPU; LLVM's cheapest
# optimization level halves it and changes nothing these tests check.
QUICK_COMPILE = {"xla_backend_optimization_level": 0}


def parameter_count(params):
    return sum(leaf.size for leaf in jax.tree.leaves(params))


def conv_params(kh, kw, c_in, c_out):
    return kh * kw * c_in * c_out + c_out


def dense_params(n_in, n_out):
    return n_in * n_out + n_out


def numpy_variables(model, x, seed=0):
    """Variables of ``model`` drawn with NumPy at fan-in scale, shaped by tracing ``model.init``.

    Compiling jax's threefry initialisers costs seconds per model on a CPU, far more than
    the models themselves, so the tests trace ``init`` abstractly and fill the shapes here.
    """
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        name = path[-1].key
        if name == "kernel":
            fan_in = int(np.prod(leaf.shape[:-1]))
            return jnp.asarray(rng.normal(size=leaf.shape) / np.sqrt(fan_in), leaf.dtype)
        if name in ("scale", "var"):
            return jnp.ones(leaf.shape, leaf.dtype)
        return jnp.zeros(leaf.shape, leaf.dtype)

    shapes = jax.eval_shape(model.init, jax.random.key(0), x)
    return jax.tree_util.tree_map_with_path(draw, shapes)


def test_lenet5_parameter_count_classic_layout():
    model = cnn.LeNet5(num_classes=10)
    image = jax.ShapeDtypeStruct((1, 32, 32, 1), jnp.float32)
    variables = jax.eval_shape(model.init, jax.random.key(0), image)
    # 32 -C1 5x5-> 28 -S2-> 14 -C3 5x5-> 10 -S4-> 5: F5 reads 16 maps of 5x5.
    by_hand = (
        conv_params(5, 5, 1, 6)
        + conv_params(5, 5, 6, 16)
        + dense_params(16 * 5 * 5, 120)
        + dense_params(120, 84)
        + dense_params(84, 10)
    )
    assert by_hand == 61_706
    assert parameter_count(variables["params"]) == by_hand
    intermediates = jax.eval_shape(
        lambda v, x: model.apply(v, x, mutable=["intermediates"])[1], variables, image
    )
    shapes = {name: value[0].shape for name, value in intermediates["intermediates"].items()}
    assert shapes == {
        "c1": (1, 28, 28, 6),
        "s2": (1, 14, 14, 6),
        "c3": (1, 10, 10, 16),
        "s4": (1, 5, 5, 16),
        "f5": (1, 120),
        "f6": (1, 84),
    }


def test_lenet5_small_inputs():
    digits = jnp.asarray(np.random.default_rng(1).uniform(size=(3, 8, 8)), jnp.float32)
    padded_model = cnn.LeNet5(pad_input_to=32)
    variables = numpy_variables(padded_model, digits)
    assert parameter_count(variables["params"]) == 61_706
    # padding inside the model is the same as feeding the zero-padded 32x32 image
    by_hand = jnp.pad(digits, ((0, 0), (12, 12), (12, 12)))[..., None]
    np.testing.assert_allclose(
        np.asarray(jax.jit(padded_model.apply)(variables, digits)),
        np.asarray(jax.jit(cnn.LeNet5().apply)(variables, by_hand)),
        rtol=1e-6,
        atol=1e-6,
    )
    same_model = cnn.LeNet5(first_padding="SAME", second_padding="SAME", activation="relu")
    variables = jax.eval_shape(same_model.init, jax.random.key(0), digits)
    # 8 -> 8 -> 4 -> 4 -> 2: F5 reads 2 * 2 * 16 = 64 values
    assert variables["params"]["dense1"]["kernel"].shape == (64, 120)
    assert jax.eval_shape(same_model.apply, variables, digits).shape == (3, 10)
    with pytest.raises(ValueError, match="pad_input_to"):
        jax.eval_shape(cnn.LeNet5(pad_input_to=6).init, jax.random.key(0), digits)


def test_cnn1d_mirrors_the_mnist1d_baseline():
    model = cnn.CNN1D()
    signals = jnp.asarray(np.random.default_rng(2).normal(size=(4, 40)), jnp.float32)
    # the real flax initialisers, once (the other tests draw with NumPy)
    variables = jax.jit(model.init)(jax.random.key(0, impl="rbg"), signals)
    assert all(np.all(np.isfinite(np.asarray(leaf))) for leaf in jax.tree.leaves(variables))
    # lengths 40 -> 19 -> 10 -> 5 (floor((n + 2 - k) / 2) + 1), then 5 * 25 = 125 features
    by_hand = (
        conv_params(5, 1, 1, 25)
        + conv_params(3, 1, 25, 25)
        + conv_params(3, 1, 25, 25)
        + dense_params(125, 10)
    )
    assert parameter_count(variables["params"]) == by_hand == 5_210
    features = jax.eval_shape(lambda v, x: model.apply(v, x, method="features"), variables, signals)
    assert features.shape == (4, 125)
    assert jax.eval_shape(model.apply, variables, signals[..., None]).shape == (4, 10)


def test_resnet_uses_projection_only_where_shapes_change():
    model = cnn.ResNetSmall(stage_widths=(8, 16, 32), blocks_per_stage=2)
    image = jax.ShapeDtypeStruct((2, 8, 8, 1), jnp.float32)
    variables = jax.eval_shape(model.init, jax.random.key(0), image)
    blocks = [variables["params"][f"blocks_{i}"] for i in range(6)]
    has_projection = ["projection" in block for block in blocks]
    assert has_projection == [False, False, True, False, True, False]
    _, state = jax.eval_shape(
        lambda v, x: model.apply(v, x, mutable=["intermediates"]), variables, image
    )
    shapes = [state["intermediates"][f"block{i}"][0].shape for i in range(6)]
    assert shapes == [(2, 8, 8, 8)] * 2 + [(2, 4, 4, 16)] * 2 + [(2, 2, 2, 32)] * 2


def test_residual_block_shortcut_is_the_identity():
    block = cnn.ResidualBlock(width=4)
    x = jnp.asarray(np.random.default_rng(3).normal(size=(2, 5, 5, 4)), jnp.float32)
    variables = numpy_variables(block, x)
    apply = jax.jit(block.apply)
    silenced = jax.tree.map(jnp.zeros_like, variables)
    # with F(x) = 0 the block is relu(0 + x)
    np.testing.assert_allclose(np.asarray(apply(silenced, x)), np.asarray(jax.nn.relu(x)))
    # in general y = relu(F(x) + x), F = conv2(relu(conv1(x)))
    params = variables["params"]

    def conv_same(h, layer):
        out = jax.lax.conv_general_dilated(
            h, layer["kernel"], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        return out + layer["bias"]

    residual = conv_same(jax.nn.relu(conv_same(x, params["conv1"])), params["conv2"])
    np.testing.assert_allclose(
        np.asarray(apply(variables, x)),
        np.asarray(jax.nn.relu(residual + x)),
        rtol=1e-5,
        atol=1e-5,
    )


def test_sobel_gradient_magnitude_matches_scipy():
    rng = np.random.default_rng(4)
    images = rng.normal(size=(2, 7, 6, 2)).astype(np.float32)
    ours = np.asarray(cnn.sobel_gradient_magnitude(jnp.asarray(images)))
    assert ours.shape == images.shape
    for b in range(2):
        for c in range(2):
            along_height = scipy.ndimage.sobel(images[b, :, :, c], axis=0, mode="constant")
            along_width = scipy.ndimage.sobel(images[b, :, :, c], axis=1, mode="constant")
            ref = np.hypot(along_height, along_width)
            np.testing.assert_allclose(ours[b, :, :, c], ref, rtol=1e-5, atol=1e-5)
    single_channel = cnn.sobel_gradient_magnitude(jnp.asarray(images[..., 0]))
    np.testing.assert_allclose(np.asarray(single_channel), ours[..., 0], rtol=1e-6)
    # flat regions have zero magnitude and a finite gradient
    flat = jnp.ones((1, 5, 5))
    grad = jax.grad(lambda x: jnp.sum(cnn.sobel_gradient_magnitude(x)))(flat)
    assert np.asarray(cnn.sobel_gradient_magnitude(flat))[0, 2, 2] == 0.0
    assert np.all(np.isfinite(np.asarray(grad)))


def test_multistream_derives_the_gradient_stream():
    images = jnp.asarray(np.random.default_rng(5).uniform(size=(3, 8, 8)), jnp.float32)
    model = cnn.MultiStream()
    variables = numpy_variables(model, images)
    both = (images, cnn.sobel_gradient_magnitude(images))
    apply = jax.jit(model.apply)
    np.testing.assert_allclose(
        np.asarray(apply(variables, images)),
        np.asarray(apply(variables, both)),
        rtol=1e-6,
        atol=1e-6,
    )
    # fused late: the dense layer reads both flattened streams, 2 * (2 * 2 * 16) values
    assert variables["params"]["fusion"]["kernel"].shape == (128, 64)


MODELS = {
    "lenet5": (
        lambda: cnn.LeNet5(first_padding="SAME", second_padding="SAME", activation="relu"),
        (4, 8, 8, 1),
    ),
    "vgg_small": (lambda: cnn.VGGSmall(stage_channels=(8, 16), dropout_rate=0.1), (4, 8, 8, 1)),
    "resnet_small": (lambda: cnn.ResNetSmall(stage_widths=(8, 16), blocks_per_stage=1), (4, 8, 8)),
    "resnet_small_bn": (
        lambda: cnn.ResNetSmall(stage_widths=(8, 16), blocks_per_stage=1, use_batch_norm=True),
        (4, 8, 8, 1),
    ),
    "multistream": (lambda: cnn.MultiStream(stream_channels=(4, 8)), (4, 8, 8, 1)),
    "cnn1d": (lambda: cnn.CNN1D(), (4, 40)),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_forward_features_and_adam_steps(name):
    make_model, input_shape = MODELS[name]
    model = make_model()
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=input_shape), jnp.float32)
    labels = jnp.asarray(rng.integers(0, 10, size=input_shape[0]))
    variables = numpy_variables(model, x)
    params = variables["params"]
    batch_stats = variables.get("batch_stats", {})

    @functools.partial(jax.jit, compiler_options=QUICK_COMPILE)
    def inspect(variables):
        logits, state = model.apply(variables, x, mutable=["intermediates"])
        features = model.apply(variables, x, method="features")
        return logits, features, state["intermediates"]

    logits, features, intermediates = inspect(variables)
    assert logits.shape == (input_shape[0], 10)
    assert intermediates and all(
        leaf.shape[0] == input_shape[0] for leaf in jax.tree.leaves(intermediates)
    )
    # the features feed the final linear layer
    classifier = params["classifier"]
    np.testing.assert_allclose(
        np.asarray(logits),
        np.asarray(features @ classifier["kernel"] + classifier["bias"]),
        rtol=1e-5,
        atol=1e-5,
    )

    def loss_fn(params, batch_stats, key):
        train_variables = {"params": params}
        mutable = []
        if batch_stats:
            train_variables["batch_stats"] = batch_stats
            mutable = ["batch_stats"]
        logits, updates = model.apply(
            train_variables, x, train=True, rngs={"dropout": key}, mutable=mutable
        )
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
        return loss, updates.get("batch_stats", batch_stats)

    optimizer = optax.adam(1e-2)

    @functools.partial(jax.jit, compiler_options=QUICK_COMPILE)
    def step(params, batch_stats, opt_state, key):
        (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            params, batch_stats, key
        )
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), batch_stats, opt_state, loss

    opt_state = optimizer.init(params)
    losses = []
    # the last "step" only measures the loss after three updates
    for index in range(4):
        key = jax.random.key(index)
        params, batch_stats, opt_state, loss = step(params, batch_stats, opt_state, key)
        losses.append(float(loss))
    assert np.all(np.isfinite(losses))
    assert losses[-1] < losses[0]


def test_models_vmap_over_seeds():
    model = cnn.LeNet5(first_padding="SAME", second_padding="SAME")
    x = jnp.asarray(np.random.default_rng(6).normal(size=(2, 8, 8, 1)), jnp.float32)
    # init traces under vmap over a batch of seeds
    keys = jax.random.split(jax.random.key(0), 3)
    stacked_shapes = jax.eval_shape(jax.vmap(lambda key: model.init(key, x)), keys)
    assert stacked_shapes["params"]["conv1"]["kernel"].shape == (3, 5, 5, 1, 6)
    # apply under jit(vmap) over stacked parameters equals applying each slice
    seeds = [numpy_variables(model, x, seed) for seed in range(3)]
    stacked = jax.tree.map(lambda *leaves: jnp.stack(leaves), *seeds)

    def forward(variables):
        return model.apply(variables, x)

    apply = jax.jit(forward, compiler_options=QUICK_COMPILE)
    logits = jax.jit(jax.vmap(forward), compiler_options=QUICK_COMPILE)(stacked)
    assert logits.shape == (3, 2, 10)
    for index in range(3):
        np.testing.assert_allclose(
            np.asarray(logits[index]), np.asarray(apply(seeds[index])), rtol=1e-5, atol=1e-5
        )


def test_vgg_dropout_only_in_training():
    model = cnn.VGGSmall(stage_channels=(4,), convs_per_stage=1, dropout_rate=0.5)
    x = jnp.asarray(np.random.default_rng(7).normal(size=(2, 8, 8, 1)), jnp.float32)
    variables = numpy_variables(model, x)

    @jax.jit
    def run(variables, key):
        dropout = {"dropout": key}
        return (
            model.apply(variables, x),
            model.apply(variables, x, train=True, rngs=dropout),
            model.apply(variables, x, method="features"),
            model.apply(variables, x, train=True, rngs=dropout, method="features"),
        )

    evaluation, trained, hidden_eval, hidden = run(variables, jax.random.key(1))
    np.testing.assert_array_equal(
        np.asarray(evaluation), np.asarray(run(variables, jax.random.key(2))[0])
    )
    assert not np.allclose(np.asarray(trained), np.asarray(evaluation))
    hidden_eval = np.asarray(hidden_eval)
    # inverted dropout: each unit is either dropped (0) or kept and scaled by 1 / (1 - rate)
    hidden = np.asarray(hidden)
    kept = hidden != 0.0
    np.testing.assert_allclose(hidden[kept], hidden_eval[kept] / 0.5, rtol=1e-5)
    assert np.any(~kept & (hidden_eval != 0.0))


def test_bad_activation_is_rejected():
    with pytest.raises(ValueError, match="unknown activation"):
        jax.eval_shape(
            cnn.LeNet5(activation="swishy").init, jax.random.key(0), jnp.zeros((1, 32, 32, 1))
        )


def test_fedavg_cnn_has_mcmahans_parameter_count():
    """McMahan et al. (2017) give 1,663,370 parameters for their MNIST CNN."""
    from lexicon.nn.cnn import FedAvgCNN

    model = FedAvgCNN()
    params = model.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))["params"]
    assert sum(p.size for p in jax.tree.leaves(params)) == 1_663_370
    flat = model.apply({"params": params}, jnp.ones((3, 784)))
    np.testing.assert_array_equal(flat, model.apply({"params": params}, jnp.ones((3, 28, 28, 1))))


def test_conv_impls_give_the_same_model():
    """A model with conv_impl=im2col equals itself with XLA's convolution: same parameters,
    logits and parameter gradients to float32 rounding (one compiled program per impl)."""
    rng = np.random.default_rng(3)
    # The models whose convolutions differ in kind: 5x5 same (LeNet-5), 3x3 and 1x1 with
    # stride 2 and batch norm (ResNet), 1-D with explicit pads and stride (CNN1D), 3x3 stride
    # 2 same (PoolingNet); VGG and the multi-stream net add only more 3x3 same convs.
    cases = {name: MODELS[name] for name in ("lenet5", "resnet_small_bn", "cnn1d")}
    cases["pooling"] = (lambda: cnn.PoolingNet(channels=(4, 8), downsample="stride"), (2, 8, 8, 1))
    inputs, variables = {}, {}
    for name, (make_model, input_shape) in cases.items():
        inputs[name] = jnp.asarray(rng.normal(size=input_shape), jnp.float32)
        variables[name] = numpy_variables(make_model(), inputs[name])

    def run(impl, variables):
        out = {}
        for name, (make_model, _) in cases.items():
            model = make_model().clone(conv_impl=impl)

            def loss(params, name=name, model=model):
                logits = model.apply({**variables[name], "params": params}, inputs[name])
                return jnp.sum(logits**2), logits

            out[name] = jax.grad(loss, has_aux=True)(variables[name]["params"])
        return out

    want = jax.jit(functools.partial(run, "xla"), compiler_options=QUICK_COMPILE)(variables)
    got = jax.jit(functools.partial(run, "im2col"), compiler_options=QUICK_COMPILE)(variables)
    for name in cases:
        for g, w in zip(jax.tree.leaves(got[name]), jax.tree.leaves(want[name]), strict=True):
            np.testing.assert_allclose(
                np.asarray(g), np.asarray(w), rtol=1e-4, atol=1e-4, err_msg=name
            )


def test_pooling_net_and_shift_effects():
    """PoolingNet's two downsamplings share their parameters and feature size; shift_effects
    equals a NumPy float64 transcription of its definitions."""
    rng = np.random.default_rng(4)
    x = jnp.asarray(rng.normal(size=(6, 8, 8, 1)), jnp.float32)
    y = rng.integers(0, 10, size=6)
    nets = {d: cnn.PoolingNet(channels=(4, 8), downsample=d) for d in ("max", "stride")}
    shapes = {d: jax.eval_shape(n.init, jax.random.key(0), x) for d, n in nets.items()}
    assert jax.tree.map(np.shape, shapes["max"]) == jax.tree.map(np.shape, shapes["stride"])
    assert parameter_count(shapes["max"]) == conv_params(3, 3, 1, 4) + conv_params(
        3, 3, 4, 8
    ) + dense_params(2 * 2 * 8, 10)
    with pytest.raises(ValueError, match="max or stride"):
        cnn.PoolingNet(downsample="avg").init(jax.random.key(0), x)

    model = nets["max"]
    variables = numpy_variables(model, x)
    got = jax.jit(functools.partial(cnn.shift_effects, model))(variables, x, y)

    def shifted(images, rows, cols):  # T x[i, j] = x[i - rows, j - cols], zero outside
        out = np.zeros_like(images)
        for i in range(8):
            for j in range(8):
                if 0 <= i - rows < 8 and 0 <= j - cols < 8:
                    out[:, i, j] = images[:, i - rows, j - cols]
        return out

    @functools.partial(jax.jit, static_argnames="method")
    def apply(images, method=None):
        return model.apply(variables, images, method=method)

    def forward(images, method=None):
        return np.asarray(apply(jnp.asarray(images), method), np.float64)

    base = np.asarray(x)
    feats = forward(base, "features")
    accuracy = np.mean(forward(base).argmax(-1) == y)
    changes, accuracies = [], []
    for rows, cols in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        moved = shifted(base, rows, cols)
        diff = np.linalg.norm(forward(moved, "features") - feats, axis=1)
        changes.append(np.mean(diff / np.linalg.norm(feats, axis=1)))
        accuracies.append(np.mean(forward(moved).argmax(-1) == y))
    np.testing.assert_allclose(float(got["feature_change"]), np.mean(changes), rtol=1e-5)
    np.testing.assert_allclose(float(got["accuracy"]), accuracy)
    np.testing.assert_allclose(float(got["shifted_accuracy"]), np.mean(accuracies), atol=1e-6)
    np.testing.assert_allclose(
        float(got["accuracy_drop"]), accuracy - np.mean(accuracies), atol=1e-6
    )
