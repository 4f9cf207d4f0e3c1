"""lexicon.baselines: the formulas behind the reference models."""

import numpy as np

from lexicon import baselines
from lexicon.sawtooth import sawtooth


def test_rbf_kernel_and_the_kernel_machine_formula():
    from sklearn.svm import SVR

    rng = np.random.default_rng(1)
    a, b, gamma = rng.uniform(size=(5, 1)), rng.uniform(size=(4, 1)), 30.0
    literal = [[np.exp(-gamma * (ai[0] - bj[0]) ** 2) for bj in b] for ai in a]
    np.testing.assert_allclose(baselines.rbf_kernel(a, b, gamma), literal, rtol=1e-12)
    x = rng.uniform(size=(200, 1))
    svr = SVR(kernel="rbf", gamma=gamma, C=10.0, epsilon=0.05).fit(x, sawtooth(x[:, 0], 2))
    test = rng.uniform(size=(50, 1))
    ours = baselines.kernel_machine(svr, test, gamma)
    np.testing.assert_allclose(ours, svr.predict(test), atol=1e-9)
