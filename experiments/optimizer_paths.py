"""The paths of the first-order optimizers (Alg 8.1-8.7) on two 2-D functions with known minima.

  quadratic   f = 1/2 (u^2 + kappa v^2) in axes (u, v) rotated from (x, y), ill-conditioned for
              kappa >> 1; minimum f = 0 at the origin.
  rosenbrock  f = (1 - x)^2 + 100 (y - x^2)^2, a curved valley; minimum f = 0 at (1, 1).
Seed i starts from a fixed point nudged by N(0, jitter^2) noise. The iterations are
``optim.minimize`` with no stopping test; Nesterov's methods are drawn at theta, not at the
carried look-ahead point. Each optimizer's block (its rate per function and its
hyperparameters) is data for ``optim.from_config``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from lexicon import cli, optim, train
from lexicon.optim import problems
from lexicon.optim.problems import quadratic, rosenbrock, sci, steps_to
from lexicon.report import Figure, Report
from lexicon.rules import ConfigError, Names, Range, nonnegative, positive, split_names

RATE_KEYS = ("lr_quadratic", "lr_rosenbrock")
# Each optimizer's rate on each function (the quadratic's, Rosenbrock's).
RATES = {
    "sgd": (0.035, 2e-3),
    "momentum": (5e-3, 1e-3),
    "nesterov": (5e-3, 1e-3),
    "ema_momentum": (0.035, 2e-3),
    "adagrad": (1.0, 0.5),
    "rmsprop": (0.02, 3e-3),
    "rmsprop_nesterov": (5e-3, 1e-3),
    "adam": (0.1, 0.05),
}


def get_config():
    config = train.defaults()
    config.seeds = 3
    config.optimizers = ",".join(optim.NAMES)  # comma-separated names from lexicon.optim.NAMES
    problems.add_blocks(config, {n: dict(zip(RATE_KEYS, r)) for n, r in RATES.items()})
    config.condition = 50.0  # kappa, ratio of the quadratic's two curvatures
    config.angle = 30.0  # rotation of the quadratic's axes in degrees (0: axis-aligned)
    config.quadratic_steps = 300  # iterations on the quadratic
    config.rosenbrock_steps = 2000  # iterations on Rosenbrock
    config.jitter = 0.05  # std of the per-seed nudge of the starting point (0: one start)
    config.surface_tol = 1e-6  # a path has reached the minimum once f <= this
    return config


RULES = {
    "optimizers": Names(optim.NAMES),
    "condition": Range(1.0),
    "angle": Range(-180.0, 180.0),
    "quadratic_steps": Range(1, 10_000_000),
    "rosenbrock_steps": Range(1, 10_000_000),
    "jitter": nonnegative(),
    "surface_tol": positive(),
    **problems.block_rules(RATE_KEYS),
}


def surfaces(config) -> dict:
    """name -> (f, start, known minimizer, steps, plotting window (x0, x1, y0, y1))."""
    return {
        "quadratic": (
            functools.partial(quadratic, condition=config.condition, angle_degrees=config.angle),
            np.array([-2.0, 1.5]),
            np.zeros(2),
            config.quadratic_steps,
            (-2.5, 2.5, -2.0, 2.0),
        ),
        "rosenbrock": (
            rosenbrock,
            np.array([-1.2, 1.0]),
            np.ones(2),
            config.rosenbrock_steps,
            (-2.0, 2.0, -1.0, 3.0),
        ),
    }


def all_paths(config, names, table) -> dict:
    """(surface, optimizer) -> (paths (seeds, steps + 1, 2), f along them), one program."""
    seeds = jnp.arange(config.seed, config.seed + config.seeds)
    nudges = jax.vmap(lambda s: jax.random.normal(train.stream(s, "init"), (2,)))(seeds)

    def run(nudges):
        paths = {}
        for surface, (f, start, _, steps, _) in table.items():
            starts = jnp.asarray(start, jnp.float32) + config.jitter * nudges
            for name in names:
                tx = problems.optimizer(config, name, f"lr_{surface}", rate_keys=RATE_KEYS)
                one = functools.partial(problems.descend, f, tx, steps=steps)
                paths[surface, name] = jax.vmap(one)(starts)
        return paths

    return jax.tree.map(np.asarray, jax.jit(run)(nudges))


def contour_figure(table, paths, names):
    """The paths of seed 0 on the contours of each function (log-spaced levels)."""
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.5))
    colors = plt.get_cmap("tab10")
    for ax, (surface, (f, start, minimum, _, window)) in zip(axes, table.items()):
        gx, gy = np.meshgrid(np.linspace(*window[:2], 300), np.linspace(*window[2:], 300))
        fz = np.asarray(jax.vmap(jax.vmap(f))(jnp.stack([gx, gy], axis=-1)))
        levels = np.geomspace(max(fz.min(), 1e-2), fz.max(), 30)
        ax.contour(gx, gy, fz, levels=levels, colors="0.7", linewidths=0.5)
        for i, name in enumerate(names):
            path = paths[surface, name][0][0]
            ax.plot(path[:, 0], path[:, 1], lw=1.2, color=colors(i), label=name)
        ax.plot(*start, "ko", ms=5, label="start (seed 0)")
        ax.plot(*minimum, "r*", ms=14, label="known minimum")
        ax.set(xlim=window[:2], ylim=window[2:], xlabel="x", ylabel="y", title=surface)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("Optimizer paths on the 2-D test functions (seed 0)")
    return fig


def train_and_evaluate(config, workdir):
    message = RULES["optimizers"].check("optimizers", config.optimizers)
    if message:
        raise ConfigError(message)
    names = split_names(config.optimizers)
    table = surfaces(config)
    paths = all_paths(config, names, table)
    rows, finals = [], {}
    for name in names:
        row = [name]
        for surface, (_, _, minimum, _, _) in table.items():
            path, values = paths[surface, name]
            distance = np.linalg.norm(path[:, -1] - minimum, axis=1)
            row += [sci(values[:, -1]), sci(distance), steps_to(values, config.surface_tol)]
            finals.setdefault(surface, {})[name] = values[:, -1].tolist()
        rows.append(row)
    rows.append(["**reference: known minimum**", "0", "0, at (0, 0)", "", "0", "0, at (1, 1)", ""])
    tol = f"steps to f <= {config.surface_tol:g}"
    report = Report(workdir, "First-order optimizers on 2-D test functions")
    report.text(
        f"Optimizers: {', '.join(names)}. Quadratic with condition number kappa = "
        f"{config.condition:g}, axes rotated by {config.angle:g} degrees, start (-2, 1.5), "
        f"{config.quadratic_steps} steps; Rosenbrock from (-1.2, 1), {config.rosenbrock_steps} "
        f"steps. Seed i starts from that point plus N(0, {config.jitter:g}^2) noise; the figure "
        "draws seed 0. Each optimizer has its own rate per function (`lr_quadratic`, "
        "`lr_rosenbrock`); Nesterov methods are drawn at theta."
    )
    report.table(
        ["optimizer", "quadratic: final f", "dist. to min", tol]
        + ["Rosenbrock: final f", "dist. to (1, 1)", tol],
        rows,
        caption="Final value and distance to the known minimizer (mean ± std over the starts)",
    )
    report.figure(
        contour_figure(table, paths, names),
        "surfaces",
        "optimizer paths on the contours of f (log-spaced levels)",
    )
    report.write()
    # final f per start against the known minimum f = 0, reached once f <= surface_tol
    return {
        "final_f": {
            surface: {
                name: Figure(
                    values, reference=0.0, source="known minimum", tolerance=config.surface_tol
                )
                for name, values in values_of.items()
            }
            for surface, values_of in finals.items()
        }
    }


if __name__ == "__main__":
    cli.run(get_config, train_and_evaluate, RULES)
