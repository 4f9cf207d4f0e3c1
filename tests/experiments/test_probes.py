"""The linear-probes study end to end at a tiny scale: every stage probed, beside the pixels."""

import numpy as np

from experiments import probes
from lexicon import transfer as setting


def test_every_stage_is_probed_and_the_pixels_are_well_above_chance(tmp_path):
    config = probes.get_config()
    config.update(seeds=1, label_counts=(3,), epochs=2, progress=False)
    results = probes.train_and_evaluate(config, tmp_path)
    assert (tmp_path / "report.md").exists() and (tmp_path / "probes.png").exists()
    accuracy = results["probes"]
    assert set(accuracy) == {"pixels", *setting.STAGES}
    assert all(a.shape == (1, 1) and np.isfinite(a).all() for a in accuracy.values())
    assert accuracy["pixels"][0, 0] > 0.5  # 5 classes (chance 0.2), 3 labels per class
    assert max(accuracy[s][0, 0] for s in setting.STAGES) > 0.4
