"""The command line every experiment shares.

An experiment module ends with ``cli.run(get_config, train_and_evaluate, RULES)``. This
parses ``--config.key=value`` overrides of ``get_config()`` and ``--workdir`` with absl and
ml_collections, checks every value before anything compiles (one line and exit status 2
on a bad one), starts ``jax.distributed`` when launched by ``launch.sh --processes``, writes
``manifest.json``, runs the experiment and prints where its report is.

Clusters: ``--distributed=auto`` calls ``jax.distributed.initialize()`` with no arguments,
so that JAX's own cluster detection (SLURM, Open MPI, Kubernetes, Cloud TPU) finds the
coordinator, the number of processes and this process's id; lexicon does the same by itself
when it sees a SLURM step, an Open MPI job or an indexed Kubernetes job of more than one
task (``detect_cluster``). ``--distributed=off`` runs a single process whatever the
environment. launch.sh's loopback mode (its LEXICON_* variables) comes first. Only process 0
writes the manifest, reports, results.json, metrics.jsonl and TensorBoard; every process
takes part in orbax's checkpoint saves.

Sweeps: ``--config.sweep='lr=0.01,0.1;alpha=0.5,0.9'`` trains the grid times the seeds as
one program (lexicon.train.sweep). An experiment lists the keys it lets a sweep change in
its module's ``SWEEPABLE`` (float keys that reach the compiled step only as numbers, e.g.
learning rates and penalty weights); any other key is refused in one line, before anything
compiles. Each swept run adds a table and a heat map (a curve for one key) to the report and
every grid point to results.json, with the best point chosen on validation.

What is checked before anything compiles: every key against its rule (the shared ``RULES`` of
lexicon.train.config and ``SHARED_RULES`` here, the experiment's ``RULES``, and for a key with
no rule at least the type of its default, ``rules.implicit_rule``); the shared cross-key rules
(``check_together``); the experiment's own cross-key rules, if its module defines
``check_config(config)`` (it raises ConfigError, and may look at the data but compiles
nothing); and the workdir (``check_workdir``).
"""

from __future__ import annotations

import contextlib
import datetime
import difflib
import functools
import importlib.metadata
import inspect
import json
import logging
import os
import pathlib
import platform
import re
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable, Mapping

from absl import flags
from ml_collections import config_flags

from lexicon.data import DataError
from lexicon.rules import INT32_MAX, ConfigError, Range, check, implicit_rule

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
EXIT_LOST_PROCESS = 3  # a process of a multi-process run lost another one (launch.sh names it)
HEARTBEAT_TIMEOUT_S = 10  # a process silent this long counts as dead (jax.distributed)
MAX_EPOCHS = 10**6
# Bounds on shared keys that lexicon.train.config.RULES leaves open; they replace its rules.
SHARED_RULES = {
    "seed": Range(0, INT32_MAX),
    "data_seed": Range(0, INT32_MAX),
    "seeds": Range(1, 100_000),
    "epochs": Range(1, MAX_EPOCHS),
    "checkpoint_every": Range(0, MAX_EPOCHS),
    "eval_every": Range(1, MAX_EPOCHS),
}


def fail(message: str, status: int = EXIT_BAD_INPUT):
    """Prints one line to stderr and exits."""
    print(f"error: {' '.join(str(message).split())}", file=sys.stderr)
    raise SystemExit(status)


def value_at(config, key: str):
    for part in key.split("."):
        config = config[part]
    return config


def flat_keys(config, prefix: str = "") -> list[str]:
    keys = []
    for key, value in config.items():
        if hasattr(value, "items"):
            keys += flat_keys(value, f"{prefix}{key}.")
        else:
            keys.append(prefix + key)
    return keys


def key_comments(get_config: Callable) -> dict[str, str]:
    """The one-line comment after each ``config.key = value`` in get_config's source, in the
    source of the lexicon functions it calls (a shared ``regularized.defaults()``), and in
    ``train.defaults``; the first comment of a key wins."""
    from lexicon.train import config as train_config

    try:
        sources = [inspect.getsource(get_config)]
    except (OSError, TypeError):
        return {}
    for name in re.findall(r"([\w.]+)\(", sources[0]):
        fn = _resolve(get_config, name)
        if callable(fn) and getattr(fn, "__module__", "").startswith("lexicon"):
            with contextlib.suppress(OSError, TypeError):
                sources.append(inspect.getsource(fn))
    sources += [inspect.getsource(f) for f in (train_config.defaults, train_config.with_sweep)]
    comments = {}
    for line in "\n".join(sources).splitlines():
        match = re.match(r"\s*config\.([\w.]+)\s*=.*?#\s*(.*)$", line)
        if match:
            comments.setdefault(match.group(1), match.group(2))
    return comments


def _resolve(fn: Callable, dotted: str):
    """The object a dotted name in ``fn``'s source refers to, through its globals (None if it
    names nothing there)."""
    head, *rest = dotted.split(".")
    value = fn.__globals__.get(head)
    for part in rest:
        value = getattr(value, part, None)
    return value


def usage(topic: str, doc: str, config, get_config) -> str:
    comments = key_comments(get_config)
    lines = [f"usage: ./launch.sh {topic} [--config.key=value ...] [--workdir DIR]", ""]
    lines += [doc.strip(), "", "config keys (default, meaning):"]
    for key in flat_keys(config):
        value = config
        for part in key.split("."):
            value = value[part]
        lines.append(f"  --config.{key}={value!r}  {comments.get(key, '')}".rstrip())
    sweepable = getattr(inspect.getmodule(get_config), "SWEEPABLE", ())
    lines += ["", f"sweepable keys (--config.sweep): {', '.join(sweepable) or 'none'}"]
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


def last_tuple_values(argv: list[str], config) -> list[str]:
    """argv with only the last ``--config.key`` of each tuple key: absl would join the values
    of a tuple flag given twice, where every other flag keeps its last value."""
    tuples = {k for k in flat_keys(config) if isinstance(value_at(config, k), (tuple, list))}
    groups: list[tuple[str | None, list[str]]] = []
    i = 1
    while i < len(argv):
        arg, key, size = argv[i], None, 1
        if arg == "--":
            groups.append((None, argv[i:]))
            break
        if arg.startswith("--config."):
            name, equals, _ = arg[len("--config.") :].partition("=")
            if name in tuples:
                key, size = name, (1 if equals else 2)
        groups.append((key, argv[i : i + size]))
        i += size
    last = {key: n for n, (key, _) in enumerate(groups) if key is not None}
    kept = [t for n, (key, ts) in enumerate(groups) if key is None or last[key] == n for t in ts]
    return argv[:1] + kept


@contextlib.contextmanager
def quiet():
    """No absl log line and no Python warning while flags and values are checked, so that a
    bad one is reported by its one error line alone."""
    absl_logger = logging.getLogger("absl")
    level = absl_logger.level
    absl_logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        absl_logger.setLevel(level)


def full_config(get_config: Callable):
    """The experiment's config with the keys every run takes from the command line (sweep)."""
    from lexicon.train.config import with_sweep

    return with_sweep(get_config())


def parse(get_config: Callable, argv: list[str]):
    """argv -> (config, workdir or None). Exits with status 2 on any bad flag."""
    config = full_config(get_config)
    check_keys(argv[1:], flat_keys(config))
    for arg in argv[1:]:
        if arg.startswith("--config") and "=" not in arg and not arg.startswith("--config."):
            fail(f"flag {arg!r} is not supported; set single keys with --config.key=value")
    argv = last_tuple_values(argv, config)
    registry = flags.FlagValues()
    try:
        with quiet():
            config_flags.DEFINE_config_dict("config", config, flag_values=registry, sys_argv=argv)
            flags.DEFINE_string(
                "workdir", None, "where the run writes its outputs", flag_values=registry
            )
            rest = registry(argv)
    except flags.Error as error:
        fail(str(error).splitlines()[0])
    except Exception as error:  # ml_collections raises plain TypeError/ValueError on bad values
        fail(f"{type(error).__name__}: {error}")
    if len(rest) > 1:
        fail(f"unexpected arguments: {' '.join(rest[1:])}; flags take the form --config.key=value")
    return registry.config, registry.workdir


def rules_for(defaults, rules: Mapping | None = None) -> dict:
    """Every key's rule, in the order of flat_keys: the shared rules (lexicon.train.config and
    SHARED_RULES), the experiment's, and for a key with neither, the type of its default."""
    from lexicon.train.config import RULES as TRAIN_RULES

    keys = flat_keys(defaults)
    shared = {k: r for k, r in (TRAIN_RULES | SHARED_RULES).items() if k in keys}
    explicit = shared | dict(rules or {})
    ordered = {}
    for key in keys:
        rule = explicit.get(key) or implicit_rule(value_at(defaults, key))
        if rule is not None:
            ordered[key] = rule
    return ordered | {k: r for k, r in explicit.items() if k not in ordered}


def device_count() -> int | None:
    """The devices a run will see, known before anything compiles: under launch.sh
    --processes (jax.distributed not started yet) the processes times each one's CPU devices;
    None on a detected cluster (known once jax.distributed starts; lexicon.train checks then);
    otherwise JAX's count."""
    processes = os.environ.get("LEXICON_NUM_PROCESSES")
    if processes:
        flags_text = os.environ.get("XLA_FLAGS", "")
        counts = re.findall(r"--xla_force_host_platform_device_count=(\d+)", flags_text)
        return int(processes) * (int(counts[-1]) if counts else 1)
    if DISTRIBUTED["mode"] == "auto" or (DISTRIBUTED["mode"] != "off" and detect_cluster()):
        return None
    import jax

    return jax.device_count()


def process_count() -> int:
    """The processes of this run as the environment tells them before jax.distributed starts
    (launch.sh, or a detected cluster); 1 otherwise."""
    if os.environ.get("LEXICON_NUM_PROCESSES"):
        return int(os.environ["LEXICON_NUM_PROCESSES"])
    cluster = None if DISTRIBUTED["mode"] == "off" else detect_cluster()
    return (cluster[1] or 1) if cluster else 1


def check_together(config, experiment_check: Callable | None = None) -> None:
    """Cross-key rules, before anything compiles: the shared ones, then the experiment's."""
    keys = set(flat_keys(config))
    if {"seed", "seeds"} <= keys and config.seed + config.seeds - 1 > INT32_MAX:
        raise ConfigError(
            f"config.seed={config.seed} with config.seeds={config.seeds} runs past the largest "
            f"seed {INT32_MAX} (int32); use seed <= {INT32_MAX - config.seeds + 1}"
        )
    parallel = config.get("parallel", "none")
    if parallel != "none" and config.get("epoch_loop", "scan") != "scan":
        raise ConfigError(
            f"config.epoch_loop={config.epoch_loop} runs on one device; use parallel=none "
            f"or epoch_loop=scan"
        )
    if parallel == "seeds" and config.get("mapper") == "pmap":
        raise ConfigError("config.mapper=pmap applies to parallel=data; use shard_map for seeds")
    if parallel == "none" and process_count() > 1:
        raise ConfigError(
            "a multi-process run shares its work across the processes: use "
            "--config.parallel=data or seeds with --processes"
        )
    if parallel in ("data", "seeds"):
        devices = device_count()
        if devices and parallel == "data" and config.get("batch_size", 0) % devices:
            raise ConfigError(
                f"config.batch_size={config.batch_size} must be divisible by the {devices} "
                f"devices for parallel=data"
            )
        if devices and parallel == "seeds" and config.seeds % devices:
            raise ConfigError(
                f"config.seeds={config.seeds} must be divisible by the {devices} devices for "
                f"parallel=seeds"
            )
        points = grid_points(config)
        if devices and parallel == "seeds" and (points * config.seeds) % devices:
            raise ConfigError(
                f"the sweep's {points} grid points x config.seeds={config.seeds} replicas must "
                f"be divisible by the {devices} devices for parallel=seeds"
            )
    if experiment_check is not None:
        experiment_check(config)


def grid_points(config) -> int:
    """The grid points of the sweep a config asks for (1 without a sweep)."""
    from lexicon.train.sweep import parse

    sweep = parse(config.get("sweep", ""))
    return 1 if sweep is None else sweep.size


def check_sweep(config, source, rules: Mapping) -> None:
    """A sweep over keys the experiment does not list in its ``SWEEPABLE`` (or with values
    their rules refuse) stops here, before anything compiles."""
    from lexicon.train import sweep as sweeps

    sweep = sweeps.parse(config.get("sweep", ""))
    if sweep is not None:
        sweeps.check(sweep, config, tuple(getattr(source, "SWEEPABLE", ())), rules)
    sweeps.parse_select(config.get("sweep_select", ""))


@functools.cache
def train_examples(dataset: str, **load_args) -> int | None:
    """Examples in the training split of ``data.load(dataset, **load_args)`` for an embedded
    dataset (loaded, nothing compiled), for experiments' check_config; None for a TFDS set,
    which is checked once loaded."""
    from lexicon import data

    if dataset in data.EMBEDDED:
        return len(data.load(dataset, **load_args).train["y"])
    if dataset not in data.TFDS_IMAGES:
        return None
    try:  # a TFDS set: its size, and whether it is prepared, without reading it
        import tensorflow_datasets as tfds

        source = tfds.data_source(dataset, split="train", download=False)
    except Exception:
        data.tfds_images(dataset, "train")  # raises the DataError that names the alternatives
        return None
    n = len(source)
    return n - int(round(load_args.get("val_fraction", 0.1) * n))


def check_workdir(path) -> pathlib.Path:
    """The run's directory, made if missing; one line and exit status 2 if it is empty, a
    file, under a file, or not writable (checked by writing, which also holds for root)."""
    text = str(path)
    if not text.strip():
        fail(
            "--workdir is empty; name a directory, or leave --workdir out to write under "
            "runs/<experiment>/"
        )
    workdir = pathlib.Path(text).expanduser()
    if workdir.exists() and not workdir.is_dir():
        fail(f"--workdir={text} exists and is not a directory; choose another --workdir")
    existing = workdir.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        fail(f"--workdir={text} lies under {existing}, which is not a directory; choose another")
    if not os.access(existing, os.W_OK | os.X_OK):
        fail(f"--workdir={text} is not writable ({existing} denies it); choose another --workdir")
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=workdir, prefix=".write-test-"):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        fail(f"--workdir={text} cannot be written: {reason}; choose another --workdir")
    return workdir


def _lost_process_hook(previous):
    """sys.excepthook of a multi-process run: an error of a collective whose peer is gone
    (gloo, heartbeat) ends the process at once, in one line or silently under launch.sh,
    which names the lost process; a normal exit would wait for the dead peer."""

    def hook(kind, error, traceback):
        text = str(error)
        signs = ("gloo", "connection reset", "connection closed", "heartbeat", "socket closed")
        if issubclass(kind, Exception) and any(sign in text.lower() for sign in signs):
            if not os.environ.get("LEXICON_SUPERVISED"):
                first = " ".join(text.split())[:200]
                me = os.environ.get("LEXICON_PROCESS_ID", "?")
                print(
                    f"error: process {me} lost another process of the run: {first}", file=sys.stderr
                )
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(EXIT_LOST_PROCESS)
        previous(kind, error, traceback)

    return hook


DISTRIBUTED_MODES = ("auto", "off")
DISTRIBUTED = {"mode": None}  # --distributed: None (detect a cluster), auto or off


def distributed_flag(argv: list[str]) -> list[str]:
    """Takes ``--distributed=auto|off`` out of argv (into DISTRIBUTED); exits 2 on another
    value."""
    rest = []
    DISTRIBUTED["mode"] = None
    args = iter(argv)
    for arg in args:
        if arg == "--distributed" or arg.startswith("--distributed="):
            value = arg.partition("=")[2] if "=" in arg else next(args, "")
            if value not in DISTRIBUTED_MODES:
                fail(
                    f"--distributed={value} is not valid; choose auto (jax.distributed's own "
                    f"cluster detection) or off"
                )
            DISTRIBUTED["mode"] = value
        else:
            rest.append(arg)
    return rest


def detect_cluster() -> tuple[str, int | None] | None:
    """(kind, processes) of a multi-process job that jax.distributed can detect by itself: a
    SLURM step (the variables JAX's SlurmCluster reads), an Open MPI job (mpirun), or an
    indexed Kubernetes job (processes known only to JAX: None); None otherwise, or for a job
    of one task."""
    env = os.environ
    slurm = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID")
    if all(k in env for k in slurm):
        kind, count = "SLURM", env["SLURM_NTASKS"]
    elif "OMPI_MCA_orte_hnp_uri" in env:
        kind, count = "Open MPI", env.get("OMPI_COMM_WORLD_SIZE", "1")
    elif "KUBERNETES_SERVICE_HOST" in env and "JOB_COMPLETION_INDEX" in env:
        import importlib.util

        # JAX reads the job through the kubernetes package; without it there is no cluster.
        return ("Kubernetes", None) if importlib.util.find_spec("kubernetes") else None
    else:
        return None
    try:
        processes = int(count)
    except ValueError:
        return None
    return (kind, processes) if processes > 1 else None


def _start_jax_collectives() -> None:
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    # JAX's preemption service catches SIGTERM in C++ and swallows it; lexicon.train handles
    # SIGTERM itself (a checkpoint at the next epoch, agreed by all processes), and before
    # training starts SIGTERM must end the process as it does a single-process run.
    jax.config.update("jax_enable_preemption_service", False)
    sys.excepthook = _lost_process_hook(sys.excepthook)


_DISTRIBUTED_STARTED = False


def start_distributed() -> None:
    """Joins the processes of a multi-process run (CPU collectives: gloo).

    - launch.sh --processes N (LEXICON_* variables): the loopback coordinator it names. A
      process that stops sending heartbeats for HEARTBEAT_TIMEOUT_S seconds (override:
      LEXICON_HEARTBEAT_TIMEOUT) counts as dead, and the others stop.
    - ``--distributed=auto``, or a cluster that ``detect_cluster`` sees (unless
      ``--distributed=off``): ``jax.distributed.initialize()`` with no arguments, which
      detects the cluster itself."""
    import jax

    global _DISTRIBUTED_STARTED
    if _DISTRIBUTED_STARTED:  # lexicon/__init__.py already joined launch.sh's processes
        return
    if "LEXICON_NUM_PROCESSES" in os.environ:
        _DISTRIBUTED_STARTED = True
        heartbeat = int(os.environ.get("LEXICON_HEARTBEAT_TIMEOUT", HEARTBEAT_TIMEOUT_S))
        _start_jax_collectives()
        jax.distributed.initialize(
            coordinator_address=os.environ["LEXICON_COORDINATOR"],
            num_processes=int(os.environ["LEXICON_NUM_PROCESSES"]),
            process_id=int(os.environ["LEXICON_PROCESS_ID"]),
            heartbeat_timeout_seconds=heartbeat,
        )
        return
    mode = DISTRIBUTED["mode"]
    if mode == "off" or (mode is None and detect_cluster() is None):
        return
    _start_jax_collectives()
    jax.distributed.initialize()


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
    """manifest.json: the run's config, versions, commit and devices. A resumed run keeps the
    first run's entry and appends itself to ``history``."""
    import jax

    entry = {
        "argv": argv,
        "versions": versions(),
        "git_commit": git_commit(),
        "process_count": jax.process_count(),
        "devices": [str(d) for d in jax.devices()],
        "started": datetime.datetime.now().isoformat(timespec="seconds"),
    }
    path = workdir / "manifest.json"
    manifest = None
    if config.get("resume", False) and path.exists():
        try:
            manifest = json.loads(path.read_text())
        except json.JSONDecodeError:
            manifest = None
    if manifest is None:
        manifest = {
            "topic": topic,
            "config": config.to_dict(),
            "seed": config.get("seed"),
            "seeds": config.get("seeds"),
            **entry,
            "history": [],
        }
    else:
        manifest["config"] = config.to_dict()  # the keys a resume may change (epochs, ...)
        manifest.setdefault("history", []).append(entry)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    tmp.replace(path)


def default_workdir(topic: str, config) -> pathlib.Path:
    stamp = os.environ.get("LEXICON_RUN_STAMP") or datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return pathlib.Path("runs") / topic / f"{stamp}-s{config.get('seed', 0)}"


def with_preset(config, preset, apply: bool = True, defaults=None):
    """A copy of ``config`` with the keys of a published setting put in (the ``scale=paper``
    presets), or the plain copy when ``apply`` is false.

    With ``defaults`` (the experiment's ``get_config()``), a key whose value differs from its
    default was set by a flag and wins over the preset: ``--config.scale=paper
    --config.epochs=3`` runs the published setting for 3 epochs."""
    run = config.copy_and_resolve_references()
    if apply:
        chosen = {k: v for k, v in preset.items() if defaults is None or config[k] == defaults[k]}
        run.update(chosen)
    return run


def run(
    get_config: Callable,
    train_and_evaluate: Callable,
    rules: Mapping | None = None,
    argv: list[str] | None = None,
) -> dict:
    """Parses flags, checks them, then runs ``train_and_evaluate(config, workdir)``."""
    argv = distributed_flag(list(sys.argv if argv is None else argv))
    source = inspect.getmodule(get_config)
    topic = pathlib.Path(inspect.getfile(get_config)).stem
    if any(a in ("-h", "--help", "--helpfull") for a in argv[1:]):
        print(
            usage(
                topic, (source.__doc__ or "") if source else "", full_config(get_config), get_config
            )
        )
        raise SystemExit(0)
    config, workdir = parse(get_config, argv)
    all_rules = rules_for(full_config(get_config), rules)
    try:
        with quiet():
            check(config, all_rules)
            check_sweep(config, source, all_rules)
            check_together(config, getattr(source, "check_config", None))
    except (ConfigError, DataError) as error:
        fail(str(error))
    workdir = check_workdir(default_workdir(topic, config) if workdir is None else workdir)
    try:
        check_workdir_history(pathlib.Path(workdir), config)
    except ConfigError as error:
        fail(str(error))

    start_distributed()
    import jax

    if jax.process_count() > 1 and config.get("parallel", "none") == "none":
        fail(
            f"this run has {jax.process_count()} processes, which share its work: use "
            f"--config.parallel=data or seeds"
        )

    workdir = pathlib.Path(workdir) if workdir else default_workdir(topic, config)
    primary = jax.process_index() == 0
    from lexicon.train import (
        CheckpointError,
        TrainingDiverged,
        TrainingInterrupted,
        workdir_lock,
    )

    try:
        workdir.mkdir(parents=True, exist_ok=True)
        with workdir_lock(workdir, enabled=primary):
            check_workdir_history(workdir, config)  # again, now that no other run can write
            if primary:
                write_manifest(workdir, topic, config, argv)
            results = train_and_evaluate(config, workdir)
    except (ConfigError, DataError) as error:
        fail(str(error))
    except TrainingDiverged as error:
        fail(str(error), status=1)
    except TrainingInterrupted as error:
        print(" ".join(str(error).split()), file=sys.stderr)
        raise SystemExit(128 + error.signum) from None
    except CheckpointError as error:
        # Exit at once: a failed orbax save may leave a thread that blocks a normal exit.
        print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)
    if primary:
        from lexicon import report

        figures = report.write_results(workdir, topic, results)
        report.add_sweeps(workdir)
        if figures:
            print("\n" + report.results_text(figures))
        print(f"\n{topic}: done; report: {workdir / 'report.md'}")
    return results


def check_workdir_history(workdir: pathlib.Path, config) -> None:
    """Before anything is written: a fresh run must not land on an earlier run's checkpoints,
    and a resume must not change what shaped the run it continues (its manifest's config)."""
    from lexicon.train import RESUMABLE
    from lexicon.train.checkpoint import differing_keys, plain_config

    saved = [p.parent for p in workdir.rglob("checkpoints/*") if p.name.isdigit()]
    if config.get("resume", False) and not saved:
        raise ConfigError(f"config.resume=true but {workdir} has no checkpoint to resume")
    if not config.get("resume", False):
        if saved:
            raise ConfigError(
                f"{workdir} already holds the checkpoints of an earlier run; continue it with "
                f"--config.resume=true, or choose a new --workdir"
            )
        return
    manifest = workdir / "manifest.json"
    if not manifest.exists():
        return
    try:
        earlier = json.loads(manifest.read_text()).get("config", {})
    except (OSError, json.JSONDecodeError):
        return
    changes = differing_keys(earlier, plain_config(config), RESUMABLE)
    if changes:
        raise ConfigError(
            f"resume would change what shaped the saved run: {'; '.join(changes)}; only "
            f"{', '.join(sorted(RESUMABLE))} may change on resume"
        )
