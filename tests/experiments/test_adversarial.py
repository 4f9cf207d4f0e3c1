"""The adversarial experiment: its checks and preset, end to end (the attacks and the mixed
objective: tests/lexicon/test_adversarial.py)."""

import numpy as np
import pytest

from experiments import adversarial as adv
from lexicon import train
from lexicon.rules import ConfigError, check


def test_config_checks_and_paper_preset():
    config = adv.get_config()
    config.epsilon = 0.0
    with pytest.raises(ConfigError, match="epsilon"):
        check(config, adv.RULES)
    config = adv.get_config()
    config.eval_epsilons = (0.1, 1.5)
    with pytest.raises(ConfigError, match="eval_epsilons"):
        check(config, adv.RULES)
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
