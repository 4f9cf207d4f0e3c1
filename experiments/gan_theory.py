"""The theory of the GAN game on the line, where every density is known (SPEC.md §9).

Documents 000/003 write the game min_G max_D V(G, D),
    V = E_{x~p_r}[log D(x)] + E_{z~p_z}[log(1 - D(G(z)))],
and 003 derives the best discriminator for a fixed generator, D*(x) = p_r / (p_r + p_g),
with the value -2 log 2 (nats) at the optimum p_g = p_r. Goodfellow et al. (2014, Theorem 1)
[add] write the value of the inner maximum as C(G) = -log 4 + 2 JSD(p_r || p_g). Four checks:

  1. D trained to convergence by binary cross-entropy (real = 1, fake = 0) on fresh samples of
     p_r (a two-Gaussian mixture) and a fixed p_g lies on D* over a grid (every seed);
  2. at p_g = p_r the value is -2 log 2, by quadrature and by Monte Carlo with a trained D;
  3. C(G) = V(G, D*) = -log 4 + 2 JSD, by quadrature and by Monte Carlo;
  4. when D rejects the fakes, the generator's gradient under the minimax objective
     log(1 - D(G(z))) vanishes while the non-saturating -log D(G(z)) (004) keeps it: for a
     shift generator G(z) = z + mu against D* of p_r = N(0, 1), p_g = N(mu, 1), the gradient
     in mu of each objective as mu grows, and d loss / d logit = -D vs -(1 - D).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lexicon import cli, sweeping, train
from lexicon.data import mixtures
from lexicon.nn import gan
from lexicon.report import Figure, Report, mean_std, plot_curves
from lexicon.rules import Range, positive, widths

LOG4 = math.log(4.0)
SOURCE_DSTAR = "D*(x) = p_r(x) / (p_r(x) + p_g(x)), document 003"
SOURCE_VALUE = "-2 log 2 at p_g = p_r, document 003 (in nats)"
SOURCE_JSD = "C(G) = -log 4 + 2 JSD(p_r || p_g), Goodfellow et al. 2014, Theorem 1"
SWEEPABLE = ("lr",)  # --config.sweep='lr=1e-3,3e-3,1e-2': both discriminators, one program each


def get_config():
    config = train.defaults()
    config.seeds = 3
    config.epochs = 6
    config.steps_per_epoch = 500  # discriminator updates per epoch, each on fresh samples
    config.batch_size = 512  # real and fake samples per update
    config.hidden = (32, 32)  # the discriminator's tanh layers
    config.lr = 3e-3  # Adam's step size, decayed to 0 on a cosine over the run
    config.fake_mean = 0.5  # p_g = N(fake_mean, fake_std^2), fixed
    config.fake_std = 1.2
    config.grid_density = 0.05  # D is compared with D* where p_r + p_g >= this
    config.tolerance = 0.05  # largest |D - D*| accepted on that grid
    config.mc_samples = 200_000  # Monte Carlo samples of each density for the values
    return config


RULES = {
    "hidden": widths(max_width=1024, max_layers=6),
    "lr": positive(),
    "fake_mean": Range(-5.0, 5.0),
    "fake_std": Range(0.1, 5.0),
    "grid_density": Range(0.0, 1.0, open_lo=True),
    "tolerance": positive(),
    "mc_samples": Range(100, 10_000_000),
}

# p_r: two bumps, so that D* is not a sigmoid of a line
REAL = mixtures.Mixture1D((0.5, 0.5), (-1.0, 1.5), (0.5, 0.7))


def discriminator_task(config, p_g: mixtures.Mixture1D):
    """D alone, trained by the discriminator's BCE on fresh draws of p_r and p_g at each step."""
    model = gan.DenseDiscriminator(tuple(config.hidden), activation="tanh")
    steps = config.epochs * config.steps_per_epoch
    tx = optax.adam(optax.cosine_decay_schedule(config.lr, steps))
    n = config.batch_size

    def init(key):
        params = model.init(key, jnp.zeros((1, 1)))["params"]
        return train.TrainState.create(apply_fn=None, params=params, tx=tx)

    def loss_fn(params, model_state, batch, key):
        real_key, fake_key = jax.random.split(key)
        real, fake = REAL.sample(real_key, n), p_g.sample(fake_key, n)
        real_logits = model.apply({"params": params}, real)
        fake_logits = model.apply({"params": params}, fake)
        return gan.discriminator_loss(real_logits, fake_logits), ({}, model_state)

    def evaluate(state, split):
        logits = model.apply({"params": state.params}, split["grid"])
        error = jnp.abs(jax.nn.sigmoid(logits) - split["d_star"]) * split["mask"]
        value = gan.value(
            model.apply({"params": state.params}, split["real"]),
            model.apply({"params": state.params}, split["fake"]),
        )
        return {"d_error": jnp.max(error), "value": value}

    task = train.Task(init=init, make_step=train.gradient_step(loss_fn), evaluate=evaluate)
    return model, task


def train_discriminator(config, p_g, workdir):
    """Fits D against the fixed p_g; returns the Result, D on the grid per seed, the grid."""
    grid = np.linspace(-3.0, 4.0, 141)
    density = np.asarray(REAL.pdf(grid) + p_g.pdf(grid))
    key_r, key_g = jax.random.split(jax.random.key(10_000))
    split = {
        "grid": grid[:, None].astype(np.float32),
        "d_star": np.asarray(mixtures.optimal_discriminator(REAL, p_g, grid)),
        "mask": (density >= config.grid_density).astype(np.float32),
        "real": REAL.sample(key_r, config.mc_samples),
        "fake": p_g.sample(key_g, config.mc_samples),
    }
    model, _ = discriminator_task(config, p_g)

    def task(run):  # a task builder: a sweep builds each grid point's D with its own step size
        return discriminator_task(run, p_g)[1]

    result = train.fit(config, task, None, workdir, eval_splits={"eval": split})
    apply = jax.vmap(lambda p: jax.nn.sigmoid(model.apply({"params": p}, split["grid"])))
    return result, np.asarray(apply(result.state.params)), split


def shift_gradients(mus, samples: int = 100_000):
    """Per mu: d/dmu of each generator objective for G(z) = z + mu, z ~ N(0, 1), with D held at
    D* of p_r = N(0, 1) against p_g = N(mu, 1), whose logit is -mu x + mu^2 / 2; and the mean
    D(G(z)). Monte Carlo with jax.grad."""
    z = jax.random.normal(jax.random.key(3), (samples,))
    rows = []
    for mu0 in map(float, mus):

        def fake_logits(mu, mu0=mu0):
            return -mu0 * (z + mu) + mu0**2 / 2

        grads = {
            obj: float(jax.grad(lambda mu, o=obj: gan.generator_loss(fake_logits(mu), o))(mu0))
            for obj in gan.OBJECTIVES
        }
        rows.append((float(mu0), float(jnp.mean(jax.nn.sigmoid(fake_logits(mu0)))), grads))
    return rows


def monte_carlo_value(p_r, p_g, n: int, seed: int = 0) -> float:
    """V(G, D*) from n draws of each density, D* from the densities."""
    key_r, key_g = jax.random.split(jax.random.key(seed))
    with jax.enable_x64(True):
        real, fake = p_r.sample(key_r, n)[:, 0], p_g.sample(key_g, n)[:, 0]
        logit = lambda x: p_r.log_pdf(x) - p_g.log_pdf(x)  # noqa: E731
        return float(gan.value(logit(real), logit(fake)))


def train_and_evaluate(config, workdir):
    p_g = mixtures.gaussian(config.fake_mean, config.fake_std)
    result, d_on_grid, split = train_discriminator(config, p_g, workdir / "d_star")
    d_error = result.final("eval/d_error")
    learned_value = result.final("eval/value")
    equal, _, _ = train_discriminator(config, REAL, workdir / "equal")
    equal_value = equal.final("eval/value")

    c_quadrature = mixtures.game_value(REAL, p_g)
    jsd = mixtures.jensen_shannon(REAL, p_g)
    c_mc = monte_carlo_value(REAL, p_g, config.mc_samples)
    equal_quadrature = mixtures.game_value(REAL, REAL)
    equal_mc = monte_carlo_value(REAL, REAL, config.mc_samples)
    gradients = shift_gradients([0.5, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0])

    rep = Report(workdir, "GAN theory on the line: D*, the value -2 log 2, C(G), saturation")
    rep.text(
        f"p_r = 0.5 N(-1, 0.5^2) + 0.5 N(1.5, 0.7^2); p_g = N({config.fake_mean}, "
        f"{config.fake_std}^2). D: 1-{'-'.join(map(str, config.hidden))}-1 tanh MLP, "
        f"Adam {config.lr} (cosine to 0), {config.epochs * config.steps_per_epoch} updates of "
        f"{config.batch_size} fresh real and fake samples, {config.seeds} seeds."
    )
    sweeping.note(rep, config)
    grid = split["grid"][:, 0]
    rep.figure(
        plot_curves(
            {
                "learned D (seeds)": (grid, d_on_grid),
                "D* = p_r/(p_r+p_g)": (grid, split["d_star"][None]),
                "p_r": (grid, np.asarray(REAL.pdf(grid))[None]),
                "p_g": (grid, np.asarray(p_g.pdf(grid))[None]),
            },
            xlabel="x",
            ylabel="D(x), density",
            title="the trained discriminator against D*",
        ),
        "d_star",
        "learned D (seed mean ± std) over the closed-form D*, with both densities",
    )
    rep.figure(
        plot_curves(
            {
                "minimax log(1 - D(G(z)))": (
                    np.array([r[1] for r in gradients]),
                    np.abs([[r[2]["minimax"] for r in gradients]]),
                ),
                "non-saturating -log D(G(z))": (
                    np.array([r[1] for r in gradients]),
                    np.abs([[r[2]["non_saturating"] for r in gradients]]),
                ),
            },
            xlabel="mean D(G(z))",
            ylabel="|d objective / d mu|",
            title="the generator's gradient as D rejects the fakes",
            log_y=True,
        ),
        "saturation",
        "shift generator G(z) = z + mu against D*; the minimax gradient vanishes as D(G(z)) -> 0",
    )
    rows = [
        ("max |D - D*| on the grid", mean_std(d_error), f"<= {config.tolerance}", SOURCE_DSTAR),
        ("V(G, D*) by quadrature", f"{c_quadrature:.5f}", f"{-LOG4 + 2 * jsd:.5f}", SOURCE_JSD),
        ("V(G, D*) by Monte Carlo", f"{c_mc:.5f}", f"{c_quadrature:.5f}", "quadrature"),
        ("V(G, learned D), Monte Carlo", mean_std(learned_value), f"<= {c_quadrature:.5f}", ""),
        ("p_g = p_r: V by quadrature", f"{equal_quadrature:.6f}", f"{-LOG4:.6f}", SOURCE_VALUE),
        ("p_g = p_r: V(D*) by Monte Carlo", f"{equal_mc:.6f}", f"{-LOG4:.6f}", SOURCE_VALUE),
        ("p_g = p_r: V(learned D), MC", mean_std(equal_value), f"{-LOG4:.6f}", SOURCE_VALUE),
    ]
    rep.table(["quantity", "ours", "reference", "source"], rows, caption="The value of the game")
    rep.table(
        ["mu", "mean D(G(z))", "d/dmu minimax", "d/dmu non-saturating"],
        [
            (m, f"{d:.2e}", f"{g['minimax']:.3e}", f"{g['non_saturating']:.3e}")
            for m, d, g in gradients
        ],
        caption="Generator gradients for G(z) = z + mu against D* (100,000 draws of z)",
    )
    rep.write()

    far = gradients[-1]
    trained, trained_equal = (functools.partial(sweeping.figure, r) for r in (result, equal))
    return {  # the trained D's figures: one per grid point in a sweep
        "d_max_error": trained(d_error, 0.0, SOURCE_DSTAR, config.tolerance, "at_most"),
        "value_equal_quadrature": Figure(equal_quadrature, -LOG4, SOURCE_VALUE, 1e-6),
        "value_equal_mc_d_star": Figure(equal_mc, -LOG4, SOURCE_VALUE, 1e-6),
        "value_equal_mc_learned": trained_equal(equal_value, -LOG4, SOURCE_VALUE, 0.01),
        "c_of_g_quadrature": Figure(c_quadrature, -LOG4 + 2 * jsd, SOURCE_JSD, 1e-6),
        "c_of_g_mc": Figure(c_mc, c_quadrature, "quadrature of V(G, D*)", 0.01),
        "learned_value_gap": trained(
            learned_value - c_quadrature, 0.0, "V(G, D) <= C(G)", 0.01, "at_most"
        ),
        "saturation_ratio_far": Figure(
            abs(far[2]["minimax"]) / abs(far[2]["non_saturating"]),
            far[1],
            "d/dl of log(1 - sigmoid(l)) / of -log sigmoid(l) = D/(1 - D) ~ D as D -> 0",
            relative=True,
            tolerance=0.5,
        ),
    }


if __name__ == "__main__":
    cli.run(get_config, train_and_evaluate, RULES)
