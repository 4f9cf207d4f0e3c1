"""JAX against PyTorch on the CPU, the conv nets' implementations and loops, and vmapped seeds.

- ``framework_rows``: the same models, optimizer (Adam), batch (128), data and thread count,
  step for step, in JAX and PyTorch. PyTorch is optional (``pip install -e '.[bench]'``);
  without it only the JAX rows are measured.
- ``conv_rows``: each conv net of lexicon.nn.cnn with XLA's convolution and with im2col, its
  epoch as one ``lax.scan`` and its jitted step called once per minibatch.
- ``seed_rows``: what vmapping seeds buys a small, overhead-bound model, and how a batched
  (vmapped) matmul compares on XLA:CPU with the same matmuls one after another.
Every row is seconds per step (or per call); FLOPs per step come from XLA's cost analysis.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lexicon import train
from lexicon.bench import compiled_flops, epoch_runner, paired_times
from lexicon.nn.cnn import CNN1D, LeNet5, ResNetSmall, VGGSmall
from lexicon.nn.layers import MLP


def torch_model(name):
    """The PyTorch twin of each timed JAX model (same layers, default initialization)."""
    import torch
    from torch import nn as tnn

    if name == "mlp":
        return tnn.Sequential(
            tnn.Linear(784, 256), tnn.ReLU(), tnn.Linear(256, 256), tnn.ReLU(), tnn.Linear(256, 10)
        )
    return tnn.Sequential(  # LeNet-5 on 32x32x1 (NCHW in PyTorch)
        tnn.Conv2d(1, 6, 5),
        tnn.Tanh(),
        tnn.AvgPool2d(2),
        tnn.Conv2d(6, 16, 5),
        tnn.Tanh(),
        tnn.AvgPool2d(2),
        tnn.Flatten(),
        tnn.Linear(400, 120),
        tnn.Tanh(),
        tnn.Linear(120, 84),
        tnn.Tanh(),
        tnn.Linear(84, 10),
        torch.nn.Identity(),
    )


def step_loops(task, x, y, batch_size, num_steps, seeds=1):
    """(epoch as one lax.scan, jitted step called per minibatch, FLOPs of one step) of ``task``
    on ``num_steps`` minibatches of (x, y); the scan trains ``seeds`` vmapped replicas."""
    config = train.defaults()
    config.batch_size, config.seeds = batch_size, seeds
    scan = epoch_runner(task, config, batch_size, {"x": x, "y": y})
    step = jax.jit(task.make_step(None))
    state = task.init(jax.random.key(0))
    batches = [
        {"x": jnp.asarray(x[i * batch_size : (i + 1) * batch_size]),
         "y": jnp.asarray(y[i * batch_size : (i + 1) * batch_size])}
        for i in range(num_steps)
    ]  # fmt: skip
    keys = [jax.random.key(i) for i in range(num_steps)]

    def dispatch():
        s = state
        for batch, key in zip(batches, keys):
            s, _ = step(s, batch, key)
        jax.block_until_ready(s)

    flops = compiled_flops(task.make_step(None), state, batches[0], keys[0])
    return scan, dispatch, flops


def random_data(shape, num_steps, batch_size=128, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(num_steps * batch_size, *shape)).astype(np.float32)
    y = rng.integers(0, 10, size=num_steps * batch_size).astype(np.int32)
    return x, y


def torch_info() -> dict:
    """The installed PyTorch, its intra-op thread pool and whether oneDNN (mkldnn) is on."""
    try:
        import torch
    except ImportError:
        return {}
    torch.set_num_threads(os.cpu_count() or 1)  # the cores XLA:CPU uses
    return {
        "version": torch.__version__,
        "threads": torch.get_num_threads(),
        "mkldnn": bool(torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled),
    }


def framework_rows(config, name, num_steps=50):
    """JAX steps vs PyTorch CPU steps, Adam, batch 128, on the same random data.

    ``name`` is "mlp" (784-256-256-10, ReLU) or "lenet5" (LeNet-5 on 32x32x1 images, its
    convolutions by the platform's default ``conv_impl``). Returns (rows, FLOPs per step).
    """
    shape = (784,) if name == "mlp" else (32, 32, 1)
    x, y = random_data(shape, num_steps)
    model = MLP((256, 256, 10), activation="relu") if name == "mlp" else LeNet5()
    task = train.classifier(model, optax.adam(1e-3), jnp.zeros((1, *shape)))
    scan, dispatch, flops = step_loops(task, x, y, 128, num_steps)
    label = "MLP 784-256-256-10" if name == "mlp" else "LeNet-5 32x32"
    fns = {
        f"{label}: JAX, epoch as lax.scan": scan,
        f"{label}: JAX, jitted step per call": dispatch,
    }
    if torch_info():
        import torch

        net = torch_model(name)
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        tx = torch.from_numpy(x if name == "mlp" else x.transpose(0, 3, 1, 2).copy())
        ty = torch.from_numpy(y.astype(np.int64))

        def torch_loop():
            for i in range(num_steps):
                opt.zero_grad()
                batch = slice(i * 128, (i + 1) * 128)
                loss = torch.nn.functional.cross_entropy(net(tx[batch]), ty[batch])
                loss.backward()
                opt.step()

        fns[f"{label}: PyTorch CPU, default Adam"] = torch_loop
    times = paired_times(list(fns.values()), config.repeats)
    return {k: t / num_steps for k, t in zip(fns, times)}, flops


CONV_NETS = {  # name -> (model for a conv_impl, one input's shape)
    "LeNet-5 32x32": (lambda impl: LeNet5(conv_impl=impl), (32, 32, 1)),
    "MNIST-1D CNN": (lambda impl: CNN1D(conv_impl=impl), (40, 1)),
    "VGG-small 8x8": (lambda impl: VGGSmall(conv_impl=impl), (8, 8, 1)),
    "ResNet-small 8x8 (BN)": (
        lambda impl: ResNetSmall(use_batch_norm=True, conv_impl=impl),
        (8, 8, 1),
    ),
}


def conv_rows(
    repeats: int, num_steps: int = 20, nets=None, impls=("xla", "im2col")
) -> tuple[dict, dict]:
    """Per-step seconds of each conv net (Adam, batch 128) with each of ``impls``, epoch scan
    and jitted step per call, all timed in turn; and each net's FLOPs per step (XLA's cost
    analysis of its step with the first of ``impls``)."""
    rows, flops = {}, {}
    for name in nets or CONV_NETS:
        make, shape = CONV_NETS[name]
        x, y = random_data(shape, num_steps)
        fns = {}
        for impl in impls:
            task = train.classifier(make(impl), optax.adam(1e-3), jnp.zeros((1, *shape)))
            scan, dispatch, step_flops = step_loops(task, x, y, 128, num_steps)
            fns[f"{name}: {impl}, epoch as lax.scan"] = scan
            fns[f"{name}: {impl}, jitted step per call"] = dispatch
            flops.setdefault(name, step_flops)
        times = paired_times(list(fns.values()), repeats)
        rows.update({k: t / num_steps for k, t in zip(fns, times)})
    return rows, flops


def seed_rows(repeats: int, num_steps: int = 12) -> dict:
    """Vmapped seeds on XLA:CPU.

    - A small, overhead-bound model (64-32-10 ReLU MLP, Adam, batch 128): per-step seconds of
      the epoch scan with 1 and with 8 vmapped seeds.
    - One layer's matmuls of 8 seeds (128x256 @ 256x256, the digits MLP's hidden layer):
      vmapped (a batched dot_general), the 8 matmuls one after another in one program, and one
      matmul of the same FLOPs with the seeds folded into the rows (1024x256 @ 256x256, what
      a shared weight would allow).
    """
    x, y = random_data((64,), num_steps)
    task = train.classifier(MLP((32, 10), activation="relu"), optax.adam(1e-3), jnp.zeros((1, 64)))
    one, _, _ = step_loops(task, x, y, 128, num_steps, seeds=1)
    eight, _, _ = step_loops(task, x, y, 128, num_steps, seeds=8)
    rng = np.random.default_rng(1)
    a = jnp.asarray(rng.normal(size=(8, 128, 256)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(8, 256, 256)), jnp.float32)
    batched = jax.jit(jax.vmap(jnp.matmul))
    sequential = jax.jit(lambda a, w: jnp.stack([a[i] @ w[i] for i in range(8)]))
    folded = jax.jit(lambda a, w: a.reshape(-1, 256) @ w[0])
    fns = [one, eight] + [
        lambda f=f: jax.block_until_ready(f(a, w)) for f in (batched, sequential, folded)
    ]
    times = paired_times(fns, repeats)
    labels = [
        "64-32-10 MLP, epoch scan, 1 seed",
        "64-32-10 MLP, epoch scan, 8 vmapped seeds",
        "8 seeds' matmuls 128x256 @ 256x256: vmapped (batched dot)",
        "8 seeds' matmuls 128x256 @ 256x256: one after another",
        "8 seeds' matmuls folded into one 1024x256 @ 256x256",
    ]
    per = [num_steps, num_steps, 1, 1, 1]
    return {k: t / n for k, t, n in zip(labels, times, per)}
