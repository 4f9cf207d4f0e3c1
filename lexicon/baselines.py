"""The reference models every experiment holds itself against, seeded, one function each.

Each takes a split (dicts with "x" and "y") and returns the test accuracy of a scikit-learn
model, so that a report can put "ours" beside a model that a user would otherwise pick.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _flat(x) -> np.ndarray:
    x = np.asarray(x)
    return x.reshape(len(x), -1)


def logistic_regression(train: dict, test: dict, *, standardize: bool = False, seed: int = 0):
    """Multinomial logistic regression (L2, C = 1), optionally on standardized inputs."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = LogisticRegression(max_iter=2000, random_state=seed)
    if standardize:
        model = make_pipeline(StandardScaler(), model)
    model.fit(_flat(train["x"]), train["y"])
    return float(model.score(_flat(test["x"]), test["y"]))


def mlp_classifier(train: dict, test: dict, hidden: Sequence[int], **options) -> float:
    """scikit-learn's MLPClassifier with the given hidden layers (activation: relu, tanh,
    logistic or identity; solver adam by default, seed 0, max_iter 2000; the options of
    :func:`mlp_scores`): its test accuracy."""
    return mlp_scores(train, {"test": test}, hidden, **options)["test"]


def mlp_scores(
    train: dict,
    splits: dict,
    hidden: Sequence[int],
    *,
    activation: str = "relu",
    solver: str = "adam",
    seed: int = 0,
    max_iter: int = 2000,
    quiet: bool = False,
    **options,
) -> dict[str, float]:
    """:func:`mlp_classifier` fitted once and scored on every split of ``splits`` (name ->
    split), e.g. the training examples and the test split. ``quiet`` silences scikit-learn's
    ConvergenceWarning, for runs stopped by ``max_iter`` on purpose (a fixed step budget)."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    model = MLPClassifier(
        hidden_layer_sizes=tuple(hidden),
        activation=activation,
        solver=solver,
        max_iter=max_iter,
        random_state=seed,
        **options,
    )
    with warnings.catch_warnings():
        if quiet:
            warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(_flat(train["x"]), train["y"])
    return {name: float(model.score(_flat(s["x"]), s["y"])) for name, s in splits.items()}


def linear_probe(train_features, train_labels, test_features, test_labels, *, seed: int = 0):
    """How linearly decodable the labels are from given features: standardized logistic
    regression on them (e.g. a layer's activations)."""
    return logistic_regression(
        {"x": train_features, "y": train_labels},
        {"x": test_features, "y": test_labels},
        standardize=True,
        seed=seed,
    )


def pca_reconstruction(train_x, test_x, components: int, *, seed: int = 0) -> dict:
    """PCA with ``components`` components fitted on the training inputs (scikit-learn).

    Returns ``error``, the mean over test examples of ||x - x^||^2 with x^ the projection of x
    on the principal subspace (the optimum of any linear autoencoder with that code size),
    ``components`` (k, D, orthonormal rows), the ``train_codes`` and ``test_codes``, and
    ``eigengap``, lambda_{k+1} / lambda_k of the training covariance: near 1, the k-th direction
    is barely told apart from the next, and the subspace is ill-determined."""
    from sklearn.decomposition import PCA

    train_x, test_x = _flat(train_x).astype(np.float64), _flat(test_x).astype(np.float64)
    model = PCA(components, random_state=seed).fit(train_x)
    test_codes = model.transform(test_x)
    error = np.mean(np.sum((test_x - model.inverse_transform(test_codes)) ** 2, axis=1))
    variances = np.linalg.svd(train_x - train_x.mean(0), compute_uv=False) ** 2
    gap = variances[components] / variances[components - 1] if components < len(variances) else 0
    return {
        "error": float(error),
        "components": model.components_,
        "train_codes": model.transform(train_x),
        "test_codes": test_codes,
        "eigengap": float(gap),
    }


def knn_accuracy(train_features, train_labels, test_features, test_labels, *, neighbors=5):
    """Test accuracy of a k-nearest-neighbour classifier on given features (e.g. 2-D codes):
    how well the classes separate in that space, with no model fitted to it."""
    from sklearn.neighbors import KNeighborsClassifier

    model = KNeighborsClassifier(neighbors).fit(_flat(train_features), train_labels)
    return float(model.score(_flat(test_features), test_labels))


def held_out_log_loss(x, y, folds) -> np.ndarray:
    """Per example, -log p(y_i | x_i) under scikit-learn's logistic regression fitted on the
    other folds (``folds``: each example's fold id): how hard an independent model finds it."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import PredefinedSplit, cross_val_predict

    probs = cross_val_predict(
        LogisticRegression(max_iter=2000),
        x,
        y,
        cv=PredefinedSplit(folds),
        method="predict_proba",
    )
    return -np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, None))


def majority_class_accuracy(labels) -> float:
    """The accuracy of the best constant prediction: the most frequent class's share (what a
    model that outputs one class whatever the input can score at most)."""
    labels = np.asarray(labels)
    return float(np.max(np.bincount(labels)) / len(labels))


def rbf_kernel(a, b, gamma: float):
    """k(x, x') = exp(-gamma ||x - x'||^2) for all pairs of rows of a and b (float64)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    squared = np.sum(a**2, 1)[:, None] + np.sum(b**2, 1)[None, :] - 2 * a @ b.T
    return np.exp(-gamma * np.maximum(squared, 0.0))


def kernel_machine(svr, x, gamma: float):
    """f(x) = sum_i alpha_i y_i k(x_i, x) + b over the support vectors x_i of a fitted RBF SVR.

    For regression the signed dual coefficient of support vector i (alpha_i - alpha_i^*) plays
    the part of alpha_i y_i; b is the intercept.
    """
    coefficients = svr.dual_coef_[0]
    return rbf_kernel(x, svr.support_vectors_, gamma) @ coefficients + svr.intercept_[0]


def kernel_machines(train: dict, test: dict, gamma: float, c: float, epsilons, size=None):
    """One RBF SVR (scikit-learn) per epsilon, fit on the first ``size`` training points of a
    1-output regression, evaluated by :func:`kernel_machine`: rows of epsilon, support vectors,
    parameters (2 per support vector, its centre and coefficient, plus b), test MSE and the
    prediction."""
    from sklearn.svm import SVR

    rows = []
    for epsilon in epsilons:
        svr = SVR(kernel="rbf", gamma=gamma, C=c, epsilon=epsilon)
        svr.fit(train["x"][:size], train["y"][:size, 0])
        prediction = kernel_machine(svr, test["x"], gamma)
        rows.append(
            {
                "epsilon": float(epsilon),
                "support_vectors": len(svr.support_),
                "parameters": 2 * len(svr.support_) + 1,
                "mse": float(np.mean((prediction - test["y"][:, 0]) ** 2)),
                "prediction": prediction,
            }
        )
    return rows
