"""Helpers shared by the tests: running code in a fresh process."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]


def run_python(args, *, devices: int | None = None, env=None, timeout=300, cwd=ROOT):
    """Runs ``python args...`` in a fresh process (optionally with N host CPU devices)."""
    environment = {**os.environ, **(env or {})}
    environment.pop("XLA_FLAGS", None)
    if devices:
        environment["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
