"""Losses: cross-entropy learns faster than MSE on saturating outputs; MSE is Gaussian likelihood.

SPEC §3 (documents 001 and 002).

Classification. A sigmoid output o = sigmoid(z) trained with the squared error
E = 1/2 (o - t)^2 gets the gradient dE/dz = (o - t) o (1 - o): when the unit is confidently
wrong (o near 0 while t = 1) the factor o (1 - o) makes it vanish, and learning stalls. With the
cross-entropy E = -[t log o + (1 - t) log(1 - o)] the factor cancels and dE/dz = o - t, which is
largest exactly there; a softmax output with cross-entropy gives p - t in the same way. The
experiment plots both gradients against z (jax.grad next to the closed forms), and trains the
same sigmoid-hidden-layer classifier on digits three ways (sigmoid outputs + MSE, sigmoid
outputs + cross-entropy, softmax + cross-entropy) with the same SGD, counting the steps each
needs to reach a target validation accuracy.

Regression. If p(y | x) = N(y; f(x; w), sigma^2), the negative log-likelihood is
1/N sum_n [1/2 log(2 pi sigma^2) + (y_n - f(x_n))^2 / (2 sigma^2)], so for any sigma its
minimizer in w is the minimizer of the MSE, and its minimizer in sigma is the root mean squared
residual. The experiment fits a noisy 1-D polynomial regression by gradient descent on the MSE
and, separately, on the Gaussian NLL in (w, log sigma), and compares both with the closed-form
least-squares solution of numpy.linalg.lstsq.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from lexicon import cli, data, losses, optim, train
from lexicon.nn.layers import MLP
from lexicon.report import Figure, Report, band, mean_std
from lexicon.rules import Choice, Range, check_batch_size, positive


def get_config():
    config = train.defaults()
    config.seeds = 3
    config.epochs = 30  # passes of the classifiers over the training split
    config.batch_size = 32
    config.hidden = 32  # sigmoid hidden units of the classifier
    config.lr = 0.5  # plain SGD learning rate, the same for every classification loss
    config.target_accuracy = 0.8  # validation accuracy whose first crossing is timed
    config.dataset = "digits"  # digits | mnist1d (any dataset of lexicon.data)
    config.regression_points = 200  # examples of the 1-D regression problem
    config.regression_noise = 0.3  # std of the Gaussian noise on the regression targets
    config.regression_degree = 3  # degree of the fitted (and of the true) polynomial
    config.regression_steps = 1500  # full-batch Adam steps of each regression fit
    config.regression_lr = 0.1  # Adam's initial rate, decayed linearly to 1% of it
    return config


RULES = {
    "hidden": Range(1, 4096),
    "lr": positive(),
    "target_accuracy": Range(0, 1, open_lo=True),
    "dataset": Choice(*data.DATASETS),
    "regression_points": Range(2, 1_000_000),
    "regression_noise": positive(),
    "regression_degree": Range(0, 20),
    "regression_steps": Range(1, 1_000_000),
    "regression_lr": positive(),
}


def check_config(config):
    """Cross-key rules; cli.run checks them before anything compiles."""
    check_batch_size(config, cli.train_examples(config.dataset, seed=config.data_seed))


# --- classification losses on logits z --------------------------------------------------------


def sigmoid_squared_error(logits, labels):
    """E = 1/2 sum_k (o_k - t_k)^2 with o = sigmoid(z) and one-hot t, averaged over examples."""
    targets = jax.nn.one_hot(labels, logits.shape[-1])
    return losses.half_sum_squared_error(jax.nn.sigmoid(logits), targets) / logits.shape[0]


def sigmoid_cross_entropy(logits, labels):
    """E = -sum_k [t_k log o_k + (1 - t_k) log(1 - o_k)], o = sigmoid(z), mean over examples."""
    targets = jax.nn.one_hot(labels, logits.shape[-1])
    per_output = losses.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    return jnp.sum(per_output) / logits.shape[0]


def softmax_cross_entropy(logits, labels):
    """E = -log softmax(z)_y, mean over examples."""
    return losses.softmax_cross_entropy_with_integer_labels(logits, labels)


CLASSIFIERS = {
    "sigmoid outputs + MSE": sigmoid_squared_error,
    "sigmoid outputs + cross-entropy": sigmoid_cross_entropy,
    "softmax + cross-entropy": softmax_cross_entropy,
}
SHORT = {  # the classifiers' names in results.json
    "sigmoid outputs + MSE": "sigmoid_mse",
    "sigmoid outputs + cross-entropy": "sigmoid_ce",
    "softmax + cross-entropy": "softmax_ce",
}


def output_gradients(z: np.ndarray, target: float):
    """dE/dz of one sigmoid output at logits z: (jax.grad MSE, jax.grad CE) in float32."""
    zj = jnp.asarray(z, jnp.float32)

    def squared(v):
        return 0.5 * (jax.nn.sigmoid(v) - target) ** 2

    def cross_entropy(v):
        return losses.binary_cross_entropy_with_logits(v, jnp.float32(target))

    mse = jax.jit(jax.vmap(jax.grad(squared)))(zj)
    ce = jax.jit(jax.vmap(jax.grad(cross_entropy)))(zj)
    return np.asarray(mse, np.float64), np.asarray(ce, np.float64)


def closed_form_gradients(z: np.ndarray, target: float):
    """The documents' dE/dz: MSE (o - t) o (1 - o), cross-entropy o - t, in float64."""
    o = 1 / (1 + np.exp(-np.asarray(z, np.float64)))
    return (o - target) * o * (1 - o), o - target


def steps_to_target(history: list[dict], target: float) -> np.ndarray:
    """Per seed, the training steps done when validation accuracy first reached ``target``
    (measured after every epoch); NaN where it never did."""
    accuracy = np.array([r["val/accuracy"] for r in history])  # (epochs, seeds)
    steps = np.array([r["step"] for r in history], np.float64)
    reached = accuracy >= target
    first = reached.argmax(axis=0)
    return np.where(reached.any(axis=0), steps[first], np.nan)


def speed_verdict(steps: dict, seeds: int) -> str:
    """Whether cross-entropy beat MSE (same sigmoid outputs) to the target, seed by seed."""
    mse, ce = steps["sigmoid outputs + MSE"], steps["sigmoid outputs + cross-entropy"]
    decided = np.isfinite(mse) | np.isfinite(ce)
    ce_first = np.nan_to_num(ce, nan=np.inf) < np.nan_to_num(mse, nan=np.inf)
    if not decided.any():
        return (
            "Neither sigmoid-output network reached the target accuracy, so the speed claim "
            "cannot be decided at this scale; compare the mean accuracies over training."
        )
    verdict = (
        "holds"
        if ce_first[decided].all()
        else "does not hold"
        if not ce_first[decided].any()
        else "holds only partly"
    )
    ratio = ""
    if np.isfinite(mse).all() and np.isfinite(ce).all():
        ratio = f" On average MSE needed {mse.mean() / ce.mean():.1f} times as many steps."
    return (
        f"The documents' claim that cross-entropy learns faster than MSE {verdict} here: with "
        f"the same sigmoid outputs, cross-entropy reached the target first in "
        f"{ce_first.sum()} of the {decided.sum()} seeds where either reached it "
        f"({seeds} seeds in all).{ratio}"
    )


def run_classifier(config, splits, name, workdir):
    model = MLP(features=(config.hidden, splits.num_classes), activation="sigmoid")
    task = train.classifier(
        model, optim.sgd(config.lr), splits.train["x"][:1], loss=CLASSIFIERS[name]
    )
    return train.fit(
        config,
        task,
        splits.train,
        workdir / name.replace(" + ", "_").replace(" ", "_"),
        eval_splits={"val": splits.val, "test": splits.test},
    )


# --- regression: MSE as Gaussian maximum likelihood -------------------------------------------


def polynomial_features(x, degree: int):
    """phi(x) = [1, x, x^2, ..., x^degree] for every entry of the 1-D array x."""
    return jnp.stack([x**k for k in range(degree + 1)], axis=-1)


def gaussian_nll(predictions, targets, log_sigma):
    """1/N sum_n [1/2 log(2 pi sigma^2) + (y_n - f_n)^2 / (2 sigma^2)], sigma = exp(log_sigma)."""
    sigma2 = jnp.exp(2 * log_sigma)
    return jnp.mean(
        0.5 * jnp.log(2 * jnp.pi * sigma2) + (targets - predictions) ** 2 / (2 * sigma2)
    )


def regression_set(config):
    """x ~ U(-1, 1); y = sum_k c_k x^k + noise, with c_k ~ N(0, 1); seeded by data_seed."""
    rng = np.random.default_rng(config.data_seed + 2)
    x = rng.uniform(-1, 1, config.regression_points)
    coefficients = rng.normal(size=config.regression_degree + 1)
    clean = np.polynomial.polynomial.polyval(x, coefficients)
    y = clean + config.regression_noise * rng.normal(size=len(x))
    return x.astype(np.float32), y.astype(np.float32), coefficients


def regression_task(config, likelihood: bool):
    """Fits w (and log sigma when ``likelihood``) by full-batch Adam with linear decay."""
    degree = config.regression_degree
    tx = optim.adam(
        optim.linear_decay(
            config.regression_lr, config.regression_lr / 100, config.regression_steps
        )
    )

    def predict(params, x):
        return polynomial_features(x, degree) @ params["w"]

    def init(key):
        params = {"w": jax.random.normal(key, (degree + 1,))}
        if likelihood:
            params["log_sigma"] = jnp.zeros(())
        return train.TrainState.create(apply_fn=predict, params=params, tx=tx)

    def objective(params, batch):
        predictions = predict(params, batch["x"])
        mse = losses.mean_squared_error(predictions, batch["y"])
        if likelihood:
            return gaussian_nll(predictions, batch["y"], params["log_sigma"]), mse
        return mse, mse

    def loss_fn(params, model_state, batch, key):
        loss, mse = objective(params, batch)
        return loss, ({"mse": mse}, model_state)

    def evaluate(state, split):
        loss, mse = objective(state.params, split)
        return {"loss": loss, "mse": mse}

    return train.Task(init=init, make_step=train.gradient_step(loss_fn), evaluate=evaluate)


def run_regression(config, workdir):
    x, y, coefficients = regression_set(config)
    features = np.vander(x.astype(np.float64), config.regression_degree + 1, increasing=True)
    least_squares = np.linalg.lstsq(features, y.astype(np.float64), rcond=None)[0]
    residual_std = float(np.sqrt(np.mean((y - features @ least_squares) ** 2)))
    fit_config = config.copy_and_resolve_references()
    fit_config.epochs = config.regression_steps
    fit_config.batch_size = 0  # full batch: one Adam step per epoch
    fit_config.eval_every = config.regression_steps
    split = {"x": x, "y": y}
    fits = {}
    for name, likelihood in (("MSE", False), ("Gaussian NLL", True)):
        result = train.fit(
            fit_config,
            regression_task(config, likelihood),
            split,
            workdir / f"regression_{name.replace(' ', '_').lower()}",
            eval_splits={"fit": split},
        )
        fits[name] = result
    return {
        "x": x,
        "y": y,
        "true_coefficients": coefficients,
        "least_squares": least_squares,
        "residual_std": residual_std,
        "fits": fits,
        "minimum": {
            "MSE": residual_std**2,
            "Gaussian NLL": 0.5 * np.log(2 * np.pi * residual_std**2) + 0.5,
        },
    }


# --- report -----------------------------------------------------------------------------------


def plot_saturation(z, gradients, closed):
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    (mse, ce), (mse_closed, ce_closed) = gradients, closed
    ax = axes[0]
    ax.plot(z, np.abs(mse), label="MSE: jax.grad")
    ax.plot(z, np.abs(mse_closed), "k:", label="(o - t) o (1 - o)")
    ax.plot(z, np.abs(ce), label="cross-entropy: jax.grad")
    ax.plot(z, np.abs(ce_closed), "k--", lw=0.8, label="o - t")
    ax.axvspan(z.min(), -2, color="red", alpha=0.08, label="confidently wrong")
    ax.set(xlabel="logit z (target t = 1)", ylabel="|dE/dz|", yscale="log")
    ax.set_title("gradient reaching the output's pre-activation")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax = axes[1]
    o = 1 / (1 + np.exp(-z))
    ax.plot(z, 0.5 * (o - 1) ** 2, label="MSE 1/2 (o - t)^2")
    ax.plot(z, -np.log(o), label="cross-entropy -log o")
    ax.set(xlabel="logit z (target t = 1)", ylabel="loss", yscale="log", title="the losses")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_classifiers(results, config):
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for name, result in results.items():
        history = result.history
        steps = [r["step"] for r in history]
        band(axes[0], steps, np.array([r["val/accuracy"] for r in history]).T, name)
        per_step = np.concatenate([m["accuracy"] for m in result.step_metrics], axis=1)
        window = max(1, per_step.shape[1] // 60)
        kernel = np.ones(window) / window
        smooth = np.array([np.convolve(row, kernel, mode="valid") for row in per_step])
        band(axes[1], np.arange(window, per_step.shape[1] + 1), smooth, name)
    axes[0].axhline(config.target_accuracy, color="k", lw=0.8, ls="--", label="target")
    axes[0].set(xlabel="training step", ylabel="validation accuracy", ylim=(0, 1))
    axes[1].set(
        xlabel="training step",
        ylabel="minibatch accuracy (moving average)",
        ylim=(0, 1),
    )
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_regression(regression, config):
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    ax = axes[0]
    ax.scatter(regression["x"], regression["y"], s=8, color="grey", label="data")
    grid = np.linspace(-1, 1, 200)
    features = np.vander(grid, config.regression_degree + 1, increasing=True)
    ax.plot(grid, features @ regression["true_coefficients"], "k:", label="true f")
    ax.plot(grid, features @ regression["least_squares"], "k", lw=2.5, label="lstsq")
    for (name, result), style in zip(regression["fits"].items(), ("--", "-.")):
        w = np.asarray(result.state.params["w"][0], np.float64)
        ax.plot(grid, features @ w, style, label=f"{name} (seed 0)")
    nll_params = regression["fits"]["Gaussian NLL"].state.params
    w, sigma = np.asarray(nll_params["w"][0]), float(np.exp(nll_params["log_sigma"][0]))
    mean = features @ w
    ax.fill_between(grid, mean - sigma, mean + sigma, alpha=0.2, label="NLL fit ± sigma")
    ax.set(xlabel="x", ylabel="y", title="the fits")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    ax = axes[1]
    for name, result in regression["fits"].items():
        history = result.history
        gap = np.array([r["train/loss"] for r in history]).T - regression["minimum"][name]
        band(ax, [r["step"] for r in history], np.maximum(gap, 1e-9), name)
    ax.set(
        xlabel="Adam step (full batch)",
        ylabel="loss - closed-form minimum",
        yscale="log",
        title="convergence to the closed-form minima",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def train_and_evaluate(config, workdir):
    z = np.linspace(-10, 10, 401)
    gradients = output_gradients(z, 1.0)
    closed = closed_form_gradients(z, 1.0)
    gradient_error = max(float(np.max(np.abs(a - c))) for a, c in zip(gradients, closed))

    splits = data.load(config.dataset, seed=config.data_seed)
    results = {name: run_classifier(config, splits, name, workdir) for name in CLASSIFIERS}
    steps = {
        name: steps_to_target(r.history, config.target_accuracy) for name, r in results.items()
    }
    regression = run_regression(config, workdir)

    report = Report(workdir, "Losses: MSE against cross-entropy, and MSE as Gaussian likelihood")
    probes = np.array([-10.0, -5.0, -2.0, 0.0, 2.0, 5.0])
    probe_gradients, probe_closed = output_gradients(probes, 1.0), closed_form_gradients(probes, 1)
    report.table(
        ["z", "o = sigmoid(z)", "MSE dE/dz (jax.grad)", "(o - t) o (1 - o)", "CE dE/dz", "o - t"],
        [
            (
                f"{v:g}",
                f"{1 / (1 + np.exp(-v)):.2e}",
                f"{probe_gradients[0][i]:.3e}",
                f"{probe_closed[0][i]:.3e}",
                f"{probe_gradients[1][i]:.3e}",
                f"{probe_closed[1][i]:.3e}",
            )
            for i, v in enumerate(probes)
        ],
        caption="Gradient at the output's pre-activation, target t = 1 (largest |jax.grad - "
        f"closed form| over z in [-10, 10]: {gradient_error:.1e})",
    )
    report.figure(
        plot_saturation(z, gradients, closed),
        "saturation",
        "a confidently wrong sigmoid output (z << 0, t = 1): MSE's gradient vanishes, "
        "cross-entropy's does not",
    )
    steps_per_epoch = results[next(iter(results))].history[0]["step"]
    report.text(
        f"Classifier: {splits.train['x'].shape[1]} inputs, {config.hidden} sigmoid hidden "
        f"units, {splits.num_classes} outputs, trained on `{config.dataset}` with plain SGD "
        f"(learning rate {config.lr} for every loss, batch {config.batch_size}, "
        f"{steps_per_epoch} steps per epoch) for {config.epochs} epochs, {config.seeds} seeds "
        "(mean ± std). Validation accuracy is measured after every epoch, so the steps to the "
        "target are multiples of the steps per epoch."
    )
    rows = []
    for name, result in results.items():
        reached = np.isfinite(steps[name])
        rows.append(
            (
                name,
                f"{reached.sum()} / {config.seeds}",
                mean_std(steps[name][reached], 1) if reached.any() else "never",
                mean_std(np.mean([r["val/accuracy"] for r in result.history], axis=0), 3),
                mean_std(result.final("val/accuracy"), 3),
                mean_std(result.final("test/accuracy"), 3),
            )
        )
    report.table(
        [
            "loss",
            f"seeds reaching {config.target_accuracy:g}",
            f"steps to validation accuracy {config.target_accuracy:g}",
            "mean val accuracy over the epochs",
            "final val accuracy",
            "final test accuracy",
        ],
        rows,
        caption="Which loss learns faster",
    )
    report.text(speed_verdict(steps, config.seeds))
    report.figure(
        plot_classifiers(results, config),
        "classifiers",
        "left: validation accuracy after every epoch; right: minibatch accuracy per step",
    )

    least_squares = regression["least_squares"]
    rows = []
    for name, result in regression["fits"].items():
        params = result.state.params
        w = np.asarray(params["w"], np.float64)
        sigma = (
            mean_std(np.exp(np.asarray(params["log_sigma"], np.float64)), 5)
            if "log_sigma" in params
            else "—"
        )
        rows.append(
            (
                name,
                f"{np.linalg.norm(w - least_squares, axis=1).mean():.1e} ± "
                f"{np.linalg.norm(w - least_squares, axis=1).std():.1e}",
                sigma,
                mean_std(result.final("fit/loss"), 6),
                f"{regression['minimum'][name]:.6f}",
            )
        )
    report.text(
        f"Regression: {config.regression_points} points, a degree-{config.regression_degree} "
        f"polynomial with noise std {config.regression_noise}; each fit runs "
        f"{config.regression_steps} full-batch Adam steps from a random w per seed (learning "
        f"rate {config.regression_lr} decayed linearly to 1%). numpy.linalg.lstsq gives "
        f"w = {np.array2string(least_squares, precision=4)} and a root mean squared residual of "
        f"{regression['residual_std']:.5f}, the maximum-likelihood sigma."
    )
    report.table(
        [
            "objective",
            "‖w - w_lstsq‖",
            f"fitted sigma (reference: RMS residual {regression['residual_std']:.5f})",
            "final loss",
            "closed-form minimum",
        ],
        rows,
        caption="MSE and Gaussian NLL give the least-squares fit",
    )
    report.figure(
        plot_regression(regression, config),
        "regression",
        "left: the fits; right: each loss minus its closed-form minimum",
    )
    report.write()

    w_mse = np.asarray(regression["fits"]["MSE"].state.params["w"], np.float64)
    nll_params = regression["fits"]["Gaussian NLL"].state.params
    w_nll = np.asarray(nll_params["w"], np.float64)
    sigma = np.exp(np.asarray(nll_params["log_sigma"], np.float64))
    lstsq = "numpy.linalg.lstsq"
    return {
        "gradient_error": Figure(
            gradient_error,
            reference=0.0,
            source="closed forms (o - t) o (1 - o) and o - t",
            tolerance=1e-5,  # equal up to float32 rounding
        ),
        # dE/dz at z = -10 with target 1: MSE's vanishes, cross-entropy's stays near -1
        "saturated_gradient": {"mse": gradients[0][0], "cross_entropy": gradients[1][0]},
        # NaN where a seed never reached the target
        "steps_to_target": {SHORT[name]: s for name, s in steps.items()},
        "test_accuracy": {SHORT[n]: r.final("test/accuracy") for n, r in results.items()},
        "mse_distance": Figure(
            np.linalg.norm(w_mse - least_squares, axis=1),
            reference=0.0,
            source=lstsq,
            tolerance=1e-4,  # at the least-squares weights (float32)
        ),
        "nll_distance": Figure(
            np.linalg.norm(w_nll - least_squares, axis=1),
            reference=0.0,
            source=lstsq,
            tolerance=1e-4,
        ),
        "nll_sigma": Figure(
            sigma,
            reference=regression["residual_std"],
            source=f"RMS residual of {lstsq}",
            tolerance=1e-4,
        ),
    }


if __name__ == "__main__":
    cli.run(get_config, train_and_evaluate, RULES)
