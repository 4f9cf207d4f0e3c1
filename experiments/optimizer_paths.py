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
import numpy as np
import optax

from lexicon import cli, optim, rules, train
from lexicon.optim import problems, studies
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
    """The optimizers' names; a minibatch holds at most the N examples of the finite sums."""
    rules.check(config, {"optimizers": RULES["optimizers"]})
    if max(config.batch_sizes) > config.examples:
        raise ConfigError(
            f"config.batch_sizes={tuple(config.batch_sizes)} exceed config.examples="
            f"{config.examples}; use sizes in [1, {config.examples}]"
        )


SURFACES = {  # name -> (start, known minimizer, plotting window (x0, x1, y0, y1))
    "quadratic": ((-2.0, 1.5), (0.0, 0.0), (-2.5, 2.5, -2.0, 2.0)),
    "rosenbrock": ((-1.2, 1.0), (1.0, 1.0), (-2.0, 2.0, -1.0, 3.0)),
}


def surfaces(config) -> dict:
    """name -> (f, start, known minimizer, steps, plotting window)."""
    functions = {
        "quadratic": functools.partial(
            quadratic, condition=config.condition, angle_degrees=config.angle
        ),
        "rosenbrock": rosenbrock,
    }
    return {
        name: (functions[name], np.array(start), np.array(minimum), config[f"{name}_steps"], window)
        for name, (start, minimum, window) in SURFACES.items()
    }


def all_paths(config, names, table, nudges) -> dict:
    """(surface, optimizer) -> (paths (seeds, steps + 1, 2), f along them), one program."""

    def run(nudges):
        paths = {}
        for surface, (f, start, _, steps, _) in table.items():
            starts = jnp.asarray(start, jnp.float32) + config.jitter * nudges
            for name in names:
                tx = problems.optimizer(config, name, f"lr_{surface}", rate_keys=RATE_KEYS)
                paths[surface, name] = problems.descend_all(f, tx, starts, steps=steps)
        return paths

    return jax.tree.map(np.asarray, jax.jit(run)(nudges))


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
    sizes = (config.examples, *config.batch_sizes)
    labels = {m: f"full batch, N = {m}" if m == sizes[0] else f"m = {m}" for m in sizes}

    def starts(surface, scale=(0.05, 0.05)):
        return jnp.asarray(LANDSCAPES[surface][1]) + nudges * jnp.asarray(scale)

    def descend(surface, tx, steps):
        return problems.descend_all(functions[surface], tx, starts(surface), steps=steps)

    def run():
        well_lr = optim.linear_decay(config.well_lr, config.well_lr / 100, config.well_steps)
        well, saddle = starts("local minimum"), starts("saddle", (0.05, 1e-3))  # saddle: y ~ 1e-3
        runs = {}
        for surface, lr, start, noise, steps in (
            ("local minimum", well_lr, well, config.well_noise, config.well_steps),
            ("saddle", config.saddle_lr, saddle, config.saddle_noise, config.saddle_steps),
        ):
            options = {"examples": sizes[0], "scale": noise, "batch_sizes": sizes, "steps": steps}
            by_size = problems.minibatch_runs(functions[surface], lr, start, seeds, **options)
            runs[surface] = {labels[m]: paths for m, paths in by_size.items()}
        newton = jax.vmap(lambda s: optim.newton(problems.saddle, s, tol=0.0, max_iter=20))(saddle)
        runs["saddle"][NEWTON] = (newton.params_history, newton.loss_history)
        runs["plateau"] = {}
        for name in names:
            tx = problems.optimizer(config, name, "lr_plateau", rate_keys=RATE_KEYS)
            runs["plateau"][name] = descend("plateau", tx, config.plateau_steps)
        sgd = optim.sgd(config.cliff_lr)
        clipping = optax.clip_by_global_norm(config.clip_norm)  # g <- g min(1, c / ||g||)
        txs = {"no clipping": sgd, "clipped": optax.chain(clipping, sgd)}
        runs["cliff"] = {k: descend("cliff", tx, config.cliff_steps) for k, tx in txs.items()}
        order.update({surface: list(labelled) for surface, labelled in runs.items()})
        return runs

    order = {}  # the labels in the order they ran (a pytree's dicts come back sorted)
    runs = jax.jit(run)()
    return {s: {k: jax.tree.map(np.asarray, runs[s][k]) for k in order[s]} for s in LANDSCAPES}


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


def landscape_claims(config, names) -> dict:
    """Each landscape's claim over paired seeds (the same starts, xi_i and minibatch draws):
    surface -> (label, against, what it compares: 0 the event, 1 its first step, 2 the
    longest step, the names in the sentence); the event is better high, the others low."""
    full, small = f"full batch, N = {config.examples}", f"m = {min(config.batch_sizes)}"
    claims = {
        "local minimum": (small, full, 0, (f"minibatch {small}", "full batch")),
        "saddle": (full, NEWTON, 0, ("gradient descent", "Newton")),
        "cliff": ("clipped", "no clipping", 2, ("clipped", "unclipped")),
    }
    if "adam" in names and "sgd" in names:
        claims["plateau"] = ("adam", "sgd", 1, ("adam", "sgd"))
    return claims


def landscapes(config, report, names, nudges) -> dict:
    """The hard landscapes: their rate tables, claims and paths; returns rates and verdicts."""
    functions = {name: f for name, (f, _, _) in LANDSCAPES.items()}
    functions["local minimum"] = functools.partial(problems.tilted_double_well, tilt=config.tilt)
    runs = landscape_runs(config, names, nudges, functions)
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
    claims, counted, verdicts = landscape_claims(config, names), {}, {}
    for surface, (what, event, when) in events(config).items():
        rows, counted[surface] = studies.event_table(runs[surface], event, when)
        headers = ["method", f"{'ended' if when == 'end' else 'ever'} {what}", "first step there"]
        report.table(
            headers + ["longest step", "final f"], rows, caption=f"{surface} (rates over seeds)"
        )
        if surface in claims:
            label, against, measure, pair = claims[surface]
            values = [counted[surface][k][measure] for k in (label, against)]
            if measure == 1:  # a seed that never gets there counts one step past the run
                values = [np.nan_to_num(v, nan=config.plateau_steps + 1) for v in values]
            verdicts[surface] = compare(
                *values, paired=True, higher_is_better=not measure, names=pair
            )
            report.text(f"Claim ({CLAIMS[surface]}): {verdicts[surface].sentence}.")
    thrown = int(np.argmax(counted["cliff"]["no clipping"][0]))  # the first seed thrown
    panels = {}
    for surface, labelled in runs.items():
        seed = thrown if surface == "cliff" else 0
        paths = {label: p for label, (p, _) in labelled.items()}
        window = LANDSCAPES[surface][2]
        panels[f"{surface} (seed {seed})"] = (functions[surface], window, paths, seed, None)
    caption = "paths on the hard landscapes (the cliff: a thrown seed)"
    report.figure(studies.paths_figure(panels, size=(22, 5)), "landscapes", caption)
    return {
        "rates": {s: {k: float(np.mean(v[0])) for k, v in c.items()} for s, c in counted.items()},
        "verdicts": {s: verdicts[s].verdict for s in claims},
    }


def train_and_evaluate(config, workdir):
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
            # final f per start against the known minimum f = 0, reached once f <= surface_tol
            finals.setdefault(surface, {})[name] = Figure(
                values[:, -1].tolist(), 0.0, "known minimum", config.surface_tol
            )
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
    panels = {
        surface: (f, window, {name: paths[surface, name][0] for name in names}, 0, minimum)
        for surface, (f, _, minimum, _, window) in table.items()
    }
    title = "Optimizer paths on the 2-D test functions (seed 0)"
    fig = studies.paths_figure(panels, size=(13, 5.5), title=title, log_levels=True)
    report.figure(fig, "surfaces", "optimizer paths on the contours of f (log-spaced levels)")
    hard = landscapes(config, report, names, nudges) if config.landscapes else {}
    report.write()
    # the hard landscapes' rates over seeds (fractions) and the verdicts of their claims
    return {"landscapes": hard, "final_f": finals}


if __name__ == "__main__":
    cli.run(get_config, train_and_evaluate, RULES)
