"""Training: state, step builders, the epoch-as-scan loop, seeds, devices, checkpoints."""

from lexicon.train.checkpoint import Checkpointer
from lexicon.train.config import RULES, defaults
from lexicon.train.loop import Result, Task, TrainingDiverged, fit, stream, to_host
from lexicon.train.metrics import read as read_metrics
from lexicon.train.state import TrainState
from lexicon.train.steps import gradient_step, mean_over
from lexicon.train.tasks import accuracy, apply_model, classifier, cross_entropy

__all__ = [
    "RULES",
    "Checkpointer",
    "accuracy",
    "apply_model",
    "classifier",
    "cross_entropy",
    "Result",
    "Task",
    "TrainState",
    "TrainingDiverged",
    "defaults",
    "fit",
    "gradient_step",
    "mean_over",
    "read_metrics",
    "stream",
    "to_host",
]
