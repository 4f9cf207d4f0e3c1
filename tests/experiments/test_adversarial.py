"""The adversarial experiment: FGSM accuracy against NumPy, the mixed objective, end to end."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import adversarial as adv
from lexicon import train
from lexicon.rules import ConfigError, check


def linear_problem(seed=0, n=40, d=12, k=4):
    rng = np.random.default_rng(seed)
    params = {"w": rng.normal(size=(d, k)), "b": rng.normal(size=k)}
    x = rng.uniform(size=(n, d))
    y = rng.integers(0, k, size=n)
    return params, x, y


def linear_apply(params, x):
    return x @ params["w"] + params["b"]


def numpy_fgsm_accuracy(params, x, y, epsilon):
    """Softmax regression: grad_x CE = (softmax(x W + b) - onehot(y)) W^T, then clip."""
    logits = x @ params["w"] + params["b"]
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    grad_x = (p - np.eye(p.shape[1])[y]) @ params["w"].T
    x_adv = np.clip(x + epsilon * np.sign(grad_x), 0.0, 1.0)
    return np.mean((x_adv @ params["w"] + params["b"]).argmax(axis=1) == y)


@pytest.mark.parametrize("epsilon", [0.0, 0.05, 0.2, 0.6])
def test_fgsm_accuracy_matches_numpy_softmax_regression(x64, epsilon):
    params, x, y = linear_problem()
    got = adv.accuracy_under_fgsm(linear_apply, params, x, y, epsilon)
    np.testing.assert_allclose(float(got), numpy_fgsm_accuracy(params, x, y, epsilon))


def test_random_signs_at_zero_budget_is_clean_accuracy_and_stay_in_range(x64):
    params, x, y = linear_problem(1)
    clean = np.mean(linear_apply(params, x).argmax(1) == y)
    key = jax.random.key(0)
    got = adv.accuracy_under_random_signs(linear_apply, params, x, y, 0.0, key)
    np.testing.assert_allclose(float(got), clean, rtol=1e-6)

    # A model that reports whether every pixel moved by exactly eps (or was clipped to 0/1).
    epsilon = 0.3

    def probe(_, noisy):
        moved = jnp.abs(noisy - x)
        ok = jnp.isclose(moved, epsilon) | (noisy == 0.0) | (noisy == 1.0)
        inside = (noisy >= 0) & (noisy <= 1)
        good = jnp.all(ok & inside, axis=1)
        return jnp.stack([~good, good], axis=1).astype(jnp.float32)

    ones = np.ones(len(y), np.int32)
    assert float(adv.accuracy_under_random_signs(probe, None, x, ones, epsilon, key)) == 1.0


def test_adversarial_objective_gradient_is_the_mixture(x64):
    """grad = w grad J(x) + (1 - w) grad J(x_adv) with x_adv held fixed."""
    config = adv.get_config()
    config.hidden = (6,)
    config.epsilon = 0.15
    config.clean_weight = 0.3
    model = adv.MLP(features=(6, 3), activation="tanh")
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(10, 5))
    y = rng.integers(0, 3, size=10).astype(np.int32)
    task = adv.make_task(config, "adversarial", model, jnp.asarray(x[:1]))
    state = task.init(jax.random.key(0))
    params = jax.tree.map(lambda a: a.astype(np.float64), state.params)

    def ce(p, inputs):
        logits = model.apply({"params": p}, inputs)
        return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(len(y)), y])

    x_adv = np.clip(x + config.epsilon * np.sign(jax.grad(ce, argnums=1)(params, x)), 0, 1)
    w = config.clean_weight
    expected = jax.tree.map(
        lambda a, b: w * a + (1 - w) * b, jax.grad(ce)(params, x), jax.grad(ce)(params, x_adv)
    )
    objective = adv.adversarial_objective(model, config)
    grad_fn = jax.jit(jax.grad(objective, has_aux=True))
    grads, (metrics, _) = grad_fn(params, {}, {"x": x, "y": y}, None)
    for got, want in zip(jax.tree.leaves(grads), jax.tree.leaves(expected)):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(metrics["adversarial_loss"], ce(params, x_adv), rtol=1e-12)


def test_config_checks_and_paper_preset():
    config = adv.get_config()
    config.epsilon = 0.0
    with pytest.raises(ConfigError, match="epsilon"):
        check(config, adv.RULES)
    with pytest.raises(ConfigError, match="eval_epsilons"):
        adv.check_epsilons((0.1, 1.5))
    assert adv.check_epsilons((0, 0.1)) == (0.0, 0.1)
    config = adv.get_config()
    config.scale = "paper"
    paper = adv.apply_preset(config)
    assert (paper.dataset, paper.epsilon, paper.clean_weight) == ("mnist", 0.25, 0.5)
    assert adv.apply_preset(adv.get_config()).epsilon == adv.get_config().epsilon


def test_experiment_end_to_end(tmp_path):
    config = adv.get_config()
    config.update(epochs=3, seeds=2, progress=False, hidden=(32,), eval_epsilons=(0.0, 0.1, 0.3))
    config.examples = 4
    results = adv.train_and_evaluate(config, tmp_path)
    for name in ("report.md", "accuracy_vs_epsilon.png", "examples.png", "curves_standard.png"):
        assert (tmp_path / name).exists(), name
    report = (tmp_path / "report.md").read_text()
    assert "Goodfellow" in report
    # The sweep table's means: epsilon | FGSM standard, adversarial | random standard, adv.
    sweep = {}
    for line in report.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[0] in ("0", "0.1", "0.3"):
            sweep[float(cells[0])] = [float(c.split(" ± ")[0]) for c in cells[1:]]
    gain = results["fgsm_accuracy"]["adversarial"]
    attacked = {"standard": results["fgsm_accuracy"]["standard"], "adversarial": gain.values}
    for column, mode in enumerate(adv.MODES):
        clean = results["clean_accuracy"][mode]
        assert np.shape(clean) == np.shape(attacked[mode]) == (2,) and np.min(clean) > 0.5
        # epsilon = 0 is no attack at all; larger budgets never help the model; the sweep at
        # the training epsilon gives the figure of the last evaluation.
        assert abs(sweep[0.0][column] - np.mean(clean)) <= 1e-4
        assert abs(sweep[0.1][column] - np.mean(attacked[mode])) <= 1e-4
        assert sweep[0.3][column] <= sweep[0.1][column] + 1e-4 <= sweep[0.0][column] + 2e-4
    # Three epochs already make adversarial training the more robust model on every seed
    # (observed 0.370 and 0.351 against 0.309 and 0.315), and the report's paired comparison
    # counts both seeds; with 2 seeds its t-interval is too wide to call it established, and
    # the figure's verdict follows the interval.
    assert gain.reference == pytest.approx(np.mean(attacked["standard"]))
    assert np.all(gain.values > attacked["standard"] + 0.02)
    assert "adversarial training better in 2/2 paired seeds" in report
    assert gain.verdict() == "matches" and "is not established here" in report
    random_signs = results["random_sign_accuracy"]["standard"]
    assert abs(sweep[0.1][2] - np.mean(random_signs)) <= 1e-4
    assert np.mean(random_signs) > np.mean(attacked["standard"])
    for mode in adv.MODES:
        records = train.read_metrics(tmp_path / mode)
        np.testing.assert_allclose(records[-1]["test/fgsm_accuracy"], attacked[mode], atol=1e-6)
        assert [r["epoch"] for r in records] == [1, 2, 3]
        assert {"val/fgsm_accuracy", "test/fgsm_accuracy", "test/accuracy"} <= set(records[-1])
    assert "train/adversarial_loss" in records[-1]  # the adversarial objective's metrics
