"""The command line every experiment shares.

An experiment module ends with ``cli.run(get_config, train_and_evaluate, RULES)``. This
parses ``--config.key=value`` overrides of ``get_config()`` and ``--workdir`` with absl and
ml_collections, checks every value before anything compiles (one line and exit status 2
on a bad one), starts ``jax.distributed`` when launched by ``launch.sh --processes``, writes
``manifest.json``, runs the experiment and prints where its report is.
"""

from __future__ import annotations

import datetime
import difflib
import importlib.metadata
import inspect
import json
import os
import pathlib
import platform
import re
import subprocess
import sys
from collections.abc import Callable, Mapping

from absl import flags
from ml_collections import config_flags

from lexicon.data import DataError
from lexicon.rules import ConfigError, check

PACKAGES = (
    "jax",
    "jaxlib",
    "flax",
    "optax",
    "orbax-checkpoint",
    "chex",
    "numpy",
    "ml-collections",
    "tensorflow-datasets",
    "scikit-learn",
)
EXIT_BAD_INPUT = 2


def fail(message: str, status: int = EXIT_BAD_INPUT):
    """Prints one line to stderr and exits."""
    print(f"error: {' '.join(str(message).split())}", file=sys.stderr)
    raise SystemExit(status)


def flat_keys(config, prefix: str = "") -> list[str]:
    keys = []
    for key, value in config.items():
        if hasattr(value, "items"):
            keys += flat_keys(value, f"{prefix}{key}.")
        else:
            keys.append(prefix + key)
    return keys


def key_comments(get_config: Callable) -> dict[str, str]:
    """The one-line comment after each ``config.key = value`` in get_config's source."""
    comments = {}
    sources = [get_config]
    try:
        from lexicon.train import config as train_config

        sources.append(train_config.defaults)
        for fn in sources:
            for line in inspect.getsource(fn).splitlines():
                match = re.match(r"\s*config\.([\w.]+)\s*=.*?#\s*(.*)$", line)
                if match:
                    comments.setdefault(match.group(1), match.group(2))
    except (OSError, TypeError):
        pass
    return comments


def usage(topic: str, doc: str, config, get_config) -> str:
    comments = key_comments(get_config)
    lines = [f"usage: ./launch.sh {topic} [--config.key=value ...] [--workdir DIR]", ""]
    lines += [doc.strip(), "", "config keys (default, meaning):"]
    for key in flat_keys(config):
        value = config
        for part in key.split("."):
            value = value[part]
        lines.append(f"  --config.{key}={value!r}  {comments.get(key, '')}".rstrip())
    return "\n".join(lines)


def check_keys(argv: list[str], valid: list[str]) -> None:
    """Unknown ``--config.*`` keys stop here, with the closest valid names."""
    for arg in argv:
        if not arg.startswith("--config."):
            continue
        key = arg[len("--config.") :].split("=", 1)[0]
        if key not in valid:
            close = difflib.get_close_matches(key, valid, n=3)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            fail(f"unknown config key {key!r}; {hint}valid keys: {', '.join(valid)}")


def parse(get_config: Callable, argv: list[str]):
    """argv -> (config, workdir or None). Exits with status 2 on any bad flag."""
    config = get_config()
    check_keys(argv[1:], flat_keys(config))
    for arg in argv[1:]:
        if arg.startswith("--config") and "=" not in arg and not arg.startswith("--config."):
            fail(f"flag {arg!r} is not supported; set single keys with --config.key=value")
    registry = flags.FlagValues()
    config_flags.DEFINE_config_dict("config", config, flag_values=registry, sys_argv=argv)
    flags.DEFINE_string("workdir", None, "where the run writes its outputs", flag_values=registry)
    try:
        rest = registry(argv)
    except flags.Error as error:
        fail(str(error).splitlines()[0])
    except Exception as error:  # ml_collections raises plain TypeError/ValueError on bad values
        fail(f"{type(error).__name__}: {error}")
    if len(rest) > 1:
        fail(f"unexpected arguments: {' '.join(rest[1:])}; flags take the form --config.key=value")
    return registry.config, registry.workdir


def start_distributed() -> None:
    """Joins the processes started by ``launch.sh --processes N`` (CPU collectives: gloo)."""
    if "LEXICON_NUM_PROCESSES" not in os.environ:
        return
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=os.environ["LEXICON_COORDINATOR"],
        num_processes=int(os.environ["LEXICON_NUM_PROCESSES"]),
        process_id=int(os.environ["LEXICON_PROCESS_ID"]),
    )


def git_commit() -> str | None:
    root = pathlib.Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def versions() -> dict[str, str | None]:
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def write_manifest(workdir: pathlib.Path, topic: str, config, argv: list[str]) -> None:
    import jax

    manifest = {
        "topic": topic,
        "argv": argv,
        "config": config.to_dict(),
        "seed": config.get("seed"),
        "seeds": config.get("seeds"),
        "versions": versions(),
        "git_commit": git_commit(),
        "process_count": jax.process_count(),
        "devices": [str(d) for d in jax.devices()],
        "started": datetime.datetime.now().isoformat(timespec="seconds"),
    }
    (workdir / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str) + "\n")


def default_workdir(topic: str, config) -> pathlib.Path:
    stamp = os.environ.get("LEXICON_RUN_STAMP") or datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return pathlib.Path("runs") / topic / f"{stamp}-s{config.get('seed', 0)}"


def run(
    get_config: Callable,
    train_and_evaluate: Callable,
    rules: Mapping | None = None,
    argv: list[str] | None = None,
) -> dict:
    """Parses flags, checks them, then runs ``train_and_evaluate(config, workdir)``."""
    argv = list(sys.argv if argv is None else argv)
    source = inspect.getmodule(get_config)
    topic = pathlib.Path(inspect.getfile(get_config)).stem
    if any(a in ("-h", "--help", "--helpfull") for a in argv[1:]):
        print(usage(topic, (source.__doc__ or "") if source else "", get_config(), get_config))
        raise SystemExit(0)
    config, workdir = parse(get_config, argv)

    from lexicon.train.config import RULES as TRAIN_RULES

    keys = set(flat_keys(config))
    all_rules = {k: r for k, r in TRAIN_RULES.items() if k in keys} | dict(rules or {})
    try:
        check(config, all_rules)
    except ConfigError as error:
        fail(str(error))

    start_distributed()
    import jax

    workdir = pathlib.Path(workdir) if workdir else default_workdir(topic, config)
    workdir.mkdir(parents=True, exist_ok=True)
    if jax.process_index() == 0:
        write_manifest(workdir, topic, config, argv)
    from lexicon.train import TrainingDiverged

    try:
        results = train_and_evaluate(config, workdir)
    except (ConfigError, DataError) as error:
        fail(str(error))
    except TrainingDiverged as error:
        fail(str(error), status=1)
    if jax.process_index() == 0:
        print(f"\n{topic}: done; report: {workdir / 'report.md'}")
    return results
