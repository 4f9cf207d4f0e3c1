"""Training: state, step builders, the compiled program and the host driver."""

from lexicon.train.checkpoint import Checkpointer, CheckpointError
from lexicon.train.config import RESUMABLE, RULES, defaults
from lexicon.train.driver import TrainingDiverged, TrainingInterrupted, WorkdirBusy, workdir_lock
from lexicon.train.loop import Result, Stage, Task, fit, stages, start_optimizer
from lexicon.train.metrics import read as read_metrics
from lexicon.train.program import (
    Program,
    init_states,
    replica_seeds,
    steps_per_epoch,
    stream,
    to_host,
)
from lexicon.train.state import TrainState
from lexicon.train.steps import gradient_step, mean_over
from lexicon.train.sweep import Sweep
from lexicon.train.tasks import (
    accuracy,
    apply_model,
    classifier,
    evaluate_in_chunks,
)

__all__ = [
    "RESUMABLE",
    "RULES",
    "CheckpointError",
    "Checkpointer",
    "Program",
    "Result",
    "Stage",
    "Sweep",
    "Task",
    "TrainState",
    "TrainingDiverged",
    "TrainingInterrupted",
    "WorkdirBusy",
    "accuracy",
    "apply_model",
    "classifier",
    "defaults",
    "evaluate_in_chunks",
    "fit",
    "gradient_step",
    "init_states",
    "mean_over",
    "read_metrics",
    "replica_seeds",
    "stages",
    "start_optimizer",
    "steps_per_epoch",
    "stream",
    "to_host",
    "workdir_lock",
]
