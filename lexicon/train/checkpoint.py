"""Orbax checkpoints of a train state, keyed by epoch."""

from __future__ import annotations

import pathlib

import orbax.checkpoint as ocp
from flax import serialization


class Checkpointer:
    """Saves and restores a (seed-stacked) TrainState under ``directory/<epoch>``.

    Orbax writes each checkpoint to a temporary directory and renames it when complete, so
    a crash during a save never damages the checkpoints already on disk.
    """

    def __init__(self, directory: str | pathlib.Path, *, max_to_keep: int = 3):
        self.directory = pathlib.Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def latest(self) -> int | None:
        return self._manager.latest_step()

    def all(self) -> list[int]:
        return list(self._manager.all_steps())

    def save(self, epoch: int, state) -> None:
        tree = serialization.to_state_dict(state)
        self._manager.save(epoch, args=ocp.args.StandardSave(tree), force=True)
        self._manager.wait_until_finished()

    def restore(self, epoch: int, template):
        """Restores the state saved at ``epoch`` into the structure of ``template``."""
        target = serialization.to_state_dict(template)
        tree = self._manager.restore(epoch, args=ocp.args.StandardRestore(target))
        return serialization.from_state_dict(template, tree)

    def close(self) -> None:
        self._manager.close()
