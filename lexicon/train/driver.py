"""The host driver: runs the compiled epochs of a Program and keeps the run safe.

One driver serves every kind of epoch. After each epoch it
- checks the divergence policy: a non-finite value of a watched metric (``Task.watch``, in
  training or evaluation) or non-finite parameters or optimizer state stop the run
  (``config.on_divergence=stop``) or freeze that replica at its last good state and mark it
  (``record``), while the healthy replicas train on untouched;
- writes one record to ``metrics.jsonl`` (valid JSON: a non-finite value is null) and
  TensorBoard, and moves the progress bar;
- saves an orbax checkpoint every ``config.checkpoint_every`` epochs and at the end; a state
  is saved only after it was checked to be finite;
- stops cleanly on SIGTERM or SIGINT: the state of the finished epoch is saved and the run
  ends with one line saying how to resume.
The workdir is locked while a run writes into it.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import signal
import socket
import threading
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils

from lexicon.rules import ConfigError
from lexicon.train.checkpoint import CheckpointError
from lexicon.train.metrics import MetricWriter, to_json
from lexicon.train.program import to_host

LOCK_FILE = ".lock"


class TrainingDiverged(RuntimeError):
    """A watched metric or the state became NaN or infinite; training stopped there."""


class TrainingInterrupted(RuntimeError):
    """SIGTERM or SIGINT stopped the run at an epoch boundary, after saving a checkpoint."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum


class WorkdirBusy(ConfigError):
    """Another live process is writing into this workdir."""


# ---------------------------------------------------------------------------------------------
# The workdir lock


_held: dict[pathlib.Path, int] = {}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def workdir_lock(workdir, *, log=print, enabled: bool = True):
    """Holds ``workdir/.lock`` (the owner's pid) for the block. Re-entrant within a process; a
    lock whose process is dead is taken over with a notice; a live one refuses the run."""
    path = (pathlib.Path(workdir) / LOCK_FILE).absolute()
    if not enabled or _held.get(path):
        _held[path] = _held.get(path, 0) + 1 if enabled else 0
        try:
            yield
        finally:
            if enabled:
                _held[path] -= 1
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = _owner(path)
            if owner is not None and owner[1] == socket.gethostname() and not _alive(owner[0]):
                log(f"{path.parent}: taking over the lock of process {owner[0]}, which is gone")
                path.unlink(missing_ok=True)
                continue
            who = f"process {owner[0]} on {owner[1]}" if owner else "another run"
            raise WorkdirBusy(
                f"{path.parent} is in use by {who}; wait for it to finish or choose another "
                f"--workdir (remove {path} if that run is gone)"
            ) from None
        with os.fdopen(fd, "w") as f:
            f.write(f"{os.getpid()} {socket.gethostname()}\n")
        break
    else:
        raise WorkdirBusy(f"{path.parent} is in use; could not take its lock")
    _held[path] = 1
    try:
        yield
    finally:
        _held[path] = 0
        path.unlink(missing_ok=True)


def _owner(path: pathlib.Path) -> tuple[int, str] | None:
    try:
        pid, host = path.read_text().split()[:2]
        return int(pid), host
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------------------------------------
# Stop signals


class StopSignals:
    """Turns the first SIGTERM or SIGINT into a request to stop at the next epoch boundary; a
    second one stops at once (SIGINT as KeyboardInterrupt, SIGTERM by its default action)."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.received: int | None = None
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.received is None:
            self.received = signum
            return
        self.__exit__()
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        os.kill(os.getpid(), signum)

    def __exit__(self, *exc):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def requested(self) -> int | None:
        """The signal that asked to stop, agreed across processes (0 = none)."""
        flag = self.received or 0
        if jax.process_count() > 1:
            flag = int(np.max(multihost_utils.process_allgather(np.int32(flag))))
        return flag or None


# ---------------------------------------------------------------------------------------------
# Divergence


def _first_bad(step_metrics: dict, watch, active) -> dict[int, tuple[str, int]]:
    """Per replica (index): (metric, step within the epoch) of its first non-finite watched
    value, for the replicas that are still ``active``."""
    found: dict[int, tuple[str, int]] = {}
    for name in watch:
        if name not in step_metrics:
            continue
        values = np.asarray(step_metrics[name], dtype=np.float64)
        bad = ~np.isfinite(values.reshape(values.shape[0], -1))
        for replica in np.flatnonzero(bad.any(axis=1) & active):
            index = int(np.argmax(bad[replica]))
            if replica not in found or index < found[replica][1]:
                found[int(replica)] = (name, index)
    return found


def _epoch_means(metrics: dict) -> dict:
    """Per replica, the mean over the epoch's steps in the metrics' own dtype; where some
    steps are NaN (an unwatched metric, or a frozen replica) they are left out (nanmean)."""
    means = {}
    for key, values in metrics.items():
        values = np.asarray(values)
        values = values.reshape(values.shape[0], -1)
        mean = values.mean(axis=1)
        if np.issubdtype(values.dtype, np.floating):
            holes = np.isnan(values).any(axis=1)
            if holes.any():
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    partial = np.nanmean(values, axis=1).astype(mean.dtype)
                mean = np.where(holes, partial, mean)
        means[key] = mean
    return means


def run_epochs(
    config,
    program,
    state,
    *,
    seeds: np.ndarray,
    data,
    eval_splits: dict,
    watch,
    checkpointer,
    workdir: pathlib.Path,
    start: int,
    history: list[dict],
    diverged_at: np.ndarray,
    log=print,
    names: list[str] | None = None,
    grid: dict | None = None,
):
    """Trains from epoch ``start`` to ``config.epochs``; returns (state, history, step
    metrics, diverged_at). ``diverged_at[i]`` is the epoch replica i diverged at (0: never).
    ``names`` names the replicas in messages (default "seed <seed>"); ``grid`` (a sweep's
    coordinates of every replica) goes into every record."""
    names = names or [f"seed {s}" for s in seeds]
    primary = jax.process_index() == 0
    policy = config.get("on_divergence", "stop")
    seed_array = program.put(seeds, program.seed_sharding)
    writer = MetricWriter(workdir, keep_until_epoch=start, enabled=primary, log=log)
    from tqdm.auto import tqdm

    bar = tqdm(
        total=config.epochs, initial=start, unit="epoch", disable=not (config.progress and primary)
    )
    step_metrics: list[dict] = []
    saved_epoch = start if config.resume else None  # a resumed run's checkpoint is on disk
    good_state, good_epoch = state, start
    diverged = diverged_at > 0

    def save(epoch, state):
        nonlocal saved_epoch
        if checkpointer.latest() is None:
            checkpointer.write_config(config)
        checkpointer.save(epoch, state)
        saved_epoch = epoch

    try:
        with StopSignals() as signals:
            for epoch in range(start + 1, config.epochs + 1):
                new_state, metrics = program.epoch(state, seed_array, data, np.int32(epoch))
                metrics = to_host(metrics)
                finite = program.finite(new_state)
                finite = np.ones(len(seeds), bool) if finite is None else to_host(finite)
                bad = _first_bad(metrics, watch, ~diverged)
                newly = np.zeros(len(seeds), bool)
                newly[list(bad)] = True
                newly |= ~finite & ~diverged
                if newly.any() and policy == "stop":
                    raise TrainingDiverged(_divergence_message(bad, finite, names, epoch, state))
                evaluated = {}
                last = epoch == config.epochs or (diverged | newly).all()
                if program.evaluate is not None and (epoch % config.eval_every == 0 or last):
                    for name, split in eval_splits.items():
                        values = to_host(program.evaluate(new_state, split))
                        evaluated[name] = values
                        for metric in watch:
                            if metric in values:
                                eval_bad = ~np.isfinite(np.asarray(values[metric], np.float64))
                                eval_bad &= ~diverged & ~newly
                                if eval_bad.any() and policy == "stop":
                                    replica = int(np.argmax(eval_bad))
                                    raise TrainingDiverged(
                                        f"{name}/{metric} is not finite after epoch {epoch} "
                                        f"({names[replica]}); training stopped"
                                    )
                                newly |= eval_bad
                if newly.any():
                    for replica in np.flatnonzero(newly):
                        log(f"{names[replica]} diverged in epoch {epoch}; frozen there")
                    diverged |= newly
                    diverged_at[newly] = epoch
                if diverged.any():
                    new_state = program.keep(jnp.asarray(~diverged), new_state, state)
                    metrics = {
                        k: np.where(_rows(diverged, v), np.nan, v) for k, v in metrics.items()
                    }
                    for values in evaluated.values():
                        for k, v in values.items():
                            values[k] = np.where(diverged, np.nan, np.asarray(v, np.float64))
                state = new_state
                good_state, good_epoch = state, epoch
                step_metrics.append(metrics)
                record = {"epoch": epoch, "step": int(np.max(to_host(_step_of(state))))}
                record.update({f"train/{k}": to_json(v) for k, v in _epoch_means(metrics).items()})
                for name, values in evaluated.items():
                    record.update({f"{name}/{k}": to_json(v) for k, v in values.items()})
                if policy == "record":
                    record["diverged_at"] = diverged_at.tolist()
                if grid is not None:
                    record["grid"] = grid
                history.append(record)
                writer.write(record)
                if config.checkpoint_every and epoch % config.checkpoint_every == 0:
                    save(epoch, state)
                bar.update(1)
                bar.set_postfix(_progress(record))
                if diverged.all():
                    log(f"every replica diverged by epoch {epoch}; training ends there")
                    break
                signum = signals.requested()
                if signum is not None and epoch < config.epochs:
                    if saved_epoch != epoch:
                        save(epoch, state)
                    raise TrainingInterrupted(
                        f"stopped by {signal.Signals(signum).name} after epoch {epoch}; its "
                        f"checkpoint is in {checkpointer.directory}; continue with "
                        f"--config.resume=true",
                        signum,
                    )
            if saved_epoch != good_epoch:
                save(good_epoch, state)
    except BaseException as error:
        # Keep what was learned: the last good state goes to disk, unless saving is what failed.
        if not isinstance(error, CheckpointError) and good_epoch > 0 and saved_epoch != good_epoch:
            try:
                save(good_epoch, good_state)
            except Exception as save_error:  # report the original error, not this one
                log(f"could not save the last good state: {save_error}")
        if isinstance(error, TrainingDiverged) and saved_epoch:
            raise TrainingDiverged(
                f"{error}; the last good checkpoint is epoch {saved_epoch} in "
                f"{checkpointer.directory}"
            ) from None
        raise
    finally:
        bar.close()
        writer.close()
    return state, history, step_metrics, diverged_at


def _progress(record: dict) -> dict:
    """The seed means of a record's metrics for the progress bar."""
    shown = {}
    for key, value in record.items():
        if "/" in key:
            values = np.asarray(np.where(np.equal(value, None), np.nan, value), np.float64)
            if np.isfinite(values).any():
                shown[key] = f"{np.nanmean(values):.4g}"
    return shown


def _rows(mask, values):
    values = np.asarray(values)
    return mask.reshape(mask.shape + (1,) * (values.ndim - 1))


def _step_of(state):
    """The step counter of a state (a struct with ``step``, or a dict with a "step" entry)."""
    return state["step"] if isinstance(state, dict) else state.step


def _divergence_message(bad, finite, names, epoch, state) -> str:
    if bad:
        replica, (name, index) = min(bad.items(), key=lambda item: (item[1][1], item[0]))
        steps = np.atleast_1d(to_host(_step_of(state)))
        global_step = int(steps[replica if steps.size > 1 else 0]) + index + 1
        return (
            f"{name} is not finite at step {global_step} (epoch {epoch}, batch {index + 1}, "
            f"{names[replica]}); training stopped"
        )
    replica = int(np.argmax(~finite))
    return (
        f"the parameters or optimizer state are not finite after epoch {epoch} "
        f"({names[replica]}); training stopped"
    )
