"""Regularizing an overfitting MLP on 50 digits: L2, L1, dropout, noise, augmentation, early stop.

A ReLU network with far more weights than training examples is trained on a deliberately
small part of the digits training split, so that it fits the training set perfectly and the
train-test gap is wide: in accuracy (train - test) and in cross-entropy (test - train). Each
method below changes one thing, with the same SGD learning rate, the same number of steps
and the same initial weights per seed (SPEC §4, document 001):
    none            plain SGD, w <- w - eps grad J                            (Alg. 8.1)
    l2              weight decay, w <- (1 - eps alpha) w - eps grad J, i.e. J + (alpha/2) w^T w
    l1              J + alpha ||w||_1 by subgradient descent, grad = alpha sign(w) + grad J
    l1_proximal     the same objective by proximal SGD: w <- soft_threshold(w - eps grad J,
                    eps alpha), which sets small weights to exactly 0
    dropout         unit outputs times a fresh Bernoulli mask per minibatch, keep probability
                    0.8 for inputs and 0.5 for hidden units (inverted scaling)
    weight_noise    the loss is evaluated at w + sigma z, z ~ N(0, I), drawn anew every step
    augmentation    every training image is rotated, noised (and shifted, if max_shift > 0)
                    anew every step
    early_stopping  the weights of the epoch with the best validation loss, where a patience
                    rule would have stopped training
    combined        the techniques listed in config.combined together (by default all but
                    L1, whose constant pull on top of the others leaves the net underfit)
Penalties and noise act on the weights (kernels) only, not on the biases. The reference is
scikit-learn's MLPClassifier with the same layers and SGD, without and with the same L2
penalty, on the same examples. The network, its step per set of techniques and the config
are lexicon.regularized's, shared with two studies: what L1 does to the weights themselves is
experiments/sparsity.py's; how early stopping chooses its epoch, experiments/early_stopping.py's.
"""

from __future__ import annotations

import numpy as np

from lexicon import cli, regularized, report


def get_config():
    return regularized.defaults()  # the keys and their meaning: lexicon.regularized.defaults


RULES = regularized.RULES
SWEEPABLE = regularized.SWEEPABLE  # e.g. --config.sweep='l2_alpha=0.001,0.01,0.1'
check_config = regularized.check_config


# --- the comparison ---------------------------------------------------------------------------


def verdicts(methods, values) -> dict[str, dict[str, report.Comparison]]:
    """Each method against 'none', paired over seeds (same initial weights): each gap (lower
    is better: the method closes it) and the test accuracy (higher is better)."""
    rules = {"accuracy gap": False, "loss gap": False, "test accuracy": True}
    judge = report.compare
    return {
        k: {m: judge(values[m][k], values["none"][k], paired=True, higher_is_better=up,
                     names=(m, "none")) for m in methods if m != "none"}
        for k, up in rules.items()
    }  # fmt: skip


def train_and_evaluate(config, workdir):
    splits, runs = regularized.run_methods(config, workdir)
    methods = list(runs)
    values = {m: measures for m, (_, measures, _) in runs.items()}
    early = {m: e for m, (_, _, e) in runs.items() if e is not None}
    reference = regularized.sklearn_reference(config, splits)
    judged = verdicts(methods, values) if "none" in methods else {}

    out = report.Report(workdir, "Regularization of an overfitting MLP on a small digits split")
    out.text(
        f"ReLU MLP {(64, *config.hidden, splits.num_classes)} trained on "
        f"**{len(splits.train['y'])}** digits (validation {len(splits.val['y'])}, test "
        f"{len(splits.test['y'])}) by plain SGD, eps = {config.lr}, batch {config.batch_size}, "
        f"{config.epochs} epochs ({runs[methods[0]][0].history[-1]['step']} steps) for every "
        f"method, {config.seeds} seeds (the same initial weights per seed across methods, so "
        f"every comparison is paired over seeds). Train accuracy and loss are measured on the "
        f"training examples in evaluation mode (no dropout, noise or augmentation). Early "
        f"stopping reports the weights of its best validation epoch: the patience rule of "
        f"`lexicon.train.early_stopping` is replayed on the validation curve recorded every "
        f"epoch. Stopping changes which weights are kept, not how they are trained, so "
        f"`early_stopping` reads the training run of `none` (and `combined` its own run)."
    )
    settings, ms = regularized.settings_of(config), report.mean_std
    out.table(
        ["method", "setting", "train acc.", "test acc.", "accuracy gap", "loss gap", "best / stop"],
        [
            (m, settings.get(m, ""), ms(v["train_acc"]), ms(v["test_acc"]))
            + (ms(v["accuracy gap"]), ms(v["loss gap"], 3))
            + ((f"{ms(early[m]['best'], 1)} / {ms(early[m]['stop'], 1)}" if m in early else ""),)
            for m, v in values.items()
        ],
        caption=f"Final accuracy and gaps (accuracy: train - test; loss: test - train "
        f"cross-entropy; best / stop: epochs of early stopping), mean ± std over {config.seeds} "
        "seeds",
    )
    for name in ("accuracy gap", "loss gap"):
        helped = [m for m, c in judged.get(name, {}).items() if c.holds]
        out.text(
            f"**{name.capitalize()}.** {len(helped)} of {len(judged.get(name, {}))} methods close "
            f"the {name} of the unregularized net (paired t-interval over seeds below 0): "
            f"{', '.join(helped) or 'none of them'}.\n\n"
            + "\n".join(f"- {name}: {c.sentence}" for c in judged.get(name, {}).values())
        )
    if judged:
        raised = [m for m, c in judged["test accuracy"].items() if c.holds]
        best = max(methods, key=lambda m: values[m]["test_acc"].mean())
        out.text(
            f"Test accuracy rises (paired t-interval above 0) with: "
            f"{', '.join(raised) or 'none of the methods'}. Best test accuracy: **{best}** "
            f"({ms(values[best]['test_acc'])}, against {ms(values['none']['test_acc'])} "
            f"without regularization).\n\n"
            + "\n".join(f"- test accuracy: {c.sentence}" for c in judged["test accuracy"].values())
        )
    m = config.batch_size or len(splits.train["y"])
    out.table(
        ["scikit-learn MLPClassifier (SGD)", "train acc.", "test acc.", "accuracy gap"],
        [
            (name if name == "none" else f"l2 (alpha_sk = m alpha = {config.l2_alpha * m:g})",)
            + (ms(ref["train"]), ms(ref["test"]), ms(ref["gap"]))
            for name, ref in reference.items()
        ],
        caption="Reference: the same comparison in scikit-learn (same layers, data, SGD steps)",
    )
    fig, axes = report.panels(3, size=(4.2, 3.4))
    for ax, panel in zip(axes, ("accuracy gap", "loss gap", "test accuracy")):
        none = values["none"][panel].mean() if "none" in values else None
        bars = {m: values[m][panel] for m in methods}
        report.plot_bars(bars, title=panel, baseline=none, baseline_label="none", ax=ax)
    out.figure(
        fig,
        "gaps",
        "accuracy gap, loss gap and test accuracy per method (mean ± std over seeds; dashed: none)",
    )
    out.write()
    return headline_figures(runs, reference, judged)


def headline_figures(runs, reference, judged) -> dict:
    """Test accuracy and both gaps per method, each held against 'none' with the verdict of
    its paired comparison ('below' a gap = closes it, 'above' in test accuracy = rises);
    'none' against scikit-learn; the early-stop epochs. In a sweep: one figure per grid point."""
    names = {"test_acc": "test_accuracy", "accuracy gap": "accuracy_gap", "loss gap": "loss_gap"}
    figures = {name: {} for name in names.values()}
    values = {m: measures for m, (_, measures, _) in runs.items()}
    for method, (result, _, early) in runs.items():
        for key, name in names.items():
            ours = values[method][key]
            if result.sweep is not None:
                ours = regularized.per_point(result, ours)
            elif method != "none" and judged:
                verdict = judged["test accuracy" if key == "test_acc" else key][method]
                ours = report.held_against(ours, values["none"][key], verdict, "no regularization")
            elif method == "none" and key == "test_acc":
                theirs = np.asarray(reference["none"]["test"])
                ours = report.Figure(
                    ours,
                    reference=float(theirs.mean()),
                    source="scikit-learn MLPClassifier, same layers, SGD",
                    tolerance=2 * float(max(ours.std(), theirs.std())),  # both vary by seed
                )
            figures[name][method] = ours
        if early is not None:
            best = regularized.per_point(result, early["best"])
            figures.setdefault("best_epoch", {})[method] = best
    return figures


if __name__ == "__main__":
    cli.run(get_config, train_and_evaluate, RULES)
