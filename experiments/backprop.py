"""Backpropagation by the delta rules for sigmoid units, checked against jax.grad, on digits.

The network is a stack of sigmoid layers trained on the squared error
E = 1/2 sum_k (t_k - o_k)^2 (SPEC §3). Backpropagation defines delta_j = -dE/dnet_j and
computes it backwards:
    output unit k:  delta_k = o_k (1 - o_k) (t_k - o_k)
    hidden unit h:  delta_h = o_h (1 - o_h) sum_k w_hk delta_k
and every weight moves by w_ij <- w_ij + alpha delta_j x_ij, where x_ij is the input that
unit j receives from unit i. Over a minibatch the increments are averaged. The rules live in
lexicon.nn.units (``backprop_deltas``, ``backprop_gradient``).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lexicon import baselines, cli, data, train
from lexicon.nn.units import backprop_gradient, forward, init_params, squared_error
from lexicon.report import Figure, Report, mean_std
from lexicon.report import figure as report_figure
from lexicon.rules import Choice, check_batch_size, positive, widths

GRADIENTS = ("delta", "autodiff")
SWEEPABLE = ("lr",)  # --config.sweep='lr=0.3,1,3': the rates x seeds as one program


def get_config():
    config = train.defaults()
    config.seeds = 3
    config.epochs = 40
    config.batch_size = 16
    config.hidden = (32,)  # sizes of the hidden sigmoid layers
    config.lr = 1.0  # alpha, the learning rate of the delta rule
    config.gradient = "delta"  # delta (hand-written backprop) | autodiff (jax.grad)
    config.dataset = "digits"  # digits | mnist1d (any dataset of lexicon.data)
    config.reference = True  # also fit scikit-learn's MLPClassifier with the same layers
    return config


RULES = {
    "lr": positive(),
    "gradient": Choice(*GRADIENTS),
    "dataset": Choice(*data.DATASETS),
    "hidden": widths(),
}


def check_config(config):
    """Cross-key rules; cli.run checks them before anything compiles."""
    check_batch_size(config, cli.train_examples(config.dataset, seed=config.data_seed))


# --- training through lexicon.train -----------------------------------------------------------


def make_task(config, num_inputs, num_classes):
    sizes = (num_inputs, *config.hidden, num_classes)
    # Plain gradient descent: w <- w - alpha dE/dw = w + alpha delta_j x_ij.
    tx = optax.sgd(config.lr)
    gradient = backprop_gradient if config.gradient == "delta" else jax.grad(squared_error)

    def init(key):
        return train.TrainState.create(apply_fn=forward, params=init_params(key, sizes), tx=tx)

    def targets(y):
        return jax.nn.one_hot(y, num_classes)

    def measures(params, x, y):
        o = forward(params, x)[-1]
        return {
            "loss": squared_error(params, x, targets(y)),
            "accuracy": jnp.mean(o.argmax(-1) == y),
        }

    def make_step(axis_name):
        def step(state, batch, key):
            t = targets(batch["y"])
            grads = train.mean_over(axis_name, gradient(state.params, batch["x"], t))
            metrics = measures(state.params, batch["x"], batch["y"])
            return state.apply_gradients(grads), train.mean_over(axis_name, metrics)

        return step

    def evaluate(state, split):
        return measures(state.params, split["x"], split["y"])

    return train.Task(init=init, make_step=make_step, evaluate=evaluate)


def gradient_check(config, splits, num_classes, num_nets: int = 5):
    """Largest |hand-written - jax.grad| over random nets, per layer (float32)."""
    x, t = splits.train["x"][:64], jax.nn.one_hot(splits.train["y"][:64], num_classes)
    sizes = (x.shape[1], *config.hidden, num_classes)
    worst = np.zeros(len(sizes) - 1)
    hand_fn, auto_fn = jax.jit(backprop_gradient), jax.jit(jax.grad(squared_error))
    init_fn = jax.jit(init_params, static_argnums=1)
    for i in range(num_nets):
        params = init_fn(jax.random.key(1000 + i), sizes)
        hand, auto = hand_fn(params, x, t), auto_fn(params, x, t)
        for layer, (h, a) in enumerate(zip(hand, auto)):
            diff = max(float(jnp.max(jnp.abs(h[k] - a[k]))) for k in ("w", "b"))
            worst[layer] = max(worst[layer], diff)
    return worst


def train_and_evaluate(config, workdir):
    splits = data.load(config.dataset, seed=config.data_seed)
    num_classes = splits.num_classes
    worst = gradient_check(config, splits, num_classes)
    # A task builder, so that a sweep builds each grid point's task with its own (traced) rate.
    num_inputs = splits.train["x"].shape[1]
    task = functools.partial(make_task, num_inputs=num_inputs, num_classes=num_classes)
    result = train.fit(
        config, task, splits.train, workdir, eval_splits={"val": splits.val, "test": splits.test}
    )
    test_acc = result.final("test/accuracy")
    over = "seeds" if result.sweep is None else "seeds and grid points; per point: the sweep table"
    reference = float("nan")  # scikit-learn's MLPClassifier, same sigmoid layers and split
    if config.reference:
        reference = baselines.mlp_classifier(
            splits.train, splits.test, config.hidden, activation="logistic"
        )

    report = Report(workdir, "Backpropagation with the delta rules")
    report.text(
        f"Sigmoid network {(splits.train['x'].shape[1], *config.hidden, num_classes)} trained "
        f"on `{config.dataset}` with squared error and the `{config.gradient}` gradient, "
        f"learning rate {config.lr}, batch {config.batch_size}, {config.epochs} epochs, "
        f"{config.seeds} seeds."
    )
    report.table(
        ["layer", "largest abs. difference, delta rule vs jax.grad (float32, 5 random nets)"],
        [(i + 1, f"{w:.2e}") for i, w in enumerate(worst)],
        caption="Hand-written backpropagation against autodiff",
    )
    report.table(
        ["split", f"accuracy (mean ± std over {over})", "reference"],
        [
            ("train", mean_std(result.final("train/accuracy")), ""),
            ("validation", mean_std(result.final("val/accuracy")), ""),
            ("test", mean_std(test_acc), f"{reference:.4f} (sklearn MLPClassifier, same layers)"),
        ],
        caption="Final accuracy",
    )
    report.learning_curves(
        result.history,
        ["train/loss", "val/loss", "train/accuracy", "val/accuracy", "test/accuracy"],
    )
    report.write()
    accuracy = report_figure(  # one figure per grid point in a sweep
        result,
        "test/accuracy",
        reference=reference if config.reference else None,
        source="scikit-learn MLPClassifier, same layers",
        tolerance=0.01,  # the claim: within a point of scikit-learn
    )
    return {
        "test_accuracy": accuracy,
        # equal up to float32 rounding
        "max_grad_diff": Figure(worst.max(), reference=0.0, source="jax.grad", tolerance=1e-6),
    }


if __name__ == "__main__":
    cli.run(get_config, train_and_evaluate, RULES)
