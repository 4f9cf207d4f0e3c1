"""JAX against PyTorch on the CPU: the same models, optimizer, batch and data, step for step.

PyTorch is optional (``pip install torch``); without it only the JAX rows are measured.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lexicon import train
from lexicon.bench import epoch_runner, median_time
from lexicon.nn.cnn import LeNet5
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


def framework_rows(config, name, num_steps=50):
    """JAX step vs PyTorch CPU step, Adam, batch 128, on the same random data.

    ``name`` is "mlp" (784-256-256-10, ReLU) or "lenet5" (LeNet-5 on 32x32x1 images).
    """
    rng = np.random.default_rng(0)
    shape = (784,) if name == "mlp" else (32, 32, 1)
    x = rng.normal(size=(num_steps * 128, *shape)).astype(np.float32)
    y = rng.integers(0, 10, size=num_steps * 128).astype(np.int32)
    model = MLP((256, 256, 10), activation="relu") if name == "mlp" else LeNet5()
    task = train.classifier(model, optax.adam(1e-3), jnp.zeros((1, *shape)))
    c = config.copy_and_resolve_references()
    c.batch_size, c.seeds = 128, 1
    program, st, sd = epoch_runner(task, c, 128)
    arrays = program.put({"x": x, "y": y})
    label = "MLP 784-256-256-10" if name == "mlp" else "LeNet-5 32x32"
    rows = {
        f"{label}: JAX, epoch as lax.scan": median_time(
            lambda: jax.block_until_ready(program.epoch(st, sd, arrays, np.int32(1))),
            config.repeats,
        )
        / num_steps
    }
    step = jax.jit(task.make_step(None))
    state = task.init(jax.random.key(0))
    xb, yb = jnp.asarray(x[:128]), jnp.asarray(y[:128])

    def jax_loop():
        s = state
        for i in range(num_steps):
            s, _ = step(s, {"x": xb, "y": yb}, jax.random.key(i))
        jax.block_until_ready(s)

    rows[f"{label}: JAX, jitted step per call"] = median_time(jax_loop, config.repeats) / num_steps
    try:
        import torch
    except ImportError:
        return rows, None
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

    rows[f"{label}: PyTorch CPU, default Adam"] = (
        median_time(torch_loop, config.repeats) / num_steps
    )
    return rows, torch.__version__
