"""MSE is Gaussian maximum likelihood: both objectives give the least-squares fit.

SPEC §3 (document 002). If p(y | x) = N(y; f(x; w), sigma^2), the negative log-likelihood is
1/N sum_n [1/2 log(2 pi sigma^2) + (y_n - f(x_n))^2 / (2 sigma^2)], so for any sigma its
minimizer in w is the minimizer of the MSE, and its minimizer in sigma is the root mean squared
residual. The experiment fits a noisy 1-D polynomial regression by gradient descent on the MSE
and, separately, on the Gaussian NLL in (w, log sigma), and compares both with the closed-form
least-squares solution of numpy.linalg.lstsq.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from lexicon import cli, losses, optim, sweeping, train
from lexicon.report import Report, mean_std, panels, plot_curves, scientific
from lexicon.rules import Range, positive


def get_config():
    config = train.defaults()
    config.seeds = 3
    config.regression_points = 200  # examples of the 1-D regression problem
    config.regression_noise = 0.3  # std of the Gaussian noise on the regression targets
    config.regression_degree = 3  # degree of the fitted (and of the true) polynomial
    config.regression_steps = 1500  # full-batch Adam steps of each regression fit
    config.regression_lr = 0.1  # Adam's initial rate, decayed linearly to 1% of it
    return config


RULES = {
    "regression_points": Range(2, 1_000_000),
    "regression_noise": positive(),
    "regression_degree": Range(0, 20),
    "regression_steps": Range(1, 1_000_000),
    "regression_lr": positive(),
}

# --config.sweep='regression_lr=0.03,0.1': both fits, one program each
SWEEPABLE = ("regression_lr",)


def polynomial_features(x, degree: int):
    """phi(x) = [1, x, x^2, ..., x^degree] for every entry of the 1-D array x."""
    return jnp.stack([x**k for k in range(degree + 1)], axis=-1)


def regression_set(config):
    """x ~ U(-1, 1); y = sum_k c_k x^k + noise, with c_k ~ N(0, 1); seeded by data_seed."""
    rng = np.random.default_rng(config.data_seed + 2)
    x = rng.uniform(-1, 1, config.regression_points)
    coefficients = rng.normal(size=config.regression_degree + 1)
    clean = np.polynomial.polynomial.polyval(x, coefficients)
    y = clean + config.regression_noise * rng.normal(size=len(x))
    return x.astype(np.float32), y.astype(np.float32), coefficients


def regression_task(config, likelihood: bool):
    """Fits w (and log sigma when ``likelihood``) by full-batch Adam with linear decay; a
    builder, so the rate is traced in a sweep."""
    degree, lr = config.regression_degree, config.regression_lr
    tx = optim.adam(optim.linear_decay(lr, lr / 100, config.regression_steps))

    def predict(params, x):
        return polynomial_features(x, degree) @ params["w"]

    def init(key):
        params = {"w": jax.random.normal(key, (degree + 1,))}
        if likelihood:
            params["log_sigma"] = jnp.zeros(())
        return train.TrainState.create(apply_fn=predict, params=params, tx=tx)

    def objective(params, batch):
        """The loss (the MSE, or the Gaussian NLL in (w, log sigma)) and the MSE."""
        predictions = predict(params, batch["x"])
        mse = losses.mean_squared_error(predictions, batch["y"])
        if not likelihood:
            return {"loss": mse, "mse": mse}
        nll = losses.gaussian_negative_log_likelihood(predictions, batch["y"], params["log_sigma"])
        return {"loss": nll, "mse": mse}

    def loss_fn(params, model_state, batch, key):
        metrics = objective(params, batch)
        return metrics["loss"], ({"mse": metrics["mse"]}, model_state)

    return train.Task(
        init=init,
        make_step=train.gradient_step(loss_fn),
        evaluate=lambda state, split: objective(state.params, split),
    )


def plot_regression(x, y, coefficients, least_squares, fits, minimum, config):
    fig, axes = panels(2, size=(6, 4))
    ax = axes[0]
    ax.scatter(x, y, s=8, color="grey", label="data")
    grid = np.linspace(-1, 1, 200)
    features = np.vander(grid, config.regression_degree + 1, increasing=True)
    ax.plot(grid, features @ coefficients, "k:", label="true f")
    ax.plot(grid, features @ least_squares, "k", lw=2.5, label="lstsq")
    for (name, result), style in zip(fits.items(), ("--", "-.")):
        w = np.asarray(result.state.params["w"][0], np.float64)
        ax.plot(grid, features @ w, style, label=f"{name} (seed 0)")
    nll_params = fits["Gaussian NLL"].state.params
    w, sigma = np.asarray(nll_params["w"][0]), float(np.exp(nll_params["log_sigma"][0]))
    mean = features @ w
    ax.fill_between(grid, mean - sigma, mean + sigma, alpha=0.2, label="NLL fit ± sigma")
    ax.set(xlabel="x", ylabel="y", title="the fits")
    ax.legend(fontsize=8)
    gaps = {}
    for name, result in fits.items():
        steps, loss = result.curve("train/loss", x="step")
        gaps[name] = (steps, np.maximum(loss - minimum[name], 1e-9))
    plot_curves(
        gaps,
        xlabel="Adam step (full batch)",
        ylabel="loss - closed-form minimum",
        title="convergence to the closed-form minima",
        log_y=True,
        ax=axes[1],
    )
    return fig


def train_and_evaluate(config, workdir):
    x, y, coefficients = regression_set(config)
    features = np.vander(x.astype(np.float64), config.regression_degree + 1, increasing=True)
    least_squares = np.linalg.lstsq(features, y.astype(np.float64), rcond=None)[0]
    rms = float(np.sqrt(np.mean((y - features @ least_squares) ** 2)))
    # The closed-form minima: the MSE is the mean squared residual, and the NLL at the
    # maximum-likelihood sigma = rms is 1/2 log(2 pi rms^2) + 1/2.
    minimum = {"MSE": rms**2, "Gaussian NLL": 0.5 * np.log(2 * np.pi * rms**2) + 0.5}
    steps = config.regression_steps  # full batch: one Adam step per epoch
    fit_config = config.copy_and_resolve_references()
    fit_config.update(epochs=steps, batch_size=0, eval_every=steps)
    split = {"x": x, "y": y}
    fits = {
        name: train.fit(
            fit_config,
            functools.partial(regression_task, likelihood=likelihood),
            split,
            workdir / f"regression_{name.replace(' ', '_').lower()}",
            eval_splits={"fit": split},
        )
        for name, likelihood in (("MSE", False), ("Gaussian NLL", True))
    }
    weights = {n: np.asarray(r.state.params["w"], np.float64) for n, r in fits.items()}
    distance = {n: np.linalg.norm(w - least_squares, axis=1) for n, w in weights.items()}
    nll = fits["Gaussian NLL"]
    sigma = np.exp(np.asarray(nll.state.params["log_sigma"], np.float64))

    report = Report(workdir, "MSE as Gaussian maximum likelihood")
    report.text(
        f"Regression: {config.regression_points} points, a degree-{config.regression_degree} "
        f"polynomial with noise std {config.regression_noise}; each fit runs "
        f"{config.regression_steps} full-batch Adam steps from a random w per seed (learning "
        f"rate {config.regression_lr} decayed linearly to 1%). numpy.linalg.lstsq gives "
        f"w = {np.array2string(least_squares, precision=4)} and a root mean squared residual of "
        f"{rms:.5f}, the maximum-likelihood sigma."
    )
    sweeping.note(report, config)
    report.table(
        ["objective", "‖w - w_lstsq‖", f"fitted sigma (reference: RMS residual {rms:.5f})"]
        + ["final loss", "closed-form minimum"],
        [
            (name, scientific(distance[name]))
            + (mean_std(sigma, 5) if name == "Gaussian NLL" else "—",)
            + (mean_std(r.final("fit/loss"), 6), f"{minimum[name]:.6f}")
            for name, r in fits.items()
        ],
        caption="MSE and Gaussian NLL give the least-squares fit",
    )
    report.figure(
        plot_regression(x, y, coefficients, least_squares, fits, minimum, config),
        "regression",
        "left: the fits; right: each loss minus its closed-form minimum",
    )
    report.write()
    lstsq = "numpy.linalg.lstsq"
    held = {"reference": 0.0, "source": lstsq, "tolerance": 1e-4}
    return {  # at the least-squares weights up to float32; one figure per grid point in a sweep
        "mse_distance": sweeping.figure(nll, distance["MSE"], **held),
        "nll_distance": sweeping.figure(nll, distance["Gaussian NLL"], **held),
        "nll_sigma": sweeping.figure(nll, sigma, rms, f"RMS residual of {lstsq}", 1e-4),
    }


if __name__ == "__main__":
    cli.run(get_config, train_and_evaluate, RULES)
