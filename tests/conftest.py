"""Shared fixtures for the test suite.

Most of the suite's time is XLA compilation, and many tests (and the processes they start)
compile the same small programs. JAX's persistent compilation cache, shared by the pytest
workers and their subprocesses through the environment, compiles each of them once per run.
A cached executable is the same compiled code, so results stay bitwise the same.
"""

from __future__ import annotations

import os
import pathlib

import pytest

CACHE = pathlib.Path(__file__).resolve().parent.parent / ".cache" / "jax-tests"
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(CACHE))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")


@pytest.fixture
def x64():
    """Float64 inside one test only: the worker process is shared with float32 tests."""
    import jax

    with jax.enable_x64(True):
        yield
