"""Recommender systems of document 004 on implicit MovieLens feedback: content-based,
collaborative filtering and neural collaborative filtering (GMF, MLP, NeuMF).

Document 004 recommends by content (items near what the user liked, by vector distance), by
collaboration (users of similar taste) and by neural collaborative filtering: user and item
embeddings, a GMF tower (elementwise product, linear), an MLP tower (non-linear) and NeuMF,
which joins both under a sigmoid that gives the probability of an interaction. [add] The
protocol is He et al.'s (WWW 2017): every rating is an interaction, each user's latest one
is held out, and HR@10 and NDCG@10 rank it among 99 sampled items the user never saw. The
models learn from the log loss over each positive and 4 negatives drawn afresh every epoch.

Each predictive-factors size of the sweep trains GMF and MLP, then NeuMF from both
(pretraining, alpha = 0.5); NeuMF from scratch and BPR matrix factorization train at
``factors``. The classic recommenders (most popular, item- and user-based CF, content-based)
score the same candidates. Everything runs on MovieLens 100k when it is prepared (fetched
with pip on first use), else on the synthetic data, and the report says which.
scale=paper takes the paper's settings.
"""

from __future__ import annotations

import pathlib

import jax
import numpy as np
import optax

from lexicon import cli, recsys, report, sweeping, train
from lexicon.data import DataError, movielens
from lexicon.nn import ncf
from lexicon.report import Figure, Report, mean_std
from lexicon.rules import (
    Choice,
    ConfigError,
    Names,
    Range,
    check_batch_size,
    positive,
    probability,
    widths,
)
from lexicon.train.sweep import of as sweep_of

SCALES = ("default", "paper")
SWEEPABLE = ("lr",)  # e.g. --config.models=gmf,mlp,neumf_scratch,bpr --config.sweep='lr=1e-3,5e-3'
MODELS = ("gmf", "mlp", "neumf", "neumf_scratch", "bpr")
TOWERS = ("gmf", "mlp", "neumf")  # the models of the predictive-factors sweep
# He et al. (WWW 2017), Table 2: NeuMF with pretraining on MovieLens 1M, 64 predictive
# factors, HR@10 and NDCG@10 with 99 sampled negatives (best epoch).
PUBLISHED = {"hr": 0.730, "ndcg": 0.447}
PUBLISHED_FACTORS = 64
PUBLISHED_SOURCE = (
    "He et al. 2017, Table 2: NeuMF with pretraining, 64 factors, MovieLens 1M "
    "(6,040 users, 3,706 items, 1,000,209 ratings)"
)
# The paper's settings (section 4.1): Adam at 0.001, batches of 256 training instances
# (51 positives with their 4 negatives each: 255), 4 negatives, a 3-layer halving tower,
# factors 8 to 64, pretrained NeuMF fine-tuned with plain SGD.
PAPER = {
    "factors": 64,
    "factor_sizes": (8, 16, 32, 64),
    "layers": 3,
    "batch_size": 51,
    "lr": 1e-3,
    "negatives": 4,
    "epochs": 20,
    "pretrained_optimizer": "sgd",
    "pretrained_lr": 1e-3,
    "alpha": 0.5,
}
NAMES = {
    "gmf": "GMF",
    "mlp": "MLP",
    "neumf": "NeuMF (pretrained)",
    "neumf_scratch": "NeuMF (from scratch)",
    "bpr": "MF (BPR)",
    "most_popular": "most popular",
    "item_knn": "item-based CF (cosine)",
    "user_knn": "user-based CF",
    "content": "content-based (genres, decade)",
}


def get_config():
    config = train.defaults()
    config.seeds = 3
    config.epochs = 5
    config.batch_size = 512  # positives per step; a step trains on batch_size*(1+negatives)
    config.dataset = "ml-100k"  # ml-100k (synthetic if it cannot be prepared) | ml-1m | synthetic
    config.models = "all"  # all, or some of gmf,mlp,neumf (pretrained),neumf_scratch,bpr
    config.factors = 8  # predictive factors of the main table (GMF size, last MLP layer)
    config.factor_sizes = (8, 16, 32, 64)  # predictive factors of the sweep (GMF, MLP, NeuMF)
    config.layers = 3  # hidden layers of the MLP tower, halving down to `factors`
    config.negatives = 4  # sampled negatives per positive, afresh every epoch
    config.k = 10  # cut-off of HR@k and NDCG@k
    config.lr = 5e-3  # Adam learning rate of GMF, MLP, NeuMF from scratch and BPR
    config.pretrained_optimizer = "adam"  # adam | sgd: fine-tuning of the pretrained NeuMF
    config.pretrained_lr = 1e-3  # its learning rate
    config.alpha = 0.5  # weight of GMF (1 - alpha: MLP) in the pretrained NeuMF read-out
    config.neighbors = 50  # k nearest users of user-based CF
    config.synthetic_users = 600  # users of the synthetic data
    config.synthetic_items = 1000  # items of the synthetic data
    config.nonlinear = 1.0  # weight of the synthetic rectified interaction term
    config.scale = "default"  # default | paper (He et al.'s settings)
    return config


RULES = {
    "dataset": Choice(*movielens.SOURCES),
    "models": Names(MODELS, everything="all"),
    "factors": Range(1, 1024),
    "factor_sizes": widths(max_width=1024, max_layers=8),
    "layers": Range(1, 6),
    "negatives": Range(1, 100),
    "k": Range(1, movielens.TEST_NEGATIVES + 1),
    "lr": positive(),
    "pretrained_optimizer": Choice("adam", "sgd"),
    "pretrained_lr": positive(),
    "alpha": probability(),
    "neighbors": Range(1, 100_000),
    "synthetic_users": Range(2, 100_000),
    "synthetic_items": Range(2 * movielens.TEST_NEGATIVES, 100_000),
    "nonlinear": Range(0.0, 100.0),
    "scale": Choice(*SCALES),
}


def settings(config):
    """The run's config: scale=paper replaces the keys of the published setting."""
    return cli.with_preset(config, PAPER, config.scale == "paper", get_config())


def check_config(config):
    """Cross-key rules; cli.run checks them before anything compiles (ml-100k only when it
    is already prepared: checking must not fetch)."""
    run = settings(config)
    models = RULES["models"].parse(run.models)
    if "neumf" in models and not {"gmf", "mlp"} <= set(models):
        raise ConfigError("config.models: neumf starts from gmf and mlp; name all three")
    if run.factors not in run.factor_sizes:
        raise ConfigError(
            f"config.factors={run.factors} must be one of config.factor_sizes={run.factor_sizes}"
        )
    if "neumf" in models and sweep_of(run) is not None:
        raise ConfigError(
            "config.sweep: the pretrained NeuMF starts each seed from one GMF and MLP, which a "
            "sweep trains per grid point; sweep --config.models=gmf,mlp,neumf_scratch,bpr"
        )
    if run.dataset == "synthetic" or movielens.available(run.dataset):
        data, _ = load(run)
        check_batch_size(run, len(data.user) - data.num_users, of="training interactions")


# --- data: MovieLens or the synthetic stand-in, split by the protocol ---------------------------


def load(config):
    """The interactions and a note on where they come from (the fallback says why)."""
    try:
        found = movielens.load(
            config.dataset,
            seed=config.data_seed,
            num_users=config.synthetic_users,
            num_items=config.synthetic_items,
            nonlinear=config.nonlinear,
        )
        return found, ""
    except DataError as error:
        if config.dataset != movielens.ML100K:
            raise
        fallback = movielens.synthetic(
            num_users=config.synthetic_users,
            num_items=config.synthetic_items,
            nonlinear=config.nonlinear,
            seed=config.data_seed,
        )
        return fallback, f"MovieLens 100k was not available ({error}); the synthetic data stood in."


# --- training through lexicon.train -------------------------------------------------------------


def fit(config, model, split, workdir, *, loss="bce", negatives=None, initial_state=None):
    def task(run):  # a task builder: a sweep's grid point gets its traced Adam rate
        tx = optax.adam(run.lr)
        return recsys.task(
            model, split, tx, negatives=negatives or run.negatives, loss=loss, k=run.k
        )

    if initial_state is not None:
        initial_state = initial_state(task(config))
    return train.fit(
        config,
        task,
        recsys.train_data(split),
        workdir,
        eval_splits={"test": split.test_split()},
        initial_state=initial_state,
    )


def pretrained(config, gmf, mlp):
    """NeuMF states for every seed from that seed's GMF and MLP, with a fresh optimizer."""
    tx = {"adam": optax.adam, "sgd": optax.sgd}[config.pretrained_optimizer](config.pretrained_lr)

    def start(task):
        params = jax.vmap(ncf.neumf_from_pretrained, in_axes=(0, 0, None))(
            gmf.state.params, mlp.state.params, config.alpha
        )
        fresh = train.init_states(config, task).replace(params=params)
        return train.start_optimizer(fresh, tx)

    return start


def train_models(config, split, workdir):
    """Every factors size of the sweep: GMF, MLP, then NeuMF from both; at ``factors`` also
    NeuMF from scratch and BPR. Returns {(model, factors): Result}."""
    users, items = split.num_users, split.num_items
    models = RULES["models"].parse(config.models)
    runs = {}
    for f in config.factor_sizes:
        for name in ("gmf", "mlp"):
            if name in models:
                model = ncf.build(name, users, items, f, config.layers)
                runs[name, f] = fit(config, model, split, workdir / f"{name}{f}")
        if "neumf" in models:
            start = pretrained(config, runs["gmf", f], runs["mlp", f])
            neumf = ncf.build("neumf", users, items, f, config.layers)
            runs["neumf", f] = fit(config, neumf, split, workdir / f"neumf{f}", initial_state=start)
    f = config.factors
    if "neumf_scratch" in models:
        neumf = ncf.build("neumf", users, items, f, config.layers)
        runs["neumf_scratch", f] = fit(config, neumf, split, workdir / f"neumf_scratch{f}")
    if "bpr" in models:
        mf = ncf.MF(users, items, f)
        runs["bpr", f] = fit(config, mf, split, workdir / f"bpr{f}", loss="bpr", negatives=1)
    return runs


# --- the report ----------------------------------------------------------------------------------


def describe(data, split, note: str) -> str:
    text = (
        f"Data: **{data.name}**, {data.num_users} users, {data.num_items} items, "
        f"{len(data.user)} interactions (density {data.density:.2%}); leave-one-out leaves "
        f"{len(split.train_user)} training interactions and one test item per user, ranked "
        f"among {split.candidates.shape[1] - 1} sampled items the user never interacted with."
    )
    if data.name.startswith("ml-"):
        text += " " + movielens.TERMS
    return text + (f" {note}" if note else "")


def beats(rep, config, final, fixed) -> dict:
    """NeuMF (pretrained, else from scratch) against most popular and item-based CF on HR@k:
    per-seed differences (the classic recommenders are deterministic, so paired)."""
    name = "neumf" if "neumf" in final else "neumf_scratch"
    if name not in final:
        return {}
    hr, out = final[name]["hr"], {}
    for rival in ("most_popular", "item_knn"):
        verdict = report.compare(
            hr, fixed[rival]["hr"], paired=True, names=(NAMES[name], NAMES[rival])
        )
        margin = float(np.mean(hr - fixed[rival]["hr"]))
        rep.text(
            f"HR@{config.k}: {verdict.sentence}. Margin {margin:+.4f} against a seed spread "
            f"(std) of {np.std(hr):.4f}."
        )
        out[f"{name}_minus_{rival}_hr"] = sweeping.figure(config, hr - fixed[rival]["hr"])
    return out


def sweep_report(rep, config, runs, data):
    """HR@k and NDCG@k against the predictive factors (He et al.'s figure 4)."""
    sizes = config.factor_sizes
    towers = [n for n in TOWERS if all((n, s) in runs for s in sizes)]
    if not towers or len(sizes) < 2:
        return
    xs, k = np.asarray(sizes), config.k
    sweep = {
        NAMES[n]: (xs, np.stack([runs[n, s].final("test/hr") for s in sizes], 1)) for n in towers
    }
    rep.figure(
        report.plot_curves(sweep, xlabel="predictive factors", ylabel=f"HR@{k}", title=data.name),
        "factors_sweep",
        f"HR@{k} at the last epoch against the predictive factors, seed mean ± 1 std",
    )
    rows = [
        (s, *(mean_std(runs[n, s].final(f"test/{m}")) for n in towers for m in ("hr", "ndcg")))
        for s in sizes
    ]
    headers = ["factors"] + [f"{NAMES[n]} {m}@{k}" for n in towers for m in ("HR", "NDCG")]
    rep.table(headers, rows, caption="the predictive-factors sweep")


def published(rep, config, runs, data) -> dict:
    """Our pretrained NeuMF at 64 factors beside the paper's ML-1M figures."""
    if ("neumf", PUBLISHED_FACTORS) not in runs or config.k != 10:
        return {}
    ours = {m: runs["neumf", PUBLISHED_FACTORS].final(f"test/{m}") for m in ("hr", "ndcg")}
    same = data.name == "ml-1m"
    difference = (
        "the same MovieLens 1M."
        if same
        else f"{data.name} has {data.num_users} users and {data.num_items} items with "
        f"{len(data.user)} interactions, against 6,040 users and 3,706 items with 1,000,209 "
        "ratings; the figures are not the same quantity (fewer users to learn each item "
        "from, other candidates)."
    )
    rep.text(
        f"**Against the paper.** {PUBLISHED_SOURCE}: HR@10 {PUBLISHED['hr']}, NDCG@10 "
        f"{PUBLISHED['ndcg']}. Ours at {PUBLISHED_FACTORS} factors on {data.name}: HR@10 "
        f"{mean_std(ours['hr'])}, NDCG@10 {mean_std(ours['ndcg'])}. The data differ: "
        f"{difference} The paper reports each run's best epoch, we the last."
    )
    source = PUBLISHED_SOURCE + ("" if same else f"; ours on {data.name}")
    return {
        f"neumf_f{PUBLISHED_FACTORS}": {
            f"{m}@10": Figure(ours[m], reference=PUBLISHED[m], source=source)
            for m in ("hr", "ndcg")
        }
    }


def train_and_evaluate(config, workdir):
    config, workdir = settings(config), pathlib.Path(workdir)
    data, note = load(config)
    split = movielens.leave_one_out(data, seed=config.data_seed)
    f, k = config.factors, config.k
    fixed = {  # the classic recommenders are deterministic: one value, repeated per replica
        name: {
            m: np.full(sweeping.replicas(config), float(np.mean(v)))
            for m, v in recsys.ranking_metrics(
                recsys.baseline_scores(name, split, data.item_features, config.neighbors), k
            ).items()
        }
        for name in recsys.BASELINES
    }
    runs = train_models(config, split, workdir)
    final = {
        n: {m: runs[n, f].final(f"test/{m}") for m in ("hr", "ndcg")} for n, s in runs if s == f
    }
    table = {**{n: final[n] for n in NAMES if n in final}, **fixed}

    rep = Report(workdir, "Recommender systems: content-based, CF and NCF (document 004)")
    rep.text(describe(data, split, note))
    rep.text(
        f"Training: {config.seeds} seeds, {config.epochs} epochs, Adam {config.lr}, "
        f"{config.batch_size} positives per step with {config.negatives} fresh negatives each, "
        f"MLP tower {ncf.tower(f, config.layers)}; the pretrained NeuMF is fine-tuned with "
        f"{config.pretrained_optimizer} {config.pretrained_lr}, alpha = {config.alpha}."
    )
    sweeping.note(rep, config)
    rep.table(
        ["recommender", f"HR@{k}", f"NDCG@{k}"],
        [(NAMES[n], mean_std(v["hr"]), mean_std(v["ndcg"])) for n, v in table.items()],
        caption=f"{f} predictive factors, last epoch; mean ± std over {config.seeds} seeds",
    )
    figures = beats(rep, config, final, fixed)
    for metric in ("hr", "ndcg") if final else ():
        curves = {NAMES[n]: runs[n, f].curve(f"test/{metric}") for n in NAMES if (n, f) in runs}
        x = next(iter(curves.values()))[0]
        for name in ("most_popular", "item_knn"):
            curves[NAMES[name]] = (x, np.repeat(fixed[name][metric][:, None], len(x), axis=1))
        rep.figure(
            report.plot_curves(curves, ylabel=f"{metric.upper()}@{k}", title=data.name),
            f"{metric}_curves",
            f"test {metric.upper()}@{k} after each epoch ({f} factors), seed mean ± 1 std",
        )
    sweep_report(rep, config, runs, data)
    figures.update(published(rep, config, runs, data))
    rep.write()
    for n, v in table.items():  # one figure per grid point in a sweep
        figures[n] = {f"{m}@{k}": sweeping.figure(config, v[m]) for m in ("hr", "ndcg")}
    figures["_data"] = data.name
    return figures


if __name__ == "__main__":
    cli.run(get_config, train_and_evaluate, RULES)
