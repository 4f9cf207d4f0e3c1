"""The recurrent-networks experiment: config rules, the paper preset, the crossover rule, runs."""

import numpy as np
import pytest

from experiments import rnn as experiment
from lexicon import cli


def tiny_config(**changes):
    config = experiment.get_config()
    config.update(dict(seeds=2, progress=False, hidden=16, test_size=200))
    config.update(changes)
    return config


def test_bad_input_stops_with_one_line(capsys):
    for flag, word in (
        ("--config.parts=mnist1d,typing", "forcing"),
        ("--config.adding_cells=elman,transformer", "lstm"),
        ("--config.mnist_readout=mean", "final"),
        ("--config.lengths=(1,)", "lengths"),
        ("--config.mnist_batch=5000", "mnist_batch"),
    ):
        with pytest.raises(SystemExit) as stop:
            cli.run(
                experiment.get_config,
                experiment.train_and_evaluate,
                experiment.RULES,
                ["rnn", flag],
            )
        assert stop.value.code == 2
        err = capsys.readouterr().err.strip()
        assert word in err and "\n" not in err, err


def test_paper_preset_is_the_published_gru():
    """Greydanus's GRUBase: bidirectional, 6 units, every step read out; Adam 1e-2, batch 100,
    6,000 steps over the 4,000 training signals; no clipping."""
    config = experiment.get_config()
    config.scale = "paper"
    run = experiment.settings(config)
    assert run.mnist_cells == "gru" and run.mnist_hidden == 6 and run.mnist_bidirectional
    assert run.mnist_readout == "all" and run.mnist_lr == 1e-2 and run.mnist_batch == 100
    assert run.mnist_epochs * 4000 // run.mnist_batch == 6000 and run.mnist_val_fraction == 0
    assert run.clip == 0 and experiment.optimizer(run, 1e-2) is not None


def test_clipping_is_a_global_norm_clip_before_adam():
    """config.clip chains optax.clip_by_global_norm before Adam; clip=0 is Adam alone. Two steps
    (the first gradient of norm 13 is clipped, the second not) tell the two apart."""
    import jax
    import jax.numpy as jnp
    import optax

    steps = [{"a": jnp.array([3.0, 4.0]), "b": jnp.array([12.0])}]
    steps.append({"a": jnp.array([0.3, -0.1]), "b": jnp.array([0.2])})

    def updates(tx):
        state, out = tx.init(steps[0]), []
        for grads in steps:
            update, state = tx.update(grads, state)
            out.append(update)
        return out

    config = experiment.get_config()
    clipped = updates(experiment.optimizer(config, 0.1))
    reference = updates(optax.chain(optax.clip_by_global_norm(1.0), optax.adam(0.1)))
    jax.tree.map(np.testing.assert_allclose, clipped, reference)
    config.clip = 0.0
    plain = updates(experiment.optimizer(config, 0.1))
    jax.tree.map(np.testing.assert_allclose, plain, updates(optax.adam(0.1)))
    assert not np.allclose(plain[1]["a"], clipped[1]["a"])


def test_crossover_is_where_elman_fails_and_lstm_solves_on_every_seed():
    lengths = (10, 50, 100, 200)
    errors = {
        "elman": np.array([[0.001, 0.01, 0.15, 0.16], [0.001, 0.02, 0.16, 0.17]]),
        "lstm": np.array([[0.001, 0.002, 0.003, 0.05], [0.001, 0.002, 0.02, 0.001]]),
    }
    # T=50: one Elman seed still solves (0.01 < 0.0167); T=100: an LSTM seed fails (0.02).
    assert experiment.crossover_length(lengths, errors, 0.0167) is None
    errors["lstm"][1, 2] = 0.004
    assert experiment.crossover_length(lengths, errors, 0.0167) == 100


def test_tiny_adding_run(tmp_path):
    """300 steps of an Elman network on the adding problem at T=5: every seed beats the
    baseline's 1/6 by a factor of 3, and at init the gradient reaching step 1 is smaller than
    the one at step T (each step back multiplies by diag(1 - h^2) W^T)."""
    config = tiny_config(parts="adding", adding_cells="elman", lengths=(5,), adding_epochs=3)
    figures = experiment.train_and_evaluate(config, tmp_path)["adding"]
    mse = np.asarray(figures["elman"]["test_mse_T5"].values)
    assert mse.shape == (2,) and np.all(mse < 1 / 18), mse
    assert np.all(np.asarray(figures["elman"]["gradient_ratio_init"].values) < 1)
    text = (tmp_path / "report.md").read_text()
    assert "adding problem" in text and "Crossover length" in text
    for name in ("adding_mse.png", "gradient_flow_init.png", "gradient_flow_trained.png"):
        assert (tmp_path / name).exists(), name


@pytest.mark.slow
def test_tiny_mnist1d_and_forcing(tmp_path):
    """Two MNIST-1D epochs of a GRU read out at every step (the published design) lift test
    accuracy well above the 10% of chance; the forcing part trains both ways and reports both
    forecast errors."""
    config = tiny_config(
        parts="mnist1d,forcing",
        mnist_cells="gru",
        mnist_readout="all",
        mnist_lr=1e-2,
        mnist_epochs=2,
        forcing_epochs=2,
        context=10,
        horizon=20,
    )
    figures = experiment.train_and_evaluate(config, tmp_path)
    assert np.all(np.asarray(figures["mnist1d"]["gru"]["test_accuracy"].values) > 0.25)
    for mode in ("teacher_forcing", "free_running"):
        for key in ("free_run_mse", "one_step_mse"):
            assert np.all(np.isfinite(figures["forcing"][mode][key].values))
    assert (tmp_path / "forecast.png").exists() and (tmp_path / "mnist1d.png").exists()


@pytest.mark.slow
def test_paper_gru_on_mnist1d(tmp_path):
    """The acceptance run: the published GRU setting, 3 seeds, within 3 points of 91%."""
    config = experiment.get_config()
    config.update(dict(scale="paper", parts="mnist1d", progress=False))
    figure = experiment.train_and_evaluate(config, tmp_path)["mnist1d"]["gru"]["test_accuracy"]
    assert figure.verdict() == "matches", figure.summary()


@pytest.mark.slow
def test_default_adding_sweep_has_a_crossover(tmp_path):
    """The acceptance run of part (b): the LSTM solves a length where the Elman network fails,
    on every one of 3 seeds."""
    config = experiment.get_config()
    config.update(dict(parts="adding", progress=False))
    figures = experiment.train_and_evaluate(config, tmp_path)["adding"]
    assert figures["crossover_length"] > 0
