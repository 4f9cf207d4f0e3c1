"""Tabular Q-learning (SPEC §11) on FrozenLake (4x4 and 8x8, slippery or not) and a grid world.

The documents give the agent and its update: Q starts at 0; in state S_t the agent acts
epsilon-greedily on Q, sees R_{t+1} and S_{t+1}, and moves Q(S_t, A_t) toward the TD target
R_{t+1} + gamma max_a Q(S_{t+1}, a) by alpha times the TD error. Epsilon decays linearly, and
alpha may decay with each pair's visits (lexicon.rl.qlearning). Every seed trains at once, as
one compiled program per environment, through lexicon.train's custom-epoch driver.

Ground truth comes from the environment's own transition table (lexicon.rl.tabular):
- Q* by value iteration, against which the learned Q is measured (max |Q - Q*| over the
  states an agent acts from);
- the success rate of an episode (reaching the goal within the time limit of 100 steps on
  4x4, 200 on 8x8) is evaluated exactly for the greedy policy after each epoch, and held
  against its exact optimum by backward induction: 0.7442 on slippery 4x4, 0.9132 on
  slippery 8x8, 1 on the others. The optimum may act differently as time runs out; the best
  stationary policy (greedy in Q*) is shown beside it.
- the grid world's Q* is also known in closed form, gamma^d(s'), which value iteration must
  (and does) reproduce.
"""

from __future__ import annotations

import functools

import numpy as np

from lexicon import cli, report, sweeping, train
from lexicon.report import Report, mean_std
from lexicon.rl import envs, qlearning, tabular
from lexicon.rules import ConfigError, Names, Range, positive, probability

TABULAR = tuple(n for n in envs.NAMES if n.startswith("frozenlake") or n == "gridworld")
TOLERANCE = 0.03  # the success rate must lie this close to the exact optimum
# --config.sweep='alpha=0.5,1;omega=0.5,0.8': the step size and exploration, one program per
# environment (gamma also sets the exact Q*, computed on the host: one job per value)
SWEEPABLE = ("alpha", "omega", "eps_start", "eps_end")


def get_config():
    config = train.defaults()
    config.seeds = 4
    config.epochs = 40
    config.envs = ",".join(TABULAR)  # comma-separated tabular environments (lexicon.rl.envs)
    config.steps_per_epoch = 10_000  # Q-learning steps per epoch on a 4x4 map or the grid world
    config.scale_8x8 = 4  # an 8x8 map takes this many times more steps per epoch
    config.gamma = 0.99  # discount factor
    config.alpha = 1.0  # step size scale: alpha_t = alpha / n(s, a)^omega
    config.omega = 0.6  # decay exponent of the step size (0 = constant alpha)
    config.eps_start = 1.0  # epsilon at the first step
    config.eps_end = 0.1  # epsilon after the decay
    config.eps_fraction = 0.5  # fraction of training over which epsilon decays linearly
    config.grid_rows = 4  # grid world size (start top left, goal bottom right)
    config.grid_cols = 5  # grid world columns
    return config


RULES = {
    "envs": Names(TABULAR),
    "steps_per_epoch": Range(1, 10_000_000),
    "scale_8x8": Range(1, 1000),
    "gamma": Range(0.0, 1.0, open_hi=True),
    "alpha": positive(),
    "omega": Range(0.0, 1.0),
    "eps_start": probability(),
    "eps_end": probability(),
    "eps_fraction": probability(),
    "grid_rows": Range(1, 100),
    "grid_cols": Range(1, 100),
}


def check_config(config):
    if config.grid_rows * config.grid_cols < 2:
        raise ConfigError("the grid world needs at least 2 cells (a start and a goal)")


def make_env(config, name):
    if name == "gridworld":
        return envs.make(name, rows=config.grid_rows, cols=config.grid_cols)
    return envs.make(name)


def learn(config, name, workdir):
    """Q-learning on one environment, every seed at once; its figures and pictures."""
    env, params = make_env(config, name)
    table = tabular.build(env, params)
    q_star = tabular.value_iteration(table, config.gamma)
    horizon = params.max_steps_in_episode
    steps = config.steps_per_epoch * (config.scale_8x8 if env.nrow == 8 else 1)

    def task(run):  # a task builder: a sweep's grid point gets its own (traced) numbers
        hyper = qlearning.Hyper(
            gamma=run.gamma,
            alpha=run.alpha,
            omega=run.omega,
            eps_start=run.eps_start,
            eps_end=run.eps_end,
            eps_steps=int(run.eps_fraction * steps * run.epochs),
        )
        return qlearning.make_task(env, params, hyper, steps, table=table)

    result = train.fit(
        config,
        task,
        None,
        workdir / name,
        eval_splits={"eval": {"q_star": q_star.astype(np.float32)}},
    )
    q = np.asarray(result.state.q)
    return {
        "env": env,
        "result": result,
        "steps": steps,
        "optimum": tabular.finite_horizon_optimum(table, horizon),
        "stationary": float(tabular.policy_return(table, tabular.greedy(q_star), horizon)),
        "success": result.final("eval/success"),
        "q_error": result.final("eval/q_error"),
        "policy": tabular.policy_map(env, tabular.greedy(q[0])),
        "optimal_policy": tabular.policy_map(env, tabular.greedy(q_star)),
        "closed_form_gap": (
            float(np.abs(q_star - env.optimal_q(config.gamma)).max())
            if name == "gridworld"
            else None
        ),
    }


def train_and_evaluate(config, workdir):
    runs = {name: learn(config, name, workdir) for name in RULES["envs"].parse(config.envs)}

    rep = Report(workdir, "Tabular Q-learning (SPEC §11)")
    rep.text(
        f"Q-learning with Q_0 = 0, gamma = {config.gamma}, alpha_t = {config.alpha} / "
        f"n(s, a)^{config.omega}, epsilon {config.eps_start} -> {config.eps_end} linearly over "
        f"the first {config.eps_fraction:.0%} of training; {config.seeds} seeds, "
        f"{config.epochs} epochs. The greedy policy's success rate is computed exactly from "
        "the transition table after every epoch; the optimum is the exact finite-horizon one."
    )
    sweeping.note(rep, config)
    rep.figure(
        report.plot_curves(
            {
                name: (
                    run["result"].curve("eval/success")[0] * run["steps"],
                    run["result"].curve("eval/success")[1],
                )
                for name, run in runs.items()
            },
            xlabel="environment steps",
            ylabel="greedy success rate",
            title="Greedy policy success over training (seed mean ± std)",
        ),
        "success",
        "success rate of the greedy policy within the time limit, exact, per epoch",
    )
    rows = []
    for name, run in runs.items():
        rows.append(
            (
                name,
                f"{run['optimum']:.4f}",
                f"{run['stationary']:.4f}",
                mean_std(run["success"], 4),
                mean_std(run["q_error"], 4),
            )
        )
    rep.table(
        ["environment", "optimum (exact)", "greedy in Q*", "greedy in learned Q", "max |Q - Q*|"],
        rows,
        caption="success rate within the time limit; mean ± std over seeds",
    )
    for name, run in runs.items():
        maps = "\n".join(
            f"{learned}    {best}" for learned, best in zip(run["policy"], run["optimal_policy"])
        )
        rep.text(f"**{name}**: greedy policy of seed 0 (left) and of Q* (right)\n```\n{maps}\n```")
    if "gridworld" in runs:
        rep.text(
            "Grid world: value iteration matches the closed form Q*(s, a) = gamma^d(s') to "
            f"{runs['gridworld']['closed_form_gap']:.1e}."
        )
    rep.write()

    figures = {}
    for name, run in runs.items():
        figure = functools.partial(sweeping.figure, run["result"])  # one per grid point
        figures[name] = {
            "success": figure(
                run["success"],
                reference=run["optimum"],
                source="exact finite-horizon optimum by backward induction on the env's table",
                tolerance=TOLERANCE,
            ),
            "success_vs_greedy_q_star": figure(
                run["success"],
                reference=run["stationary"],
                source="the greedy policy of Q* (value iteration), exact",
                tolerance=TOLERANCE,
            ),
            "q_error": figure(run["q_error"]),
        }
    return figures


if __name__ == "__main__":
    cli.run(get_config, train_and_evaluate, RULES)
