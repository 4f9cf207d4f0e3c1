"""The GAN theory experiment: D*, the value -2 log 2, C(G) = -log 4 + 2 JSD, saturation."""

import json
import math

import numpy as np
import pytest

from experiments import gan_theory as experiment
from lexicon import cli


def test_bad_input_stops_with_one_line(capsys):
    for flag, word in (("--config.fake_std=0", "fake_std"), ("--config.hidden=(0,)", "hidden")):
        with pytest.raises(SystemExit) as stop:
            cli.run(
                experiment.get_config,
                experiment.train_and_evaluate,
                experiment.RULES,
                ["gan_theory", flag],
            )
        assert stop.value.code == 2
        err = capsys.readouterr().err.strip()
        assert word in err and "\n" not in err, err


def test_tiny_run(tmp_path):
    """One seed, 600 updates of D: D lies within 0.2 of D* wherever p_r + p_g >= 0.05; the value
    at p_g = p_r is -2 log 2 by quadrature, by Monte Carlo with D*, and within 0.01 with the
    trained D; C(G) = -log 4 + 2 JSD; the minimax gradient is ~D(G(z)) times the other's."""
    config = experiment.get_config()
    config.update(
        dict(seeds=1, epochs=2, steps_per_epoch=300, lr=1e-2, mc_samples=20_000, progress=False)
    )
    figures = experiment.train_and_evaluate(config, tmp_path)
    assert np.max(figures["d_max_error"].values) < 0.2  # a constant D = 1/2 is 0.4 off
    for name in ("value_equal_quadrature", "value_equal_mc_d_star"):
        np.testing.assert_allclose(figures[name].values, -2 * math.log(2), atol=1e-6)
    np.testing.assert_allclose(figures["value_equal_mc_learned"].values, -math.log(4), atol=0.01)
    c = figures["c_of_g_quadrature"]
    np.testing.assert_allclose(c.values, c.reference, atol=1e-6)
    assert -math.log(4) + 0.05 < c.values < 0  # p_g differs from p_r: JSD > 0
    assert abs(figures["c_of_g_mc"].values - c.values) < 0.02
    assert figures["learned_value_gap"].verdict() == "holds"
    ratio = figures["saturation_ratio_far"]
    assert ratio.values < 1e-3 and ratio.verdict() == "matches"
    for name in ("report.md", "d_star.png", "saturation.png"):
        assert (tmp_path / name).exists()


@pytest.mark.slow
def test_default_run_meets_d_star(tmp_path):
    config = experiment.get_config()
    config.progress = False
    figures = experiment.train_and_evaluate(config, tmp_path)
    assert figures["d_max_error"].verdict() == "holds", figures["d_max_error"].values


@pytest.mark.slow  # two compiled discriminators and the analysis: the fast sweeps are elsewhere
def test_a_step_size_sweep_trains_both_discriminators_per_grid_point(tmp_path):
    """--config.sweep='lr=1e-3,1e-2', 2 seeds, one program per discriminator: the larger step
    brings D closer to D* in every seed, each grid point has its own figure, and the sweep
    picks the larger step by the training loss (there is no validation split)."""
    argv = ["gan_theory", f"--workdir={tmp_path}", "--config.sweep=lr=1e-3,1e-2"]
    argv += ["--config.seeds=2", "--config.epochs=2", "--config.steps_per_epoch=300"]
    argv += ["--config.mc_samples=20000", "--config.progress=false"]
    cli.run(experiment.get_config, experiment.train_and_evaluate, experiment.RULES, argv)
    saved = json.loads((tmp_path / "results.json").read_text())
    slow, fast = (saved["figures"][f"d_max_error/lr={v}"]["per_seed"] for v in ("0.001", "0.01"))
    assert np.all(np.asarray(fast) < np.asarray(slow)), (slow, fast)
    sweep = saved["sweeps"]["d_star"]
    assert sweep["select"]["metric"] == "train/loss" and sweep["best"] == 1
    assert set(saved["sweeps"]) == {"d_star", "equal"}
    assert "A sweep over lr" in (tmp_path / "report.md").read_text()
