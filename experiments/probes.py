"""Which layer transfers: linear probes of every stage of a pretrained LeNet-5.

Document 001 (SPEC §5): the first layers of a network learn general features and the last
ones features specific to its task, which is why transfer reuses the lower layers. A linear
probe measures how general a layer is: logistic regression (scikit-learn) trained on the
layer's outputs to solve the new task. Here the LeNet-5 pretrained on digits 0-4 by
experiments/transfer.py is probed at every stage (c1, s2, c3, s4, f5, f6) on digits 5-9 with
n labelled images per class (the same labelled subsets as transfer's replicas), next to the
raw pixels. experiments/transfer.py reports it as a section of its own report.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from lexicon import baselines, cli
from lexicon.nn.cnn import LeNet5
from lexicon.report import Report, mean_std, panels, plot_curves

STAGES = ("c1", "s2", "c3", "s4", "f5", "f6")  # the outputs LeNet-5 sows, input to output


def __getattr__(name):
    """``RULES`` are transfer's (looked up late: transfer imports this module's probes)."""
    if name == "RULES":
        from experiments import transfer

        return transfer.RULES
    raise AttributeError(name)


def get_config():
    from experiments import transfer

    return transfer.get_config()


def check_config(config):
    from experiments import transfer

    transfer.check_config(config)


def layer_output(model: LeNet5, params, x: jax.Array, layer: str) -> jax.Array:
    """The flattened output (N, D) of one named LeNet-5 stage (c1, s2, c3, s4, f5, f6)."""
    _, sown = model.apply({"params": params}, x, method="features", mutable=["intermediates"])
    h = sown["intermediates"][layer][0]
    return h.reshape(h.shape[0], -1)


def linear_probes(config, model, pretrained, target, masks) -> dict[str, np.ndarray]:
    """Test accuracy of logistic regression (scikit-learn) on raw pixels and on every stage.

    Each replica's classifier is fit on that replica's labelled subset, reading the stage
    outputs of the pretrained network of its seed. Returns name -> (label counts, seeds).
    """

    per_seed = []
    for seed in range(config.seeds):
        params = jax.tree.map(lambda p, s=seed: p[s], pretrained)
        stages = {"pixels": (target.train["x"], target.test["x"])}
        for stage in STAGES:  # its outputs (baselines flattens them)
            stages[stage] = tuple(
                np.asarray(layer_output(model, params, jnp.asarray(split["x"]), stage))
                for split in (target.train, target.test)
            )
        per_seed.append(stages)
    scores = {name: [] for name in ("pixels", *STAGES)}
    for replica, mask in enumerate(masks):
        for name, (x, x_test) in per_seed[replica % config.seeds].items():
            labelled = {"x": x[mask], "y": target.train["y"][mask]}
            test = {"x": x_test, "y": target.test["y"]}
            scores[name].append(baselines.logistic_regression(labelled, test))
    counts = len(config.label_counts)
    return {name: np.asarray(v).reshape(counts, config.seeds) for name, v in scores.items()}


def probe_section(report, config, probes) -> None:
    """The probes' table and figure: accuracy per input of the probe and label count."""
    counts, names = list(config.label_counts), ["pixels", *STAGES]
    report.table(
        ["input of the probe", *(f"{n} / class" for n in counts)],
        [(name, *(mean_std(v) for v in probes[name])) for name in names],
        caption="Linear probes: scikit-learn logistic regression on each pretrained layer's "
        "output, same labelled subsets (how well each layer transfers)",
    )
    stages = np.arange(len(names))
    by_count = {
        f"{n} / class": (stages, np.stack([probes[k][i] for k in names], 1))
        for i, n in enumerate(counts)
    }
    fig, (ax,) = panels(1, size=(5.5, 3.8))
    plot_curves(by_count, ylabel="target test accuracy", ax=ax)
    ax.set_xticks(stages, names)
    ax.set_xlabel("pretrained layer under the linear probe (input to output)")
    report.figure(fig, "probes", "logistic-regression probes of each pretrained layer "
                  "(mean ± std over seeds)")  # fmt: skip


def train_and_evaluate(config, workdir):
    from experiments import transfer

    splits = transfer.data.load("digits", seed=config.data_seed, flatten=False)
    source, target = transfer.task_splits(splits, config.split_at)
    num_classes = int(target.train["y"].max() + 1)
    transfer.check_counts(config, target.train["y"], num_classes)
    pretrained = transfer.pretrain(config, source, workdir / "pretrain")
    labelled = transfer.labelled_data(config, target.train, num_classes)
    model = transfer.make_model(config, source.num_classes)
    masks = labelled["weight"] > 0
    probes = linear_probes(config, model, pretrained.state.params, target, masks)
    report = Report(workdir, "Linear probes of a pretrained LeNet-5")
    probe_section(report, config, probes)
    report.write()
    return {"probes": probes}


if __name__ == "__main__":
    cli.run(get_config, train_and_evaluate, __getattr__("RULES"))
