"""A tiny experiment for the tests of the command line and the host driver: least squares.

Its learning rate can be swept (``--config.sweep='lr=0.01,0.05'``): the task is built from the
config by ``make_task``, which ``train.fit`` calls inside the compiled program of a sweep."""

import optax
from train_tasks import least_squares, regression_data

from lexicon import cli, report, train
from lexicon.rules import positive

SWEEPABLE = ("lr",)


def get_config():
    config = train.defaults()
    config.epochs = 3
    config.batch_size = 10
    config.lr = 0.05  # SGD step size
    return config


RULES = {"lr": positive()}


def make_task(config):
    return least_squares(optax.sgd(config.lr))


def train_and_evaluate(config, workdir):
    result = train.fit(
        config, make_task, regression_data(), workdir, eval_splits={"val": regression_data(seed=1)}
    )
    return {"val_loss": report.Figure(result.final("val/loss"), reference=0.01, source="noise")}


if __name__ == "__main__":
    cli.run(get_config, train_and_evaluate, RULES)
