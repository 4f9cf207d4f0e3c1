"""Helpers shared by the tests: running code in a fresh process."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]


def xla_flags(devices: int | None = None) -> str:
    """XLA_FLAGS for a process a test starts: the suite's own compile flags (conftest.py's
    TEST_XLA_FLAGS), and optionally N host CPU devices."""
    flags = os.environ.get("TEST_XLA_FLAGS", "")
    if devices:
        flags += f" --xla_force_host_platform_device_count={devices}"
    return flags.strip()


def run_python(args, *, devices: int | None = None, env=None, timeout=300, cwd=ROOT):
    """Runs ``python args...`` in a fresh process (optionally with N host CPU devices)."""
    environment = {**os.environ, **(env or {})}
    environment["XLA_FLAGS"] = xla_flags(devices)
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
