"""Bad input stops before compiling: one line on stderr, exit status 2."""

import subprocess

import pytest
from support import ROOT, run_python

from experiments import backprop
from lexicon import cli

BAD = {
    "unknown key": (["--config.learning_rate=0.1"], "unknown config key 'learning_rate'"),
    "float expected": (["--config.lr=fast"], "could not convert string to float"),
    "int expected": (["--config.seeds=1.5"], "invalid literal for int()"),
    "bool expected": (["--config.progress=maybe"], "Non-boolean argument"),
    "out of range": (["--config.lr=-1"], "config.lr=-1.0 is out of range"),
    "zero seeds": (["--config.seeds=0"], "config.seeds=0 is out of range"),
    "bad choice": (["--config.parallel=model"], "choose one of: none, data, seeds"),
    "unknown dataset": (["--config.dataset=imagenet"], "choose one of: digits, mnist1d"),
    "unknown gradient": (["--config.gradient=numeric"], "choose one of: delta, autodiff"),
    "unknown flag": (["--learning_rate=3"], "Unknown command line flag"),
    "positional": (["extra"], "unexpected arguments: extra"),
    "not finite": (["--config.lr=nan"], "must be a finite number"),
    "batch too large": (["--config.batch_size=100000"], "exceeds the 1258 training examples"),
    "resume nothing": (["--config.resume=true"], "has no checkpoint"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_input_gives_one_line_and_exit_2(name, tmp_path, capsys):
    args, message = BAD[name]
    argv = ["backprop", f"--workdir={tmp_path}", "--config.progress=false", *args]
    with pytest.raises(SystemExit) as exit_info:
        cli.run(backprop.get_config, backprop.train_and_evaluate, backprop.RULES, argv=argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    assert message in err[0]


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
