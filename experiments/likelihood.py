"""MSE is Gaussian maximum likelihood: both objectives give the least-squares fit.

SPEC §3 (document 002). If p(y | x) = N(y; f(x; w), sigma^2), the negative log-likelihood is
1/N sum_n [1/2 log(2 pi sigma^2) + (y_n - f(x_n))^2 / (2 sigma^2)], so for any sigma its
minimizer in w is the minimizer of the MSE, and its minimizer in sigma is the root mean squared
residual. The experiment fits a noisy 1-D polynomial regression by gradient descent on the MSE
and, separately, on the Gaussian NLL in (w, log sigma), and compares both with the closed-form
least-squares solution of numpy.linalg.lstsq.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from lexicon import cli, losses, optim, train
from lexicon.report import Figure, Report, mean_std, panels, plot_curves
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
            return losses.gaussian_negative_log_likelihood(
                predictions, batch["y"], params["log_sigma"]
            ), mse
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


def plot_regression(regression, config):
    fig, axes = panels(2, size=(6, 4))
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
    gaps = {}
    for name, result in regression["fits"].items():
        steps, loss = result.curve("train/loss", x="step")
        gaps[name] = (steps, np.maximum(loss - regression["minimum"][name], 1e-9))
    plot_curves(gaps, xlabel="Adam step (full batch)", ylabel="loss - closed-form minimum",
                title="convergence to the closed-form minima", log_y=True, ax=axes[1])  # fmt: skip
    return fig


def regression_section(config, workdir, report) -> dict:
    """Fits both objectives, adds their table and figure to ``report``; returns the figures."""
    regression = run_regression(config, workdir)
    least_squares, rms = regression["least_squares"], regression["residual_std"]
    weights = {
        n: np.asarray(r.state.params["w"], np.float64) for n, r in regression["fits"].items()
    }
    distance = {n: np.linalg.norm(w - least_squares, axis=1) for n, w in weights.items()}
    nll = regression["fits"]["Gaussian NLL"].state.params
    sigma = np.exp(np.asarray(nll["log_sigma"], np.float64))
    report.text(
        f"Regression: {config.regression_points} points, a degree-{config.regression_degree} "
        f"polynomial with noise std {config.regression_noise}; each fit runs "
        f"{config.regression_steps} full-batch Adam steps from a random w per seed (learning "
        f"rate {config.regression_lr} decayed linearly to 1%). numpy.linalg.lstsq gives "
        f"w = {np.array2string(least_squares, precision=4)} and a root mean squared residual of "
        f"{rms:.5f}, the maximum-likelihood sigma."
    )
    report.table(
        ["objective", "‖w - w_lstsq‖", f"fitted sigma (reference: RMS residual {rms:.5f})"]
        + ["final loss", "closed-form minimum"],
        [
            (name, f"{distance[name].mean():.1e} ± {distance[name].std():.1e}")
            + (mean_std(sigma, 5) if name == "Gaussian NLL" else "—",)
            + (mean_std(r.final("fit/loss"), 6), f"{regression['minimum'][name]:.6f}")
            for name, r in regression["fits"].items()
        ],
        caption="MSE and Gaussian NLL give the least-squares fit",
    )
    report.figure(
        plot_regression(regression, config),
        "regression",
        "left: the fits; right: each loss minus its closed-form minimum",
    )
    lstsq = "numpy.linalg.lstsq"
    return {  # at the least-squares weights up to float32
        "mse_distance": Figure(distance["MSE"], reference=0.0, source=lstsq, tolerance=1e-4),
        "nll_distance": Figure(
            distance["Gaussian NLL"], reference=0.0, source=lstsq, tolerance=1e-4
        ),
        "nll_sigma": Figure(
            sigma, reference=rms, source=f"RMS residual of {lstsq}", tolerance=1e-4
        ),
    }


def train_and_evaluate(config, workdir):
    report = Report(workdir, "MSE as Gaussian maximum likelihood")
    figures = regression_section(config, workdir, report)
    report.write()
    return figures


if __name__ == "__main__":
    cli.run(get_config, train_and_evaluate, RULES)
