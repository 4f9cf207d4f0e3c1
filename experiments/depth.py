"""Shallow vs deep: a sawtooth that k ReLU layers compute exactly, fit by shallow and deep nets.

The triangle map T(x) = 2x for x < 1/2, 2 - 2x otherwise, sends [0, 1] onto itself; composed k
times it is a sawtooth T^k with 2^(k-1) teeth and 2^k linear pieces. On [0, 1],
T(x) = 2 relu(x) - 4 relu(x - 1/2), so a deep ReLU net with k hidden layers of 2 units
computes T^k exactly with 6k + 1 parameters. A shallow net (one hidden layer,
f(x) = w phi(x) + b) adds at most one breakpoint per unit, so it needs at least 2^k - 1 units:
its parameter count grows exponentially with k. This is the document's claim that some
functions are represented far more efficiently by deep than by shallow architectures
(document 001, "Shallow vs. Deep"; SPEC §3 and §14).

The experiment fits T^k with wide shallow nets and deep narrow nets of matched parameter
counts (Adam, Alg. 8.7, with linear decay), and with a kernel machine, the shallow model
f(x) = sum_i alpha_i y_i k(x_i, x) + b with an RBF kernel (scikit-learn's SVR). The hand-set
deep and shallow constructions are evaluated next to them.
"""

from __future__ import annotations

import jax
import numpy as np

from lexicon import baselines, cli, losses, optim, runs, sawtooth, train
from lexicon.report import Figure, Report, compare, mean_std, panels, plot_curves
from lexicon.report import figure as report_figure
from lexicon.rules import ConfigError, Range, check_batch_size, positive

NOTHING_LEARNED_MSE = 1.0 / 12.0  # T^k maps U(0, 1) to U(0, 1), whose variance is 1/12
SWEEPABLE = ("lr",)  # --config.sweep='lr=0.003,0.03': every net's rates x seeds as one program


def get_config():
    config = train.defaults()
    config.seeds = 3
    config.epochs = 100
    config.batch_size = 512
    config.eval_every = 50
    config.k = 4  # compositions of the triangle map: the target has 2^k linear pieces
    config.num_train = 16384  # training inputs drawn uniformly from [0, 1] (data_seed)
    config.num_test = 4097  # evenly spaced test inputs covering [0, 1]
    config.min_width = 32  # narrowest shallow net; the next ones double its width
    config.num_widths = 4  # shallow nets in the sweep (and as many deep ones)
    config.deep_depth = 0  # hidden layers of the deep nets; 0 = k, the depth of the construction
    config.lr = 0.01  # eps_0 of Adam, decayed linearly to 1% over training
    config.svr_gamma = 1000.0  # RBF kernel k(x, x') = exp(-gamma (x - x')^2)
    config.svr_c = 10.0  # SVR penalty C on points outside the epsilon tube
    config.svr_eps_min = 0.01  # smallest SVR epsilon (most support vectors)
    config.svr_eps_max = 0.2  # largest SVR epsilon (fewest support vectors)
    config.num_svr = 6  # SVR fits, epsilon log-spaced between the two
    config.svr_train = 1024  # training points the SVR sees (the first of the training set)
    config.max_k = 10  # the exact constructions are checked for k = 1 .. max_k
    config.solved_mse = 1e-4  # a fit counts as (nearly) exact below this test MSE
    return config


RULES = {
    "k": Range(1, 12),
    "num_train": Range(2, 10_000_000),
    "num_test": Range(2, 10_000_000),
    "min_width": Range(1, 16384),
    "num_widths": Range(1, 12),
    "deep_depth": Range(0, 64),
    "lr": positive(),
    "svr_gamma": positive(),
    "svr_c": positive(),
    "svr_eps_min": positive(),
    "svr_eps_max": positive(),
    "num_svr": Range(1, 50),
    "svr_train": Range(2, 100_000),
    "max_k": Range(1, 16),
    "solved_mse": positive(),
}


def check_config(config):
    """Cross-key rules; cli.run checks them before anything compiles."""
    if config.svr_eps_max < config.svr_eps_min:
        raise ConfigError(
            f"config.svr_eps_max={config.svr_eps_max} is below svr_eps_min={config.svr_eps_min}"
        )
    check_batch_size(config, config.num_train, of="training inputs (config.num_train)")
    widest = config.min_width * 2 ** (config.num_widths - 1)
    if widest > 2**20:
        raise ConfigError(
            f"config.min_width={config.min_width} with num_widths={config.num_widths} makes "
            f"a layer of {widest} units; keep min_width * 2^(num_widths - 1) <= {2**20}"
        )


# --- training ----------------------------------------------------------------------------------


def make_task(config, widths, example):
    """Adam on the mean squared error of a ReLU net.

    The first layer's biases are reset to b = -w u with u ~ U(0, 1), which puts every first
    layer breakpoint -b / w inside [0, 1]; with the usual zero biases they would all sit at
    x = 0 and the net would start as a linear function of x.
    """
    model = sawtooth.relu_net(widths)
    steps = config.epochs * (config.num_train // (config.batch_size or config.num_train))
    tx = optim.adam(optim.linear_decay(config.lr, config.lr / 100, max(steps, 1)))

    def init(key):
        init_key, breakpoint_key = jax.random.split(key)
        params = model.init(init_key, example)["params"]
        kernel = params["Dense_0"]["kernel"]
        where = jax.random.uniform(breakpoint_key, kernel.shape[1:])
        params["Dense_0"]["bias"] = -kernel[0] * where
        return train.TrainState.create(apply_fn=model.apply, params=params, tx=tx)

    def loss_fn(params, model_state, batch, key):
        del key
        prediction = model.apply({"params": params}, batch["x"])
        return losses.mean_squared_error(prediction, batch["y"]), ({}, model_state)

    def evaluate(state, split):
        prediction = model.apply({"params": state.params}, split["x"])
        return {"mse": losses.mean_squared_error(prediction, split["y"])}

    return model, train.Task(init=init, make_step=train.gradient_step(loss_fn), evaluate=evaluate)


def fit_net(config, workdir, name, widths, data_split, test):
    """Trains the net of hidden ``widths`` (a sweep: every grid point); its test MSE per
    replica and the function the first replica computes on the test grid."""
    model, _ = make_task(config, widths, data_split["x"][:1])

    def task(run):  # a builder: a sweep traces the rate of each grid point
        return make_task(run, widths, data_split["x"][:1])[1]

    result = train.fit(config, task, data_split, workdir / name, eval_splits={"test": test})
    first_seed = runs.replica(result.state.params)
    return {
        "name": name,
        "widths": tuple(widths),
        "parameters": sawtooth.mlp_parameters(widths),
        "mse": result.final("test/mse"),
        "prediction": np.asarray(model.apply({"params": first_seed}, test["x"]))[:, 0],
        "result": result,
    }


# --- report ------------------------------------------------------------------------------------


FLOOR = 1e-7  # where an exact zero error is drawn on the log axis


def plot_results(config, shallow, deep, svr, exact, sizes, test):
    fig, axes = panels(3, size=(5.7, 4.6))
    ax = axes[0]
    trained = {
        "shallow (1 layer), trained": shallow,
        f"deep ({len(deep[0]['widths'])} layers), trained": deep,
    }
    curves = {
        k: ([r["parameters"] for r in v], np.stack([r["mse"] for r in v], 1))
        for k, v in trained.items()
    }
    plot_curves(curves, xlabel="parameters", ylabel="test MSE", ax=ax, log_y=True)
    ax.plot([r["parameters"] for r in svr], [r["mse"] for r in svr], "s-", color="C2",
            label="kernel machine (RBF SVR)")  # fmt: skip
    for key, marker in (("deep", "*"), ("shallow", "P")):
        label = f"{key} construction (hand-set), MSE {exact[key]['mse']:.1g}"
        ax.plot(exact[key]["parameters"], max(exact[key]["mse"], FLOOR), marker, color="k",
                markersize=13, label=label)  # fmt: skip
    ax.axhline(NOTHING_LEARNED_MSE, color="gray", ls="--", lw=1, label="predicting the mean (1/12)")
    ax.set(xscale="log", title=f"fitting the sawtooth T^{config.k}")
    ax.legend(fontsize=7)
    sawtooth.plot_sizes(axes[1], sizes)
    ax, grid = axes[2], test["x"][:, 0]
    ax.plot(grid, test["y"][:, 0], color="k", lw=2, label=f"T^{config.k}")
    best_svr = min(svr, key=lambda r: r["mse"])
    for name, r, colour in (("shallow", shallow[-1], "C0"), ("deep", deep[-1], "C3"),
                            ("SVR", best_svr, "C2")):  # fmt: skip
        label = f"{name}, {r['parameters']} params" + (" (seed 0)" if name != "SVR" else "")
        ax.plot(grid, r["prediction"], color=colour, lw=1, label=label)
    ax.set(xlabel="x", title="fitted functions (largest budget)")
    ax.legend(fontsize=7)
    return fig


def train_and_evaluate(config, workdir):
    check_config(config)
    depth = config.deep_depth or config.k
    swept = train.sweep.of(config) is not None
    over = "seeds and grid points; per point: the sweep tables" if swept else "seeds"
    data_split, test = sawtooth.sawtooth_data(
        config.k, config.num_train, config.num_test, config.data_seed
    )
    exact = {}
    constructions = {"deep": sawtooth.deep_construction, "shallow": sawtooth.shallow_construction}
    for key, build in constructions.items():
        model, params = build(config.k)
        prediction = model.apply({"params": params}, test["x"])
        exact[key] = {
            "parameters": sawtooth.count_parameters(params),
            "mse": float(losses.mean_squared_error(prediction, test["y"])),
        }
    # Shallow nets of doubling widths, each beside a deep net of (nearly) the same size.
    shallow, deep = [], []
    for width in [config.min_width * 2**i for i in range(config.num_widths)]:
        shallow.append(fit_net(config, workdir, f"shallow-{width}", [width], data_split, test))
        deep_width = sawtooth.matched_width(shallow[-1]["parameters"], depth)
        name = f"deep-{depth}x{deep_width}"
        deep.append(fit_net(config, workdir, name, [deep_width] * depth, data_split, test))
    svr = baselines.kernel_machines(data_split, test, config.svr_gamma, config.svr_c,
                                    np.geomspace(config.svr_eps_max, config.svr_eps_min,
                                                 config.num_svr), config.svr_train)  # fmt: skip
    sizes = sawtooth.exact_sizes(config.max_k)

    report = Report(workdir, "Shallow vs deep: fitting a sawtooth")
    report.text(
        f"Target: T^{config.k}, the triangle map composed {config.k} times "
        f"({2**config.k} linear pieces), sampled at {config.num_train} uniform training points; "
        f"test MSE on {config.num_test} evenly spaced points of [0, 1]. Trained nets: ReLU, "
        f"Adam (eps {config.lr} decayed linearly to 1%), batch {config.batch_size}, "
        f"{config.epochs} epochs, {config.seeds} seeds. Deep nets have {depth} hidden layers and "
        "the width that matches each shallow net's parameter count most closely. Kernel machine: "
        f"SVR with RBF kernel (gamma {config.svr_gamma:g}, C {config.svr_c:g}) on the first "
        f"{config.svr_train} training points, epsilon swept from {config.svr_eps_max:g} to "
        f"{config.svr_eps_min:g}; it counts 2 parameters per support vector (centre and "
        "coefficient) plus b, leaves the hand-picked gamma uncounted, and is deterministic "
        "(no spread over seeds). Predicting the mean of the target gives MSE 1/12."
    )
    report.figure(
        plot_results(config, shallow, deep, svr, exact, sizes, test),
        "depth",
        "left: test MSE vs parameters (trained nets: seed mean ± std); middle: parameters of "
        "the exact constructions vs k; right: fitted functions",
    )
    rows = [
        (f"{name} {'x'.join(map(str, r['widths']))}", r["parameters"], mean_std(r["mse"], 5))
        + (f"{np.min(r['mse']):.2e}",)
        for pair in zip(shallow, deep)
        for name, r in zip(("shallow", "deep"), pair)
    ]
    rows += [
        (f"SVR, epsilon {r['epsilon']:.3g} ({r['support_vectors']} support vectors)",)
        + (r["parameters"], f"{r['mse']:.5f}", "")
        for r in svr
    ]
    rows += [
        (f"hand-set {key} construction", exact[key]["parameters"], f"{exact[key]['mse']:.1e}", "")
        for key in ("deep", "shallow")
    ]
    report.table(
        ["model", "parameters", "test MSE", "best seed"],
        rows,
        caption=f"Test MSE on T^{config.k} (trained nets: mean ± std over {over})",
    )
    sawtooth.sizes_table(report, sizes)
    # Deep and shallow nets of a seed share the data order but not their initialization.
    judged = [
        compare(d["mse"], s["mse"], paired=False, higher_is_better=False, names=("deep", "shallow"))
        for s, d in zip(shallow, deep)
    ]
    wins = sum(np.mean(d["mse"]) < np.mean(s["mse"]) for s, d in zip(shallow, deep))
    # per kind, the budget with the lowest seed-mean test MSE
    trained = {"shallow": shallow, "deep": deep}
    best = {n: min(nets, key=lambda r: np.mean(r["mse"])) for n, nets in trained.items()}
    best_mse = {n: np.mean(r["mse"]) for n, r in best.items()}
    summary_text = (
        f"The hand-set deep net computes T^{config.k} with {exact['deep']['parameters']} "
        f"parameters (test MSE {exact['deep']['mse']:.1g}); the shallow construction needs "
        f"{exact['shallow']['parameters']}. Trained deep nets have the lower mean test MSE at "
        f"{wins} of {len(shallow)} matched budgets, and a lower MSE across seeds (Welch "
        f"interval below 0) at {sum(c.holds for c in judged)}. Best mean test MSE: shallow "
        f"{best_mse['shallow']:.2e}, deep {best_mse['deep']:.2e}, SVR "
        f"{min(r['mse'] for r in svr):.2e}."
    )
    closest = min(best_mse.values())
    if closest > config.solved_mse:
        summary_text += (
            f" No trained net gets below MSE {config.solved_mse:g} on average: depth makes the "
            f"sawtooth representable with {exact['deep']['parameters']} parameters, but "
            "gradient descent from a random start did not reliably find such a representation."
        )
    else:
        summary_text += f" Trained nets reach MSE {closest:.2e}, below {config.solved_mse:g}."
    budgets = [f"- {s['parameters']} parameters: {c.sentence}" for s, c in zip(shallow, judged)]
    report.text(summary_text + "\n\n" + "\n".join(budgets))
    report.write()
    figures = {}
    for key in ("deep", "shallow"):
        figures[f"{key}_construction_mse"] = Figure(
            exact[key]["mse"],
            reference=0.0,
            source=f"T^{config.k} itself (hand-set {key} ReLU net)",
            tolerance=1e-10,  # computes the sawtooth exactly, up to float32 rounding
        )
        figures[f"{key}_construction_params"] = exact[key]["parameters"]
    for name, net in best.items():
        figures[f"best_{name}_mse"] = net["mse"]  # per seed
    figures["deep_wins"] = int(wins)  # budgets (of num_widths) where deep's mean is lower
    figures["deep_wins_across_seeds"] = sum(c.holds for c in judged)  # by report.compare
    figures["best_svr_mse"] = min(r["mse"] for r in svr)
    if swept:  # every net's test MSE at every grid point
        figures.update({r["name"]: report_figure(r["result"], "test/mse") for r in shallow + deep})
    return figures


if __name__ == "__main__":
    cli.run(get_config, train_and_evaluate, RULES)
