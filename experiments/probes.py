"""Which layer transfers: linear probes of every stage of a pretrained LeNet-5.

Document 001 (SPEC §5): the first layers of a network learn general features and the last
ones features specific to its task, which is why transfer reuses the lower layers. A linear
probe measures how general a layer is: logistic regression (scikit-learn) trained on the
layer's outputs to solve the new task. Here a LeNet-5 pretrained on digits 0-4 (as in
experiments/transfer.py, with lexicon.transfer) is probed at every stage (c1, s2, c3, s4, f5,
f6) on digits 5-9 with n labelled images per class (the same labelled subsets as transfer's
replicas), next to the raw pixels. experiments/transfer.py reports the same section.
"""

from __future__ import annotations

from lexicon import cli
from lexicon import transfer as setting
from lexicon.report import Report

RULES = setting.RULES
check_config = setting.check_config  # cli.run checks the setting's cross-key rules


def get_config():
    return setting.defaults()  # the keys and their meaning: lexicon.transfer.defaults


def train_and_evaluate(config, workdir):
    source, target, pretrained, labelled = setting.pretrained_setting(config, workdir)
    probes = setting.probe_layers(config, source, target, pretrained, labelled)
    report = Report(workdir, "Linear probes of a pretrained LeNet-5")
    setting.probe_section(report, config, probes)
    report.write()
    return {"probes": probes}


if __name__ == "__main__":
    cli.run(get_config, train_and_evaluate, RULES)
