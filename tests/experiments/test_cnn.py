"""experiments/cnn.py: model zoo, parameter counts, presets, bad inputs, end to end."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import cnn
from lexicon import cli, runs
from lexicon.nn.cnn import lenet_paddings
from lexicon.rules import ConfigError


def stacked_params(model, input_shape, seeds=2):
    """Shapes of the params of ``seeds`` replicas with the leading seed axis, as train.fit
    returns them (jax.eval_shape: nothing is computed)."""
    keys = jax.random.split(jax.random.key(0), seeds)
    init = jax.vmap(lambda k: model.init(k, jnp.zeros((1, *input_shape)))["params"])
    return jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), jax.eval_shape(init, keys))


def test_model_list_rule():
    rule = cnn.RULES["models"]
    assert rule.check("models", "all") is None
    assert rule.check("models", "mlp, lenet5,cnn1d") is None
    assert rule.parse("mlp,,vgg") == ["mlp", "vgg"]
    for bad in ("perceptron", "all,mlp", ""):
        assert "comma-separated names from: mlp" in rule.check("models", bad)


def test_parameter_counts_are_the_layer_sums():
    config = cnn.get_config()

    def count(name, shape):
        model = cnn.ARCHITECTURES[name](config, shape, 10)
        return runs.parameter_count(runs.replica(stacked_params(model, shape)))

    expected = (64 * 100 + 100) + (100 * 100 + 100) + (100 * 10 + 10)
    assert count("mlp", (8, 8, 1)) == expected
    # The published MNIST-1D CNN: convs (in * k + 1) * 25 for k = 5, 3, 3, then 5 * 25 -> 10.
    expected = (1 * 5 + 1) * 25 + 2 * (25 * 3 + 1) * 25 + (5 * 25 * 10 + 10)
    assert count("cnn1d", (40, 1)) == expected == 5210
    # The classic 32x32 LeNet-5 layout: 61,706 parameters.
    assert count("lenet5", (32, 32, 1)) == 61706


@pytest.mark.parametrize(
    "side, expected", [(8, ("SAME", "SAME")), (28, ("SAME", "VALID")), (32, ("VALID", "VALID"))]
)
def test_lenet_paddings_fit_the_image(side, expected):
    assert lenet_paddings(side) == expected
    model = cnn.ARCHITECTURES["lenet5"](cnn.get_config(), (side, side, 1), 10)
    params = stacked_params(model, (side, side, 1), seeds=1)
    # F5 reads 16 maps of 5x5 for 28 and 32 (the classic layout), 2x2 for 8x8 digits.
    f5_inputs = params["dense1"]["kernel"].shape[1]
    assert f5_inputs == 16 * (2 * 2 if side == 8 else 5 * 5)


@pytest.mark.parametrize("name", cnn.IMAGE_MODELS)
def test_every_image_model_fits_digits(name):
    """Shapes only (jax.eval_shape traces, nothing compiles); the numerics of the library
    models are tested in test_cnn_models.py."""
    model = cnn.ARCHITECTURES[name](cnn.get_config(), (8, 8, 1), 10)

    def logits_of(key, x):
        return model.apply(model.init(key, x[:1]), x)

    logits = jax.eval_shape(logits_of, jax.random.key(0), jnp.zeros((3, 8, 8, 1)))
    assert logits.shape == (3, 10)


def test_flat_mlp_is_the_relu_network():
    """f(x) = W3 relu(W2 relu(W1 vec(x) + b1) + b2) + b3, transcribed in NumPy float64."""
    model = cnn.FlatMLP((7, 5, 3))
    x = np.random.default_rng(0).normal(size=(4, 2, 3, 1)).astype(np.float32)
    params = model.init(jax.random.key(0), x)["params"]["MLP_0"]
    h = x.reshape(4, -1).astype(np.float64)
    layers = [params[f"Dense_{i}"] for i in range(3)]
    for i, layer in enumerate(layers):
        h = h @ np.asarray(layer["kernel"], np.float64) + np.asarray(layer["bias"], np.float64)
        if i < 2:
            h = np.maximum(h, 0)
    out = model.apply({"params": {"MLP_0": params}}, x)
    np.testing.assert_allclose(out, h, rtol=1e-5, atol=1e-6)


def test_models_follow_the_dataset():
    config = cnn.get_config()
    assert cnn.models_for(config, "digits") == list(cnn.IMAGE_MODELS)
    assert cnn.models_for(config, "mnist1d") == list(cnn.SIGNAL_MODELS)
    config.models = "mlp,cnn1d,vgg"
    assert cnn.models_for(config, "digits") == ["mlp", "vgg"]
    assert cnn.models_for(config, "mnist1d") == ["mlp", "cnn1d"]
    config.dataset = "mnist1d"
    with pytest.raises(ConfigError, match="does not fit mnist1d"):
        cnn.models_for(config, "mnist1d")


def test_paper_preset_is_the_published_protocol():
    config = cnn.get_config()
    config.scale = "paper"
    assert cnn.datasets_of(config) == ["mnist1d"]
    splits = cnn.load(config, "mnist1d")
    assert len(splits.train["y"]) == 4000 and len(splits.test["y"]) == 1000
    run = cnn.settings(config, len(splits.train["y"]))
    assert (run.lr, run.batch_size) == (1e-2, 100)
    assert run.epochs * (4000 // run.batch_size) == 6000  # steps
    assert config.lr == 3e-3  # the user's config is left alone
    config.dataset = "digits"
    with pytest.raises(ConfigError, match="MNIST-1D"):
        cnn.datasets_of(config)


@pytest.mark.parametrize(
    "flag, word",
    [("--config.dataset=mnist", "mnist"), ("--config.models=alexnet", "models")],
)
def test_bad_input_stops_with_one_line(flag, word, capsys):
    """An unknown model, or a TFDS set with no prepared copy (offline), exits with status 2."""
    pytest.importorskip("tensorflow_datasets")
    with pytest.raises(SystemExit) as stop:
        cli.run(cnn.get_config, cnn.train_and_evaluate, cnn.RULES, argv=["cnn", flag])
    err = capsys.readouterr().err.strip()
    assert stop.value.code == 2
    assert len(err.splitlines()) == 1 and word in err


@pytest.mark.slow
def test_experiment_end_to_end(tmp_path):
    """Digits and MNIST-1D with the MLP and the 1-D CNN (the image CNNs are built above)."""
    config = cnn.get_config()
    config.epochs, config.seeds, config.progress = 2, 2, False
    config.models, config.timing_repeats = "mlp,cnn1d", 2
    results = cnn.train_and_evaluate(config, tmp_path)
    for name in ("report.md", "curves.png", "params_vs_accuracy.png"):
        assert (tmp_path / name).exists(), name
    figures = results["test_accuracy"]
    assert set(figures["digits"]) == {"mlp", "logistic_regression"}
    assert set(figures["mnist1d"]) == {"mlp", "cnn1d", "logistic_regression"}
    rows = table_rows(tmp_path / "report.md")
    # Chance is 0.1 on both; two epochs reach 0.92 and 0.93 on digits, 0.43 to 0.48 on MNIST-1D.
    floors = {"digits/mlp": 0.8, "mnist1d/mlp": 0.3, "mnist1d/cnn1d": 0.3}
    for key, floor in floors.items():
        dataset, model = key.split("/")
        accuracy = np.asarray(figures[dataset][model].values)
        assert accuracy.shape == (2,) and np.all(np.isfinite(accuracy)), key
        assert np.all(accuracy > floor), key
        step_ms = float(rows[dataset, model][3])
        assert step_ms > 0 and np.isfinite(step_ms)
    # MNIST-1D models are held against Greydanus (2020) within 3 points.
    cnn1d = figures["mnist1d"]["cnn1d"]
    assert (cnn1d.reference, cnn1d.source, cnn1d.tolerance) == (0.94, "Greydanus 2020", 0.03)
    assert figures["mnist1d"]["mlp"].reference == 0.68
    assert rows["mnist1d", "cnn1d"][0] == "5,210"
    report = (tmp_path / "report.md").read_text()
    assert f"({2 * (4000 // 64)} steps)" in report
    logistic = figures["mnist1d"]["logistic_regression"]
    assert 0.2 < logistic.values < 0.45 and logistic.reference == 0.32  # published: 32%
    assert logistic.verdict() == ("matches" if abs(logistic.values - 0.32) <= 0.03 else "below")
    assert figures["digits"]["logistic_regression"].values > 0.9
    assert "0.94" in report


def table_rows(path) -> dict:
    """The report's model table: (dataset, model) -> params, accuracy, published, step ms."""
    rows = {}
    for line in path.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 7 and cells[0] in ("digits", "mnist1d", "mnist"):
            rows[cells[0], cells[1]] = cells[2:6]
    return rows


def test_tfds_dataset_end_to_end_tiny(tmp_path):
    """The TFDS path (mnist, mocked) through the MLP and LeNet-5: table, curves, figures."""
    import tensorflow_datasets as tfds

    config = cnn.get_config()
    config.update(dataset="mnist", models="mlp,lenet5", epochs=1, seeds=1, batch_size=16)
    config.update(timing_repeats=1, progress=False, invariance=False)
    with tfds.testing.mock_data(num_examples=64):
        results = cnn.train_and_evaluate(config, tmp_path)
    assert set(results["test_accuracy"]) == {"mnist"}
    assert set(results["test_accuracy"]["mnist"]) == {"mlp", "lenet5"}  # no reference here
    rows = table_rows(tmp_path / "report.md")
    for model, figure in results["test_accuracy"]["mnist"].items():
        accuracy = np.asarray(figure.values)
        assert figure.reference is None  # published figures exist for MNIST-1D only
        # Mocked data carry random labels: nothing to learn, so only the run is checked here
        # (the slow test holds digits and MNIST-1D above chance).
        assert accuracy.shape == (1,) and np.isfinite(accuracy).all()
        assert float(rows["mnist", model][3]) > 0
    # LeNet-5 on 28x28: C1 "same" keeps 28, S2 14, C3 valid 10, S4 5: the classic 16*5*5 = 400.
    assert rows["mnist", "lenet5"][0] == "61,706"
    report = (tmp_path / "report.md").read_text()
    assert "| mnist | lenet5 |" in report and (tmp_path / "curves.png").exists()


@pytest.mark.slow
def test_shift_study_tiny(tmp_path):
    """Two epochs on digits: both nets learn (chance is 0.1), a 1-pixel shift of an 8x8 digit
    costs both of them accuracy, and the max-pooled features move less than the stride-only
    ones in every seed (10 epochs: 0.31 vs 0.54 relative change)."""
    from lexicon import data

    config = cnn.get_config()
    config.update(epochs=2, seeds=2, progress=False)
    splits = data.load("digits", seed=0, flatten=False, val_fraction=0.1)
    shifts = cnn.shift_study(config, splits, tmp_path)
    for net in ("max", "stride"):
        assert np.all(shifts[net]["accuracy"] > 0.5), net
        assert np.all(shifts[net]["accuracy_drop"] > 0), net
        np.testing.assert_allclose(
            shifts[net]["accuracy_drop"],
            shifts[net]["accuracy"] - shifts[net]["shifted_accuracy"],
            atol=1e-6,
        )
    assert np.all(shifts["max"]["feature_change"] < shifts["stride"]["feature_change"])
