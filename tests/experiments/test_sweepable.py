"""Sweeps over the topics of the second half of the course: each one that lists ``SWEEPABLE``
keys names float config keys that the sweep checks accept, and each one that lists none is
refused a sweep with one line before anything compiles."""

import importlib

import pytest

from lexicon import cli
from lexicon.rules import ConfigError
from lexicon.train import sweep as sweeps

SWEPT = {  # topic -> the keys it lets a sweep change
    "vae": ("lr", "adam_eps"),
    "rnn": ("lr", "mnist_lr"),
    "recommender": ("lr",),
    "federated": ("lr",),
    "dqn": ("lr", "gamma", "tau", "huber_delta", "eps_start", "eps_end"),
    "qlearning": ("alpha", "omega", "eps_start", "eps_end"),
    "gan_digits": ("lr", "beta1", "r1"),
    "gan_theory": ("lr",),
    "rbm": ("lr", "weight_decay", "gaussian_lr"),
    "dbn": ("finetune_lr",),
    "autoencoders": ("l1", "rho", "beta", "contractive"),
}
# Their swept keys would reach train.stages (which takes tasks, not builders) or a fit that
# starts from the state of an earlier swept fit (see each module): no SWEEPABLE.
UNSWEPT = {
    "embeddings": "alpha",
    "gan_ring": "lr",
    "pretraining": "lr",
}


@pytest.mark.parametrize("topic", sorted(SWEPT))
def test_sweepable_keys_are_float_config_keys_the_sweep_check_accepts(topic):
    module = importlib.import_module(f"experiments.{topic}")
    assert tuple(module.SWEEPABLE) == SWEPT[topic]
    config = cli.full_config(module.get_config)
    rules = cli.rules_for(config, module.RULES)
    for key in module.SWEEPABLE:
        default = config[key]
        assert isinstance(default, float), (key, default)
        grid = sweeps.parse(f"{key}={default!r},{default * 0.5!r}")
        sweeps.check(grid, config, module.SWEEPABLE, rules)  # raises on a refused key
    with pytest.raises(ConfigError, match="cannot be swept"):
        sweeps.check(sweeps.parse("seeds=1.0,2.0"), config, module.SWEEPABLE, rules)


@pytest.mark.parametrize("topic", sorted(UNSWEPT))
def test_a_topic_without_sweepable_keys_refuses_a_sweep_with_one_line(topic, capsys):
    module = importlib.import_module(f"experiments.{topic}")
    assert not getattr(module, "SWEEPABLE", ())
    argv = [topic, f"--config.sweep={UNSWEPT[topic]}=0.01,0.1"]
    with pytest.raises(SystemExit) as stop:
        cli.run(module.get_config, module.train_and_evaluate, module.RULES, argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "cannot be swept" in err and "\n" not in err, err
