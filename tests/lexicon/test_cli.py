"""The command line: every bad input stops before compiling, with one line on stderr and exit
status 2; tuple flags; shared keys in every experiment; the multi-process launcher."""

import json
import os
import signal
import subprocess
import sys
import time

import ml_collections
import numpy as np
import pytest
from support import ROOT, run_python, xla_flags

from lexicon import cli, train
from lexicon.rules import Choice, ConfigError, check_batch_size, positive, widths

# --- a tiny experiment of this file, for in-process cli.run --------------------------------------

TRAIN_EXAMPLES = 100
CALLS = []


def get_config():
    config = train.defaults()
    config.epochs = 2
    config.hidden = (4,)  # widths of the hidden layers
    config.lr = 0.1  # learning rate
    config.gradient = "delta"  # delta | autodiff
    config.rates = (0.1, 0.2)  # a tuple key without a rule: its default's type still holds
    config.opt = ml_collections.ConfigDict()
    config.opt.lr = 0.5  # a nested key
    return config


RULES = {
    "hidden": widths(),
    "lr": positive(),
    "gradient": Choice("delta", "autodiff"),
    "opt.lr": positive(),
}


def check_config(config):
    """The experiment's cross-key rules: cli.run finds this function in the module."""
    check_batch_size(config, TRAIN_EXAMPLES)
    if config.gradient == "autodiff" and config.lr > 1:
        raise ConfigError(f"config.lr={config.lr} is above 1, too large for gradient=autodiff")


def train_and_evaluate(config, workdir):
    CALLS.append((config, workdir))
    return {}


def run_tiny(args, workdir):
    CALLS.clear()
    argv = ["tiny", f"--workdir={workdir}", "--config.progress=false", *args]
    return cli.run(get_config, train_and_evaluate, RULES, argv=argv)


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    return lines[0]


# --- bad input, in process ---------------------------------------------------------------------

PROC = "/proc/lexicon-no-such-dir"  # mkdir fails there, even for root
BAD = {
    "unknown key": (["--config.learning_rate=0.1"], "unknown config key 'learning_rate'"),
    "float expected": (["--config.lr=fast"], "could not convert string to float"),
    "int expected": (["--config.seeds=1.5"], "invalid literal for int()"),
    "bool expected": (["--config.progress=maybe"], "Non-boolean argument"),
    "out of range": (["--config.lr=-1"], "config.lr=-1.0 is out of range"),
    "zero seeds": (["--config.seeds=0"], "config.seeds=0 is out of range"),
    "bad choice": (["--config.parallel=model"], "choose one of: none, data, seeds"),
    "unknown flag": (["--learning_rate=3"], "Unknown command line flag"),
    "positional": (["extra"], "unexpected arguments: extra"),
    "nan": (["--config.lr=nan"], "must be a finite number"),
    "inf": (["--config.lr=inf"], "must be a finite number"),
    "inf in float32": (["--config.lr=1e39"], "must be a finite number; float32"),
    "nested inf in float32": (["--config.opt.lr=-1e39"], "config.opt.lr=-1e+39 must be a finite"),
    "tuple of letters": (["--config.hidden=(a,b)"], "must hold integers"),
    "tuple with zero": (["--config.hidden=(0,)"], "config.hidden[0]=0 is out of range"),
    "tuple negative": (["--config.hidden=(-3,)"], "config.hidden[0]=-3 is out of range"),
    "tuple of floats": (["--config.hidden=(16.5,)"], "item 0 is 16.5"),
    "tuple of bools": (["--config.hidden=(True,)"], "item 0 is True"),
    "tuple nested": (["--config.hidden=(1,(2,3))"], "item 1 is (2, 3)"),
    "tuple empty": (["--config.hidden=()"], "config.hidden=() has 0 items"),
    "tuple too wide": (["--config.hidden=(100000,)"], "config.hidden[0]=100000 is out of range"),
    "ruleless tuple type": (["--config.rates=(a,)"], "must hold numbers; item 0 is '(a,)'"),
    "ruleless tuple empty": (["--config.rates=()"], "config.rates=() has 0 items"),
    "seed beyond int32": (["--config.seed=1099511627776"], "config.seed=1099511627776 is out"),
    "negative seed": (["--config.seed=-1"], "config.seed=-1 is out of range"),
    "seeds run past int32": (
        ["--config.seed=2147483647", "--config.seeds=2"],
        "runs past the largest seed 2147483647",
    ),
    "negative data_seed": (["--config.data_seed=-1"], "config.data_seed=-1 is out of range"),
    "huge epochs": (["--config.epochs=1000000000000"], "config.epochs=1000000000000 is out"),
    "zero eval_every": (["--config.eval_every=0"], "config.eval_every=0 is out of range"),
    "negative checkpoint_every": (["--config.checkpoint_every=-1"], "is out of range"),
    "dispatch in parallel": (
        ["--config.parallel=data", "--config.epoch_loop=dispatch"],
        "epoch_loop=dispatch runs on one device",
    ),
    "pmap for seeds": (["--config.parallel=seeds", "--config.mapper=pmap"], "mapper=pmap"),
    "batch larger than the data": (
        ["--config.batch_size=101"],
        "config.batch_size=101 exceeds the 100 training examples",
    ),
    "experiment's cross-key rule": (
        ["--config.gradient=autodiff", "--config.lr=2"],
        "too large for gradient=autodiff",
    ),
    "workdir empty": (["--workdir="], "--workdir is empty"),
    "workdir blank": (["--workdir= "], "--workdir is empty"),
    "workdir unwritable": ([f"--workdir={PROC}/run"], "cannot be written"),
    "workdir a device": (["--workdir=/dev/null"], "exists and is not a directory"),
    "lr zero in float32": (["--config.lr=1e-50"], "must be positive in float32"),
    "sweep not sweepable here": (["--config.sweep=lr=0.1,1"], "Sweepable keys here: none"),
    "sweep of a shape": (["--config.sweep=hidden=4,8"], "hidden cannot be swept"),
    "sweep syntax": (["--config.sweep=lr"], "is not key=value"),
    "sweep unknown key": (["--config.sweep=momentum=0.9"], "'momentum', which is not a config"),
    "distributed mode": (["--distributed=maybe"], "--distributed=maybe is not valid"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_input_gives_one_line_and_exit_2(name, tmp_path, capsys):
    args, message = BAD[name]
    with pytest.raises(SystemExit) as exit_info:
        run_tiny(args, tmp_path / "run")
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert message in one_error_line(captured.err)
    assert not CALLS  # stopped before the experiment started (so before anything compiled)


def test_workdir_that_is_a_file_or_under_one(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    for workdir, message in ((afile, "is not a directory"), (afile / "run", "which is not a")):
        with pytest.raises(SystemExit) as exit_info:
            run_tiny([], workdir)
        assert exit_info.value.code == 2
        assert message in one_error_line(capsys.readouterr().err)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only directory")
def test_workdir_in_a_read_only_directory(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(SystemExit):
            run_tiny([], locked / "run")
        assert "not writable" in one_error_line(capsys.readouterr().err)
    finally:
        locked.chmod(0o700)


def test_device_checks_before_jax_distributed_starts(tmp_path, capsys, monkeypatch):
    """Under launch.sh --processes 2 --devices 3 the run will see 6 devices."""
    monkeypatch.setenv("LEXICON_NUM_PROCESSES", "2")
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=3")
    assert cli.device_count() == 6
    for args, message in (
        (["--config.parallel=data", "--config.batch_size=16"], "batch_size=16 must be divisible"),
        (["--config.parallel=seeds", "--config.seeds=4"], "seeds=4 must be divisible by the 6"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            run_tiny(args, tmp_path / "run")
        assert exit_info.value.code == 2
        assert message in one_error_line(capsys.readouterr().err)


def test_a_sweep_from_the_command_line_reports_every_grid_point(tmp_path, capsys):
    """tests/helpers/tiny_experiment.py lists lr as sweepable: 2 rates x 2 seeds as one run,
    whose results.json and report.md get every grid point and the best one by validation; a
    value that the key's rule refuses, or a key the experiment does not list, stops first."""
    import tiny_experiment as tiny

    def run(args, workdir):
        argv = ["tiny", f"--workdir={workdir}", "--config.progress=false", *args]
        return cli.run(tiny.get_config, tiny.train_and_evaluate, tiny.RULES, argv=argv)

    for args, message in (
        (["--config.sweep=lr=0.1,-2"], "config.sweep: config.lr=-2.0 is out of range"),
        (["--config.sweep=sweep_memory=1,2"], "Sweepable keys here: lr"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            run(args, tmp_path / "bad")
        assert exit_info.value.code == 2
        assert message in one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "bad" / "metrics.jsonl").exists()
    run(["--config.sweep=lr=0.01,0.05", "--config.seeds=2"], tmp_path / "run")
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    sweep = saved["sweeps"]["."]
    assert [p["point"] for p in sweep["points"]] == [{"lr": 0.01}, {"lr": 0.05}]
    assert sweep["select"]["metric"] == "val/loss"
    means = [p["metrics"]["val/loss"]["mean"] for p in sweep["points"]]
    assert sweep["best"] == int(np.argmin(means))
    assert len(sweep["points"][0]["metrics"]["val/loss"]["per_seed"]) == 2
    report = (tmp_path / "run" / "report.md").read_text()
    assert "Sweep: lr" in report and "sweep-grid.png" in report
    assert (tmp_path / "run" / "sweep-grid.png").exists()


def test_clusters_that_jax_detects_start_jax_distributed(monkeypatch):
    for name in list(os.environ):
        if name.startswith(("SLURM_", "OMPI_", "LEXICON_")) or name == "KUBERNETES_SERVICE_HOST":
            monkeypatch.delenv(name)
    assert cli.detect_cluster() is None
    slurm = dict(SLURM_JOB_ID="7", SLURM_STEP_NODELIST="n[1-2]", SLURM_NTASKS="4", SLURM_PROCID="1")
    for name, value in slurm.items():
        monkeypatch.setenv(name, value)
    assert cli.detect_cluster() is None  # SLURM_LOCALID missing: JAX would not detect it
    monkeypatch.setenv("SLURM_LOCALID", "1")
    assert cli.detect_cluster() == ("SLURM", 4)
    assert cli.process_count() == 4 and cli.device_count() is None  # known once started
    monkeypatch.setenv("SLURM_NTASKS", "1")
    assert cli.detect_cluster() is None  # one task: a plain single-process run
    assert cli.distributed_flag(["x", "--distributed=off", "--config.seeds=2"]) == [
        "x",
        "--config.seeds=2",
    ]
    assert cli.DISTRIBUTED["mode"] == "off"
    cli.distributed_flag(["x"])
    assert cli.DISTRIBUTED["mode"] is None


def test_check_workdir_creates_and_returns_the_directory(tmp_path):
    assert cli.check_workdir(tmp_path / "a" / "b") == tmp_path / "a" / "b"
    assert (tmp_path / "a" / "b").is_dir()
    assert list((tmp_path / "a" / "b").iterdir()) == []  # the write test leaves nothing


def test_good_input_reaches_the_experiment(tmp_path):
    run_tiny(["--config.hidden=(8,8)", "--config.rates=(1,2.5)"], tmp_path / "run")
    (config, workdir), *_ = CALLS
    assert config.hidden == (8, 8) and config.rates == (1, 2.5)
    assert workdir == tmp_path / "run"


# --- parsing -----------------------------------------------------------------------------------


def test_a_tuple_flag_given_twice_takes_the_last_value():
    argv = ["tiny", "--config.hidden=(1,2)", "--config.lr=0.3", "--config.hidden=(3,)"]
    config, _ = cli.parse(get_config, argv)
    assert config.hidden == (3,) and config.lr == 0.3
    config, _ = cli.parse(get_config, ["tiny", "--config.hidden", "(5,6)", "--config.hidden=7"])
    assert config.hidden == (7,)
    config, _ = cli.parse(get_config, ["tiny", "--config.rates=(1.0,)", "--config.rates", "2,3"])
    assert config.rates == (2, 3)


def test_rules_for_covers_every_key():
    rules = cli.rules_for(get_config(), RULES)
    assert list(rules) == [k for k in cli.flat_keys(get_config()) if k in rules]
    assert {"seed", "data_seed", "epochs", "hidden", "rates", "opt.lr"} <= set(rules)
    assert "progress" not in rules  # bool keys: ml_collections checks their type


EXPERIMENT_KEYS = """
import importlib, pathlib
from lexicon import cli, rules
from lexicon.train import config as shared
shared_keys = set(cli.flat_keys(shared.defaults()))
for path in sorted(pathlib.Path("experiments").glob("[a-z]*.py")):
    module = importlib.import_module(f"experiments.{path.stem}")
    defaults = module.get_config()
    keys = cli.flat_keys(defaults)
    missing = shared_keys - set(keys)
    assert not missing, f"{path.stem} lacks the shared keys {sorted(missing)}"
    config, _ = cli.parse(module.get_config, [path.stem, "--config.progress=false"])
    assert config.progress is False
    explicit = set(module.RULES) | set(shared.RULES) | set(cli.SHARED_RULES)
    for key in keys:
        value = cli.value_at(defaults, key)
        if isinstance(value, (tuple, list)):
            assert key in module.RULES, f"{path.stem}: tuple key {key} has no rule"
        elif not isinstance(value, bool) and isinstance(value, (int, float)):
            assert key in explicit, f"{path.stem}: number key {key} has no rule"
    rules.check(defaults, cli.rules_for(defaults, module.RULES))
    cli.check_together(defaults, getattr(module, "check_config", None))
    print(path.stem, "ok")
"""


def test_every_experiment_takes_every_shared_key_and_rules_every_key():
    """Parsing only (no training): --config.progress=false is a key of every experiment, every
    tuple and number key has a rule, and the defaults pass them."""
    result = run_python(["-c", EXPERIMENT_KEYS], timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count(" ok") >= 17


# --- bad input to real experiments, in a fresh process ------------------------------------------

EXPERIMENT_BAD = {
    "backprop tuple": ("backprop", ["--config.hidden=(0,)"], "config.hidden[0]=0"),
    "backprop batch": ("backprop", ["--config.batch_size=100000"], "exceeds the 1258"),
    "batch size noise": ("batch_size", ["--config.noise_batches=(0,)"], "noise_batches[0]=0"),
    "optimizers float32": ("optimizers", ["--config.sgd.lr=1e39"], "finite number"),
    "cnn model": ("cnn", ["--config.models=cnn1d", "--config.dataset=digits"], "cnn1d"),
    "regularization l1": ("regularization", ["--config.combined=l1,l1_proximal"], "both l1"),
    "transfer counts": ("transfer", ["--config.label_counts=()"], "label_counts=() has 0"),
    "transfer rare": ("transfer", ["--config.label_counts=(1000,)"], "rarest target class"),
    "speed batch": ("speed", ["--config.batch_size=100000"], "must lie in [1, 1258]"),
    "speed zero width": ("speed", ["--config.hidden=(0,)"], "config.hidden[0]=0"),
    "second_order empty": (
        "second_order",
        ["--config.methods=", "--config.first_order="],
        "both empty",
    ),
    "batchnorm sweep": ("batchnorm", ["--config.sweep=bn_epsilon=1e-5,1e-3"], "cannot be swept"),
}


REFUSE_IN_ONE_PROCESS = """
import contextlib, importlib, io, json, sys, tempfile
import jax
from lexicon import cli

compiles = []
jax.monitoring.register_event_duration_secs_listener(
    lambda name, secs, **kw: compiles.append(name) if "backend_compile" in name else None
)
results = {}
for name, (topic, args, message) in json.loads(sys.argv[1]).items():
    module = importlib.import_module(f"experiments.{topic}")
    err, code = io.StringIO(), None
    argv = [topic, f"--workdir={tempfile.mkdtemp()}", *args]
    with contextlib.redirect_stderr(err):
        try:
            cli.run(module.get_config, module.train_and_evaluate, module.RULES, argv=argv)
        except SystemExit as exit:
            code = exit.code
    results[name] = {"code": code, "err": err.getvalue(), "compiles": len(compiles)}
print(json.dumps(results))
"""


def test_experiments_refuse_bad_input_before_compiling():
    """In one fresh process: every case stops with one line and exit status 2, and nothing
    has been compiled (jax.monitoring reports every backend compile)."""
    result = run_python(["-c", REFUSE_IN_ONE_PROCESS, json.dumps(EXPERIMENT_BAD)], timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads(result.stdout.strip().splitlines()[-1])
    for name, (_, _, message) in EXPERIMENT_BAD.items():
        outcome = results[name]
        assert outcome["code"] == 2, (name, outcome)
        assert message in one_error_line(outcome["err"]), name
        assert outcome["compiles"] == 0, (name, outcome)


def test_bad_input_through_launch_sh(tmp_path):
    result = subprocess.run(
        ["./launch.sh", "backprop", "--config.parallel=model"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: config.parallel='model'")
    unknown = subprocess.run(
        ["./launch.sh", "nosuchtopic"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert unknown.returncode == 2 and "unknown experiment" in unknown.stderr


def test_help_lists_experiments_and_keys():
    listing = subprocess.run(["./launch.sh", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert listing.returncode == 0
    assert "backprop" in listing.stdout and "speed" in listing.stdout
    keys = run_python(["-m", "experiments.backprop", "--help"])
    assert keys.returncode == 0
    assert "--config.lr=1.0" in keys.stdout and "learning rate" in keys.stdout
    assert "sweepable keys (--config.sweep): lr" in keys.stdout


# --- launch.sh --processes -----------------------------------------------------------------------

LONG_RUN = [
    "backprop",
    "--config.epochs=100000",
    "--config.seeds=1",
    "--config.hidden=(8,)",
    "--config.reference=false",
    "--config.progress=false",
    "--config.parallel=data",
]


def new_session():
    """The launcher as in a terminal: SIGINT not ignored (a test worker may ignore it)."""
    os.setsid()
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def launch(args, **kwargs):
    env = {**os.environ, "XLA_FLAGS": xla_flags()}  # launch.sh adds its device count
    return subprocess.Popen(
        ["./launch.sh", *args], cwd=ROOT, env=env, text=True, preexec_fn=new_session, **kwargs
    )


def workers_of(launcher: int) -> dict[int, int]:
    """{process id: pid} of the processes a launcher started."""
    found = {}
    children = subprocess.run(["pgrep", "-P", str(launcher)], capture_output=True, text=True)
    for pid in map(int, children.stdout.split()):
        try:
            environ = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
        except OSError:
            continue
        for entry in environ:
            if entry.startswith(b"LEXICON_PROCESS_ID="):
                found[int(entry.split(b"=")[1])] = pid
    return found


def wait_for(path, process, timeout=180):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, "the run ended early"
        assert time.monotonic() < deadline, f"no {path.name} after {timeout} s"
        time.sleep(0.2)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def stop(process, workers: dict[int, int]):
    """Whatever a failed test left running: the launcher and its processes."""
    for pid in workers.values():
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def test_a_user_error_under_processes_is_printed_once_with_exit_2():
    result = subprocess.run(
        ["./launch.sh", "--processes", "2", "backprop", "--config.hidden=(0,)"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 2
    assert "config.hidden[0]=0" in one_error_line(result.stderr)


def test_a_dead_worker_stops_the_run_within_15_s(tmp_path):
    run = launch(
        ["--processes", "2", *LONG_RUN, f"--workdir={tmp_path}"],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
    )
    workers = {}
    try:
        wait_for(tmp_path / "manifest.json", run)  # both processes joined the run
        workers = workers_of(run.pid)
        assert set(workers) == {0, 1}
        os.kill(workers[1], signal.SIGKILL)
        killed = time.monotonic()
        run.wait(timeout=15)
        assert time.monotonic() - killed < 15
        assert not alive(workers[0])
        assert run.returncode != 0
        last = run.stderr.read().strip().splitlines()[-1]
        assert "process 1 died" in last
    finally:
        stop(run, workers)


def test_ctrl_c_on_the_launcher_stops_every_process(tmp_path):
    """SIGINT (and SIGTERM, the same trap) is forwarded to every process as SIGTERM."""
    run = launch(
        ["--processes", "2", *LONG_RUN, f"--workdir={tmp_path}"],
        stderr=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
    )
    workers = {}
    try:
        wait_for(tmp_path / "manifest.json", run)
        workers = workers_of(run.pid)
        assert set(workers) == {0, 1}
        run.send_signal(signal.SIGINT)  # the launcher alone, as Ctrl-C in a terminal reaches it
        run.wait(timeout=120)
        assert run.returncode != 0
        assert not any(alive(pid) for pid in workers.values())
    finally:
        stop(run, workers)


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))


def test_with_preset_puts_in_the_published_keys_on_a_copy():
    config = train.defaults()
    config.lr = 0.1
    paper = cli.with_preset(config, {"lr": 1e-3, "epochs": 7})
    plain = cli.with_preset(config, {"lr": 1e-3}, apply=False)
    assert (paper.lr, paper.epochs) == (1e-3, 7)
    assert plain.lr == 0.1 and config.lr == 0.1 and config.epochs != 7


def test_a_flag_that_changed_a_default_wins_over_the_preset():
    defaults, config = train.defaults(), train.defaults()
    defaults.lr = config.lr = 0.1
    config.epochs = 3  # as a flag would set it
    paper = cli.with_preset(config, {"lr": 1e-3, "epochs": 7}, defaults=defaults)
    assert (paper.lr, paper.epochs) == (1e-3, 3)


def test_a_launched_process_joins_the_others_when_lexicon_is_imported():
    """launch.sh --processes: importing lexicon starts jax.distributed, so an experiment whose
    imports start JAX's backend (gymnax does) still joins; cli.run's own call is then a no-op."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"LEXICON_NUM_PROCESSES": "1", "LEXICON_PROCESS_ID": "0",
           "LEXICON_COORDINATOR": f"127.0.0.1:{port}"}  # fmt: skip
    script = (
        "import lexicon, gymnax, jax; from lexicon import cli; cli.start_distributed(); "
        "from jax._src import distributed; print(distributed.global_state.client is not None)"
    )
    result = run_python(["-c", script], env=env, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("True")
