"""Where metrics go: metrics.jsonl, TensorBoard event files, and a progress bar."""

from __future__ import annotations

import json
import pathlib

import numpy as np

METRICS_FILE = "metrics.jsonl"


def _records(path: pathlib.Path) -> tuple[list[dict], bool]:
    """The records of a metrics file and whether its last line was torn (cut mid-write)."""
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    records = []
    for i, line in enumerate(lines):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                return records, True
            raise ValueError(f"{path}: line {i + 1} is not a JSON record") from None
    return records, False


def read(workdir: str | pathlib.Path) -> list[dict]:
    """The records of a run's metrics.jsonl, one dict per epoch (a torn last line is left
    out). A metric that was not finite reads back as None."""
    path = pathlib.Path(workdir) / METRICS_FILE
    if not path.exists():
        return []
    return _records(path)[0]


def to_json(value):
    """Per-seed arrays become (nested) lists of Python floats, an exact round trip of float32;
    NaN and infinities become None (null), so the file stays valid JSON."""
    array = np.asarray(value)
    if np.issubdtype(array.dtype, np.integer) or array.dtype == bool:
        return array.tolist()
    array = array.astype(np.float64)
    if np.isfinite(array).all():
        return array.tolist()
    return np.where(np.isfinite(array), array, None).tolist()


def has_null(value) -> bool:
    if isinstance(value, list):
        return any(has_null(v) for v in value)
    return value is None


class MetricWriter:
    """Appends one JSON record per epoch; mirrors seed means into TensorBoard.

    Records hold no wall-clock times, so the same seed gives a byte-identical file. A value
    that is not finite is written as null and its key is listed under ``"nonfinite"``. On a
    resumed run the file is cut back to the restored epoch (and a torn last line, left by a
    killed run, is dropped) before new records are added.
    """

    def __init__(
        self, workdir: str | pathlib.Path, *, keep_until_epoch: int = 0, enabled=True, log=print
    ):
        self.enabled = enabled
        self.path = pathlib.Path(workdir) / METRICS_FILE
        self._tb = None
        if not enabled:
            return
        kept = []
        if self.path.exists():
            records, torn = _records(self.path)
            if torn:
                log(f"{self.path}: its last line was cut mid-write; dropped it")
            kept = [r for r in records if r["epoch"] <= keep_until_epoch]
        self.path.write_text("".join(json.dumps(r, allow_nan=False) + "\n" for r in kept))
        try:
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(str(pathlib.Path(workdir) / "tensorboard"))
        except ImportError:  # TensorBoard output is optional
            self._tb = None

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        nonfinite = sorted(k for k, v in record.items() if has_null(v))
        if nonfinite:
            record = {**record, "nonfinite": nonfinite}
        with self.path.open("a") as f:
            f.write(json.dumps(record, allow_nan=False) + "\n")
        if self._tb is not None:
            for key, value in record.items():
                if "/" in key:
                    values = np.asarray(value, dtype=np.float64)
                    if np.isfinite(values).any():
                        self._tb.add_scalar(key, float(np.nanmean(values)), record["step"])

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
