"""Unconditional and conditional GANs on handwritten digits (SPEC.md §9; mnist5k or digits).

The generator maps z ~ Uniform([0, 1]^d) (004) to pixels in [0, 1] (a sigmoid output); the
discriminator outputs one logit. Both train through lexicon.train as one two-player state, k
discriminator updates and one generator update per minibatch, non-saturating objective (004),
Adam with beta1 = 0.5 (Radford et al. 2016) [add], and the R1 penalty on D (gamma 10 by
default; --config.r1=0 shows the collapse it removes). The conditional GAN gives the label to
both networks (one-hot concatenation; an embedding is a flag).

Sample quality is judged by a classifier trained on the real training images through
lexicon.train (an MLP; its hidden layer is the feature space) [add]:
- conditional samples: how often the classifier reads the requested digit;
- unconditional samples: the entropy (nats, at most log 10) and coverage of the classes it
  assigns them (collapse shows as low entropy and missing classes);
- both: the Frechet distance between Gaussians fitted to the classifier's features of the
  samples and of the real test set (FID with our classifier in place of Inception), set beside
  the distance from the real training images to the same test set.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lexicon import cli, data, report, sweeping, train
from lexicon.gan_metrics import class_spread, feature_frechet
from lexicon.nn import gan
from lexicon.nn.layers import MLP
from lexicon.report import Figure, Report, mean_std
from lexicon.rules import Choice, ConfigError, Range, check_batch_size, positive, widths

DATASETS = ("mnist5k", "digits")
ARCHITECTURES = ("dense", "dcgan")
IMAGE_SHAPES = {"mnist5k": (28, 28, 1), "digits": (8, 8, 1)}
ACCEPTANCE = "issue 14: conditional samples read as the requested digit >= 80% of the time"
CLASSES = 10
SWEEPABLE = ("lr", "beta1", "r1")  # --config.sweep='r1=0,10': both GANs, one program each


def get_config():
    config = train.defaults()
    config.seeds = 2
    config.epochs = 60  # GAN epochs (passes over the training images)
    config.batch_size = 64  # real images per round, cut into k slices
    config.dataset = "mnist5k"  # mnist5k (28x28) | digits (8x8)
    config.architecture = "dense"  # dense (MLPs) | dcgan (small convolutional nets)
    config.gen_hidden = (128, 256)  # dense generator's ReLU layers
    config.disc_hidden = (256, 128)  # dense discriminator's leaky-ReLU layers
    config.conv_width = 32  # channels of the DCGAN nets' first convolution
    config.latent_dim = 32  # d of z ~ Uniform([0, 1]^d)
    config.prior = "uniform"  # uniform | normal
    config.objective = "non_saturating"  # non_saturating (004) | minimax (000/003)
    config.label_mode = "onehot"  # onehot | embed: how the conditional nets take the label
    config.disc_steps = 1  # k, discriminator updates per generator update
    config.lr = 5e-4  # Adam's step size for both players
    config.beta1 = 0.5  # Adam's beta1
    config.r1 = 10.0  # gamma of the R1 penalty on D (0: none): the remedy for collapse here
    config.classifier_hidden = 256  # hidden units of the judging classifier (its features)
    config.classifier_epochs = 20  # epochs of the judging classifier
    config.samples = 2000  # samples judged per seed (and per GAN)
    return config


RULES = {
    "dataset": Choice(*DATASETS),
    "architecture": Choice(*ARCHITECTURES),
    "gen_hidden": widths(max_width=4096, max_layers=8),
    "disc_hidden": widths(max_width=4096, max_layers=8),
    "conv_width": Range(1, 512),
    "latent_dim": Range(1, 4096),
    "prior": Choice(*gan.PRIORS),
    "objective": Choice(*gan.OBJECTIVES),
    "label_mode": Choice(*gan.LABEL_MODES),
    "disc_steps": Range(1, 100),
    "lr": positive(),
    "beta1": Range(0.0, 1.0, open_hi=True),
    "r1": Range(0.0, 1e6),
    "classifier_hidden": Range(1, 4096),
    "classifier_epochs": Range(1, 1000),
    "samples": Range(10, 100_000),
}


def check_config(config):
    if config.batch_size < 1 or config.batch_size % config.disc_steps:
        raise ConfigError(
            f"config.batch_size={config.batch_size} must be >= 1 and split into "
            f"config.disc_steps={config.disc_steps} slices"
        )
    check_batch_size(config, cli.train_examples(config.dataset, seed=config.data_seed))


# --- the judge: a classifier of the real digits ----------------------------------------------


def train_classifier(config, splits, workdir):
    """An MLP trained on the real training images through lexicon.train (one replica)."""
    model = MLP(features=(config.classifier_hidden, CLASSES), activation="relu")
    task = train.classifier(model, optax.adam(1e-3), jnp.zeros((1, splits.train["x"].shape[1])))
    run = config.copy_and_resolve_references()
    run.update(dict(seeds=1, epochs=config.classifier_epochs, batch_size=64))
    run = sweeping.without(run)  # the judge trains once, whatever the GANs' grid
    result = train.fit(
        run, task, splits.train, workdir / "classifier", eval_splits={"test": splits.test}
    )
    params = jax.tree.map(lambda a: a[0], result.state.params)

    @jax.jit
    def judge(x):
        logits, found = model.apply(
            {"params": params}, x.reshape(len(x), -1), mutable=["intermediates"]
        )
        return jnp.argmax(logits, -1), found["intermediates"]["activations"][0]

    return judge, float(result.final("test/accuracy")[0])


# --- the GANs ----------------------------------------------------------------------------------


def make_gan(config, conditional: bool) -> gan.GAN:
    classes = CLASSES if conditional else 0
    shape = IMAGE_SHAPES[config.dataset]
    labels = dict(num_classes=classes, label_mode=config.label_mode)
    if config.architecture == "dcgan":
        generator = gan.DCGANGenerator(shape, config.conv_width, **labels)
        discriminator = gan.DCGANDiscriminator(config.conv_width, **labels)
    else:
        generator = gan.DenseGenerator(
            math.prod(shape), tuple(config.gen_hidden), output_activation="sigmoid", **labels
        )
        discriminator = gan.DenseDiscriminator(tuple(config.disc_hidden), **labels)
    return gan.GAN(
        generator,
        discriminator,
        config.latent_dim,
        prior=config.prior,
        objective=config.objective,
        disc_steps=config.disc_steps,
        # A swept gamma is traced: a constant schedule, so every grid point computes R1.
        r1=config.r1 if isinstance(config.r1, float) else lambda _: config.r1,
        num_classes=classes,
    )


def gan_task(config, conditional: bool, example) -> train.Task:
    """The GAN's task from the config (a sweep's grid point: traced lr, beta1 and gamma)."""
    tx = gan.optimizer("adam", config.lr, config.beta1)
    return make_gan(config, conditional).task(tx, tx, example)


def train_gan(config, conditional: bool, images: dict, workdir):
    model = make_gan(config, conditional)
    example = images["x"][: config.batch_size // config.disc_steps]
    task = functools.partial(gan_task, conditional=conditional, example=example)
    name = "conditional" if conditional else "unconditional"
    result = train.fit(config, task, images, workdir / name)
    return model, result


def judge_samples(config, model, params, judge, conditional: bool, test_features):
    """Per seed: accuracy on requested labels (conditional) or class entropy and coverage,
    and the Frechet distance to the real test set in the judge's features."""
    n = config.samples
    labels = jnp.arange(n) % CLASSES if conditional else None
    draw = jax.jit(jax.vmap(lambda p, key: model.sample(p, key, n, labels)))
    seeds = len(jax.tree.leaves(params)[0])
    keys = jax.random.split(jax.random.key(77), seeds)
    samples = draw(params, keys)
    out = {"accuracy": [], "entropy": [], "coverage": [], "frechet": []}
    for images in samples:
        predicted, features = judge(images)
        predicted = np.asarray(predicted)
        if conditional:
            out["accuracy"].append(float(np.mean(predicted == np.asarray(labels))))
        spread = class_spread(predicted, CLASSES)
        out["entropy"].append(spread["entropy"])
        out["coverage"].append(spread["coverage"])
        out["frechet"].append(feature_frechet(features, test_features))
    return {k: np.asarray(v) for k, v in out.items() if v}, np.asarray(samples[0])


def train_and_evaluate(config, workdir):
    shape = IMAGE_SHAPES[config.dataset]
    splits = data.load(
        config.dataset, seed=config.data_seed, flatten=config.architecture == "dense"
    )
    judge, judge_accuracy = train_classifier(
        config, data.load(config.dataset, seed=config.data_seed), workdir
    )
    flat_test = splits.test["x"].reshape(len(splits.test["x"]), -1)
    _, test_features = judge(flat_test)
    _, train_features = judge(splits.train["x"].reshape(len(splits.train["x"]), -1))
    real_frechet = feature_frechet(train_features, test_features)

    runs = {}
    for conditional in (False, True):
        model, result = train_gan(config, conditional, splits.train, workdir)
        measures, samples = judge_samples(
            config, model, result.state.gen.params, judge, conditional, test_features
        )
        runs["conditional" if conditional else "unconditional"] = (result, measures, samples)

    rep = Report(workdir, f"GANs on {config.dataset}: unconditional and conditional")
    rep.text(
        f"{config.architecture} G and D, z ~ {config.prior}^{config.latent_dim}, "
        f"{config.objective} generator objective, k = {config.disc_steps}, Adam {config.lr} "
        f"(beta1 {config.beta1}), batch {config.batch_size}, {config.epochs} epochs on "
        f"{len(splits.train['x'])} training images, {config.seeds} seeds. Judge: a "
        f"{flat_test.shape[1]}-{config.classifier_hidden}-10 ReLU MLP trained on the real "
        f"training images (test accuracy {judge_accuracy:.4f}); features = its hidden layer. "
        f"{config.samples} samples per seed."
    )
    sweeping.note(rep, config)
    rows = []
    for name, (_, m, _) in runs.items():
        accuracy = mean_std(m["accuracy"]) if "accuracy" in m else "-"
        rows.append(
            (
                name,
                accuracy,
                mean_std(m["entropy"]),
                mean_std(m["coverage"], 1),
                mean_std(m["frechet"], 2),
            )
        )
    rows.append(
        (
            "real training images",
            f"{judge_accuracy:.4f} (test)",
            f"{math.log(10):.4f}",
            "10",
            f"{real_frechet:.2f}",
        )
    )
    rep.table(
        [
            "samples",
            "judged as requested",
            "class entropy (nats)",
            "classes covered",
            "Frechet distance to test",
        ],
        rows,
        caption="Sample quality, mean ± std over seeds",
    )
    side = shape[:2]
    _, _, cond_samples = runs["conditional"]
    grid = cond_samples[: 10 * CLASSES]  # sample i asked for digit i mod 10: columns are digits
    rep.figure(
        report.plot_images(grid.reshape(-1, *side), columns=10, size=0.6),
        "conditional_samples",
        "conditional GAN, seed 0: column c asks for digit c",
    )
    _, _, free = runs["unconditional"]
    rep.figure(
        report.plot_images(free[:100].reshape(-1, *side), columns=10, size=0.6),
        "unconditional_samples",
        "unconditional GAN, seed 0: 100 samples",
    )
    curves = {
        f"{n} {k}": r.curve(f"train/{k}")
        for n, (r, _, _) in runs.items()
        for k in ("d_loss", "g_loss")
    }
    rep.figure(
        report.plot_curves(curves, ylabel="loss", title="the two players' losses"),
        "losses",
        "epoch means of the discriminator's BCE and the generator's objective",
    )
    rep.write()

    cond, free_m = runs["conditional"][1], runs["unconditional"][1]
    d_gap = {n: r.final("train/d_real") - r.final("train/d_fake") for n, (r, _, _) in runs.items()}
    real_source = "the real training images against the same test set"
    # One figure per grid point in a sweep.
    conditional, unconditional = (
        functools.partial(sweeping.figure, runs[n][0]) for n in ("conditional", "unconditional")
    )
    return {
        "conditional": {
            "accuracy": conditional(cond["accuracy"], 0.8, ACCEPTANCE, claim="at_least"),
            "frechet": conditional(cond["frechet"], real_frechet, real_source, claim="at_least"),
            "d_real_minus_d_fake": conditional(d_gap["conditional"]),
        },
        "unconditional": {
            "class_entropy": unconditional(
                free_m["entropy"], math.log(10), "uniform over 10 classes", claim="at_most"
            ),
            "coverage": unconditional(free_m["coverage"], 10.0, "all 10 classes", claim="at_most"),
            "frechet": unconditional(
                free_m["frechet"], real_frechet, real_source, claim="at_least"
            ),
            "d_real_minus_d_fake": unconditional(d_gap["unconditional"]),
        },
        "judge_test_accuracy": Figure(judge_accuracy),
    }


if __name__ == "__main__":
    cli.run(get_config, train_and_evaluate, RULES)
