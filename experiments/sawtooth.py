"""Depth buys an exponential saving: a sawtooth that k ReLU layers compute with 6k + 1 parameters.

The triangle map T(x) = 2x for x < 1/2, 2 - 2x otherwise, sends [0, 1] onto itself; composed k
times it is a sawtooth T^k with 2^(k-1) teeth and 2^k linear pieces. On [0, 1],
T(x) = 2 relu(x) - 4 relu(x - 1/2), so a deep ReLU net with k hidden layers of 2 units
computes T^k exactly with 6k + 1 parameters. A shallow net (one hidden layer,
f(x) = w phi(x) + b) adds at most one breakpoint per unit, so it needs at least 2^k - 1 units:
its parameter count grows exponentially with k (document 001, "Shallow vs. Deep"; SPEC §3
and §14). Both constructions are set by hand here and checked in float64 for k = 1..max_k
(lexicon.sawtooth); experiments/depth.py asks whether gradient descent finds such nets.
"""

from __future__ import annotations

from lexicon import cli, train
from lexicon.report import Report, panels
from lexicon.rules import Range
from lexicon.sawtooth import exact_sizes, plot_sizes, sizes_table


def get_config():
    config = train.defaults()
    config.max_k = 10  # the exact constructions are checked for k = 1 .. max_k
    return config


RULES = {"max_k": Range(1, 16)}


def train_and_evaluate(config, workdir):
    sizes = exact_sizes(config.max_k)
    report = Report(workdir, "Exact ReLU constructions of the sawtooth T^k")
    sizes_table(report, sizes)
    fig, (ax,) = panels(1, size=(5.5, 4.2))
    plot_sizes(ax, sizes)
    report.figure(fig, "sizes", "parameters of the exact constructions against k")
    report.write()
    return {
        "largest_error": max(max(r["deep_error"], r["shallow_error"]) for r in sizes),
        "deep_params": [r["deep"] for r in sizes],
        "shallow_params": [r["shallow"] for r in sizes],
    }


if __name__ == "__main__":
    cli.run(get_config, train_and_evaluate, RULES)
