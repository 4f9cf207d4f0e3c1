"""lexicon.regularized: each method's training step is the documents' update."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lexicon import regularized as reg
from lexicon import regularizers
from lexicon.rules import ConfigError, check
from lexicon.train.loop import Result
from lexicon.train.sweep import Sweep, SweptConfig


def small_config(**changes):
    config = reg.defaults()
    config.hidden = (8,)
    config.lr = 0.1
    config.l2_alpha = 0.05
    config.l1_alpha = 0.02
    for key, value in changes.items():
        config[key] = value
    return config


def one_step(method, config, seed=0):
    """Initial state, state after one step, the batch and the step key of ``method``."""
    rng = np.random.default_rng(seed)
    batch = {
        "x": rng.uniform(size=(6, 64)).astype(np.float32),
        "y": rng.integers(0, 10, size=6).astype(np.int32),
    }
    task = reg.classifier_task(config, reg.techniques_of(method, config), batch["x"][:1], 10)
    state = task.init(jax.random.key(seed))
    key = jax.random.key(seed + 100)
    new_state, metrics = task.make_step(None)(state, batch, key)  # eager: cheaper than compiling
    return state, new_state, batch, key, metrics


def data_gradient(state, batch, params=None):
    """grad_params of the mean cross-entropy, by jax.grad, at ``params`` (default: state's)."""

    def loss(p):
        logits = state.apply_fn({"params": p}, batch["x"], train=False)
        log_probs = jax.nn.log_softmax(logits)
        return -jnp.mean(log_probs[jnp.arange(len(batch["y"])), batch["y"]])

    return jax.grad(loss)(state.params if params is None else params)


def leaves_with_kernel_flag(tree):
    return [
        (regularizers.is_kernel(path, leaf), np.asarray(leaf, np.float64))
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
    ]


@pytest.mark.parametrize("method", ["none", "l2", "l1", "l1_proximal"])
def test_one_step_is_the_documents_update(method):
    """none: w - eps g; l2: (1 - eps alpha) w - eps g; l1: w - eps (alpha sign(w) + g);
    l1_proximal: sign(v) max(|v| - eps alpha, 0) with v = w - eps g. Biases: b - eps g."""
    config = small_config()
    state, new_state, batch, _, _ = one_step(method, config)
    eps, l2, l1 = config.lr, config.l2_alpha, config.l1_alpha
    grads = leaves_with_kernel_flag(data_gradient(state, batch))
    old = leaves_with_kernel_flag(state.params)
    new = leaves_with_kernel_flag(new_state.params)
    for (is_weight, w), (_, g), (_, got) in zip(old, grads, new):
        if not is_weight or method == "none":
            expected = w - eps * g
        elif method == "l2":
            expected = (1 - eps * l2) * w - eps * g
        elif method == "l1":
            expected = w - eps * (l1 * np.sign(w) + g)
        else:
            v = w - eps * g
            expected = np.sign(v) * np.maximum(np.abs(v) - eps * l1, 0.0)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_l2_with_proximal_l1_enters_the_proximal_step_as_a_penalty():
    """combined l2 + l1_proximal: w <- soft_threshold(w - eps (g + alpha2 w), eps alpha1)."""
    config = small_config(combined="l2,l1_proximal")
    state, new_state, batch, _, _ = one_step("combined", config)
    eps, l2, l1 = config.lr, config.l2_alpha, config.l1_alpha
    grads = leaves_with_kernel_flag(data_gradient(state, batch))
    old = leaves_with_kernel_flag(state.params)
    for (is_weight, w), (_, g), (_, got) in zip(
        old, grads, leaves_with_kernel_flag(new_state.params)
    ):
        if is_weight:
            v = w - eps * (g + l2 * w)
            expected = np.sign(v) * np.maximum(np.abs(v) - eps * l1, 0.0)
        else:
            expected = w - eps * g
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_l2_step_equals_scikit_learn_with_alpha_times_batch_size():
    """The reference's alpha conversion: one MLPClassifier SGD step with alpha_sk = m alpha."""
    from sklearn.neural_network import MLPClassifier

    config = small_config()
    state, new_state, batch, _, _ = one_step("l2", config)
    x, y = batch["x"].astype(np.float64), batch["y"]
    clf = MLPClassifier(
        hidden_layer_sizes=tuple(config.hidden),
        solver="sgd",
        alpha=config.l2_alpha * len(y),
        batch_size=len(y),
        learning_rate_init=config.lr,
        momentum=0.0,
        shuffle=False,
        random_state=0,
    )
    clf.partial_fit(x, y, classes=np.arange(10))
    layers = state.params["DropoutMLP_0"]
    clf.coefs_ = [np.asarray(layers[n]["kernel"], np.float64) for n in ("hidden_0", "output")]
    clf.intercepts_ = [np.asarray(layers[n]["bias"], np.float64) for n in ("hidden_0", "output")]
    clf.partial_fit(x, y)
    new_layers = new_state.params["DropoutMLP_0"]
    for i, name in enumerate(("hidden_0", "output")):
        np.testing.assert_allclose(new_layers[name]["kernel"], clf.coefs_[i], atol=1e-6)
        np.testing.assert_allclose(new_layers[name]["bias"], clf.intercepts_[i], atol=1e-6)


def test_proximal_l1_makes_exact_zeros_and_subgradient_does_not():
    config = small_config(l1_alpha=0.5)
    _, prox, *_ = one_step("l1_proximal", config)
    _, sub, *_ = one_step("l1", config)
    prox_zero = regularizers.sparsity(
        regularizers.kernel_values(jax.tree.map(lambda a: a[None], prox.params)), 0
    )
    sub_zero = regularizers.sparsity(
        regularizers.kernel_values(jax.tree.map(lambda a: a[None], sub.params)), 0
    )
    assert prox_zero[1][0] > 0.1 and sub_zero[1][0] == 0.0


def test_weight_noise_step_takes_the_gradient_at_the_noisy_weights():
    config = small_config(weight_sigma=0.3)
    state, new_state, batch, key, _ = one_step("weight_noise", config)
    noise_key = jax.random.split(key, 3)[1]
    noisy = regularizers.perturb_weights(state.params, noise_key, config.weight_sigma)
    grads = data_gradient(state, batch, params=noisy)
    expected = jax.tree.map(lambda w, g: w - config.lr * g, state.params, grads)
    for got, want in zip(jax.tree.leaves(new_state.params), jax.tree.leaves(expected)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    _, clean_state, *_ = one_step("none", config)
    assert not all(
        np.allclose(a, b)
        for a, b in zip(jax.tree.leaves(clean_state.params), jax.tree.leaves(new_state.params))
    )


def test_dropout_and_augmentation_change_the_step_but_not_evaluation():
    config = small_config()
    state, plain, batch, _, plain_metrics = one_step("none", config)
    for method in ("dropout", "augmentation"):
        task = reg.classifier_task(config, reg.techniques_of(method, config), batch["x"][:1], 10)
        same_init = task.init(jax.random.key(0))
        for a, b in zip(jax.tree.leaves(same_init.params), jax.tree.leaves(state.params)):
            np.testing.assert_array_equal(a, b)  # same weights per seed across methods
        _, changed, *_ = one_step(method, config)
        assert not all(
            np.allclose(a, b)
            for a, b in zip(jax.tree.leaves(changed.params), jax.tree.leaves(plain.params))
        )
        split = {"x": batch["x"], "y": batch["y"]}
        evaluated = task.evaluate(same_init, split)
        reference = reg.classifier_task(config, frozenset(), batch["x"][:1], 10).evaluate(
            state, split
        )
        np.testing.assert_allclose(evaluated["loss"], reference["loss"], rtol=1e-6)
    assert np.isfinite(float(plain_metrics["loss"]))


def test_bad_method_lists_stop_before_compiling():
    config = reg.defaults()
    config.methods = "none,l3"
    with pytest.raises(ConfigError, match="l3|comma-separated"):
        check(config, reg.RULES)
    config = reg.defaults()
    config.combined = "l1,l1_proximal"
    with pytest.raises(ConfigError, match="l1_proximal"):
        reg.check_methods(config)
    config = reg.defaults()
    config.methods = "none, dropout"
    assert reg.check_methods(config) == ["none", "dropout"]


def test_penalty_weights_can_be_traced_values_as_in_a_sweep():
    """A sweep hands the builder a config whose swept keys are traced: the step under jit with
    traced SWEEPABLE keys equals the step with the plain numbers (the proximal step with the L2
    penalty, weight noise and augmentation reads all of them)."""
    combined = "l2,l1_proximal,weight_noise,augmentation"
    config = small_config(weight_sigma=0.3, combined=combined)

    def step(values, techniques, batch, key):
        traced = SweptConfig(config, values)  # what a sweep's builder gets
        task = reg.classifier_task(traced, techniques, batch["x"][:1], 10)
        return task.make_step(None)(task.init(jax.random.key(0)), batch, key)[0].params

    values = {k: jnp.float32(config[k]) for k in reg.SWEEPABLE}
    _, want, batch, key, _ = one_step("combined", config)
    techniques = reg.techniques_of("combined", config)
    got = jax.jit(step, static_argnums=1)(values, techniques, batch, key)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want.params)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_replay_and_per_point_read_a_recorded_run():
    """replay is regularizers.replay_early_stopping on a run's curves; per_point gives one
    figure per grid point of a sweep (replica g * seeds + s)."""
    val = np.array([[1.0, 0.8], [0.7, 0.9], [0.9, 0.95], [0.95, 0.97], [0.96, 0.99]])
    acc = np.linspace(0.1, 0.5, 10).reshape(5, 2)
    history = [
        {"epoch": e + 1, "val/loss": list(val[e]), "test/accuracy": list(acc[e])} for e in range(5)
    ]
    result = Result(state=None, history=history, step_metrics=[])
    config = small_config(patience=2, monitor="loss")
    best, stop, at_best = reg.replay(config, result, {"acc": "test/accuracy"})
    want = regularizers.replay_early_stopping(val, {"acc": acc}, 2, "min")
    np.testing.assert_array_equal(best, want[0])
    np.testing.assert_array_equal(best, [2, 1])  # the lowest validation loss before the stop
    np.testing.assert_array_equal(stop, want[1])
    np.testing.assert_allclose(at_best["acc"], acc[[1, 0], [0, 1]], rtol=1e-6)  # float32
    assert reg.per_point(result, best) is best  # a plain run: the values as they are
    result.sweep = Sweep.grid({"l2_alpha": [0.1, 1.0]})
    figures = reg.per_point(result, np.arange(4.0))
    assert list(figures) == ["l2_alpha=0.1", "l2_alpha=1"]
    np.testing.assert_array_equal(figures["l2_alpha=1"].values, [2.0, 3.0])
    config.sweep = "l2_alpha=0.1,1"
    assert reg.settings_of(config)["l2"] == "alpha = swept"
    assert reg.settings_of(config)["l1"] == f"alpha = {config.l1_alpha}, subgradient"
