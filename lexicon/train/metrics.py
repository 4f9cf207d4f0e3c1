"""Where metrics go: metrics.jsonl, TensorBoard event files, and a progress bar."""

from __future__ import annotations

import json
import pathlib

import numpy as np

METRICS_FILE = "metrics.jsonl"


def read(workdir: str | pathlib.Path) -> list[dict]:
    """The records of a run's metrics.jsonl, one dict per epoch."""
    path = pathlib.Path(workdir) / METRICS_FILE
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def to_json(value):
    """Per-seed arrays become (nested) lists of Python floats: an exact round trip of float32."""
    array = np.asarray(value)
    if np.issubdtype(array.dtype, np.integer):
        return array.tolist()
    return array.astype(np.float64).tolist()


class MetricWriter:
    """Appends one JSON record per epoch; mirrors seed means into TensorBoard.

    Records hold no wall-clock times, so the same seed gives a byte-identical file. On a
    resumed run the file is cut back to the restored epoch before new records are added.
    """

    def __init__(self, workdir: str | pathlib.Path, *, keep_until_epoch: int = 0, enabled=True):
        self.enabled = enabled
        self.path = pathlib.Path(workdir) / METRICS_FILE
        self._tb = None
        if not enabled:
            return
        kept = [r for r in read(workdir) if r["epoch"] <= keep_until_epoch]
        self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))
        try:
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(str(pathlib.Path(workdir) / "tensorboard"))
        except ImportError:  # TensorBoard output is optional
            self._tb = None

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        if self._tb is not None:
            for key, value in record.items():
                if key not in ("epoch", "step"):
                    self._tb.add_scalar(key, float(np.mean(value)), record["step"])

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
