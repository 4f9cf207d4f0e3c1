"""``fit``: trains the replicas of a task, one compiled program driven by one host driver.

``fit`` checks the config against the data and the devices, builds the compiled Program
(lexicon.train.program), checks what a resume would restore, then hands the epochs to the host
driver (lexicon.train.driver). Every kind of learning goes through it: minibatches of one
shared dataset, each replica's own dataset, data-free steps, or a topic's own epoch function.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from lexicon.rules import ConfigError
from lexicon.train.checkpoint import (
    Checkpointer,
    CheckpointError,
    differing_keys,
    plain_config,
    shapes_of,
)
from lexicon.train.config import RESUMABLE
from lexicon.train.driver import run_epochs, workdir_lock
from lexicon.train.metrics import METRICS_FILE, MetricWriter, read
from lexicon.train.program import (
    Program,
    check_config,
    num_examples_of,
    replica_seeds,
    to_host,
)
from lexicon.train.steps import StepFactory
from lexicon.train.sweep import of as sweep_of


@dataclasses.dataclass(frozen=True)
class Task:
    """What an experiment hands to ``fit``.

    The state of one replica is any flax struct (``flax.struct.PyTreeNode``) with an int32
    ``step`` field that counts its updates: a TrainState, two TrainStates of a GAN's players,
    parameters plus persistent chains for an RBM, a Q-table. The driver saves and restores
    it whole and checks that its parameters and optimizer states stay finite.

    init: key -> state of one replica; None for a task that fit always starts from an
      ``initial_state``.
    make_step: axis name (or None) -> ``step(state, batch, key) -> (state, metrics)``; the
      batch is None in a data-free run.
    evaluate: (state, split) -> dict of scalar metrics for one replica, or None.
    epoch: a topic's own pure ``epoch(state, seed, epoch) -> (state, metrics)`` for one
      replica, used in place of ``make_step`` (a purejaxrl-style rollout, a tabular sweep);
      metrics are scalars or arrays over the epoch's steps.
    watch: metric names whose non-finite value (in training or in evaluation) counts as
      divergence; other metrics may be NaN on purpose and are averaged with nanmean.
    """

    init: Callable[[jax.Array], Any] | None
    make_step: StepFactory | None = None
    evaluate: Callable[[Any, dict], dict] | None = None
    epoch: Callable[[Any, jax.Array, jax.Array], tuple[Any, dict]] | None = None
    watch: Sequence[str] = ("loss",)

    def __post_init__(self):
        if (self.make_step is None) == (self.epoch is None):
            raise TypeError("a Task takes exactly one of make_step and epoch")


@dataclasses.dataclass
class Result:
    state: Any  # the final state, with a leading seed axis
    history: list[dict]  # the records of metrics.jsonl, one per epoch
    step_metrics: list[dict]  # per epoch: metric -> array (seeds, steps in the epoch)
    diverged_at: np.ndarray | None = None  # per seed: the epoch it diverged at, 0 = never
    sweep: Any = None  # the Sweep of a swept run (replica g * seeds + s: point g, seed s)

    def points(self, key: str) -> np.ndarray:
        """A swept run's final ``key`` per grid point and seed: shape (points, seeds)."""
        values = self.final(key)
        if self.sweep is None:
            return values[None]
        return values.reshape(self.sweep.size, -1)

    def final(self, key: str) -> np.ndarray:
        """Per-seed values of ``key`` in the last record that has it (null reads as NaN)."""
        for record in reversed(self.history):
            if key in record:
                return (
                    np.asarray(
                        np.where(np.equal(record[key], None), np.nan, record[key]), dtype=np.float64
                    )
                    if _has_none(record[key])
                    else np.asarray(record[key])
                )
        raise KeyError(key)

    def curve(self, key: str, x: str = "epoch") -> tuple[np.ndarray, np.ndarray]:
        """(x values, metric values of shape (seeds, points)) over the records that have key."""
        records = [r for r in self.history if key in r]
        xs = np.asarray([r[x] for r in records])
        values = np.asarray(
            [[np.nan if v is None else v for v in np.atleast_1d(r[key])] for r in records],
            dtype=np.float64,
        )
        return xs, values.T


def _has_none(value) -> bool:
    return any(v is None for v in np.asarray(value, dtype=object).reshape(-1))


def check_initial_state(state, seeds: int) -> None:
    sizes = {np.shape(leaf)[0] if np.ndim(leaf) else None for leaf in jax.tree.leaves(state)}
    if sizes != {seeds}:
        raise ConfigError(
            f"the initial state must stack config.seeds={seeds} replicas on its first axis; "
            f"its leaves lead with {sorted(sizes, key=str)}"
        )


def check_per_replica(data, seeds: int) -> None:
    sizes = {np.shape(leaf)[0] for leaf in jax.tree.leaves(data)}
    if sizes != {seeds} or any(np.ndim(leaf) < 2 for leaf in jax.tree.leaves(data)):
        raise ConfigError(
            f"per-replica data must stack config.seeds={seeds} datasets on its first axis; "
            f"its arrays lead with {sorted(sizes)}"
        )
    examples = {np.shape(leaf)[1] for leaf in jax.tree.leaves(data)}
    if len(examples) != 1:
        raise ConfigError(f"every replica needs the same number of examples; got {examples}")


def _check_resume(config, checkpointer: Checkpointer) -> int:
    """The epoch a resume starts from; refuses a resume that cannot continue this run."""
    latest = checkpointer.latest()
    if latest is None:
        raise ConfigError(f"config.resume=true but {checkpointer.directory} has no checkpoint")
    if config.epochs < latest:
        raise ConfigError(
            f"config.epochs={config.epochs} is below the newest checkpoint (epoch {latest}) in "
            f"{checkpointer.directory}; resume with epochs >= {latest}"
        )
    saved = checkpointer.read_config()
    if saved is not None:
        changes = differing_keys(saved, plain_config(config), RESUMABLE)
        if changes:
            raise ConfigError(
                f"resume would change what shaped the saved run: {'; '.join(changes)}; only "
                f"{', '.join(sorted(RESUMABLE))} may change on resume"
            )
    return latest


def fit(
    config,
    task: Task | Callable[[Any], Task],
    data: Any,
    workdir: str | pathlib.Path,
    *,
    eval_splits: dict[str, dict] | None = None,
    initial_state: Any = None,
    per_replica: bool = False,
    first_epoch: int = 1,
    log: Callable[[str], None] = print,
    sweep: Any = None,
) -> Result:
    """Trains ``config.seeds`` replicas of ``task`` for ``config.epochs`` epochs.

    ``task`` is a Task, or a builder ``config -> Task``; a builder lets the run be a sweep
    (lexicon.train.sweep): ``sweep`` (a ``Sweep``), or else ``config.sweep``, gives a grid of
    config values, and the replicas become grid points x seeds, trained as one program (in
    chunks of grid points when the memory estimate says so). A swept run writes
    ``workdir/sweep.json`` (every grid point's final metrics, mean and std over seeds, and the
    point chosen by validation) and its metrics.jsonl records carry each replica's grid
    coordinates under ``"grid"``. Without a sweep a builder is called once with ``config``.

    ``data`` is a dict of arrays with a leading example axis shared by every replica; with
    ``per_replica=True`` each array leads with the seed axis, then the example axis, and
    replica i trains on its own slice; ``None`` gives a data-free run of
    ``config.steps_per_epoch`` steps per epoch (or the task's own ``epoch``). Each of
    ``eval_splits`` (e.g. {"val": ..., "test": ...}) is a dict of arrays shared by the
    replicas. Metrics go to ``workdir/metrics.jsonl`` and TensorBoard; checkpoints to
    ``workdir/checkpoints`` every ``config.checkpoint_every`` epochs and at the end. Raises
    TrainingDiverged at the first non-finite watched metric or state (``on_divergence=stop``),
    after making sure the last good state is saved; TrainingInterrupted after SIGTERM/SIGINT.

    ``initial_state`` (a state with the leading seed axis, e.g. the ``state`` of an earlier
    Result) replaces ``task.init``: training starts from it, at its own step count and with
    its own optimizer; ``state.replace(tx=..., opt_state=...)`` changes the optimizer (see
    ``stages``). ``first_epoch`` numbers the epochs of a later stage after the earlier ones
    (epochs first_epoch .. config.epochs), so each epoch keeps its own shuffle and record.
    """
    kwargs = dict(
        eval_splits=eval_splits,
        initial_state=initial_state,
        per_replica=per_replica,
        first_epoch=first_epoch,
        log=log,
    )
    build = None if isinstance(task, Task) else task
    sweep = sweep if sweep is not None else sweep_of(config)
    if sweep is None:
        return _run(config, task if build is None else build(config), data, workdir, **kwargs)
    if build is None:
        raise ConfigError(
            "config.sweep needs train.fit to get a task builder (config -> Task), not a built task"
        )
    from lexicon.train import sweep as sweeps

    workdir = pathlib.Path(workdir)
    base = build(config)
    if base.init is None:
        raise ConfigError("a sweep needs a task builder whose task has an init")
    replica_bytes = sum(
        int(np.prod(leaf.shape, dtype=np.int64)) * leaf.dtype.itemsize
        for leaf in jax.tree.leaves(jax.eval_shape(base.init, jax.random.key(0)))
    )
    devices = jax.device_count() if config.parallel == "seeds" else 1
    budget = sweeps.budget_mib(config)
    size = sweeps.chunk_points(sweep.size, config.seeds, replica_bytes / 2**20, budget, devices)
    chunks = [list(range(i, min(i + size, sweep.size))) for i in range(0, sweep.size, size)]
    if len(chunks) == 1:
        result = _run(config, base, data, workdir, sweep=sweep, build=build, **kwargs)
    else:
        need = sweeps.MEMORY_FACTOR * replica_bytes * sweep.size * config.seeds / 2**20
        log(
            f"sweep: {sweep.size} grid points x {config.seeds} seeds need about {need:.4g} MiB, "
            f"over the {budget:.4g} MiB budget (config.sweep_memory); running {len(chunks)} "
            f"chunks of up to {size} grid points in turn"
        )
        parts = [
            _run(
                config,
                base,
                data,
                pathlib.Path(workdir) / f"chunk-{k}",
                sweep=sweep.subset(points),
                build=build,
                **kwargs,
            )
            for k, points in enumerate(chunks)
        ]
        result = _merge(parts, workdir)
    result.sweep = sweep
    if jax.process_index() == 0:
        sweeps.write_summary(workdir, result, config)
    return result


def _merge(parts: list[Result], workdir: pathlib.Path) -> Result:
    """One Result (and one workdir/metrics.jsonl) from the Results of a sweep's chunks."""
    epochs = sorted({r["epoch"] for part in parts for r in part.history})
    history = []
    for epoch in epochs:
        record: dict = {"epoch": epoch}
        filled = 0
        for part in parts:
            size = len(part.diverged_at)
            found = next((r for r in part.history if r["epoch"] == epoch), None)
            for key, value in (found or {}).items():
                if key in ("epoch", "nonfinite"):
                    continue
                if key == "step":
                    record["step"] = max(record.get("step", 0), value)
                elif key == "grid":
                    grid = record.setdefault("grid", {})
                    for name, coords in value.items():
                        grid.setdefault(name, []).extend(coords)
                else:
                    record.setdefault(key, [None] * filled).extend(value)
            filled += size
            for key in record:
                if key not in ("epoch", "step", "grid") and len(record[key]) < filled:
                    record[key].extend([None] * (filled - len(record[key])))
        history.append(record)
    if jax.process_index() == 0:
        writer = MetricWriter(workdir, enabled=True, log=lambda _: None)
        for record in history:
            writer.write(dict(record))
        writer.close()
    state = jax.tree.map(lambda *xs: np.concatenate(xs), *(to_host(p.state) for p in parts))
    return Result(
        state=state,
        history=history,
        step_metrics=[],
        diverged_at=np.concatenate([p.diverged_at for p in parts]),
    )


def _run(
    config,
    task: Task,
    data: Any,
    workdir: str | pathlib.Path,
    *,
    eval_splits: dict[str, dict] | None = None,
    initial_state: Any = None,
    per_replica: bool = False,
    first_epoch: int = 1,
    log: Callable[[str], None] = print,
    sweep: Any = None,
    build: Callable | None = None,
) -> Result:
    """One compiled program over the replicas (the seeds, or a sweep's points x seeds)."""
    workdir = pathlib.Path(workdir)
    custom = task.epoch is not None
    if data is not None and custom:
        raise ConfigError("a task with its own epoch takes no training data; pass data=None")
    if per_replica and data is not None:
        check_per_replica(data, config.seeds)
    num_train = None if data is None else num_examples_of(data, per_replica)
    points = 1 if sweep is None else sweep.size
    batch_size = check_config(
        config, num_train, per_replica=per_replica, custom=custom, replicas=config.seeds * points
    )
    if initial_state is None and task.init is None:
        raise ConfigError("this task has no init; give train.fit an initial_state")
    if initial_state is not None:
        check_initial_state(initial_state, config.seeds)
    eval_splits = eval_splits or {}
    seeds = replica_seeds(config)
    names = None
    if sweep is not None:  # replica g * seeds + s: grid point g, seed s
        seeds = np.tile(seeds, points)
        names = [f"seed {s} at {sweep.label(r // config.seeds)}" for r, s in enumerate(seeds)]
        if initial_state is not None:
            initial_state = _tile(to_host(initial_state), points)
        if per_replica and data is not None:
            data = _tile(data, points)
    primary = jax.process_index() == 0

    with workdir_lock(workdir, log=log, enabled=primary):
        checkpointer = Checkpointer(workdir / "checkpoints")
        if (
            config.resume
            and checkpointer.latest() is None
            and not (workdir / METRICS_FILE).exists()
        ):
            # One part of a resumed experiment (several fits) that never started: it begins
            # afresh, as a stage does; cli.run has checked that the run as a whole has a
            # checkpoint to resume.
            config = config.copy_and_resolve_references()
            config.resume = False
        try:
            start = first_epoch - 1
            if first_epoch < 1 or start >= config.epochs:
                raise ConfigError(
                    f"epochs {first_epoch}..{config.epochs} are empty; give first_epoch in "
                    f"[1, {config.epochs}]"
                )
            if config.resume:
                start = _check_resume(config, checkpointer)
            elif checkpointer.latest() is not None:
                raise ConfigError(
                    f"{checkpointer.directory} already holds checkpoints; continue that run "
                    f"with config.resume=true, or choose a new --workdir"
                )
            if sweep is None:
                program = Program(task, config, batch_size=batch_size, per_replica=per_replica)
            else:
                program = Program(
                    task,
                    config,
                    batch_size=batch_size,
                    per_replica=per_replica,
                    build=build,
                    swept=sweep.keys,
                )
                program.hparams = program.put(
                    sweep.replica_values(config.seeds), program.seed_sharding
                )
            seed_array = program.put(seeds, program.seed_sharding)
            history: list[dict] = []
            diverged_at = np.zeros(len(seeds), np.int64)
            if config.resume:
                # The template's shapes come from tracing alone: a mismatch stops before compiling.
                template = (
                    shapes_of(initial_state)
                    if initial_state is not None
                    else jax.eval_shape(program.init, seed_array)
                )
                try:
                    restored = checkpointer.restore(start, template)
                except CheckpointError as error:
                    raise ConfigError(str(error)) from None
                state = program.put(to_host(restored), program.seed_sharding)
                history = [r for r in read(workdir) if r["epoch"] <= start]
                if history and "diverged_at" in history[-1]:
                    diverged_at = np.asarray(history[-1]["diverged_at"], np.int64)
                log(f"resumed from the checkpoint of epoch {start}")
            elif initial_state is None:
                state = program.init(seed_array)
            else:
                state = program.put(initial_state, program.seed_sharding)
            data_array = None
            if data is not None:
                sharding = program.data_sharding if per_replica else None
                data_array = program.put(data, sharding)
            eval_arrays = {name: program.put(split) for name, split in eval_splits.items()}
            state, history, step_metrics, diverged_at = run_epochs(
                config,
                program,
                state,
                seeds=seeds,
                data=data_array,
                eval_splits=eval_arrays,
                watch=tuple(task.watch),
                checkpointer=checkpointer,
                workdir=workdir,
                start=start,
                history=history,
                diverged_at=diverged_at,
                log=log,
                names=names,
                grid=None if sweep is None else sweep.coordinates(config.seeds, config.seed),
            )
        finally:
            checkpointer.close()
    return Result(state=state, history=history, step_metrics=step_metrics, diverged_at=diverged_at)


def _tile(tree, times: int):
    """Each leaf repeated ``times`` along its first axis (the seeds of every grid point)."""
    return jax.tree.map(lambda x: np.concatenate([np.asarray(x)] * times), tree)


@dataclasses.dataclass(frozen=True)
class Stage:
    """One stage of a staged training: its own task (step, evaluation), epochs and optimizer.

    ``tx`` starts a fresh optimizer state for this stage (None keeps the previous stage's
    optimizer and its state); ``epochs`` overrides config.epochs for the stage.
    """

    name: str
    task: Task
    epochs: int
    tx: Any = None


def stages(
    config,
    plan: Sequence[Stage],
    data: Any,
    workdir: str | pathlib.Path,
    *,
    eval_splits: dict[str, dict] | None = None,
    initial_state: Any = None,
    per_replica: bool = False,
    log: Callable[[str], None] = print,
) -> dict[str, Result]:
    """Runs ``plan`` in order, each stage in ``workdir/<name>``, starting from the parameters
    (and step count) the stage before it ended with. The first stage starts from
    ``initial_state`` or its task's init. Epochs are counted across the stages: a stage of E
    epochs after T earlier ones runs epochs T+1 .. T+E, with their own shuffles, so a plan
    whose stages share their step and optimizer trains exactly as one run would. Returns the
    Result of every stage by name."""
    results: dict[str, Result] = {}
    state = initial_state
    done = 0
    for stage in plan:
        stage_config = config.copy_and_resolve_references()
        stage_config.epochs = done + stage.epochs
        if config.resume:  # a stage that never started begins afresh
            stage_dir = pathlib.Path(workdir) / stage.name / "checkpoints"
            stage_config.resume = stage_dir.is_dir() and any(
                p.name.isdigit() for p in stage_dir.iterdir()
            )
        if state is not None and stage.tx is not None:
            state = start_optimizer(state, stage.tx)
        task = stage.task
        if state is None and stage.tx is not None and task.init is not None:
            task = dataclasses.replace(task, init=_with_optimizer(task.init, stage.tx))
        result = fit(
            stage_config,
            task,
            data,
            pathlib.Path(workdir) / stage.name,
            eval_splits=eval_splits,
            initial_state=state,
            per_replica=per_replica,
            first_epoch=done + 1,
            log=log,
        )
        results[stage.name] = result
        state = result.state
        done += stage.epochs
    return results


def _with_optimizer(init, tx):
    return lambda key: start_optimizer(init(key), tx, stacked=False)


def start_optimizer(state, tx, stacked: bool = True):
    """``state`` with optimizer ``tx`` and its fresh state (over the seed axis if stacked)."""
    init = jax.vmap(tx.init) if stacked else tx.init
    return state.replace(tx=tx, opt_state=init(state.params))
