"""Recurrent networks: the three designs, unfolding and BPTT, LSTM and GRU, long-range memory.

SPEC §8 (documents 000, 001): h(t) = f(h(t-1), x(t); theta) with parameters shared across
time; unfolded over T steps the network is a deep graph, and backprop through it is
backprop through time [add] (Werbos 1990). The parts (config.parts):
  mnist1d  sequence-to-one: MNIST-1D read as 40 scalars, Elman vs LSTM vs GRU. scale=paper is
           the published GRU (Greydanus 2020: bidirectional, 6 units, a linear readout of
           every step, Adam 1e-2, batch 100, 6,000 steps), beside its 91% test accuracy.
  adding   the adding problem (Hochreiter & Schmidhuber 1997) over sequence lengths: test MSE
           vs T for each cell; the crossover length where the Elman network fails and the LSTM
           still solves it; || d loss / d h(t) || over t at init and after training, the
           gradient that reaches early steps (Bengio et al. 1994).
  forcing  an output at every step with output-to-hidden recurrence (a Jordan network) on a
           noisy sine forecast, trained with teacher forcing (Williams & Zipser 1989) [add]
           or free running, both judged on free-running forecasts.
Every network trains through lexicon.train, the adding and forcing tasks on a fresh seeded
batch at every step (data-free epochs), with optional gradient clipping by global norm.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lexicon import cli, data, losses, report, sweeping, train
from lexicon.data import sequences
from lexicon.nn import rnn
from lexicon.report import Report, compare, mean_std, plot_curves
from lexicon.rules import Choice, ConfigError, Items, Names, Range, positive, probability

PARTS = ("mnist1d", "adding", "forcing")
CELLS = tuple(rnn.CELLS)
READOUTS = {"final": "the final state", "all": "every step's state"}
PUBLISHED_GRU = 0.91
PUBLISHED_SOURCE = (
    "Greydanus 2020, MNIST-1D (arXiv:2011.14439), README table of the mnist1d repository: "
    "GRU 91% test accuracy (bidirectional GRU, 6 units, readout of all 40 steps)"
)
# Greydanus's GRUBase and training loop (notebooks/models.py, train.py of the mnist1d repo).
PAPER = dict(
    mnist_cells="gru",
    mnist_hidden=6,
    mnist_readout="all",
    mnist_bidirectional=True,
    mnist_lr=1e-2,
    mnist_batch=100,
    mnist_epochs=150,  # 6,000 steps of 100 on the 4,000 training signals
    mnist_val_fraction=0.0,
    clip=0.0,
)
SWEEPABLE = ("lr", "mnist_lr")  # --config.sweep='lr=1e-3,3e-3': every network of a part at once


def get_config():
    config = train.defaults()
    config.seeds = 3
    config.parts = "all"  # all | comma-separated: mnist1d,adding,forcing
    config.hidden = 32  # units of every cell in the adding and forcing parts
    config.lr = 3e-3  # Adam's step size in the adding and forcing parts
    config.clip = 1.0  # clip gradients to this global norm before Adam (optax); 0 = no clipping
    config.scale = "default"  # default | paper (the published MNIST-1D GRU)
    config.mnist_cells = "elman,lstm,gru"  # cells read MNIST-1D (comma-separated)
    config.mnist_hidden = 32  # units of the MNIST-1D cells
    config.mnist_readout = "final"  # final (the last state) | all (every step's state)
    config.mnist_bidirectional = False  # add a cell that reads the signal backwards
    config.mnist_lr = 3e-3  # Adam's step size on MNIST-1D
    config.mnist_batch = 100  # MNIST-1D minibatch
    config.mnist_epochs = 20  # MNIST-1D epochs
    config.mnist_val_fraction = 0.1  # share of the 4,000 training signals held out
    config.adding_cells = "elman,lstm,gru"  # cells of the adding problem
    config.lengths = (10, 25, 50, 100, 200)  # sequence lengths T of the adding problem
    config.adding_batch = 64  # sequences per step (fresh at every step)
    config.adding_epochs = 15  # epochs of steps_per_epoch steps per length
    config.steps_per_epoch = 100  # steps per epoch of the data-free parts
    config.solved = 0.1  # solved: test MSE below this share of the baseline's 1/6
    config.test_size = 1000  # test sequences of the adding and forcing parts
    config.forcing_epochs = 10  # epochs of the forcing part
    config.period = 20.0  # period of the sine, in steps
    config.noise = 0.1  # std of the observation noise of the sine
    config.context = 20  # steps of observed signal fed before the forecast
    config.horizon = 40  # steps forecast by running free
    config.forcing_batch = 64  # sine sequences per step
    return config


RULES = {
    "parts": Names(PARTS, everything="all"),
    "hidden": Range(1, 4096),
    "lr": positive(),
    "clip": Range(0),
    "scale": Choice("default", "paper"),
    "mnist_cells": Names(CELLS),
    "mnist_hidden": Range(1, 4096),
    "mnist_readout": Choice(*READOUTS),
    "mnist_lr": positive(),
    "mnist_batch": Range(1),
    "mnist_epochs": Range(1),
    "mnist_val_fraction": Range(0, 0.5),
    "adding_cells": Names(CELLS),
    "lengths": Items(Range(2, 10_000), kind=int, min_len=1, max_len=32),
    "adding_batch": Range(1, 100_000),
    "adding_epochs": Range(1),
    "solved": probability(),
    "test_size": Range(1, 1_000_000),
    "forcing_epochs": Range(1),
    "period": Range(2.0, 1e6),
    "noise": Range(0.0, 10.0),
    "context": Range(1, 10_000),
    "horizon": Range(1, 10_000),
    "forcing_batch": Range(1, 100_000),
}


def settings(config):
    """The run's config: scale=paper replaces the keys of the published MNIST-1D setting."""
    return cli.with_preset(config, PAPER, config.scale == "paper", get_config())


def check_config(config):
    run = settings(config)
    train_size = round(4000 * (1 - run.mnist_val_fraction))
    if "mnist1d" in RULES["parts"].parse(run.parts) and run.mnist_batch > train_size:
        raise ConfigError(f"config.mnist_batch={run.mnist_batch} exceeds the {train_size} signals")


def optimizer(config, lr):
    """Adam, after clipping the gradient to config.clip in global norm (Pascanu et al. 2013)."""
    adam = optax.adam(lr)
    return optax.chain(optax.clip_by_global_norm(config.clip), adam) if config.clip else adam


def part_config(config, epochs, batch_size):
    run = config.copy_and_resolve_references()
    run.epochs, run.batch_size = epochs, batch_size
    return run


def sequence_task(model, lr_key, example, loss, metrics, make_batch=None):
    """A task builder (config -> Task, so a sweep traces config[lr_key]): ``loss(outputs,
    batch)`` minimized by ``optimizer(config, config[lr_key])`` on the step's batch (or a fresh
    ``make_batch(key)`` in a data-free run); ``metrics(outputs, split)`` evaluates a split."""

    def build(config):
        tx = optimizer(config, config[lr_key])

        def init(key):
            params = model.init(key, example)["params"]
            return train.TrainState.create(apply_fn=model.apply, params=params, tx=tx)

        def objective(params, model_state, batch, key):
            batch = batch if make_batch is None else make_batch(key)
            return loss(model.apply({"params": params}, batch["x"]), batch), ({}, model_state)

        def evaluate(state, split):
            return metrics(model.apply({"params": state.params}, split["x"]), split)

        return train.Task(init=init, make_step=train.gradient_step(objective), evaluate=evaluate)

    return build


def mse(out, batch):
    return jnp.mean((out - batch["y"]) ** 2)


def classification(logits, batch):
    loss = losses.softmax_cross_entropy_with_integer_labels(logits, batch["y"])
    return {"loss": loss, "accuracy": train.accuracy(logits, batch["y"])}


# --- (a) MNIST-1D read as a sequence -------------------------------------------------------------


def mnist1d_part(config, workdir, rep: Report) -> dict:
    splits = data.load(
        "mnist1d", flatten=False, seed=config.data_seed, val_fraction=config.mnist_val_fraction
    )
    run = part_config(config, config.mnist_epochs, config.mnist_batch)
    evals = {"test": splits.test} | ({"val": splits.val} if len(splits.val["y"]) else {})
    curves, figures, accuracy = {}, {}, {}
    for kind in Names(CELLS).parse(config.mnist_cells):
        model = rnn.SequenceToOne(
            rnn.make_cell(kind, config.mnist_hidden),
            10,
            readout=config.mnist_readout,
            bidirectional=config.mnist_bidirectional,
        )
        loss = lambda logits, batch: classification(logits, batch)["loss"]  # noqa: E731
        task = sequence_task(model, "mnist_lr", splits.train["x"][:1], loss, classification)
        result = train.fit(run, task, splits.train, workdir / "mnist1d" / kind, eval_splits=evals)
        curves[kind], accuracy[kind] = result.curve("test/accuracy"), result.final("test/accuracy")
        paper = kind == "gru" and config.scale == "paper"
        figures[kind] = {
            "test_accuracy": report.figure(  # one figure per grid point in a sweep
                result,
                "test/accuracy",
                reference=PUBLISHED_GRU if paper else None,
                source=PUBLISHED_SOURCE if paper else None,
                tolerance=0.03 if paper else None,
            ),
            "parameters": rnn.count_params(jax.tree.map(lambda a: a[0], result.state.params)),
        }
    published = {"gru": f"{PUBLISHED_GRU} (Greydanus 2020)"} if config.scale == "paper" else {}
    rows = [(k, mean_std(v), published.get(k, "")) for k, v in accuracy.items()]
    rep.text(
        f"## (a) MNIST-1D as a sequence\nEach 40-sample signal is read one scalar per step; "
        f"{config.mnist_hidden} units, a linear readout of {READOUTS[config.mnist_readout]}"
        f"{', both directions' if config.mnist_bidirectional else ''}; Adam {config.mnist_lr}, "
        f"batch {config.mnist_batch}, {config.mnist_epochs} epochs on "
        f"{len(splits.train['y'])} signals, {config.seeds} seeds. Published: {PUBLISHED_SOURCE}."
    )
    rep.table(["cell", "test accuracy", "published"], rows, caption="mean ± std over seeds")
    rep.figure(plot_curves(curves, ylabel="test accuracy"), "mnist1d", "test accuracy by epoch")
    return figures


# --- (b) the adding problem over sequence lengths ------------------------------------------------


def adding_part(config, workdir, rep: Report) -> dict:
    run = part_config(config, config.adding_epochs, 0)
    threshold = config.solved * sequences.ADDING_BASELINE_MSE
    cells = Names(CELLS).parse(config.adding_cells)
    errors = {kind: [] for kind in cells}
    gradients = {}
    longest = max(config.lengths)
    for length in config.lengths:
        test = sequences.adding_problem(
            jax.random.key(10_000 + config.data_seed), config.test_size, length
        )
        for kind in cells:
            model = rnn.SequenceToOne(rnn.make_cell(kind, config.hidden), 1)

            def draw(key, n=length):
                return sequences.adding_problem(key, config.adding_batch, n)

            metrics = lambda out, split: {"mse": mse(out, split)}  # noqa: E731
            task = sequence_task(model, "lr", test["x"][:1], mse, metrics, make_batch=draw)
            where = workdir / "adding" / f"{kind}_T{length}"
            result = train.fit(run, task, None, where, eval_splits={"test": test})
            errors[kind].append(result.final("test/mse"))
            if length == longest:
                gradients[kind] = gradient_flow(model, run, task(run), result.state.params, test)
    errors = {k: np.stack(v, axis=1) for k, v in errors.items()}  # (seeds, lengths)
    solved = {k: np.all(v < threshold, axis=0) for k, v in errors.items()}
    crossover = crossover_length(config.lengths, errors, threshold)
    rep.text(
        f"## (b) The adding problem\nx(t) = (u(t), marker(t)), u ~ U[0, 1], two markers (one in "
        f"each half); target u1 + u2. Predicting the mean gives MSE 1/6 = 0.1667; *solved* means "
        f"test MSE < {threshold:.4f} ({config.solved} of it) on every seed. {config.hidden} units, "
        f"Adam {config.lr}, clip {config.clip or 'off'}, batch {config.adding_batch}, "
        f"{config.adding_epochs * config.steps_per_epoch} steps per length, {config.seeds} seeds, "
        f"{config.test_size} test sequences. Crossover length (Elman fails, LSTM solves): "
        f"**{crossover if crossover else 'none in the sweep'}**."
    )
    marks = {k: [" ✓" if s else "" for s in v] for k, v in solved.items()}
    rows = [(k, *(mean_std(v) + t for v, t in zip(m.T, marks[k]))) for k, m in errors.items()]
    rep.table(["cell", *(f"T={n}" for n in config.lengths)], rows, caption="test MSE (✓ solved)")
    curves = {k: (np.asarray(config.lengths), v) for k, v in errors.items()}
    rep.figure(
        plot_curves(curves, xlabel="sequence length T", ylabel="test MSE", log_y=True),
        "adding_mse",
        f"test MSE vs length (baseline 1/6, solved below {threshold:.4f}), seed mean ± std",
    )
    steps = np.arange(1, longest + 1)
    for when in ("init", "trained"):
        rep.figure(
            plot_curves(
                {k: (steps, g[when]) for k, g in gradients.items()},
                xlabel="step t",
                ylabel="|| d loss / d h(t) ||",
                log_y=True,
                title=f"T={longest}, {when}",
            ),
            f"gradient_flow_{when}",
            f"gradient flow through time: the norm of the gradient that reaches the state at step "
            f"t from the loss at step {longest} ({when}), seed mean ± std",
        )
    figures = {  # one figure per grid point in a sweep
        kind: {f"test_mse_T{n}": sweeping.figure(result, v) for n, v in zip(config.lengths, e.T)}
        for kind, e in errors.items()
    }
    for kind, g in gradients.items():  # gradient at step 1 over gradient at step T
        ratios = {w: sweeping.figure(result, v[:, 0] / v[:, -1]) for w, v in g.items()}
        figures[kind] |= {f"gradient_ratio_{w}": r for w, r in ratios.items()}
    figures["crossover_length"] = crossover or 0
    if crossover:
        i = list(config.lengths).index(crossover)
        pair = errors["lstm"][:, i], errors["elman"][:, i]
        verdict = compare(*pair, paired=True, higher_is_better=False, names=("LSTM", "Elman"))
        rep.text(f"At T={crossover}: {verdict.sentence}.")
    return figures


def crossover_length(lengths, errors, threshold):
    """The shortest length where every Elman seed fails and every LSTM seed solves."""
    if "elman" not in errors or "lstm" not in errors:
        return None
    for n, elman, lstm in zip(lengths, errors["elman"].T, errors["lstm"].T):
        if np.all(elman >= threshold) and np.all(lstm < threshold):
            return int(n)
    return None


def gradient_flow(model, config, task, trained, test, batch=256):
    """Per seed: || d loss / d h(t) || for t = 1..T at init and after training."""
    initial = sweeping.tile(config, train.init_states(config, task).params)
    split = jax.tree.map(lambda a: a[:batch], test)

    def norms(params):
        return rnn.state_gradient_norms(
            model, params, split["x"], lambda out: jnp.sum((out - split["y"]) ** 2)
        )

    flow = jax.jit(jax.vmap(norms))
    return {"init": np.asarray(flow(initial)), "trained": np.asarray(flow(trained))}


# --- (c) output feedback with and without teacher forcing ----------------------------------------


def forcing_part(config, workdir, rep: Report) -> dict:
    run = part_config(config, config.forcing_epochs, 0)
    steps = config.context + config.horizon
    model = rnn.Recurrent(rnn.JordanCell(config.hidden, outputs=2))  # o(t) forecasts s(t+1)
    primed = jnp.arange(steps) < config.context  # the observed context is always fed
    forced = jnp.ones(steps, bool)

    def batch_of(key, n, force):
        d = sequences.noisy_sine(key, n, steps + 1, period=config.period, noise=config.noise)
        s, x = d["series"], jnp.broadcast_to(primed[None, :, None], (n, steps, 1)).astype(float)
        x = rnn.teacher_inputs(x, s[:, 1:], force, first=s[:, :1])  # y(t-1) = s(t)
        return {"x": x, "y": s[:, 1:], "clean": d["clean"][:, 1:]}

    key = jax.random.key(20_000 + config.data_seed)  # the same test sequences both ways
    tests = {
        name: batch_of(key, config.test_size, f)
        for name, f in (("free", primed), ("forced", forced))
    }

    def metrics(out, split):  # the forecast of the horizon against the clean signal
        return {"mse": jnp.mean((out - split["clean"])[:, config.context :] ** 2)}

    results, figures = {}, {}
    for mode, force in (("teacher_forcing", forced), ("free_running", primed)):
        draw = lambda key, force=force: batch_of(key, config.forcing_batch, force)  # noqa: E731
        task = sequence_task(model, "lr", tests["free"]["x"], mse, metrics, make_batch=draw)
        results[mode] = train.fit(run, task, None, workdir / "forcing" / mode, eval_splits=tests)
        figures[mode] = {  # one figure per grid point in a sweep
            "free_run_mse": report.figure(results[mode], "free/mse"),
            "one_step_mse": report.figure(results[mode], "forced/mse"),
        }
    a, b = (results[m].final("free/mse") for m in ("free_running", "teacher_forcing"))
    names = ("free running", "teacher forcing")
    verdict = compare(a, b, paired=True, higher_is_better=False, names=names)
    rep.text(
        f"## (c) Output feedback: teacher forcing vs free running\nA Jordan network h(t) = tanh(W "
        f"o(t-1) + U x(t) + b), o(t) = V h(t) + c ({config.hidden} units; o is the next (cos, sin) "
        f"value) forecasts a noisy oscillation of period {config.period} (noise {config.noise}). "
        f"The first {config.context} steps always feed the observed value; then teacher forcing "
        f"feeds the observed y(t-1), free running its own o(t-1). Both are judged on the "
        f"free-running forecast of {config.horizon} steps against the clean signal (and on "
        f"one-step forecasts fed the observations). Free-running MSE: {verdict.sentence}."
    )
    rows = [
        (m, *(mean_std(r.final(k)) for k in ("free/mse", "forced/mse"))) for m, r in results.items()
    ]
    header = ["trained with", "free-running forecast MSE", "one-step MSE"]
    rep.table(header, rows, caption="forecast errors against the clean signal, mean ± std")
    one = jax.tree.map(lambda a: a[:1], tests["free"])
    t = np.arange(1, steps + 1)
    lines = {"clean": (t, np.asarray(one["clean"][..., 0]))}
    for mode, result in results.items():
        params = jax.tree.map(lambda a: a[0], result.state.params)
        lines[mode] = (t, np.asarray(model.apply({"params": params}, one["x"])[..., 0]))
    rep.figure(
        plot_curves(lines, xlabel="step t", ylabel="cos component"),
        "forecast",
        f"one test forecast (seed {config.seed}), free running from t = {config.context}",
    )
    return figures


def train_and_evaluate(config, workdir):
    config = settings(config)
    rep = Report(
        workdir, "Recurrent networks (documents 000, 001; LSTM, GRU, BPTT, teacher forcing [add])"
    )
    sweeping.note(rep, config)
    parts = RULES["parts"].parse(config.parts)
    builders = {"mnist1d": mnist1d_part, "adding": adding_part, "forcing": forcing_part}
    figures = {part: builders[part](config, workdir, rep) for part in parts}
    rep.write()
    return figures


if __name__ == "__main__":
    cli.run(get_config, train_and_evaluate, RULES)
