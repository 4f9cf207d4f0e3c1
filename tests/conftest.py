"""Shared fixtures for the test suite.

Most of the suite's time is XLA compilation, and many tests (and the processes they start)
compile the same small programs. JAX's persistent compilation cache, shared by the pytest
workers and their subprocesses through the environment, compiles each of them once per run.
A cached executable is the same compiled code, so results stay bitwise the same.

CI starts with an empty cache, so compiling is most of a cold run. The suite compiles with
LLVM's optimization level 0 (``TEST_XLA_FLAGS``): measured on 57 tests of this 2-core machine,
a cold run takes 29% less time (111 -> 79 s) and a warm one 10% more (40 -> 44 s). XLA's
HLO passes (fusion, layouts) are the same; LLVM no longer fuses multiply-adds, so results
can differ from a user's run in the last float ulps (a float64 formula test therefore holds
to 1e-14, not 1e-15). No test compares numbers across levels: every process the tests
start compiles with the same flags (``support.xla_flags``).
"""

from __future__ import annotations

import os
import pathlib

import pytest

CACHE = pathlib.Path(__file__).resolve().parent.parent / ".cache" / "jax-tests"
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(CACHE))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
TEST_XLA_FLAGS = "--xla_backend_optimization_level=0"
os.environ["TEST_XLA_FLAGS"] = TEST_XLA_FLAGS  # for support.xla_flags in the test modules
if TEST_XLA_FLAGS not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {TEST_XLA_FLAGS}".strip()


@pytest.fixture
def x64():
    """Float64 inside one test only: the worker process is shared with float32 tests."""
    import jax

    with jax.enable_x64(True):
        yield
