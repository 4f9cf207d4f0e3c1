"""The variational autoencoder of document 003 on binarized MNIST digits (mnist5k).

Document 003 gives the model: the encoder outputs a Gaussian, not a code,
    Z_mu, Z_ln(sigma^2) = enc(X);  eps ~ N(0, 1);  Z = Z_mu + eps sqrt(exp(Z_ln(sigma^2)));
    X_recon = dec(Z),
and new data come from decoding z ~ p(z). The loss is not in the documents (SPEC §6 [add]):
the negative evidence lower bound of Kingma & Welling (2014),
    -ELBO(x) = E_q(z|x)[-log p(x|z)] + KL(N(mu, sigma^2) || N(0, I)),
    KL = 1/2 sum_j (mu_j^2 + sigma_j^2 - log sigma_j^2 - 1),
with one reparameterized sample per example and a Bernoulli decoder over the 784 pixels.
After training, log p(x) itself is estimated by importance sampling with k draws of q
(Burda et al. 2016), a bound that is never below the ELBO.

One VAE is trained per latent size (2, 10, 20), every seed at once. The report shows the
ELBO curves, samples from the prior, reconstructions, the 2-D latent manifold (a lattice of
z through the inverse normal CDF, Kingma & Welling's figure 4), the latent means coloured by
class, and -ELBO and -log p(x) in nats beside the published MLP-VAE on binarized MNIST.
scale=paper is that published setting (Burda et al.: two tanh layers of 200, 50 latent
units, Adam, batch 20, 3,280 epochs, dynamic binarization, k = 5,000).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lexicon import cli, data, report, sweeping, train
from lexicon.nn import vae
from lexicon.report import Report, mean_std
from lexicon.rules import Choice, ConfigError, Range, check_batch_size, positive, widths

SOURCES = ("mnist5k", "digits", "mnist", "fashion_mnist")  # grey levels in [0, 1]
MNIST_LIKE = ("mnist5k", "mnist")  # where the published binarized-MNIST figure applies
BINARIZATIONS = ("threshold", "dynamic", "none")
SCALES = ("default", "paper")
# Burda, Grosse & Salakhutdinov (ICLR 2016), Table 1: VAE (k = 1), one stochastic layer,
# test -log p(x) in nats estimated with k = 5,000 importance samples, on MNIST with a fresh
# random binarization, 60,000 training images (59,600 + 400 for validation).
PUBLISHED_NLL = 86.76
PUBLISHED_SOURCE = (
    "Burda et al. 2016, Table 1: MLP-VAE k=1, 50 latent, 2x200 tanh, binarized MNIST, "
    "60,000 training images, -log p(x) with k=5000"
)
# The paper preset: Burda et al.'s architecture, optimizer and schedule (3^i epochs at
# learning rate 1e-3 * 10^(-i/7), i = 0..7: 3,280 epochs).
PAPER = {
    "latent_sizes": (2, 10, 20, 50),
    "hidden": (200, 200),
    "activation": "tanh",
    "batch_size": 20,
    "lr": 1e-3,
    "adam_eps": 1e-4,
    "schedule": "burda",
    "epochs": sum(3**i for i in range(8)),
    "binarize": "dynamic",
    "eval_samples": 5000,
}
SWEEPABLE = ("lr", "adam_eps")  # --config.sweep='lr=3e-4,1e-3,3e-3': every VAE, one program each


def get_config():
    config = train.defaults()
    config.seeds = 3
    config.epochs = 30
    config.batch_size = 20
    config.dataset = "mnist5k"  # mnist5k | digits | mnist | fashion_mnist (grey levels)
    config.binarize = "threshold"  # threshold (x > 0.5, = mnist5k_binary) | dynamic | none
    config.likelihood = "bernoulli"  # bernoulli (logits) | gaussian (mean) decoder p(x|z)
    config.decoder_log_var = -3.0  # log sigma^2 of the Gaussian decoder (fixed)
    config.latent_sizes = (2, 10, 20)  # one VAE per latent size; 2 gives the manifold figure
    config.hidden = (200, 200)  # encoder hidden widths; the decoder mirrors them
    config.activation = "relu"  # hidden nonlinearity (Burda et al. use tanh; relu learns faster)
    config.lr = 1e-3  # Adam learning rate
    config.adam_eps = 1e-8  # Adam's epsilon (Burda et al. use 1e-4)
    config.schedule = "constant"  # constant | burda (3^i epochs at lr 10^(-i/7), i = 0..7)
    config.eval_samples = 1000  # k, importance samples per test image for log p(x)
    config.eval_chunk = 50  # importance samples decoded at once (memory bound)
    config.samples = 100  # prior samples shown in the figure
    config.lattice = 20  # the manifold figure decodes a lattice x lattice grid of z
    config.scale = "default"  # default | paper (Burda et al. 2016's setting; hours on a CPU)
    return config


RULES = {
    "dataset": Choice(*SOURCES),
    "binarize": Choice(*BINARIZATIONS),
    "likelihood": Choice(*vae.LIKELIHOODS),
    "decoder_log_var": Range(-20.0, 20.0),
    "latent_sizes": widths(max_width=4096, max_layers=8),
    "hidden": widths(),
    "activation": Choice("tanh", "relu", "sigmoid", "softplus", "elu"),
    "lr": positive(),
    "adam_eps": positive(),
    "schedule": Choice("constant", "burda"),
    "eval_samples": Range(1, 100_000),
    "eval_chunk": Range(1, 10_000),
    "samples": Range(1, 400),
    "lattice": Range(2, 40),
    "scale": Choice(*SCALES),
}


def settings(config):
    """The run's config: scale=paper replaces the keys of the published setting."""
    return cli.with_preset(config, PAPER, config.scale == "paper", get_config())


def check_config(config):
    """Cross-key rules; cli.run checks them before anything compiles."""
    run = settings(config)
    if run.binarize != "none" and run.likelihood == "gaussian":
        raise ConfigError("config.likelihood=gaussian models grey levels; use binarize=none")
    check_batch_size(run, cli.train_examples(run.dataset, seed=run.data_seed))


# --- data ---------------------------------------------------------------------------------------


def load_splits(config):
    """Train, validation and test vectors in [0, 1]: binarized once (threshold), kept grey for
    a fresh draw per step (dynamic, whose evaluation splits get one seeded draw), or grey."""
    splits = data.load(config.dataset, seed=config.data_seed)
    if config.binarize == "none":
        return splits, splits
    if config.binarize == "threshold":
        binary = splits._replace(
            **{n: {**s, "x": data.binarize(s["x"])} for n, s in _items(splits)}
        )
        return binary, binary
    fixed = {
        n: {**s, "x": data.binarize(s["x"], seed=1000 + config.data_seed + i)}
        for i, (n, s) in enumerate(_items(splits))
    }
    return splits, splits._replace(**fixed)


def _items(splits):
    return zip(splits._fields, splits)


# --- the model and its training through lexicon.train --------------------------------------------


def learning_rate(config, steps_per_epoch: int):
    """Constant, or Burda et al.'s: stage i = 0..7 lasts 3^i epochs at lr * 10^(-i/7)."""
    if config.schedule == "constant":
        return config.lr
    bounds = np.cumsum([3**i for i in range(8)])[:-1] * steps_per_epoch
    scales = {int(b): 10 ** (-1 / 7) for b in bounds}
    return optax.piecewise_constant_schedule(config.lr, scales)


def make_task(config, model, features: int, steps_per_epoch: int):
    tx = optax.adam(learning_rate(config, steps_per_epoch), eps=config.adam_eps)
    dynamic = config.binarize == "dynamic"

    def init(key):
        params = vae.init(model, key, jnp.zeros((1, features)))
        return train.TrainState.create(apply_fn=model.apply, params=params, tx=tx)

    def loss_fn(params, model_state, batch, key):
        x = batch["x"]
        if dynamic:  # a fresh binarization of the grey levels at every step
            key, draw = jax.random.split(key)
            x = jax.random.bernoulli(draw, x).astype(x.dtype)
        loss, terms = vae.negative_elbo(model, params, x, key)
        return loss, (terms, model_state)

    def evaluate(state, split):
        # The same noise at every evaluation: the curves move with the parameters only.
        loss, terms = vae.negative_elbo(model, state.params, split["x"], jax.random.key(0))
        return {"loss": loss, **terms}

    return train.Task(init=init, make_step=train.gradient_step(loss_fn), evaluate=evaluate)


def replica(params, i: int):
    return jax.tree.map(lambda a: a[i], params)


def seed0_views(config, model, params, test_x) -> dict:
    """Seed 0's pictures in one compiled call: prior samples, reconstructions and, for a 2-d
    latent space, the decoded lattice and the test means."""

    def views(p):
        out = {
            "samples": vae.sample_prior(model, p, jax.random.key(7), config.samples),
            "reconstructions": vae.reconstruct(model, p, test_x[:10]),
        }
        if model.latent == 2:
            lattice = vae.latent_lattice(config.lattice)
            out["manifold"] = model.apply({"params": p}, lattice, method="mean")
            out["means"] = model.apply({"params": p}, test_x, method="encode")[0]
        return out

    return jax.tree.map(np.asarray, jax.jit(views)(replica(params, 0)))


def train_one(config, latent: int, splits, eval_splits, workdir):
    features = splits.train["x"].shape[1]
    model = vae.VAE(
        features=features,
        latent=latent,
        hidden=tuple(config.hidden),
        activation=config.activation,
        likelihood=config.likelihood,
        decoder_log_var=config.decoder_log_var,
    )
    steps = train.steps_per_epoch(config, len(splits.train["x"]))
    # A task builder: a sweep builds each grid point's task with its own (traced) Adam settings.
    task = functools.partial(make_task, model=model, features=features, steps_per_epoch=steps)
    result = train.fit(
        config,
        task,
        {"x": splits.train["x"]},
        workdir / f"z{latent}",
        eval_splits={"val": {"x": eval_splits.val["x"]}, "test": {"x": eval_splits.test["x"]}},
    )
    test_x = jnp.asarray(eval_splits.test["x"])
    _, test_elbo = result.curve("test/elbo")
    return {
        "model": model,
        "result": result,
        "test_elbo_curve": test_elbo,
        "neg_elbo": -result.final("test/elbo"),
        "train_neg_elbo": -result.final("train/elbo"),
        "kl": result.final("test/kl"),
        "neg_log_px": -vae.seedwise_log_likelihood(
            model, result.state.params, test_x, config.eval_samples, config.eval_chunk
        ),
        "active": vae.active_units(model, result.state.params, test_x),
        "views": seed0_views(config, model, result.state.params, test_x),
    }


# --- the report ----------------------------------------------------------------------------------


def pictures(rep: Report, config, runs: dict, eval_splits, side: int):
    """Prior samples, reconstructions, the 2-D manifold and the latent means (seed 0)."""
    largest = max(runs)
    rep.figure(
        report.plot_images(
            runs[largest]["views"]["samples"].reshape(-1, side, side), columns=10, size=0.6
        ),
        "prior_samples",
        f"E[x|z] for {config.samples} draws z ~ N(0, I) through the {largest}-d decoder (seed 0)",
    )
    rows = [eval_splits.test["x"][:10]] + [r["views"]["reconstructions"] for r in runs.values()]
    titles = [f"{name}" if i == 0 else "" for name in ["data", *runs] for i in range(10)]
    rep.figure(
        report.plot_images(np.concatenate(rows).reshape(-1, side, side), titles=titles),
        "reconstructions",
        "test digits (top row) and E[x|z = mu(x)] for each latent size (rows titled by size)",
    )
    if 2 not in runs:
        rep.text("No 2-d latent space in config.latent_sizes: no manifold or latent-mean figure.")
        return
    views = runs[2]["views"]
    rep.figure(
        report.plot_images(
            views["manifold"].reshape(-1, side, side), columns=config.lattice, size=0.35
        ),
        "manifold",
        f"the learned 2-d manifold: E[x|z] over a {config.lattice}x{config.lattice} lattice of "
        "z = Phi^-1(u), u in [0.05, 0.95]^2 (z1 across, z2 up)",
    )
    rep.figure(
        report.plot_scatter(
            views["means"],
            eval_splits.test["y"],
            xlabel="mu_1",
            ylabel="mu_2",
            title="test digits: posterior means mu(x), 2-d VAE",
        ),
        "latent_means",
        "the means of q(z|x) for the test digits, coloured by class (seed 0)",
    )


def train_and_evaluate(config, workdir):
    config = settings(config)
    splits, eval_splits = load_splits(config)
    side = math.isqrt(splits.train["x"].shape[1])
    runs = {
        latent: train_one(config, latent, splits, eval_splits, workdir)
        for latent in config.latent_sizes
    }

    rep = Report(workdir, "Variational autoencoder (document 003, ELBO [add])")
    n_train = len(splits.train["x"])
    rep.text(
        f"Bernoulli-decoder VAEs on `{config.dataset}` (binarization: {config.binarize}; "
        f"{n_train} training, {len(splits.test['x'])} test images), encoder "
        f"{splits.train['x'].shape[1]}-{'-'.join(map(str, config.hidden))}-(mu, log sigma^2), "
        f"{config.activation}, decoder mirrored; Adam {config.lr}, batch {config.batch_size}, "
        f"{config.epochs} epochs, {config.seeds} seeds, one sample of eps per example and step. "
        f"-log p(x) is the importance-sampled estimate with k = {config.eval_samples}."
    )
    sweeping.note(rep, config)
    for latent, run in runs.items():
        result = run["result"]
        rep.figure(
            report.plot_curves(
                {"train": result.curve("train/elbo"), "test": result.curve("test/elbo")},
                ylabel="ELBO (nats per image)",
                title=f"{latent}-d latent space",
            ),
            f"elbo_z{latent}",
            f"ELBO over training, {latent}-d latent: seed mean ± 1 std",
        )
    compared = max(runs) if config.dataset in MNIST_LIKE else None  # beside the paper
    rows = [
        (latent, *(mean_std(run[k], 2) for k in ("train_neg_elbo", "neg_elbo", "neg_log_px")))
        + (mean_std(run["neg_elbo"] - run["neg_log_px"], 2), mean_std(run["kl"], 2))
        + (mean_std(run["active"], 1), f"{PUBLISHED_NLL} (-log p)" if latent == compared else "")
        for latent, run in runs.items()
    ]
    headers = "latent|train -ELBO|test -ELBO|test -log p(x) (IS)|-ELBO - (-log p)|test KL"
    headers += "|active units|published (Burda et al. 2016, 50-d)"
    rep.table(headers.split("|"), rows, caption="Final figures in nats per image, mean ± std")
    if compared is not None:
        top = runs[compared]
        rep.text(
            f"**Against the published figure.** {PUBLISHED_SOURCE}: {PUBLISHED_NLL} nats. Ours "
            f"with {max(runs)} latent units: test -ELBO {mean_std(top['neg_elbo'], 2)} and "
            f"importance-sampled -log p(x) {mean_std(top['neg_log_px'], 2)} nats "
            f"({np.mean(top['neg_log_px']) - PUBLISHED_NLL:+.2f} nats from the paper). "
            "The -ELBO is an upper bound on -log p(x), so it sits above any -log p figure; "
            "-log p(x) is the like-for-like number. The data differ: the paper trains on "
            f"60,000 images, we on {n_train} ({60000 / n_train:.0f} times fewer), which "
            "overfits sooner (train vs test -ELBO above); it trains for 3,280 epochs with a "
            f"fresh random binarization per use, we for {config.epochs} epochs with "
            f"binarization '{config.binarize}' (scale=paper is their setting)."
        )
    pictures(rep, config, runs, eval_splits, side)
    rep.write()

    figures = {}
    for latent, run in runs.items():
        published = latent == compared
        curve = run["test_elbo_curve"]
        figure = functools.partial(sweeping.figure, run["result"])  # one per grid point
        figures[f"z{latent}"] = {
            "test_neg_elbo": figure(
                run["neg_elbo"],
                reference=PUBLISHED_NLL if published else None,
                source=PUBLISHED_SOURCE + " (an ELBO lies above -log p)" if published else None,
            ),
            "test_neg_log_px": figure(
                run["neg_log_px"],
                reference=PUBLISHED_NLL if published else None,
                source=PUBLISHED_SOURCE if published else None,
            ),
            "test_elbo_gain": figure(curve[:, -1] - curve[:, 0]),  # last - first epoch
            "active_units": figure(run["active"]),
        }
    return figures


if __name__ == "__main__":
    cli.run(get_config, train_and_evaluate, RULES)
