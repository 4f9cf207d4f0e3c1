"""Loss functions and information quantities (SPEC.md sections 3 and 6).

Argument order follows optax: model output first (``predictions``, ``logits`` or ``probs``),
data second (``targets`` or ``labels``). Information quantities take distributions in the
order of the formula (``kl_divergence(p, q)`` is D_KL(P || Q)).

Reductions, stated once for the whole module:

* :func:`half_sum_squared_error` and :func:`mean_squared_error` always return a scalar; their
  reduction is part of the formula (a sum over everything, or a mean over examples of a sum
  over output units).
* The classification losses (``*_cross_entropy*``) take ``reduction``:
  ``'mean'`` (default) averages the loss of each prediction, ``'sum'`` adds them, ``'none'``
  returns them. "One prediction" is one distribution over the last (class) axis for the
  categorical losses and one element for the binary ones.
* :func:`entropy`, :func:`cross_entropy` and :func:`kl_divergence` reduce only the ``axis``
  holding the distribution and return one value per distribution.
* The latent-variable terms of a VAE (:func:`gaussian_kl`, :func:`gaussian_log_density` and
  the decoder log-likelihoods ``*_log_likelihood``) sum over ``axis`` and return one value
  per example.

The cross-entropy family, one name per case:

* :func:`softmax_cross_entropy_with_integer_labels` (logits, integer labels): the loss of a
  softmax classifier, -log softmax(z)_y; ``lexicon.train`` trains and evaluates with it;
* :func:`softmax_cross_entropy` (logits, one-hot or soft targets), e.g. distillation;
* :func:`binary_cross_entropy_with_logits` (logits, targets in [0, 1]) for sigmoid outputs;
* :func:`categorical_cross_entropy` and :func:`binary_cross_entropy` from probabilities;
* :func:`cross_entropy` (p, q): H(P, Q) between two distributions, with :func:`entropy` and
  :func:`kl_divergence`.

Logs are natural (nats). The ``*_with_logits``/``softmax_*`` forms are the numerically stable
ones (log-softmax, log-sigmoid); the probability forms follow the formula literally, use the
convention 0 log 0 = 0 and need q > 0 wherever p > 0.
"""

import jax
import jax.numpy as jnp
import optax
from jax.scipy.special import xlogy

REDUCTIONS = ("mean", "sum", "none")


def _reduce(values: jax.Array, reduction: str) -> jax.Array:
    if reduction == "mean":
        return jnp.mean(values)
    if reduction == "sum":
        return jnp.sum(values)
    if reduction == "none":
        return values
    raise ValueError(f"unknown reduction {reduction!r}; valid reductions: {', '.join(REDUCTIONS)}")


def half_sum_squared_error(predictions: jax.Array, targets: jax.Array) -> jax.Array:
    """E = 1/2 sum_d (t_d - o_d)^2, summed over every example and output unit.

    The error of the delta rule and of backprop with sigmoid units (document 001); its
    gradient with respect to o is (o - t), with no 1/N factor.
    """
    return 0.5 * jnp.sum(jnp.square(targets - predictions))


def mean_squared_error(predictions: jax.Array, targets: jax.Array) -> jax.Array:
    """mse(y, y^) = (1/N) sum_n ||y_n - y^_n||_2^2 (document 002).

    Axis 0 indexes the N examples; the squared norm sums every other axis. This is the
    per-example squared norm averaged over examples, which is D times the mean over all
    elements when each y_n has D components (for 1-D inputs the two coincide).
    """
    squared = jnp.square(targets - predictions)
    return jnp.sum(squared) / squared.shape[0]


def sigmoid_squared_error_with_integer_labels(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """E = 1/2 sum_k (o_k - t_k)^2 with o = sigmoid(z) per output and one-hot t, averaged over
    examples: sigmoid outputs trained by squared error (document 001), whose gradient
    dE/dz = (o - t) o (1 - o) vanishes where an output saturates."""
    targets = jax.nn.one_hot(labels, logits.shape[-1])
    return half_sum_squared_error(jax.nn.sigmoid(logits), targets) / logits.shape[0]


def sigmoid_cross_entropy_with_integer_labels(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """E = -sum_k [t_k log o_k + (1 - t_k) log(1 - o_k)] with o = sigmoid(z) per output and
    one-hot t, averaged over examples (document 001): dE/dz = o - t, no saturation."""
    targets = jax.nn.one_hot(labels, logits.shape[-1])
    per_output = binary_cross_entropy_with_logits(logits, targets, reduction="none")
    return jnp.sum(per_output) / logits.shape[0]


def softmax_cross_entropy(
    logits: jax.Array, targets: jax.Array, reduction: str = "mean"
) -> jax.Array:
    """Cross-entropy of softmax(logits) against one-hot or soft targets over the last axis.

    loss = -sum_c t_c log softmax(z)_c, with log softmax(z)_c = z_c - logsumexp(z).
    """
    values = -jnp.sum(targets * jax.nn.log_softmax(logits, axis=-1), axis=-1)
    return _reduce(values, reduction)


def softmax_cross_entropy_with_integer_labels(
    logits: jax.Array, labels: jax.Array, reduction: str = "mean"
) -> jax.Array:
    """Cross-entropy of softmax(logits) against integer class labels.

    loss = -log softmax(z)_y = logsumexp(z) - z_y, with y in [0, num_classes). Evaluated as
    logsumexp(z) - z_y, which subtracts the normalizer from the label's logit only (optax's
    form, bitwise), so that every classifier of the project computes the same numbers.
    """
    values = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    return _reduce(values, reduction)


def categorical_cross_entropy(
    probs: jax.Array, targets: jax.Array, reduction: str = "mean"
) -> jax.Array:
    """Cross-entropy from probabilities: loss = -sum_c t_c log p_c over the last axis.

    Prefer :func:`softmax_cross_entropy` when the model produces logits.
    """
    values = -jnp.sum(xlogy(targets, probs), axis=-1)
    return _reduce(values, reduction)


def categorical_cross_entropy_with_integer_labels(
    probs: jax.Array, labels: jax.Array, reduction: str = "mean"
) -> jax.Array:
    """Cross-entropy from probabilities and integer labels: loss = -log p_y."""
    values = -jnp.log(jnp.take_along_axis(probs, labels[..., None], axis=-1)[..., 0])
    return _reduce(values, reduction)


def binary_cross_entropy_with_logits(
    logits: jax.Array, targets: jax.Array, reduction: str = "mean"
) -> jax.Array:
    """Binary cross-entropy of sigmoid(z) against targets t in [0, 1], elementwise.

    loss = -[t log sigmoid(z) + (1 - t) log(1 - sigmoid(z))]
         = -[t log sigmoid(z) + (1 - t) log sigmoid(-z)],
    evaluated with log-sigmoid so that large |z| neither overflows nor gives log(0).
    """
    values = -(targets * jax.nn.log_sigmoid(logits) + (1 - targets) * jax.nn.log_sigmoid(-logits))
    return _reduce(values, reduction)


def binary_cross_entropy(
    probs: jax.Array, targets: jax.Array, reduction: str = "mean"
) -> jax.Array:
    """Binary cross-entropy from probabilities, elementwise:
    loss = -[t log p + (1 - t) log(1 - p)].

    Prefer :func:`binary_cross_entropy_with_logits` when the model produces logits.
    """
    values = -(xlogy(targets, probs) + xlogy(1 - targets, 1 - probs))
    return _reduce(values, reduction)


def entropy(p: jax.Array, axis: int = -1) -> jax.Array:
    """Shannon entropy H(P) = -sum_x P(x) log P(x) of the distributions along ``axis``."""
    return -jnp.sum(xlogy(p, p), axis=axis)


def cross_entropy(p: jax.Array, q: jax.Array, axis: int = -1) -> jax.Array:
    """Cross-entropy H(P, Q) = -sum_x P(x) log Q(x) = H(P) + D_KL(P || Q) along ``axis``."""
    return -jnp.sum(xlogy(p, q), axis=axis)


def kl_divergence(p: jax.Array, q: jax.Array, axis: int = -1) -> jax.Array:
    """Kullback-Leibler divergence D_KL(P || Q) = sum_x P(x) (log P(x) - log Q(x)).

    Equals -H(P) + H(P, Q) (document 002), so minimizing the cross-entropy in Q minimizes
    D_KL(P || Q).
    """
    return jnp.sum(xlogy(p, p) - xlogy(p, q), axis=axis)


# --- Learning from a teacher network (SPEC.md section 4, "FitNets") ---------------------------


def hint_loss(predicted_hint: jax.Array, hint: jax.Array) -> jax.Array:
    """L_HT = 1/2 mean_n ||u_h(x_n) - r(v_g(x_n))||^2: the FitNets hint loss between the
    teacher's hint layer u_h and the regressor r on the student's guided layer v_g (Romero
    et al. 2015, eq. 3 ``[add]``)."""
    return 0.5 * mean_squared_error(predicted_hint, hint)


def distillation_loss(student_logits, teacher_logits, labels, temperature: float, alpha: float):
    """L_KD = alpha T^2 H(p^T, q^T) + (1 - alpha) H(y, q), averaged over the batch, with
    p^T = softmax(z_teacher / T) and q^T = softmax(z_student / T) (Hinton et al. 2015
    ``[add]``; the T^2 keeps the soft term's gradient T (q^T - p^T) from fading as T grows).

    Returns (L_KD, soft term H(p^T, q^T), hard term H(y, q)).
    """
    soft_targets = jax.nn.softmax(teacher_logits / temperature)
    soft = softmax_cross_entropy(student_logits / temperature, soft_targets)
    hard = softmax_cross_entropy_with_integer_labels(student_logits, labels)
    return alpha * temperature**2 * soft + (1 - alpha) * hard, soft, hard


# --- Latent-variable models: Gaussian KL and decoder log-likelihoods (SPEC.md section 6) ------

LOG_2PI = 1.8378770664093453  # log(2 pi)


def gaussian_kl(mu: jax.Array, log_var: jax.Array, axis: int = -1) -> jax.Array:
    """KL(N(mu, diag sigma^2) || N(0, I)) = 1/2 sum_j (mu_j^2 + sigma_j^2 - log sigma_j^2 - 1).

    ``log_var`` is log sigma^2, the encoder output of a VAE (document 003 writes it
    Z_ln(sigma^2)). No document gives this term (SPEC §6 marks it ``[add]``); it is the
    closed form of Kingma & Welling (2014), appendix B. Sums over ``axis``: one value per
    distribution.
    """
    return 0.5 * jnp.sum(jnp.square(mu) + jnp.exp(log_var) - log_var - 1.0, axis=axis)


def gaussian_log_density(
    x: jax.Array, mean: jax.Array, log_var: jax.Array | float = 0.0, axis: int = -1
) -> jax.Array:
    """log N(x; mean, diag sigma^2) = -1/2 sum_j (log 2 pi + log sigma_j^2 + (x_j - mean_j)^2
    / sigma_j^2), summed over ``axis``: one value per vector.

    With mean 0 and log_var 0 this is the standard normal prior log p(z) of a VAE; with the
    encoder's (mu, log sigma^2) it is log q(z|x).
    """
    log_var = jnp.broadcast_to(jnp.asarray(log_var, dtype=jnp.result_type(x)), jnp.shape(x))
    return -0.5 * jnp.sum(LOG_2PI + log_var + jnp.square(x - mean) * jnp.exp(-log_var), axis=axis)


def gaussian_log_likelihood(
    mean: jax.Array, targets: jax.Array, log_var: jax.Array | float = 0.0, axis: int = -1
) -> jax.Array:
    """Gaussian decoder log p(x|z) = log N(x; mean, diag sigma^2), summed over ``axis``.

    ``mean`` (and ``log_var``) are the decoder's outputs, ``targets`` the data x. With a
    fixed sigma this is -(1 / 2 sigma^2) ||x - mean||^2 plus a constant: maximizing it is
    minimizing the squared error (document 002's reading of MSE as Gaussian likelihood).
    """
    return gaussian_log_density(targets, mean, log_var, axis=axis)


def gaussian_negative_log_likelihood(predictions, targets, log_sigma) -> jax.Array:
    """1/N sum_n [1/2 log(2 pi sigma^2) + (y_n - f_n)^2 / (2 sigma^2)] with sigma = exp(log_sigma):
    the mean NLL of regression targets under N(f(x), sigma^2) (document 002). Its minimizer in
    f is the least-squares fit for any sigma, and in sigma the root mean squared residual."""
    sigma2 = jnp.exp(2 * log_sigma)
    return jnp.mean(
        0.5 * jnp.log(2 * jnp.pi * sigma2) + (targets - predictions) ** 2 / (2 * sigma2)
    )


def bernoulli_log_likelihood(logits: jax.Array, targets: jax.Array, axis: int = -1) -> jax.Array:
    """Bernoulli decoder log p(x|z) = sum_j [x_j log p_j + (1 - x_j) log(1 - p_j)],
    p = sigmoid(logits), summed over ``axis``; the negative of the summed
    :func:`binary_cross_entropy_with_logits`. Targets may be binary or in [0, 1].
    """
    return -jnp.sum(binary_cross_entropy_with_logits(logits, targets, reduction="none"), axis=axis)
