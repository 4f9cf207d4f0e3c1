"""Shared fixtures for the test suite."""

from __future__ import annotations

import pytest


@pytest.fixture
def x64():
    """Float64 inside one test only: the worker process is shared with float32 tests."""
    import jax

    with jax.enable_x64(True):
        yield
