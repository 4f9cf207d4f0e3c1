"""Single units: perceptron convergence and cycling, LMS vs least squares, XOR needs a hidden layer.

Three results about one unit and why a network needs hidden layers (SPEC §1 and §3,
document 001):

1. Perceptron rule w_i <- w_i + alpha (t - o) x_i with o = sign(w . x). On a linearly
   separable set it stops making mistakes (Rosenblatt), after at most (R / gamma)^2 updates
   when it starts from w = 0 (Novikoff's bound: R = max ||x_d||, gamma = the largest margin a
   unit-norm w achieves). On XOR no w classifies all four points, so it never stops: its
   weights stay bounded and cycle.
2. Delta rule (LMS, Widrow-Hoff) on a linear unit: batch gradient descent on
   E(w) = 1/2 sum_d (t_d - w . x_d)^2 converges to the least-squares solution, which we
   compare with ``numpy.linalg.lstsq``; the incremental rule dw_j = alpha (t - o) x_j settles
   within a distance that shrinks with alpha.
3. One hidden layer solves XOR: a small MLP trained through ``lexicon.train`` over several
   seeds classifies all four points, while the same network without the hidden layer (a
   linear classifier) cannot get more than three of them right.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from lexicon import cli, optim, train
from lexicon.nn import activations, units
from lexicon.nn.layers import MLP
from lexicon.nn.units import first_zero, perceptron_path, separable_set, smallest_period
from lexicon.report import Figure, Report, mean_std, plot_curves, scientific
from lexicon.report import figure as report_figure
from lexicon.rules import Choice, Range, check_batch_size, positive

XOR_INPUTS = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
XOR_LABELS = np.array([0, 1, 1, 0], np.int32)
SWEEPABLE = ("lr",)  # the XOR networks' rate (the perceptron and the delta rule run outside fit)


def get_config():
    config = train.defaults()
    config.seeds = 5  # replicas: perceptron orders and starts, LMS starts, XOR networks
    config.epochs = 60  # passes of the XOR network over its training split
    config.batch_size = 16  # minibatch of the XOR network
    config.separable_points = 100  # points of the linearly separable 2-D set
    config.margin = 0.05  # no separable point lies closer than this to the true line
    config.perceptron_epochs = 25  # passes of the perceptron rule over each set
    config.perceptron_alpha = 0.5  # alpha of the perceptron rule
    config.lms_examples = 200  # examples of the LMS regression problem
    config.lms_features = 5  # inputs of the linear unit, the constant bias input included
    config.lms_noise = 0.5  # std of the Gaussian noise added to the LMS targets
    config.lms_epochs = 200  # passes of the delta rule over the LMS data
    config.lms_rate = 0.5  # batch LMS alpha as a fraction of the limit 2 / lambda_max(X^T X)
    config.lms_alpha = 0.01  # alpha of incremental LMS (it also runs with alpha / 10)
    config.hidden = 4  # hidden units of the XOR network
    config.activation = "tanh"  # hidden activation of the XOR network
    config.lr = 0.5  # SGD learning rate of the XOR networks
    config.xor_copies = 32  # copies of the 4 XOR points in the XOR training split
    return config


RULES = {
    "separable_points": Range(4, 100_000),
    "margin": Range(0, 0.5, open_lo=True),
    "perceptron_epochs": Range(1, 10_000),
    "perceptron_alpha": positive(),
    "lms_examples": Range(2, 1_000_000),
    "lms_features": Range(2, 1000),
    "lms_noise": Range(0),
    "lms_epochs": Range(1, 100_000),
    "lms_rate": Range(0, 1, open_lo=True),
    "lms_alpha": positive(),
    "hidden": Range(1, 4096),
    "activation": Choice(*activations.NAMES),
    "lr": positive(),
    "xor_copies": Range(1, 100_000),
}


def check_config(config):
    """Cross-key rules; cli.run checks them before anything compiles."""
    check_batch_size(config, 4 * config.xor_copies, of="XOR examples (4 x config.xor_copies)")


def seed_keys(config, stream: str) -> jax.Array:
    """One key per replica, from the same named streams lexicon.train uses."""
    return jax.vmap(lambda seed: train.stream(seed, stream))(train.replica_seeds(config))


# --- 1. the perceptron ------------------------------------------------------------------------


def run_perceptron(config):
    points, labels, true_line = separable_set(
        config.separable_points, config.margin, config.data_seed
    )
    x = units.add_bias_input(jnp.asarray(points))
    t = jnp.asarray(labels)
    epochs, alpha = config.perceptron_epochs, config.perceptron_alpha
    # Novikoff's bound holds from w = 0; the replicas differ in their visiting orders.
    separable = jax.vmap(lambda key: units.perceptron(x, t, jnp.zeros(3), alpha, epochs, key=key))(
        seed_keys(config, "data")
    )

    xor_x = units.add_bias_input(jnp.asarray(XOR_INPUTS))
    xor_t = jnp.asarray(2.0 * XOR_LABELS - 1)
    # In a fixed order, the replicas differ in their initial weights.
    starts = jax.vmap(lambda key: 0.5 * jax.random.normal(key, (3,)))(seed_keys(config, "init"))
    xor = jax.vmap(lambda w0: units.perceptron(xor_x, xor_t, w0, alpha, epochs))(starts)
    trajectory = jax.vmap(lambda w0: perceptron_path(xor_x, xor_t, w0, alpha, 3))(starts)

    radius, gamma, bound = units.novikoff_bound(np.asarray(x), labels)
    separable_mistakes = np.asarray(separable.mistakes)
    xor_mistakes = np.asarray(xor.mistakes)
    xor_weights = np.asarray(xor.weights)
    return {
        "points": points,
        "labels": labels,
        "true_line": true_line,
        "separable_weights": np.asarray(separable.weights[:, -1]),
        "separable_mistakes": separable_mistakes,
        "converged_epoch": first_zero(separable_mistakes),
        "total_mistakes": separable_mistakes.sum(axis=1),
        "radius": radius,
        "gamma": gamma,
        "bound": bound,
        "xor_mistakes": xor_mistakes,
        "xor_periods": np.array([smallest_period(w) for w in xor_weights]),
        "xor_max_weight": np.abs(xor_weights).max(axis=(1, 2)),
        "xor_trajectory": np.asarray(trajectory),
    }


# --- 2. the delta rule (LMS) ------------------------------------------------------------------


def run_lms(config):
    """Batch LMS at lms_rate x 2 / lambda_max, incremental LMS at lms_alpha and lms_alpha / 10,
    from the same starts; per rule, the distance to w_lstsq and E(w) after every epoch."""
    x, t = units.regression_set(
        config.lms_examples, config.lms_features, config.lms_noise, config.data_seed + 1
    )
    least_squares, minimum, lambda_max = units.least_squares(x, t)
    batch_alpha = config.lms_rate * 2.0 / lambda_max
    xj, tj, epochs = jnp.asarray(x), jnp.asarray(t), config.lms_epochs
    starts = jax.vmap(lambda key: jax.random.normal(key, (x.shape[1],)))(seed_keys(config, "init"))
    batch = jax.vmap(lambda w0: units.lms_batch(xj, tj, w0, batch_alpha, epochs))(starts)
    runs = {"batch": (batch_alpha, batch)}
    for alpha in (config.lms_alpha, config.lms_alpha / 10):
        rule = jax.vmap(lambda w0, key, a=alpha: units.lms_incremental(xj, tj, w0, a, epochs, key))
        runs[f"incremental, alpha={alpha:g}"] = (alpha, rule(starts, seed_keys(config, "data")))
    results = {}
    for name, (alpha, history) in runs.items():
        weights = np.asarray(history.weights, np.float64)  # (seeds, epochs, d)
        distance = np.linalg.norm(weights - least_squares, axis=-1)
        results[name] = {"alpha": alpha, "distance": distance, "error": np.asarray(history.errors)}
    return results, least_squares, minimum, lambda_max


# --- 3. a hidden layer solves XOR -------------------------------------------------------------


def run_xor_network(config, workdir, hidden: bool):
    """Trains the XOR classifier through lexicon.train; with hidden=False it is linear."""
    features = (config.hidden, 2) if hidden else (2,)
    model = MLP(features, activation=config.activation)

    def task(config):  # a builder: in a sweep, each grid point's rate enters traced
        return train.classifier(model, optim.sgd(config.lr), jnp.zeros((1, 2)))

    copies = {
        "x": np.tile(XOR_INPUTS, (config.xor_copies, 1)),
        "y": np.tile(XOR_LABELS, config.xor_copies),
    }
    xor = {"x": XOR_INPUTS, "y": XOR_LABELS}
    name = "hidden" if hidden else "linear"
    result = train.fit(config, task, copies, workdir / name, eval_splits={"xor": xor})
    return model, result


# --- report -----------------------------------------------------------------------------------


def plot_perceptron(perceptron, config):
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    ax = axes[0]
    points, labels = perceptron["points"], perceptron["labels"]
    ax.scatter(*points[labels > 0].T, s=12, marker="o", label="t = +1")
    ax.scatter(*points[labels < 0].T, s=12, marker="x", label="t = -1")
    line = np.linspace(-1, 1, 2)
    (normal, offset) = perceptron["true_line"]
    ax.plot(line, -(normal[0] * line + offset) / normal[1], "k--", lw=1, label="true line")
    for i, w in enumerate(perceptron["separable_weights"]):
        ax.plot(line, -(w[1] * line + w[0]) / w[2], lw=1, alpha=0.7, label=f"seed {i}")
    ax.set(xlim=(-1, 1), ylim=(-1, 1), title="separable set: learned boundaries")
    ax.legend(fontsize=7)
    epochs = np.arange(1, config.perceptron_epochs + 1)
    mistakes = {
        "separable set": (epochs, perceptron["separable_mistakes"]),
        "XOR": (epochs, perceptron["xor_mistakes"]),
    }
    plot_curves(mistakes, ylabel="mistakes in the epoch", title="perceptron mistakes", ax=axes[1])
    ax = axes[2]
    trajectory = perceptron["xor_trajectory"][0]
    for i, label in enumerate(("w0 (bias)", "w1", "w2")):
        ax.plot(np.arange(1, len(trajectory) + 1), trajectory[:, i], marker=".", label=label)
    for boundary in range(4, len(trajectory), 4):
        ax.axvline(boundary + 0.5, color="grey", lw=0.5)
    ax.set(xlabel="example visited", ylabel="weight", title="XOR: weights cycle (seed 0)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_xor_network(networks):
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    accuracy = {name: result.curve("xor/accuracy") for name, (_, result) in networks.items()}
    plot_curves(accuracy, ylabel="accuracy on the 4 XOR points", ax=axes[0])
    grid_axis = np.linspace(-0.5, 1.5, 101, dtype=np.float32)
    gx, gy = np.meshgrid(grid_axis, grid_axis)
    grid = np.stack([gx.ravel(), gy.ravel()], axis=1)
    for ax, (name, (model, result)) in zip(axes[1:], networks.items()):
        params = jax.tree.map(lambda a: a[0], result.state.params)
        probability = jax.nn.softmax(model.apply({"params": params}, grid))[:, 1]
        probability = np.asarray(probability).reshape(gx.shape)
        image = ax.contourf(gx, gy, probability, levels=np.linspace(0, 1, 11), cmap="RdBu_r")
        ax.contour(gx, gy, probability, levels=[0.5], colors="k")
        ax.scatter(*XOR_INPUTS.T, c=XOR_LABELS, cmap="RdBu_r", edgecolors="k", s=80)
        ax.set(title=f"{name}: P(class 1), seed 0", xlabel="x1", ylabel="x2")
        fig.colorbar(image, ax=ax)
    fig.tight_layout()
    return fig


def train_and_evaluate(config, workdir):
    perceptron = run_perceptron(config)
    lms, least_squares, minimum, lambda_max = run_lms(config)
    hidden = f"{config.hidden} hidden {config.activation} units"
    networks = {
        hidden: run_xor_network(config, workdir, hidden=True),
        "no hidden layer": run_xor_network(config, workdir, hidden=False),
    }
    (_, hidden_result), (_, linear_result) = networks.values()

    report = Report(workdir, "Single units: perceptron, delta rule (LMS) and XOR")
    report.text(
        f"All figures are over {config.seeds} seeds (mean ± std). The perceptron runs "
        f"{config.perceptron_epochs} epochs with alpha = {config.perceptron_alpha}; on the "
        f"separable set ({config.separable_points} points, margin {config.margin}) it starts "
        "at w = 0 and the seeds visit the points in different random orders; on XOR it visits "
        "them in a fixed order and the seeds start from different random weights."
    )
    separable_converged = perceptron["converged_epoch"] > 0
    novikoff = f"({perceptron['radius']:.3f} / {perceptron['gamma']:.4f})^2"
    rows = [
        ("separable", "seeds that reach an epoch with 0 mistakes",
         f"{separable_converged.sum()} / {config.seeds}", "all (Rosenblatt)"),
        ("separable", "first epoch with 0 mistakes",
         mean_std(perceptron["converged_epoch"], 2), ""),
        ("separable", "total mistakes (= updates) over all epochs",
         mean_std(perceptron["total_mistakes"], 2),
         f"<= (R / gamma)^2 = {novikoff} = {perceptron['bound']:.1f} (Novikoff)"),
        ("XOR", "fewest mistakes in any epoch",
         mean_std(perceptron["xor_mistakes"].min(axis=1), 2), ">= 1 (not linearly separable)"),
        ("XOR", "period of the epoch-end weights", ", ".join(map(str, perceptron["xor_periods"])),
         "a cycle (perceptron cycling theorem)"),
        ("XOR", "largest abs(w_i) over all epochs",
         mean_std(perceptron["xor_max_weight"], 3), "bounded"),
    ]  # fmt: skip
    report.table(["set", "quantity", "measured", "reference"], rows, caption="Perceptron rule")
    report.figure(
        plot_perceptron(perceptron, config),
        "perceptron",
        "left: boundaries learned on the separable set; middle: mistakes per epoch; right: "
        "the XOR weights after every update for three epochs (grey lines: epoch ends)",
    )
    report.text(
        f"Delta rule on a linear unit with {config.lms_features} inputs (bias included), "
        f"{config.lms_examples} examples, target noise std {config.lms_noise}, "
        f"{config.lms_epochs} epochs; the seeds start from different random weights (and "
        f"visit the examples in different orders in the incremental rule). Batch alpha = "
        f"{config.lms_rate} x 2 / lambda_max(X^T X) with lambda_max = {lambda_max:.1f}."
    )
    report.table(
        ["rule", "alpha", "final ‖w - w_lstsq‖", "final E(w)", "E(w_lstsq) (numpy)"],
        [
            (
                name,
                f"{run['alpha']:.3g}",
                scientific(run["distance"][:, -1], 2),
                mean_std(run["error"][:, -1], 4),
                f"{minimum:.4f}",
            )
            for name, run in lms.items()
        ],
        caption="Delta rule (LMS) against numpy.linalg.lstsq "
        f"(w_lstsq = {np.array2string(least_squares, precision=4)})",
    )
    epochs = np.arange(1, config.lms_epochs + 1)
    distances = {name: (epochs, run["distance"]) for name, run in lms.items()}
    title = "delta rule vs numpy.linalg.lstsq"
    fig = plot_curves(distances, ylabel="||w - w_lstsq||", title=title, log_y=True)
    report.figure(fig, "lms", "distance to the least-squares weights per epoch")
    swept = "" if hidden_result.sweep is None else f" (swept: {config.sweep}; pooled below)"
    report.text(
        f"XOR through lexicon.train: {config.xor_copies} copies of the four points, minibatch "
        f"{config.batch_size}, plain SGD with learning rate {config.lr}{swept}, cross-entropy, "
        f"{config.epochs} epochs."
    )
    rows = []
    for (name, (_, result)), reference in zip(
        networks.items(), ("1.0 (one hidden layer suffices)", "<= 0.75 (no line separates XOR)")
    ):
        accuracy = result.final("xor/accuracy")
        solved = f"{int(np.sum(accuracy == 1.0))} / {len(accuracy)}"
        rows.append((name, mean_std(accuracy, 3), solved, reference))
    headers = ["network", "accuracy on the 4 XOR points", "seeds at 100%", "reference"]
    report.table(headers, rows, caption="A hidden layer solves XOR")
    report.figure(
        plot_xor_network(networks),
        "xor_network",
        "left: accuracy on the XOR points per epoch; right: the decision maps of seed 0",
    )
    report.write()

    return {
        "separable_converged": Figure(
            separable_converged.astype(np.float64),
            reference=1.0,
            source="Rosenblatt: every seed ends error-free",
            tolerance=0.0,
        ),
        "separable_updates": Figure(
            perceptron["total_mistakes"],
            reference=perceptron["bound"],
            source="Novikoff upper bound (R / gamma)^2",
        ),
        "xor_perceptron_min_mistakes": perceptron["xor_mistakes"].min(axis=1),
        "lms_distance": Figure(
            lms["batch"]["distance"][:, -1],
            reference=0.0,
            source="numpy.linalg.lstsq",
            tolerance=1e-4,  # batch LMS reaches the least-squares weights (float32)
        ),
        "xor_hidden_accuracy": report_figure(  # one figure per grid point in a sweep
            hidden_result,
            "xor/accuracy",
            reference=1.0,
            source="one hidden layer solves XOR",
            tolerance=0.0,
        ),
        "xor_linear_accuracy": report_figure(linear_result, "xor/accuracy"),
    }


if __name__ == "__main__":
    cli.run(get_config, train_and_evaluate, RULES)
