"""Autoencoders: undercomplete vs PCA, deep 2-D codes, sparse, denoising, contractive, stacked.

An encoder h = f(x) and a decoder r = g(h) minimize L(x, g(f(x))) (SPEC §6, documents 000-003),
here ||g(f(x)) - x||^2 per example. The parts (config.parts), in the lecture's order:
  pca          test error vs code size for a linear AE, PCA and a deep ReLU AE; the linear AE
               spans PCA's subspace (principal angles)
  codes2d      the deep AE's 2-D codes against PCA's, by class (Hinton & Salakhutdinov 2006)
  sparse       + lambda sum_i |h_i| (002, 003), or + beta sum_j KL(rho || rho^_j) [add]
  denoising    ||g(f(x~)) - x||^2 with x~ = x + eta, Gaussian or masking noise (002, 003)
  contractive  + lambda ||df/dx||_F^2 (003; 002's lambda sum_i ||grad_x h_i|| an option):
               Jacobian norm, code robustness, tangent directions from the SVD of df/dx
  stacked      greedy layer-wise pretraining of tied layers, then a classifier on the last
               code with few labels per class, against the same net from random init
  identity     an overcomplete AE without a regularizer copies its input (003)
The one-layer AEs (plain, L1, KL, DAE, CAE) share sigmoid codes and a linear decoder, and each
is measured in every way. Adam's step decays to 0 on a cosine (a linear AE reaches PCA's
subspace only as its minibatch noise vanishes); linear AEs see centred inputs.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from scipy.linalg import subspace_angles

from lexicon import baselines, cli, data, regularizers, sweeping, train
from lexicon.autoencoding import autoencoder_task
from lexicon.nn import autoencoders as ae
from lexicon.report import Figure, Report, compare, mean_std, plot_curves, plot_images, plot_scatter
from lexicon.rules import Choice, ConfigError, Items, Names, Range, positive, probability, widths

FEATURES = {"mnist5k": 784, "digits": 64, "mnist1d": 40}
IMAGE_SHAPES = {"mnist5k": (28, 28), "digits": (8, 8), "mnist1d": (1, 40)}
PARTS = ("pca", "codes2d", "sparse", "denoising", "contractive", "stacked", "identity")
# the one-layer AEs and the part that asks for each (the plain AE is every part's baseline)
ONE_LAYER = dict(plain=None, L1="sparse", KL="sparse", DAE="denoising", CAE="contractive")
# --config.sweep='l1=0.01,0.1': the penalized one-layer AEs (L1, KL, CAE) at every grid point;
# every other AE trains once (the penalty weights do not reach it)
SWEEPABLE = ("l1", "rho", "beta", "contractive")


def get_config():
    config = train.defaults()
    config.seeds = 3
    config.epochs = 20  # epochs of every non-linear autoencoder
    config.batch_size = 64
    config.dataset = "mnist5k"  # mnist5k (28x28 MNIST) | digits (8x8) | mnist1d
    config.parts = "all"  # all | comma-separated: pca,codes2d,sparse,denoising,contractive,...
    config.lr = 3e-3  # Adam's initial step size (cosine decay to 0) for non-linear AEs
    config.linear_lr = 0.03  # the same for the linear AEs
    config.linear_epochs = 30  # epochs of the linear AEs
    config.code_sizes = (2, 8, 32)  # code sizes of the linear and deep AEs, and PCA's k
    config.hidden = (256, 64)  # the deep ReLU AE's encoder widths; its decoder mirrors them
    config.units = 256  # sigmoid code units of the one-layer AEs
    config.l1 = 0.1  # lambda of the L1 penalty lambda sum_i |h_i|
    config.rho = 0.05  # target average activation of the KL penalty
    config.beta = 1.0  # beta of beta sum_j KL(rho || rho^_j)
    config.near_zero = 0.05  # a sigmoid activation below this counts as near zero
    config.noise = "gaussian"  # gaussian (x + eta) | masking (inputs set to 0): the DAE's noise
    config.noise_level = 0.3  # the DAE's training noise: std of eta, or the masked fraction
    config.noise_levels = (0.0, 0.1, 0.2, 0.3, 0.5)  # levels of the error-vs-noise curve
    config.contractive = 0.1  # lambda of the contractive penalty
    config.contractive_form = "squared"  # squared (003, ||df/dx||_F^2) | unsquared (002)
    config.perturbation = 0.1  # std of the input perturbation d of the code-change measure
    config.stack = (256, 64)  # widths of the greedily pretrained tied sigmoid layers
    config.pretrain_epochs = 10  # epochs of each layer's pretraining
    config.labels_per_class = (10, 50, 100)  # labelled examples per class for the classifier
    config.finetune_steps = 300  # Adam steps of the classifier on the labelled examples
    config.overcomplete = 1024  # code size of the unregularized overcomplete linear AE
    return config


RULES = {
    "dataset": Choice(*FEATURES),
    "parts": Names(PARTS, everything="all"),
    "near_zero": probability(),
    "noise": Choice(*ae.NOISES),
    "contractive_form": Choice("squared", "unsquared"),
    "rho": Range(0, 1, open_lo=True),
    **{key: positive() for key in ("lr", "linear_lr", "perturbation")},
    **{key: Range(0) for key in ("l1", "beta", "noise_level", "contractive")},
    **{key: Range(1) for key in ("linear_epochs", "pretrain_epochs", "finetune_steps")},
    **{key: Range(1, 16384) for key in ("units", "overcomplete")},
    **{key: widths() for key in ("code_sizes", "hidden", "stack")},
    "labels_per_class": Items(Range(1, 500), kind=int),
    "noise_levels": Items(Range(0, 10), kind=float),
}


def check_config(config):
    """Cross-key rules; cli.run checks them before anything compiles."""
    d = FEATURES[config.dataset]
    if max(config.code_sizes) > d or config.overcomplete <= d:
        raise ConfigError(f"{config.dataset} has {d} inputs: code_sizes <= {d} < overcomplete")
    if config.rho >= 1 or (config.noise == "masking" and config.noise_level >= 1):
        raise ConfigError("config.rho and a masking noise_level must lie below 1")
    if "codes2d" in RULES["parts"].parse(config.parts) and 2 not in config.code_sizes:
        raise ConfigError("part codes2d needs 2 in config.code_sizes")


# --- fitting an autoencoder (lexicon.autoencoding holds its task) -------------------------------


def steps(config, x) -> int:
    return train.steps_per_epoch(config, len(x))


def fit(config, workdir, model, x, x_test, lr=None, epochs=None, penalty=None, **task_args):
    """Trains an autoencoder on x; returns the Result and the stacked params of the replicas.
    ``penalty(config)`` gives Omega from the config's weights (a sweep's are traced); an AE
    without one trains once, whatever the grid."""
    run = config.copy_and_resolve_references()
    run.epochs = epochs or config.epochs
    run = run if penalty else sweeping.without(run)
    tx = optax.adam(optax.cosine_decay_schedule(lr or config.lr, run.epochs * steps(run, x)))

    def task(swept):  # a task builder: a sweep's grid point gets its own penalty weights
        return autoencoder_task(model, tx, x, penalty=penalty and penalty(swept), **task_args)

    result = train.fit(run, task, {"x": x}, workdir, eval_splits={"test": {"x": x_test}})
    return result, result.state.params


def fit_linear(config, workdir, code, splits, lr=None):
    """A linear AE d -> code -> d on inputs centred on the training mean."""
    mean, model = splits.train["x"].mean(0), ae.dense_autoencoder(FEATURES[config.dataset], code)
    x, x_test = splits.train["x"] - mean, splits.test["x"] - mean
    result, params = fit(
        config, workdir, model, x, x_test, lr or config.linear_lr, config.linear_epochs
    )
    return model, mean, result, params


def seedwise(model, method=None):
    """model.apply of every seed's params on one shared input."""
    return jax.jit(jax.vmap(lambda p, x: model.apply({"params": p}, x, method=method), (0, None)))


def against(values, reference, source, tolerance=None, result=None):
    """``values`` held against the mean of ``reference``; one figure per grid point of
    ``result``'s sweep."""
    held = dict(reference=float(np.mean(reference)), source=source, tolerance=tolerance)
    return Figure(values, **held) if result is None else sweeping.figure(result, values, **held)


# --- undercomplete AEs against PCA, and 2-D codes -----------------------------------------------


def pca_part(config, splits, workdir, report, out):
    """Test error vs code size (linear AE, PCA, deep AE); principal angles to PCA's subspace;
    with part codes2d, the 2-D codes of the deep AE and of PCA."""
    x, x_test, d = splits.train["x"], splits.test["x"], FEATURES[config.dataset]
    sizes, rows, errors = sorted(config.code_sizes), [], {"linear AE": [], "deep AE": []}
    for k in sizes:
        pca = out.setdefault("pca", {})[k] = baselines.pca_reconstruction(x, x_test, k)
        out[f"linear_{k}"] = fit_linear(config, workdir / f"linear_{k}", k, splits)
        linear, params = out[f"linear_{k}"][2:]
        deep_model = ae.dense_autoencoder(d, k, config.hidden)
        deep, out[f"deep_{k}"] = fit(config, workdir / f"deep_{k}", deep_model, x, x_test)
        decoders = np.asarray(params["decoder"]["output"]["kernel"], np.float64)
        angles = [np.degrees(subspace_angles(w.T, pca["components"].T)).max() for w in decoders]
        for name, result in zip(errors, (linear, deep)):
            errors[name].append(result.final("test/loss"))
        cells = [f"{pca[key]:.3f}" for key in ("eigengap", "error")]
        cells += [mean_std(v[-1], 3) for v in errors.values()]
        rows.append((k, *cells, mean_std(angles, 2)))
        out["figures"][f"pca/largest_angle_deg_k{k}"] = against(angles, 0, "PCA", 1.0)
    curves = {name: (sizes, np.stack(v, axis=1)) for name, v in errors.items()}
    curves["PCA"] = (sizes, np.array([[out["pca"][k]["error"] for k in sizes]]))
    fig = plot_curves(curves, xlabel="code size", ylabel="test error", log_y=True)
    report.figure(fig, "code_size", "test ||g(f(x)) - x||^2 vs code size (seed mean ± std)")
    head = "k|lambda_k+1 / lambda_k|PCA|linear AE|deep AE|largest angle, linear AE to PCA"
    report.table(head.split("|"), rows, caption="Test error per example; angles in degrees")
    k, pca_error = sizes[-1], out["pca"][sizes[-1]]["error"]
    for name, values in errors.items():
        key = f"pca/{name.split()[0]}_ae_error_k{k}"
        out["figures"][key] = against(values[-1], pca_error, f"PCA, k={k}", 0.01 * pca_error)
    if "codes2d" not in RULES["parts"].parse(config.parts):
        return
    # Hinton & Salakhutdinov's picture: the deep AE's 2-D codes against PCA's, by class
    params, pca = out["deep_2"], out["pca"][2]
    encode = seedwise(ae.dense_autoencoder(d, 2, config.hidden), "encode")
    codes = [np.asarray(encode(params, s["x"])) for s in (splits.train, splits.test)]
    y, y_test = splits.train["y"], splits.test["y"]
    ours = [baselines.knn_accuracy(a, y, b, y_test) for a, b in zip(*codes)]
    theirs = baselines.knn_accuracy(pca["train_codes"], y, pca["test_codes"], y_test)
    fig = plot_scatter(codes[1][0], y_test, title=f"deep AE, encoder {tuple(config.hidden)}")
    report.figure(fig, "codes_deep_ae", "2-D codes of the test digits, deep autoencoder (seed 0)")
    fig = plot_scatter(pca["test_codes"], y_test, title="PCA")
    report.figure(fig, "codes_pca", "the first two principal components of the test digits")
    report.text(f"5-NN test accuracy on the 2-D codes: deep AE {mean_std(ours)}, PCA {theirs:.4f}.")
    out["figures"]["codes2d/knn_accuracy"] = against(ours, theirs, "PCA's 2-D codes, 5-NN")


# --- one-layer AEs: plain, sparse (L1, KL), denoising, contractive -----------------------------


def one_layer_part(config, splits, parts, workdir, report, out):
    """Every one-layer AE that the parts ask for, and every measure on each of them."""
    c, d, x, x_test = config, FEATURES[config.dataset], splits.train["x"], splits.test["x"]
    shape = IMAGE_SHAPES[c.dataset]
    model = ae.dense_autoencoder(d, c.units, code_activation=nn.sigmoid)
    squared = c.contractive_form == "squared"

    def contractive(params, x, h, weight):  # the sigmoid layer's closed form (measured with jacfwd)
        w, b = params["encoder"]["code"]["kernel"], params["encoder"]["code"]["bias"]
        return regularizers.sigmoid_contractive_penalty(w, b, x, weight, squared=squared)

    penalties = {  # config -> Omega(params, x~, h), with that config's (in a sweep: traced) weights
        "L1": lambda r: lambda p, x, h: regularizers.l1_activity_penalty(h, r.l1),
        "KL": lambda r: lambda p, x, h: regularizers.kl_sparsity_penalty(h, r.rho, r.beta),
        "CAE": lambda r: functools.partial(contractive, weight=r.contractive),
    }
    noise = {"DAE": {"noise": lambda key, x: ae.corrupt(key, x, c.noise, c.noise_level)}}
    names = [n for n, part in ONE_LAYER.items() if part is None or part in parts]
    runs = {
        n: fit(c, workdir / n, model, x, x_test, penalty=penalties.get(n), **noise.get(n, {}))
        for n in names
    }
    levels, key = sorted(set(c.noise_levels) | {c.noise_level}), jax.random.key(c.data_seed)
    noisy = jnp.stack([ae.corrupt(key, jnp.asarray(x_test), c.noise, v) for v in levels])
    probe = jnp.asarray(x_test[:100])  # the Jacobians are (100, units, inputs) per seed
    delta = c.perturbation * jax.random.normal(key, probe.shape)

    @jax.jit
    @jax.vmap
    def measures(params):
        encode = lambda v: model.apply({"params": params}, v, method="encode")  # noqa: E731
        r = jax.vmap(lambda v: model.apply({"params": params}, v))(noisy)
        j = regularizers.encoder_jacobians(encode, probe)
        moved = jnp.linalg.norm(encode(probe + delta) - encode(probe), axis=-1)
        return {
            "h": encode(jnp.asarray(x_test)),
            "noise": jnp.sum((r - x_test) ** 2, -1).mean(-1),
            "jacobian": jnp.mean(jnp.sum(j**2, axis=(1, 2))),
            "change": jnp.mean(moved / jnp.linalg.norm(delta, axis=-1)),
            "gram": j @ j.swapaxes(1, 2) if c.units <= d else j.swapaxes(1, 2) @ j,
            "first": j[0],  # df/dx at one test digit
        }

    # The SVDs run on the host: two batched LAPACK SVDs in one XLA:CPU program can deadlock.
    m = {n: jax.tree.map(np.asarray, measures(runs[n][1])) for n in names}
    bins, at, k = np.linspace(0, 1, 21), levels.index(c.noise_level), min(30, d, c.units)
    for n in names:
        gram, h = m[n].pop("gram").astype(np.float64), m[n]["h"]
        m[n]["spectrum"] = np.sqrt(np.clip(np.linalg.eigvalsh(gram), 0, None))[..., ::-1].mean(1)
        m[n]["tangents"] = np.linalg.svd(m[n].pop("first"), full_matrices=False)[2][:, :5]
        m[n]["near"], m[n]["mean_h"] = (h < c.near_zero).mean((1, 2)), h.mean((1, 2))
        m[n]["hist"] = np.stack([np.histogram(v, bins)[0] / v.size for v in h])

    def curves(key, xs):
        return {n: (xs, m[n][key][:, : len(xs)]) for n in names}

    centres, caption = (bins[1:] + bins[:-1]) / 2, "histogram of the code activations, test set"
    fig = plot_curves(curves("hist", centres), xlabel="h_j", ylabel="fraction", log_y=True)
    report.figure(fig, "activations", caption)
    fig = plot_curves(curves("noise", levels), xlabel=f"{c.noise} noise", ylabel="test error")
    report.figure(fig, "denoising", f"||g(f(x~)) - x||^2 (the DAE trains at {c.noise_level})")
    fig = plot_curves(curves("spectrum", np.arange(1, k + 1)), xlabel="i", ylabel="s_i", log_y=True)
    report.figure(fig, "jacobian_spectrum", "singular values s_i of df/dx (test mean)")
    head = f"AE;test error;h_j < {c.near_zero};mean h_j;error at noise {c.noise_level}"
    head = f"{head};mean ||df/dx||_F^2;||f(x+d) - f(x)|| / ||d||".split(";")
    rows = []
    for n in names:
        values = (m[n]["near"], m[n]["mean_h"], m[n]["noise"][:, at], m[n]["jacobian"])
        cells = [mean_std(v, 3) for v in (*values, m[n]["change"])]
        rows.append((n, mean_std(runs[n][0].final("test/loss"), 2), *cells))
    caption = f"{c.units} sigmoid units; lambda {c.l1}; rho {c.rho}, beta {c.beta}; CAE lambda "
    report.table(head, rows, caption=f"One-layer AEs, {caption}{c.contractive}")
    figures, plain = out["figures"], m["plain"]
    for n in [n for n in ("L1", "KL") if n in names]:  # one figure per grid point in a sweep
        figures[f"sparse/near_zero_{n}"] = against(
            m[n]["near"], plain["near"], "plain AE", result=runs[n][0]
        )
    if "DAE" in names:
        dae, baseline = m["DAE"]["noise"][:, at], plain["noise"][:, at]
        figures["denoising/error"] = against(dae, baseline, "plain AE, same noise")
        shown = [x_test[:10], noisy[at, :10]]
        shown += [seedwise(model)(runs[n][1], noisy[at, :10])[0] for n in ("plain", "DAE")]
        fig = plot_images(np.clip(np.concatenate(shown), 0, 1).reshape(-1, *shape), columns=10)
        report.figure(fig, "denoising_images", "rows: clean, noisy, plain AE, DAE (seed 0)")
    if "CAE" in names:
        for key in ("jacobian", "change"):
            figures[f"contractive/{key}"] = against(
                m["CAE"][key], plain[key], "plain AE", result=runs["CAE"][0]
            )
        tangents = np.concatenate([probe[:1], m["plain"]["tangents"][0], m["CAE"]["tangents"][0]])
        fig = plot_images(tangents.reshape(-1, *shape), columns=11, cmap="RdBu")
        caption = "a test digit; the 5 leading tangent directions (right singular vectors of "
        report.figure(fig, "tangents", caption + "df/dx) of the plain AE, then of the CAE")


# --- greedy layer-wise pretraining --------------------------------------------------------------


def stacked_part(config, splits, workdir, report, out):
    """Pretrain layer by layer (train.stages), then classify with few labels; vs random init."""
    config = sweeping.without(config)  # the swept penalty weights do not reach it
    sizes, x = (FEATURES[config.dataset], *config.stack), splits.train["x"]
    classes, tx = splits.num_classes, optax.adam(config.lr)
    model, epochs = ae.StackedClassifier(sizes, classes), config.pretrain_epochs
    schedule = optax.cosine_decay_schedule(config.lr, epochs * steps(config, x))
    plan = []  # each layer trains from a fresh Adam state
    for i in range(len(sizes) - 1):
        task = autoencoder_task(model, optax.adam(schedule), x, layer=i)
        plan.append(train.Stage(f"layer_{i}", task, epochs, optax.adam(schedule)))
    pretrained = train.stages(config, plan, {"x": x}, workdir / "pretrain")[plan[-1].name].state
    nets = [ae.StackedClassifier(sizes, classes, frozen) for frozen in (False, True)]
    tasks = [train.classifier(net, tx, x[:1]) for net in nets]
    acc = {k: [] for k in ("pretrained", "random init", "pretrained, head only", "pixels")}
    for n in config.labels_per_class:
        few = data.per_class_subsets(splits.train, n, train.replica_seeds(config), seed=n)
        run = config.copy_and_resolve_references()
        run.batch_size = min(config.batch_size, n * classes)
        run.epochs = run.eval_every = -(-config.finetune_steps // (n * classes // run.batch_size))
        args = {"eval_splits": {"test": splits.test}, "per_replica": True}
        for name, frozen in (("pretrained", 0), ("pretrained, head only", 1)):
            stage = [train.Stage(f"n{n}", tasks[frozen], run.epochs, tx)]
            path = workdir / name.replace(", ", "_").replace(" ", "_")
            tuned = train.stages(run, stage, few, path, initial_state=pretrained, **args)
            acc[name].append(tuned[f"n{n}"].final("test/accuracy"))
        scratch = train.fit(run, tasks[0], few, workdir / f"random/n{n}", **args)
        acc["random init"].append(scratch.final("test/accuracy"))
        subsets = [{"x": a, "y": b} for a, b in zip(few["x"], few["y"])]
        acc["pixels"].append([baselines.logistic_regression(s, splits.test) for s in subsets])
    ns = list(config.labels_per_class)
    curves = {k: (ns, np.stack(v, 1)) for k, v in acc.items()}
    fig = plot_curves(curves, xlabel="labels per class", ylabel="test accuracy")
    report.figure(fig, "stacked", "few labels: greedy pretraining vs random init (mean ± std)")
    ours, theirs = acc["pretrained"], acc["random init"]
    verdicts = [compare(a, b, paired=True, names=list(acc)[:2]) for a, b in zip(ours, theirs)]
    rows = [(n, *(mean_std(a[i]) for a in acc.values())) for i, n in enumerate(ns)]
    head = ["labels per class", "pretrained, fine-tuned", *list(acc)[1:3], "logistic reg., pixels"]
    report.table(head, rows, caption=f"Tied sigmoid layers {sizes}, {epochs} epochs each")
    lines = [f"- {n} labels per class: {v.sentence}" for n, v in zip(ns, verdicts)]
    report.text("Pretraining vs random init (fine-tuned end to end):\n" + "\n".join(lines))
    for n, a, b, v in zip(ns, ours, theirs, verdicts):  # "matches" = compare's undecided
        source, half = "random init, same net, labels", (v.high - v.low) / 2
        out["figures"][f"stacked/accuracy_{n}"] = against(a, b, source, tolerance=half)


# --- the identity trap ---------------------------------------------------------------------------


def identity_part(config, splits, workdir, report, out):
    """An overcomplete linear AE without a regularizer copies its input: in the basis u_i of the
    principal directions its map P = W_e W_d keeps every direction (u_i^T P u_i = 1), where an
    undercomplete one keeps k of them and drops the rest."""
    k, x = max(config.code_sizes), splits.train["x"]
    _, s, u = np.linalg.svd(x - x.mean(0), full_matrices=False)
    m = int(np.searchsorted(np.cumsum(s**2) / np.sum(s**2), 0.95)) + 1
    over = fit_linear(config, workdir / "overcomplete", config.overcomplete, splits, config.lr)
    under = out.get(f"linear_{k}") or fit_linear(config, workdir / "under", k, splits)
    runs = {"overcomplete": over, "undercomplete": under}
    gains, rows = {}, []
    for name, (model, _, result, params) in runs.items():
        maps = params["encoder"]["code"]["kernel"] @ params["decoder"]["output"]["kernel"]
        gains[name] = np.einsum("id,sde,ie->si", u, np.asarray(maps, np.float64), u)
        cells = [mean_std(v, 3) for v in (result.final("test/loss"), gains[name][:, :m].mean(1))]
        rows.append((f"{name}, code {model.encoder.code}", *cells))
    head = ["linear AE, no regularizer", "test error", f"mean u_i^T P u_i, i <= {m}"]
    caption = f"The identity trap; the first {m} principal directions carry 95% of the variance"
    report.table(head, rows, caption=caption)
    curves = {n: (np.arange(1, len(u) + 1), g) for n, g in gains.items()}
    fig = plot_curves(curves, xlabel="principal direction i", ylabel="gain u_i^T P u_i")
    report.figure(fig, "identity", "what the linear AE keeps of each principal direction")
    copied = gains["overcomplete"][:, :m].mean(1)
    out["figures"]["identity/gain"] = against(copied, 1.0, "the identity map", 0.05)


def train_and_evaluate(config, workdir):
    check_config(config)
    splits = data.load(config.dataset, seed=config.data_seed)
    splits = data.standardize(splits) if config.dataset == "mnist1d" else splits
    parts, out = RULES["parts"].parse(config.parts), {"figures": {}}
    sizes = f"{len(splits.train['y'])} training and {len(splits.test['y'])} test examples"
    report = Report(workdir, "Autoencoders").text(f"`{config.dataset}`: {sizes}.")
    sweeping.note(report, config)
    if "pca" in parts or "codes2d" in parts:
        pca_part(config, splits, workdir, report, out)
    if {"sparse", "denoising", "contractive"} & set(parts):
        one_layer_part(config, splits, parts, workdir, report, out)
    if "stacked" in parts:
        stacked_part(config, splits, workdir, report, out)
    if "identity" in parts:
        identity_part(config, splits, workdir, report, out)
    report.write()
    return out["figures"]


if __name__ == "__main__":
    cli.run(get_config, train_and_evaluate, RULES)
