"""lexicon: a deep-learning course as exact, reproducible JAX experiments."""

import os

if "LEXICON_NUM_PROCESSES" in os.environ:
    # A process of launch.sh --processes joins the others as soon as lexicon is imported:
    # jax.distributed cannot start once JAX's backend has, and an experiment's own imports
    # may start it (gymnax computes arrays when it is imported).
    from lexicon.cli import start_distributed

    start_distributed()
