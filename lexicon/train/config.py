"""The training keys every experiment shares, with their rules."""

from __future__ import annotations

import ml_collections

from lexicon.rules import Choice, Range

PARALLEL = ("none", "data", "seeds")
MAPPERS = ("shard_map", "pmap")
EPOCH_LOOPS = ("scan", "dispatch")
ON_DIVERGENCE = ("stop", "record")
# The keys a resumed run may change: they shape neither the state nor the data stream
# (sweep_select only picks the best point of the summary, and runs saved before it lack it).
RESUMABLE = frozenset(
    {"epochs", "resume", "eval_every", "progress", "checkpoint_every", "on_divergence"}
    | {"sweep_select"}
)


def defaults() -> ml_collections.ConfigDict:
    """Shared training keys; an experiment's get_config() starts from these."""
    config = ml_collections.ConfigDict()
    config.seed = 0  # seed of the first replica; replica i uses seed + i
    config.seeds = 1  # independent replicas trained together as one vmapped program
    config.data_seed = 0  # seed of the train/validation/test split, shared by all replicas
    config.epochs = 10  # passes over the training split
    config.batch_size = 32  # examples per step; 0 = full batch, 1 = stochastic
    config.parallel = "none"  # none | data (split each batch over devices) | seeds
    config.mapper = "shard_map"  # shard_map | pmap: how parallel=data maps the device step
    config.epoch_loop = "scan"  # scan (one compiled lax.scan) | dispatch (a jitted step per batch)
    config.checkpoint_every = 0  # epochs between orbax checkpoints; 0 = only at the end
    config.resume = False  # continue from the latest checkpoint in --workdir
    config.eval_every = 1  # epochs between evaluations of the validation and test splits
    config.progress = True  # progress bar with ETA on the terminal
    config.on_divergence = "stop"  # stop | record (freeze and mark a diverged replica, go on)
    config.sweep_memory = 0.0  # MiB a sweep may take before it runs in chunks; 0 = the devices'
    config.sweep_select = ""  # 'metric:max|min', a sweep's best point; '' = val/, else train/loss
    return config


def with_sweep(config):
    """``config`` with the key ``sweep`` (default '': no sweep) that the command line takes,
    e.g. --config.sweep='lr=0.01,0.1;alpha=0.5,0.9' (a grid, times the seeds, trained as one
    program: lexicon.train.sweep). An experiment whose own config already has a key of that
    name keeps it (and takes no grid sweeps)."""
    if "sweep" not in config:
        config.sweep = ""  # a grid trained as one program, e.g. 'lr=0.01,0.1' (SWEEPABLE keys)
    return config


RULES = {
    "seeds": Range(1),
    "epochs": Range(1),
    "batch_size": Range(0),
    "parallel": Choice(*PARALLEL),
    "mapper": Choice(*MAPPERS),
    "epoch_loop": Choice(*EPOCH_LOOPS),
    "checkpoint_every": Range(0),
    "eval_every": Range(1),
    "on_divergence": Choice(*ON_DIVERGENCE),
    "steps_per_epoch": Range(1),
    "sweep_memory": Range(0),
}
