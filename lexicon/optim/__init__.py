"""Optimizers: hand-written Optax transforms (Alg 8.1-8.7), schedules, second-order methods.

First-order optimizers return ``optax.GradientTransformation``; see
:mod:`lexicon.optim.first_order`. Newton (Alg 8.8), Newton-CG, BFGS and L-BFGS minimize a
full-batch objective; see :mod:`lexicon.optim.second_order`.
"""

from lexicon.optim.first_order import (
    NAMES,
    ScaleByAdagradState,
    ScaleByAdamState,
    ScaleByEmaMomentumState,
    ScaleByMomentumState,
    ScaleByNesterovState,
    ScaleByRmspropState,
    adagrad,
    adam,
    ema_momentum,
    get,
    linear_decay,
    momentum,
    nesterov,
    nesterov_theta,
    rmsprop,
    rmsprop_nesterov,
    scale_by_adagrad,
    scale_by_adam,
    scale_by_ema_momentum,
    scale_by_momentum,
    scale_by_nesterov,
    scale_by_rmsprop,
    sgd,
)
from lexicon.optim.second_order import (
    OptimizeResult,
    bfgs,
    conjugate_gradient,
    lbfgs,
    newton,
    newton_cg,
)

__all__ = [
    "NAMES",
    "OptimizeResult",
    "ScaleByAdagradState",
    "ScaleByAdamState",
    "ScaleByEmaMomentumState",
    "ScaleByMomentumState",
    "ScaleByNesterovState",
    "ScaleByRmspropState",
    "adagrad",
    "adam",
    "bfgs",
    "conjugate_gradient",
    "ema_momentum",
    "get",
    "lbfgs",
    "linear_decay",
    "momentum",
    "nesterov",
    "nesterov_theta",
    "newton",
    "newton_cg",
    "rmsprop",
    "rmsprop_nesterov",
    "scale_by_adagrad",
    "scale_by_adam",
    "scale_by_ema_momentum",
    "scale_by_momentum",
    "scale_by_nesterov",
    "scale_by_rmsprop",
    "sgd",
]
