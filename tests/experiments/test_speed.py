"""experiments/speed.py: every row is measured and positive (timings are never asserted)."""

import json

import jax
import numpy as np
import pytest

from experiments import speed
from lexicon import bench, data
from lexicon.bench import loops, ratios


def tiny_config(**overrides):
    config = speed.get_config()
    config.update(
        dict(repeats=1, hidden=(8,), batch_size=64, progress=False, torch=False, devices=2)
    )
    config.update(overrides)
    return config


@pytest.mark.slow
def test_loop_rows_are_measured():
    rows = speed.loop_rows(tiny_config(), data.load("digits"))
    assert set(rows) == {
        "jitted step (resident batch)",
        "per-step dispatch loop",
        "epoch as lax.scan, 1 seed",
        "epoch as lax.scan, 8 seeds",
    }
    assert all(np.isfinite(v) and v > 0 for v in rows.values())


def test_optimizer_twins_compute_the_same_updates():
    """The timed pairs really are twins: one step of each gives the same parameters."""
    import jax
    import jax.numpy as jnp
    import optax

    params = {"w": jnp.linspace(-1.0, 1.0, 6)}
    grads = {"w": jnp.linspace(0.3, -0.2, 6)}
    for name, (mine, theirs) in loops.optimizer_twins().items():
        a = optax.apply_updates(params, mine.update(grads, mine.init(params), params)[0])
        b = optax.apply_updates(params, theirs.update(grads, theirs.init(params), params)[0])
        np.testing.assert_allclose(a["w"], b["w"], rtol=1e-6, err_msg=name)
        assert jax.tree.structure(a) == jax.tree.structure(b)


@pytest.mark.slow
def test_speed_end_to_end(tmp_path):
    rows = "loop,roofline,seeds,convnets,frameworks,optimizers"
    results = speed.train_and_evaluate(tiny_config(rows=rows, conv_steps=2), tmp_path)
    assert (tmp_path / "report.md").exists() and (tmp_path / "speed.json").exists()
    twins = {k: v for k, v in results.items() if k.endswith("_over_optax")}
    assert twins and all(v.reference == 1.0 and v.tolerance == 0.05 for v in twins.values())
    values = [getattr(v, "values", v) for v in results.values()]
    assert all(np.isfinite(v) and v > 0 for v in values)
    # the same ratios as speed.json, under short names
    ratios = json.loads((tmp_path / "speed.json").read_text())["ratios"]
    assert sorted(values) == pytest.approx(sorted(ratios.values()))


def test_speed_end_to_end_tiny(tmp_path):
    """The loop rows and the device child process; the other rows are left out by the flag."""
    results = speed.train_and_evaluate(tiny_config(rows="loop,devices"), tmp_path)
    assert set(results) == {
        "dispatch_over_scan",
        "vmap_8_seeds_over_1",
        "shard_map_2_devices_over_1",
        "pmap_2_devices_over_1",
    }
    assert all(np.isfinite(v) and v > 0 for v in results.values())
    report = (tmp_path / "report.md").read_text()
    assert "Ratios measured side by side" in report and "optax twin" not in report
    saved = json.loads((tmp_path / "speed.json").read_text())
    timings, ratios = saved["timings_s"], saved["ratios"]
    assert "epoch as lax.scan, 8 seeds" in timings and "1 device" in timings
    assert results["dispatch_over_scan"] == ratios["per-step dispatch / epoch scan (per step)"]
    assert results["pmap_2_devices_over_1"] == ratios["2 devices, pmap / 1 device (per step)"]


def test_rows_flag_is_checked():
    assert speed.RULES["rows"].check("rows", "loop,gpu") is not None
    assert speed.RULES["rows"].parse("all") == list(speed.ROWS)


def test_roofline_pieces():
    """XLA's cost analysis counts a (m, k) @ (k, n) matmul as 2 m k n FLOPs; the share of peak
    and the seed ratios are computed from the timings as their labels say."""
    import jax.numpy as jnp

    a, b = jnp.ones((8, 16)), jnp.ones((16, 4))
    assert bench.compiled_flops(jnp.matmul, a, b) == 2 * 8 * 16 * 4
    assert not bench.xla_flag_accepted("--xla_cpu_no_such_flag=true")
    loop = {"epoch as lax.scan, 1 seed": 1e-3, "epoch as lax.scan, 8 seeds": 4e-3,
            "per-step dispatch loop": 3e-3}  # fmt: skip
    seeds = {"64-32-10 MLP, epoch scan, 1 seed": 1e-4, "64-32-10 MLP, epoch scan, 8 seeds": 3e-4,
             "8 seeds' a": 2.0, "8 seeds' b": 1.0, "8 seeds' c": 0.5}  # fmt: skip
    convs = {"LeNet-5 32x32: im2col, epoch as lax.scan": 1.0,
             "LeNet-5 32x32: im2col, jitted step per call": 2.0,
             "LeNet-5 32x32: xla, epoch as lax.scan": 4.0}  # fmt: skip
    flags = {"--xla_cpu_use_onednn=true: XLA matmul GFLOP/s / no flag": 1.1,
             "--xla_cpu_experimental_ynn_fusion_type=: digits MLP 8 vmapped seeds, epoch as "
             "lax.scan / no flag": 0.9}  # fmt: skip
    devices = {"1 device": 2.0, "4 devices, pmap": 1.0}
    args = (loop, seeds, convs, flags, devices, {}, {"xla": 100.0}, {"digits MLP": 1e7})
    rows = ratios.ratio_rows(*args)
    got = {short: value for _, short, value, _ in rows}
    assert got["dispatch_over_scan"] == pytest.approx(3.0)
    assert got["mlp_8_seeds_share_of_peak"] == pytest.approx(8 * 1e7 / 4e-3 / 1e9 / 100.0)
    assert got["small_8_seeds_over_1"] == pytest.approx(3.0)
    assert got["batched_over_sequential"] == pytest.approx(2.0)
    assert got["lenet5_scan_over_dispatch"] == 0.5 and got["lenet5_im2col_over_xla_scan"] == 0.25
    assert got["flag_onednn_peak"] == 1.1 and got["pmap_4_devices_over_1"] == 0.5
    assert got["flag_ynn_fusion_type_digits_mlp_8_seeds"] == 0.9
    assert not ratios.ratio_rows({}, {}, {}, {}, {}, {}, {}, {})  # nothing measured, no ratio
    cores = {"64-32-10 MLP, epoch scan, 1 seed": 1e-4,
             "64-32-10 MLP, epoch scan, 8 seeds over 2 devices": 2.5e-4,
             "digits MLP, epoch scan, 1 seed": 1e-3,
             "digits MLP, epoch scan, 8 seeds over 2 devices": 5e-3}  # fmt: skip
    got = {
        short: v for _, short, v, _ in ratios.ratio_rows({}, {}, {}, {}, {}, {}, *args[6:], cores)
    }
    assert got == pytest.approx(
        {"small_8_seeds_spread_over_1": 2.5, "mlp_8_seeds_spread_share_of_peak": 0.16}
    )


@pytest.mark.slow
def test_core_rows_time_one_seed_and_eight_spread_over_the_devices():
    rows = loops.core_rows(tiny_config(), data.load("digits"), num_steps=2)
    spread = f"8 seeds over {jax.device_count()} devices"
    models = ("64-32-10 MLP", "digits MLP")
    assert list(rows) == [f"{m}, epoch scan, {n}" for m in models for n in ("1 seed", spread)]
    assert all(np.isfinite(v) and v > 0 for v in rows.values())


def test_dqn_figures_hold_the_fast_setting_to_cleanrl_and_the_solved_threshold():
    topics = {
        "DQN CartPole 500k steps, 1 seed (s)": 13.8,
        "DQN CartPole 500k steps, 16 vmapped seeds (s)": 200.2,
        "CleanRL dqn_jax CartPole 500k steps, 1 seed, published (s)": 75.0,
        "DQN CartPole fast setting, 16 vmapped seeds trained, compile included (s)": 58.4,
        "DQN CartPole fast setting, last-10% return, mean of 16 seeds": 474.9,
    }
    figures = ratios.topic_figures(topics)
    assert figures["dqn_16_seeds_solved_wall_s"].verdict() == "holds"
    assert figures["dqn_16_seeds_solved_return"].verdict() == "fails"  # 474.9 < 475
    assert figures["dqn_1_seed_500k_wall_s"].verdict() == "holds"
    topics["DQN CartPole fast setting, 16 vmapped seeds trained, compile included (s)"] = 75.1
    assert ratios.topic_figures(topics)["dqn_16_seeds_solved_wall_s"].verdict() == "fails"
    spread = "DQN CartPole fast setting, 16 seeds over 2 host devices (one per core)"
    topics.update({f"{spread}, compile included (s)": 32.2, f"{spread}, last-10% return": 499.9})
    figures = ratios.topic_figures(topics)  # the faster way is the headline when measured
    assert figures["dqn_16_seeds_solved_wall_s"].values == 32.2
    assert figures["dqn_16_seeds_solved_return"].verdict() == "holds"
    assert figures["dqn_16_seeds_one_device_solved_wall_s"] == 75.1


def test_core_devices_divide_the_seeds(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 3)
    assert [bench.core_devices(s) for s in (8, 16, 9, 7)] == [2, 2, 3, 1]
    assert bench.core_devices_env(16) == {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}


def test_flag_rows_are_medians_over_rounds_of_ratios_to_the_same_round(monkeypatch):
    """Each round times a child without flags, then one per flag; a flag's figure is its
    child's over the same round's child without flags, the median over the rounds."""
    children = iter([{"a": 2.0}, {"a": 1.0}, {"a": 1.0}, {"a": 1.0}, {"a": 4.0}, {"a": 1.0}])
    seen = []

    def child(module, args, env):
        seen.append(env["XLA_FLAGS"])
        return next(children)

    monkeypatch.setattr(speed, "XLA_FLAGS", ("--xla_cpu_use_onednn=true",))
    monkeypatch.setattr(speed.bench, "xla_flag_accepted", lambda flag: True)
    monkeypatch.setattr(speed.bench, "json_from_child", child)
    config = tiny_config(flag_rounds=3)
    rows = speed.flag_rows(config)
    assert rows == {"--xla_cpu_use_onednn=true: a / no flag": 0.5}  # ratios 0.5, 1, 0.25
    assert seen == ["", "--xla_cpu_use_onednn=true"] * 3
