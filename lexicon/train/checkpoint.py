"""Orbax checkpoints of a train state, keyed by epoch, with the config that made them."""

from __future__ import annotations

import json
import logging
import pathlib

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import serialization

CONFIG_FILE = "config.json"


class CheckpointError(RuntimeError):
    """A checkpoint could not be written or read; the message is one line."""


def plain_config(config) -> dict:
    """A config as JSON-ready plain data (tuples become lists)."""
    raw = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    return json.loads(json.dumps(raw, default=str))


class Checkpointer:
    """Saves and restores a (seed-stacked) state under ``directory/<epoch>``.

    Orbax writes each checkpoint to a temporary directory and renames it when complete, so a
    crash during a save never damages the checkpoints already on disk. Saves are synchronous:
    a save that fails raises CheckpointError at once instead of leaving a background thread
    that blocks the interpreter's exit. ``directory/config.json`` holds the config of the run
    that wrote the checkpoints, so that a resume can check what it resumes.
    """

    def __init__(self, directory: str | pathlib.Path, *, max_to_keep: int = 3):
        self.directory = pathlib.Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, create=True, enable_async_checkpointing=False
        )
        try:
            self._manager = ocp.CheckpointManager(self.directory, options=options)
        except OSError as error:
            raise CheckpointError(f"cannot use {self.directory} for checkpoints: {error}") from None

    def latest(self) -> int | None:
        return self._manager.latest_step()

    def all(self) -> list[int]:
        return list(self._manager.all_steps())

    def save(self, epoch: int, state) -> None:
        tree = serialization.to_state_dict(state)
        try:
            self._manager.save(epoch, args=ocp.args.StandardSave(tree), force=True)
            self._manager.wait_until_finished()
        except Exception as error:  # disk full, read-only, an array orbax cannot write
            message = " ".join(str(error).split())[:300]
            raise CheckpointError(
                f"could not save the checkpoint of epoch {epoch} in {self.directory}: "
                f"{type(error).__name__}: {message}"
            ) from None

    def restore(self, epoch: int, template):
        """Restores the state saved at ``epoch`` into the structure of ``template`` (arrays or
        ``jax.ShapeDtypeStruct``s); a checkpoint of another shape is refused in one line."""
        target = serialization.to_state_dict(template)
        saved = self._saved_tree(epoch)
        if saved is not None:
            mismatch = _first_mismatch(target, saved)
            if mismatch:
                raise CheckpointError(
                    f"the checkpoint of epoch {epoch} in {self.directory} does not fit this "
                    f"run's state ({mismatch}); start a new --workdir or resume with the "
                    f"config that wrote it"
                )
        try:
            tree = self._manager.restore(epoch, args=ocp.args.StandardRestore(target))
        except Exception as error:
            message = " ".join(str(error).split())[:300]
            raise CheckpointError(
                f"could not restore the checkpoint of epoch {epoch} in {self.directory}: {message}"
            ) from None
        return serialization.from_state_dict(template, tree)

    def _saved_tree(self, epoch: int):
        """The saved state's tree of array metadata (shapes), or None where orbax has none."""
        quiet = logging.getLogger("absl")
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            metadata = ocp.StandardCheckpointer().metadata(self.directory / str(epoch) / "default")
            tree = getattr(metadata, "item_metadata", metadata)
            return getattr(tree, "tree", tree)
        except Exception:  # another orbax layout: the restore itself checks the shapes
            return None
        finally:
            quiet.setLevel(level)

    def write_config(self, config) -> None:
        """``config.json`` beside the checkpoints, by process 0 (orbax itself coordinates the
        processes of a checkpoint save: each writes its shards, process 0 the metadata)."""
        if jax.process_index() != 0:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / CONFIG_FILE).write_text(json.dumps(plain_config(config), indent=1) + "\n")

    def read_config(self) -> dict | None:
        path = self.directory / CONFIG_FILE
        return json.loads(path.read_text()) if path.exists() else None

    def close(self) -> None:
        self._manager.close()


def _first_mismatch(target, saved, path="") -> str | None:
    """The first leaf whose shape differs between the template and the saved metadata."""
    if isinstance(target, dict):
        if not isinstance(saved, dict) or set(target) != set(saved):
            have = sorted(saved) if isinstance(saved, dict) else type(saved).__name__
            return f"{path or 'state'} holds {have}, this run expects {sorted(target)}"
        for key in target:
            found = _first_mismatch(target[key], saved[key], f"{path}.{key}" if path else key)
            if found:
                return found
        return None
    shape = getattr(saved, "shape", None)
    if shape is not None and hasattr(target, "shape"):
        if tuple(shape) != tuple(np.shape(target)):
            return f"{path} has shape {tuple(shape)}, this run expects {tuple(np.shape(target))}"
    return None


# Shared keys added after runs were saved: absent in a saved config means their default.
ADDED_KEYS = {"sweep": "", "sweep_memory": 0.0}


def differing_keys(saved: dict, current: dict, allowed, prefix: str = "") -> list[str]:
    """``key (saved -> current)`` for every key whose value changed, except ``allowed``."""
    changes = []
    for key in sorted(set(saved) | set(current)):
        name = prefix + key
        a, b = saved.get(key, "<absent>"), current.get(key, "<absent>")
        if a == "<absent>" and name in ADDED_KEYS and b == ADDED_KEYS[name]:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            changes += differing_keys(a, b, allowed, name + ".")
        elif name not in allowed and a != b:
            changes.append(f"{name} ({a!r} -> {b!r})")
    return changes


def shapes_of(tree):
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype), tree)
