"""The autoencoders experiment: the linear AE spans PCA's subspace; config checks; end to end."""

import numpy as np
import pytest
from scipy.linalg import subspace_angles
from scipy.stats import ortho_group

from experiments import autoencoders as exp
from lexicon import baselines
from lexicon.nn import autoencoders as ae
from lexicon.rules import ConfigError, check


def test_linear_autoencoder_trained_with_mse_spans_the_top_k_pca_subspace(tmp_path):
    """A fixed problem: 10-D Gaussian data with a clear eigengap after 3 directions, rotated
    and shifted; a linear AE with a 3-unit code, trained through train.fit on squared error."""
    rng = np.random.default_rng(0)
    scales = np.sqrt([9.0, 5.0, 3.0, 0.6, 0.4, 0.3, 0.2, 0.1, 0.05, 0.02])
    rotation = ortho_group.rvs(10, random_state=1)
    x = (rng.normal(size=(600, 10)) * scales) @ rotation + rng.normal(size=10)
    x = x.astype(np.float32)
    config = exp.get_config()
    config.update(seeds=2, batch_size=50, progress=False)
    model = ae.dense_autoencoder(10, 3)
    result, params = exp.fit(config, tmp_path, model, x[:500], x[500:], lr=0.03, epochs=60)
    pca = baselines.pca_reconstruction(x[:500], x[500:], 3)
    for decoder in np.asarray(params["decoder"]["output"]["kernel"], np.float64):
        largest = np.degrees(subspace_angles(decoder.T, pca["components"].T)).max()
        assert largest < 1.0, largest
    np.testing.assert_allclose(result.final("test/loss"), pca["error"], rtol=0.01)


def test_pca_reconstruction_is_the_projection_on_the_top_k_eigenvectors():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(200, 6)) * [3.0, 2.0, 1.0, 0.5, 0.2, 0.1] + 4.0
    x_test = rng.normal(size=(50, 6)) * [3.0, 2.0, 1.0, 0.5, 0.2, 0.1] + 4.0
    out = baselines.pca_reconstruction(x, x_test, 2)
    mean = x.mean(0)
    values, vectors = np.linalg.eigh(np.cov((x - mean).T))
    top = vectors[:, ::-1][:, :2]
    projected = (x_test - mean) @ top @ top.T + mean
    np.testing.assert_allclose(out["error"], np.mean(np.sum((x_test - projected) ** 2, 1)))
    np.testing.assert_allclose(out["eigengap"], values[-3] / values[-2], rtol=1e-10)
    assert np.degrees(subspace_angles(out["components"].T, top)).max() < 1e-6
    assert baselines.knn_accuracy(x, x[:, 0] > 4, x_test, x_test[:, 0] > 4) > 0.9


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"dataset": "digits", "code_sizes": (2, 100)}, "64 inputs"),
        ({"dataset": "digits", "overcomplete": 64}, "64 inputs"),
        ({"code_sizes": (8, 32)}, "codes2d needs 2"),
        ({"stack": ()}, "config.stack"),
        ({"noise": "masking", "noise_level": 1.0}, "below 1"),
    ],
)
def test_bad_configs_stop_before_training(changes, message, tmp_path):
    config = exp.get_config()
    config.update(changes)
    with pytest.raises(ConfigError, match=message):
        check(config, exp.RULES)  # the rules cli.run applies first, then the experiment's own
        exp.train_and_evaluate(config, tmp_path)
    assert not any(tmp_path.iterdir())


def tiny_config(**changes):
    config = exp.get_config()
    config.update(
        dataset="digits",
        seeds=2,
        epochs=3,
        linear_epochs=40,
        code_sizes=(2, 4),
        hidden=(32,),
        units=32,
        stack=(32, 16),
        pretrain_epochs=2,
        labels_per_class=(5,),
        finetune_steps=20,
        overcomplete=128,
        noise_levels=(0.0, 0.3),
        progress=False,
    )
    config.update(changes)
    return config


def test_experiment_end_to_end_tiny(tmp_path):
    figures = exp.train_and_evaluate(tiny_config(), tmp_path)
    for name in (
        "report.md",
        "code_size.png",
        "codes_deep_ae.png",
        "activations.png",
        "denoising_images.png",
        "tangents.png",
        "stacked.png",
        "identity.png",
    ):
        assert (tmp_path / name).exists(), name
    value = {k: np.mean(f.values) for k, f in figures.items()}
    reference = {k: f.reference for k, f in figures.items()}
    # the linear AE is PCA: same error, and its 2-D subspace is PCA's
    assert abs(value["pca/linear_ae_error_k4"] / reference["pca/linear_ae_error_k4"] - 1) < 0.02
    assert value["pca/largest_angle_deg_k4"] < 3.0
    # the overcomplete AE copies, the contractive AE contracts
    assert value["identity/gain"] > 0.95
    assert value["contractive/jacobian"] < reference["contractive/jacobian"]
    assert set(figures) >= {"sparse/near_zero_L1", "denoising/error", "stacked/accuracy_5"}


@pytest.mark.slow
def test_experiment_on_mnist5k(tmp_path):
    """The claims of the report at a reduced scale of the default run (2 seeds)."""
    config = exp.get_config()
    config.update(seeds=2, epochs=10, code_sizes=(2, 8), labels_per_class=(10,), progress=False)
    figures = exp.train_and_evaluate(config, tmp_path)
    value = {k: np.asarray(f.values) for k, f in figures.items()}
    reference = {k: f.reference for k, f in figures.items()}
    assert np.all(value["pca/largest_angle_deg_k2"] < 1.0)
    assert np.all(value["pca/largest_angle_deg_k8"] < 2.0)
    assert np.all(value["pca/linear_ae_error_k8"] < 1.01 * reference["pca/linear_ae_error_k8"])
    assert np.all(value["pca/deep_ae_error_k8"] < reference["pca/deep_ae_error_k8"])
    for form in ("L1", "KL"):  # both penalties at least double the near-zero activations
        assert np.all(value[f"sparse/near_zero_{form}"] > 2 * reference[f"sparse/near_zero_{form}"])
    assert np.all(value["denoising/error"] < 0.9 * reference["denoising/error"])
    assert np.all(value["contractive/jacobian"] < 0.5 * reference["contractive/jacobian"])
    assert np.all(value["contractive/change"] < reference["contractive/change"])
    assert np.all(value["identity/gain"] > 0.98)
    assert 0.5 < np.mean(value["stacked/accuracy_10"]) <= 1
