"""What experiments/speed.py reads from its timings: the roofline and the ratios it reports.

Every ratio is ``(label, short name, value, target)``: the label says what over what, the short
name keys results.json, and the target is the goal the README states (empty: none). Rows
that were not measured give no ratio.
"""

from __future__ import annotations

from lexicon.report import Figure

# (label, short name, numerator row, denominator row, target) over the loop rows.
LOOP_RATIOS = (
    ("per-step dispatch / epoch scan (per step)", "dispatch_over_scan",
     "per-step dispatch loop", "epoch as lax.scan, 1 seed", ">= 1.2"),
    ("8 vmapped seeds / 1 seed (wall time)", "vmap_8_seeds_over_1",
     "epoch as lax.scan, 8 seeds", "epoch as lax.scan, 1 seed",
     "none: compute-bound, see the share of peak"),
)  # fmt: skip
# (label, short name, numerator, denominator, target) over the rows of one conv net.
CONV_RATIOS = (
    ("im2col: epoch scan / jitted step per call", "scan_over_dispatch",
     "im2col, epoch as lax.scan", "im2col, jitted step per call", "<= 1"),
    ("epoch scan: im2col / XLA conv", "im2col_over_xla_scan",
     "im2col, epoch as lax.scan", "xla, epoch as lax.scan", "< 1"),
)  # fmt: skip
FRAMEWORKS = (("MLP 784-256-256-10", "mlp"), ("LeNet-5 32x32", "lenet5"))


def achieved(timings: dict, flops: dict, peak: dict) -> list[tuple]:
    """(row, GFLOP per step, GFLOP/s, share of the XLA peak) of every timed model step: a
    row's model is the FLOP count whose name starts the row's label (the digits MLP for the
    loop rows); 8-seed rows do 8 times the work."""
    if not peak:
        return []
    out = []
    for label, seconds in timings.items():
        model = next((m for m in flops if label.startswith(m)), None)
        if model is None and not label.startswith(("8 seeds", "1 device", "64-32")):
            model = "digits MLP" if "digits MLP" in flops and "devices" not in label else None
        if model is None or "PyTorch" in label:
            continue
        work = flops[model] * (8 if "8 seeds" in label else 1)
        rate = work / seconds / 1e9
        out.append((label, f"{work / 1e9:.4f}", f"{rate:.1f}", f"{rate / peak['xla']:.0%}"))
    return out


def ratio_rows(loop, seeds, convs, flags, devices, frameworks, peak, flops, cores=None) -> list:
    """(label, short name, value, target) of every ratio the measured rows allow."""
    measured = LOOP_RATIOS if loop else ()
    out = [(label, short, loop[a] / loop[b], target) for label, short, a, b, target in measured]
    if loop and peak and "digits MLP" in flops:
        share = 8 * flops["digits MLP"] / loop["epoch as lax.scan, 8 seeds"] / 1e9 / peak["xla"]
        label = "8 vmapped MLP seeds: GFLOP/s / XLA matmul peak"
        out.append((label, "mlp_8_seeds_share_of_peak", share, ">= 0.8"))
    if seeds:
        small = [v for k, v in seeds.items() if k.startswith("64-32-10")]
        matmuls = [v for k, v in seeds.items() if k.startswith("8 seeds")]
        out += [
            ("64-32-10 MLP: 8 vmapped seeds / 1 seed (per step)", "small_8_seeds_over_1",
             small[1] / small[0], "<= 2"),
            ("vmapped (batched) matmuls / the same matmuls in turn", "batched_over_sequential",
             matmuls[0] / matmuls[1], "<= 1"),
            ("vmapped (batched) matmuls / one folded matmul", "batched_over_folded",
             matmuls[0] / matmuls[2], ""),
        ]  # fmt: skip
    if cores:  # "<model>, epoch scan, 1 seed" and "<model>, epoch scan, 8 seeds over N devices"
        rows = {tuple(k.split(", epoch scan, ")): v for k, v in cores.items()}
        spread = next(k for _, k in rows if k.startswith("8 seeds"))
        small = rows[("64-32-10 MLP", spread)] / rows[("64-32-10 MLP", "1 seed")]
        out.append((f"64-32-10 MLP: {spread} / 1 seed (per step)", "small_8_seeds_spread_over_1",
                    small, "<= 2"))  # fmt: skip
        if peak and "digits MLP" in flops:
            share = 8 * flops["digits MLP"] / rows[("digits MLP", spread)] / 1e9 / peak["xla"]
            out.append((f"MLP {spread}: GFLOP/s / XLA matmul peak",
                        "mlp_8_seeds_spread_share_of_peak", share, ">= 0.8"))  # fmt: skip
    for net in dict.fromkeys(k.split(": ")[0] for k in convs):
        t = {k.split(": ")[1]: v for k, v in convs.items() if k.startswith(net)}
        slug = net.split()[0].lower().replace("-", "")
        for label, short, a, b, target in CONV_RATIOS:
            out.append((f"{net}, {label}", f"{slug}_{short}", t[a] / t[b], target))
    for label, value in flags.items():  # "--xla_cpu_use_<flag>=true: <row> / no flag"
        flag = (
            label.split("=")[0]
            .removeprefix("--xla_cpu_use_")
            .removeprefix("--xla_cpu_experimental_")
        )
        row = "peak" if "GFLOP" in label else label.split(": ")[1].split(",")[0]
        row = row.lower().replace(" vmapped", "").replace(" ", "_")
        target = "> 1 (faster)" if "GFLOP" in label else "< 1 (faster)"
        out.append((label, f"flag_{flag}_{row}", value, target))
    for label, value in devices.items():  # "<n> devices, <shard_map|pmap>" over "1 device"
        if label != "1 device":
            short = "_".join(label.split(" devices, ")[::-1]) + "_devices_over_1"
            out.append((f"{label} / 1 device (per step)", short, value / devices["1 device"], ""))
    for label, model in FRAMEWORKS:
        torch_step = frameworks.get(f"{label}: PyTorch CPU, default Adam")
        for kind, row in (("scan", "epoch as lax.scan"), ("step", "jitted step per call")):
            if torch_step:
                value = frameworks[f"{label}: JAX, {row}"] / torch_step
                ratio = f"{label}: JAX, {row} / PyTorch (per step)"
                out.append((ratio, f"{model}_jax_{kind}_over_torch", value, "< 0.8"))
    return out


def topic_figures(topics: dict) -> dict:
    """Ours over the reference, by rate (higher is faster), for each topic row measured."""
    figures = {}
    ours = [k for k in topics if "lexicon.nn.rnn" in k]
    if ours:
        flax = next(k for k in topics if "OptimizedLSTMCell" in k)
        figures["lstm_scan_over_flax_steps_per_s"] = topics[ours[0]] / topics[flax]
    words = "word2vec skip-gram, ours, 1 XLA:CPU device (words/s)"
    if words in topics:
        gensim = [k for k in topics if "gensim" in k and "1 thread" not in k]
        figures["word2vec_ours_over_gensim_words_per_s"] = topics[words] / topics[gensim[0]]
    sixteen = "DQN CartPole 500k steps, 16 vmapped seeds (s)"
    if sixteen in topics:
        cleanrl = topics["CleanRL dqn_jax CartPole 500k steps, 1 seed, published (s)"]
        figures["dqn_16_seeds_500k_wall_s"] = topics[sixteen]
        figures["dqn_1_seed_500k_wall_s"] = Figure(
            topics["DQN CartPole 500k steps, 1 seed (s)"],
            reference=cleanrl,
            source="CleanRL dqn_jax, 1 seed, 500k steps",
            claim="at_most",
        )
        fast = "DQN CartPole fast setting, "
        one_device = topics[fast + "16 vmapped seeds trained, compile included (s)"]
        figures["dqn_16_seeds_one_device_solved_wall_s"] = one_device
        wall, ret = one_device, topics[fast + "last-10% return, mean of 16 seeds"]
        spread = [k for k in topics if k.startswith(fast + "16 seeds over")]
        if spread:  # the seeds spread over one host device per core: the faster way
            wall = next(topics[k] for k in spread if k.endswith("(s)"))
            ret = next(topics[k] for k in spread if k.endswith("return"))
        figures["dqn_16_seeds_solved_wall_s"] = Figure(
            wall,
            reference=cleanrl,
            source="CleanRL dqn_jax, 1 seed, 500k steps (the goal: 16 seeds solved in less time)",
            claim="at_most",
        )
        figures["dqn_16_seeds_solved_return"] = Figure(
            ret,
            reference=475.0,
            source="CartPole-v1's solved threshold, over the last 10% of training",
            claim="at_least",
        )
    return figures


def headline_figures(ratios) -> dict:
    """Every ratio of the report under its short name; the hand-written optimizers are held
    to their optax twins within the 5% of their target."""
    figures = {}
    for label, short, value, _ in ratios:
        figures[short] = value
        if short.endswith("_over_optax"):
            figures[short] = Figure(
                value, reference=1.0, source=f"optax twin of {label[:-27]}", tolerance=0.05
            )
    return figures
