"""A tiny experiment for the tests of the command line and the host driver: least squares."""

import optax
from train_tasks import least_squares, regression_data

from lexicon import cli, report, train
from lexicon.rules import positive


def get_config():
    config = train.defaults()
    config.epochs = 3
    config.batch_size = 10
    config.lr = 0.05  # SGD step size
    return config


RULES = {"lr": positive()}


def train_and_evaluate(config, workdir):
    task = least_squares(optax.sgd(config.lr))
    result = train.fit(
        config, task, regression_data(), workdir, eval_splits={"val": regression_data(seed=1)}
    )
    return {"val_loss": report.Figure(result.final("val/loss"), reference=0.01, source="noise")}


if __name__ == "__main__":
    cli.run(get_config, train_and_evaluate, RULES)
