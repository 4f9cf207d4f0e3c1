"""experiments/federated.py end to end at a tiny scale."""

import json

import pytest

from experiments import federated
from lexicon import cli

TINY = [
    "--config.dataset=digits",
    "--config.clients=6",
    "--config.epochs=6",
    "--config.seeds=3",
    "--config.fraction=0.5",
    "--config.fractions=(0.5,)",
    "--config.table_batches=(10,)",
    "--config.partitions=('iid',)",
    "--config.local_epochs=(1,1)",
    "--config.local_batches=(0,10)",
    "--config.mean_epochs=1",
    "--config.central_epochs=1",
    "--config.target=0.8",
    "--config.progress=false",
]


def test_tiny_run_fedavg_beats_fedsgd_and_learns(tmp_path):
    cli.run(
        federated.get_config,
        federated.train_and_evaluate,
        federated.RULES,
        ["federated", f"--workdir={tmp_path}", *TINY],
    )
    figures = json.loads((tmp_path / "results.json").read_text())["figures"]
    # Minibatch FedAvg (E=1, B=10: ~10 local steps) reaches 80% within the 6 rounds;
    # FedSGD (one full-batch step per client and round) does not.
    assert figures["iid_rounds_fedavg"]["mean"] <= 5
    assert figures["iid_rounds_fedsgd"]["mean"] == 7  # never: counted as rounds + 1
    assert figures["best_federated_accuracy"]["mean"] > 0.85  # chance is 0.1
    assert figures["centralized_accuracy"]["mean"] > 0.85
    report = (tmp_path / "report.md").read_text()
    assert "FedAvg E=1 B=10 is lower than FedSGD" in report
    for name in ("clients_iid.png", "rounds_iid.png", "means.png"):
        assert (tmp_path / name).exists()


@pytest.mark.parametrize(
    "flag, message",
    [
        ("--config.local_epochs=(1,2,3)", "one (E, B) per schedule"),
        ("--config.clients=5000", "exceeds the"),
        ("--config.batch_size=10", "must stay 0"),
        ("--config.partitions=('iid','bad')", "partitions"),
    ],
)
def test_bad_flags_stop_before_compiling(tmp_path, flag, message, capsys):
    with pytest.raises(SystemExit) as stop:
        cli.run(
            federated.get_config,
            federated.train_and_evaluate,
            federated.RULES,
            ["federated", f"--workdir={tmp_path}", "--config.dataset=digits", flag],
        )
    assert stop.value.code == 2
    assert message in capsys.readouterr().err
