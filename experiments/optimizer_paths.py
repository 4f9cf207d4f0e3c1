"""The paths of the first-order optimizers (Alg 8.1-8.7) on 2-D functions, and the hard landscapes.

  quadratic   f = 1/2 (u^2 + kappa v^2) in axes (u, v) rotated from (x, y), ill-conditioned for
              kappa >> 1; minimum f = 0 at the origin.
  rosenbrock  f = (1 - x)^2 + 100 (y - x^2)^2, a curved valley; minimum f = 0 at (1, 1).
Seed i starts from a fixed point nudged by N(0, jitter^2) noise. The iterations are
``optim.minimize`` with no stopping test; Nesterov's methods are drawn at theta, not at the
carried look-ahead point. Each optimizer's block (its rate per function and its
hyperparameters) is data for ``optim.from_config``.

The hard landscapes (documents 000 and 001, SPEC §14; ``lexicon.optim.problems``) show the
difficulties of optimization, each with its rate over the seeds:
  local minimum  the tilted double well (x^2 - 1)^2 + tilt x + y^2/2 as a finite sum of N
                 terms f + xi_i . theta (xi_i centered, std s): full-batch descent settles in
                 the shallow minimum near x = +1; minibatches of m add gradient noise of
                 variance ~ s^2/m that can carry it to the global one near x = -1;
  plateau        1 - exp(-r^2/2) from r ~ 4, where the gradient is ~1e-3: steps until f < 1/2;
  saddle         x^2/2 - y^2/2 + y^4/4 from (1.5, ~1e-3): gradient descent is slowed near the
                 saddle and leaves it, faster with minibatch noise; Newton's method (Alg 8.8),
                 which solves grad = 0, is drawn to the saddle and stays;
  cliff          a bowl with a drop of height 10 over ~0.02 at x = 1.5: an iterate that lands
                 on the cliff face (gradient ~125) is thrown far; clipping the gradient's norm
                 at c (g <- g c/||g|| if ||g|| > c; Pascanu et al. 2013) bounds a step by eps c.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax

from lexicon import cli, optim, train
from lexicon.optim import problems
from lexicon.optim.problems import quadratic, rosenbrock, sci, steps_to
from lexicon.report import Figure, Report, compare
from lexicon.rules import ConfigError, Items, Names, Range, nonnegative, positive, split_names

RATE_KEYS = ("lr_quadratic", "lr_rosenbrock", "lr_plateau")
# Each optimizer's rate on each function (the quadratic's, Rosenbrock's, the plateau's).
RATES = {
    "sgd": (0.035, 2e-3, 1.0),
    "momentum": (5e-3, 1e-3, 0.1),
    "nesterov": (5e-3, 1e-3, 0.1),
    "ema_momentum": (0.035, 2e-3, 1.0),
    "adagrad": (1.0, 0.5, 0.1),
    "rmsprop": (0.02, 3e-3, 0.01),
    "rmsprop_nesterov": (5e-3, 1e-3, 0.01),
    "adam": (0.1, 0.05, 0.05),
}


def get_config():
    config = train.defaults()
    config.seeds = 20  # starts (and, on the hard landscapes, noise draws) solved together
    config.optimizers = ",".join(optim.NAMES)  # comma-separated names from lexicon.optim.NAMES
    problems.add_blocks(config, {n: dict(zip(RATE_KEYS, r)) for n, r in RATES.items()})
    config.condition = 50.0  # kappa, ratio of the quadratic's two curvatures
    config.angle = 30.0  # rotation of the quadratic's axes in degrees (0: axis-aligned)
    config.quadratic_steps = 300  # iterations on the quadratic
    config.rosenbrock_steps = 2000  # iterations on Rosenbrock
    config.jitter = 0.05  # std of the per-seed nudge of the starting point (0: one start)
    config.surface_tol = 1e-6  # a path has reached the minimum once f <= this
    config.landscapes = True  # also run the hard landscapes (local minimum, plateau, saddle, cliff)
    config.examples = 64  # N, terms of the finite sums (local minimum, saddle)
    config.batch_sizes = (1, 4, 16)  # minibatch sizes m beside the full batch N
    config.tilt = 0.3  # of the double well: f ~ +tilt at the local minimum, -tilt at the global
    config.well_noise = 3.0  # s, std of each xi_i on the double well
    config.well_lr = 0.1  # eps_0 on the double well, decayed linearly to eps_0 / 100
    config.well_steps = 1000
    config.plateau_steps = 500
    config.saddle_noise = 1.0  # s on the saddle
    config.saddle_lr = 0.1
    config.saddle_steps = 200
    config.cliff_lr = 0.1
    config.cliff_steps = 100
    config.clip_norm = 1.0  # c of gradient clipping on the cliff
    config.thrown = 1.0  # a step longer than this counts as thrown by the cliff
    return config


RULES = {
    "optimizers": Names(optim.NAMES),
    "condition": Range(1.0),
    "angle": Range(-180.0, 180.0),
    "quadratic_steps": Range(1, 10_000_000),
    "rosenbrock_steps": Range(1, 10_000_000),
    "jitter": nonnegative(),
    "surface_tol": positive(),
    "examples": Range(2, 100_000),
    "batch_sizes": Items(Range(1, 100_000), kind=int, min_len=1),
    "tilt": nonnegative(),
    **{key: positive() for key in ("well_noise", "well_lr", "saddle_noise", "saddle_lr")},
    **{key: positive() for key in ("cliff_lr", "clip_norm", "thrown")},
    **{key: Range(1, 1_000_000) for key in ("well_steps", "plateau_steps", "saddle_steps")},
    "cliff_steps": Range(1, 1_000_000),
    **problems.block_rules(RATE_KEYS),
}


def check_config(config):
    """A minibatch holds at most the N examples of the finite sums."""
    if max(config.batch_sizes) > config.examples:
        raise ConfigError(
            f"config.batch_sizes={tuple(config.batch_sizes)} exceed config.examples="
            f"{config.examples}; use sizes in [1, {config.examples}]"
        )


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


def all_paths(config, names, table, nudges) -> dict:
    """(surface, optimizer) -> (paths (seeds, steps + 1, 2), f along them), one program."""

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
    for ax, (surface, (f, _, minimum, _, window)) in zip(axes, table.items()):
        drawn = {name: paths[surface, name][0] for name in names}
        problems.draw_paths(ax, f, window, drawn, title=surface, log_levels=True)
        ax.plot(*minimum, "r*", ms=14, label="known minimum")
        ax.legend(fontsize=7)
    fig.suptitle("Optimizer paths on the 2-D test functions (seed 0)")
    return fig


# --- the hard landscapes ------------------------------------------------------------------------

LANDSCAPES = {  # name -> (f, start, plotting window)
    "local minimum": (problems.tilted_double_well, (1.5, 1.0), (-2.0, 2.0, -1.5, 1.5)),
    "plateau": (problems.plateau, (4.0, 0.5), (-1.5, 5.0, -2.0, 2.0)),
    "saddle": (problems.saddle, (1.5, 0.0), (-0.5, 2.0, -1.6, 1.6)),
    "cliff": (problems.cliff, (3.0, 0.5), (-7.5, 3.5, -2.0, 2.0)),
}
NEWTON = "Newton (Alg 8.8)"
CLAIMS = {  # what each landscape's verdict compares, per seed
    "local minimum": "ends in the global minimum, 1 or 0",
    "plateau": "first step at f < 1/2, lower is better",
    "saddle": "leaves the saddle, 1 or 0",
    "cliff": "longest step, lower is better",
}


def landscape_runs(config, names, nudges, functions):
    """surface -> label -> (paths (seeds, steps + 1, 2), f along them), one program."""
    seeds = jnp.arange(config.seed, config.seed + config.seeds)

    def starts(surface, scale=(0.05, 0.05)):
        return jnp.asarray(LANDSCAPES[surface][1]) + nudges * jnp.asarray(scale)

    def minibatches(surface, lr, noise, steps, scale=(0.05, 0.05)):
        sizes = (config.examples, *config.batch_sizes)
        options = {"examples": sizes[0], "scale": noise, "batch_sizes": sizes, "steps": steps}
        runs = problems.minibatch_runs(
            functions[surface], lr, starts(surface, scale), seeds, **options
        )
        return {f"full batch, N = {m}" if m == sizes[0] else f"m = {m}": r for m, r in runs.items()}

    def run():
        well_lr = optim.linear_decay(config.well_lr, config.well_lr / 100, config.well_steps)
        plateau = functools.partial(
            problems.descend_all, problems.plateau, steps=config.plateau_steps
        )
        runs = {
            "local minimum": minibatches(
                "local minimum", well_lr, config.well_noise, config.well_steps
            ),
            "plateau": {
                name: plateau(
                    problems.optimizer(config, name, "lr_plateau", rate_keys=RATE_KEYS),
                    starts("plateau"),
                )
                for name in names
            },
            "saddle": minibatches(
                "saddle", config.saddle_lr, config.saddle_noise, config.saddle_steps, (0.05, 1e-3)
            ),
        }
        saddle_starts = starts("saddle", (0.05, 1e-3))
        newton = jax.vmap(lambda s: optim.newton(problems.saddle, s, tol=0.0, max_iter=20))
        result = newton(saddle_starts)
        runs["saddle"][NEWTON] = (result.params_history, result.loss_history)
        clip = optax.chain(optax.clip_by_global_norm(config.clip_norm), optim.sgd(config.cliff_lr))
        runs["cliff"] = {
            label: problems.descend_all(
                problems.cliff, tx, starts("cliff"), steps=config.cliff_steps
            )
            for label, tx in (("no clipping", optim.sgd(config.cliff_lr)), ("clipped", clip))
        }
        order.update({surface: list(labelled) for surface, labelled in runs.items()})
        return runs

    order = {}  # the labels in the order they ran (a pytree's dicts come back sorted)
    runs = jax.jit(run)()
    return {s: {k: jax.tree.map(np.asarray, runs[s][k]) for k in order[s]} for s in order}


def events(config):
    """surface -> (what counts, per step (seeds, steps + 1) from paths and f, whether the rate
    counts it at the end or at any step)."""

    def thrown(paths, _):
        steps = np.linalg.norm(np.diff(paths, axis=1), axis=2)
        return np.pad(steps > config.thrown, ((0, 0), (1, 0)))

    return {
        "local minimum": ("in the global minimum (x < 0)", lambda p, v: p[:, :, 0] < 0, "end"),
        "plateau": ("off the plateau (f < 1/2)", lambda p, v: v < 0.5, "end"),
        "saddle": ("off the saddle (|y| > 1/2)", lambda p, v: np.abs(p[:, :, 1]) > 0.5, "end"),
        "cliff": (f"thrown (a step > {config.thrown:g})", thrown, "any"),
    }


def landscape_tables(config, runs):
    """surface -> (headers, rows, per label: the event per seed, its first step, the longest
    step)."""
    tables = {}
    for surface, (what, event, when) in events(config).items():
        rows, per_label = [], {}
        for label, (paths, values) in runs[surface].items():
            happened = np.nan_to_num(event(paths, values))
            counted = happened[:, -1] if when == "end" else happened.any(axis=1)
            longest = np.nanmax(np.linalg.norm(np.diff(paths, axis=1), axis=2), axis=1)
            first = problems.first_step(happened)
            per_label[label] = (counted, first, longest)
            final = sci(problems.last_finite(values))
            rows.append(
                (label, problems.rate(counted), problems.steps_text(first), sci(longest), final)
            )
        headers = ["method", f"{'ended' if when == 'end' else 'ever'} {what}", "first step there"]
        tables[surface] = (headers + ["longest step", "final f"], rows, per_label)
    return tables


def landscape_verdicts(config, tables, names) -> dict:
    """Each landscape's claim over paired seeds (the same starts, xi_i and minibatch draws)."""
    full, small = f"full batch, N = {config.examples}", f"m = {min(config.batch_sizes)}"
    well, saddle, cliff = (tables[s][2] for s in ("local minimum", "saddle", "cliff"))
    verdicts = {
        "local minimum": compare(
            well[small][0], well[full][0], paired=True, names=(f"minibatch {small}", "full batch")
        ),
        "saddle": compare(
            saddle[full][0], saddle[NEWTON][0], paired=True, names=("gradient descent", "Newton")
        ),
        "cliff": compare(
            cliff["clipped"][2],
            cliff["no clipping"][2],
            paired=True,
            higher_is_better=False,
            names=("clipped", "unclipped"),
        ),
    }
    if "adam" in names and "sgd" in names:
        plateau = {
            k: np.nan_to_num(v[1], nan=config.plateau_steps + 1)
            for k, v in tables["plateau"][2].items()
        }
        verdicts["plateau"] = compare(
            plateau["adam"],
            plateau["sgd"],
            paired=True,
            higher_is_better=False,
            names=("adam", "sgd"),
        )
    return verdicts


def landscapes(config, report, names, nudges) -> dict:
    """The hard landscapes: their rate tables, claims and paths; returns rates and verdicts."""
    functions = {name: f for name, (f, _, _) in LANDSCAPES.items()}
    functions["local minimum"] = functools.partial(problems.tilted_double_well, tilt=config.tilt)
    runs = landscape_runs(config, names, nudges, functions)
    tables = landscape_tables(config, runs)
    verdicts = landscape_verdicts(config, tables, names)
    report.text(
        f"## Hard landscapes\n\n{config.seeds} seeds, each from a fixed start plus N(0, 0.05^2) "
        f"noise (the saddle's y: N(0, 0.001^2)), with its own xi_i (N = {config.examples}) and "
        f"minibatch draws. Double well: tilt {config.tilt:g}, s = {config.well_noise:g}, eps "
        f"{config.well_lr:g} decayed linearly to 1% (Alg 8.1), {config.well_steps} steps. Plateau: "
        f"{config.plateau_steps} steps at each optimizer's `lr_plateau`. Saddle: s = "
        f"{config.saddle_noise:g}, eps {config.saddle_lr:g}, {config.saddle_steps} steps. Cliff: "
        f"SGD eps {config.cliff_lr:g}, {config.cliff_steps} steps, clipping at c = "
        f"{config.clip_norm:g}."
    )
    for surface, (headers, rows, _) in tables.items():
        report.table(headers, rows, caption=f"{surface} (rates over seeds)")
        if surface in verdicts:
            report.text(f"Claim ({CLAIMS[surface]}): {verdicts[surface].sentence}.")
    fig, axes = plt.subplots(1, 4, figsize=(22, 5))
    thrown = int(np.argmax(tables["cliff"][2]["no clipping"][0]))  # the first seed thrown
    for ax, (surface, labelled) in zip(axes, runs.items()):
        paths = {label: p for label, (p, _) in labelled.items()}
        seed = thrown if surface == "cliff" else 0
        problems.draw_paths(ax, functions[surface], LANDSCAPES[surface][2], paths, seed=seed)
        ax.set_title(f"{surface} (seed {seed})")
        ax.legend(fontsize=7)
    report.figure(fig, "landscapes", "paths on the hard landscapes (the cliff: a thrown seed)")
    return {
        "rates": {s: {k: float(np.mean(v[0])) for k, v in t[2].items()} for s, t in tables.items()},
        "verdicts": {s: v.verdict for s, v in verdicts.items()},
    }


def train_and_evaluate(config, workdir):
    message = RULES["optimizers"].check("optimizers", config.optimizers)
    if message:
        raise ConfigError(message)
    check_config(config)
    names = split_names(config.optimizers)
    table = surfaces(config)
    seeds = jnp.arange(config.seed, config.seed + config.seeds)
    nudges = jax.vmap(lambda s: jax.random.normal(train.stream(s, "init"), (2,)))(seeds)
    paths = all_paths(config, names, table, nudges)
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
    report = Report(workdir, "First-order optimizers on 2-D test functions and hard landscapes")
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
    hard = landscapes(config, report, names, nudges) if config.landscapes else {}
    report.write()
    # final f per start against the known minimum f = 0, reached once f <= surface_tol; the
    # hard landscapes' rates over seeds (fractions) and the verdicts of their claims
    return {
        "landscapes": hard,
        "final_f": {
            surface: {
                name: Figure(
                    values, reference=0.0, source="known minimum", tolerance=config.surface_tol
                )
                for name, values in values_of.items()
            }
            for surface, values_of in finals.items()
        },
    }


if __name__ == "__main__":
    cli.run(get_config, train_and_evaluate, RULES)
