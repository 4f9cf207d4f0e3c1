"""Neural collaborative filtering (SPEC.md section 12, document 004; He et al., WWW 2017).

Document 004 describes the three models: user and item embeddings p_u, q_i, then
- GMF, a generalized matrix factorization: phi = p_u (.) q_i (elementwise product), a linear
  read-out y = sigma(h^T phi + b); with h = 1 and b = 0 the logit is the dot product <p_u, q_i>
  of matrix factorization;
- MLP: phi = a_L(... a_1(W_1 [p_u; q_i] + b_1) ...), a ReLU tower over the concatenated
  embeddings that learns non-linear interactions; [add] each layer halves the width of the
  one below, ending at the ``factors`` "predictive factors" (He et al., section 4.1);
- NeuMF: GMF and MLP with their own embeddings, their last layers concatenated under one
  sigmoid read-out, y = sigma(h^T [phi_GMF; phi_MLP] + b), the probability of an interaction.
[add] NeuMF may start from a trained GMF and a trained MLP (He et al., section 3.4.1): both
towers are copied and the read-out becomes h = [alpha h_GMF; (1 - alpha) h_MLP] (and
b = alpha b_GMF + (1 - alpha) b_MLP, as the authors' code does), alpha = 0.5.

[add] The initialization follows the paper's code: embeddings from N(0, 0.01^2), the tower
Glorot-uniform, the read-out LeCun-uniform. Every module maps (user, item) id vectors of
shape (b,) to logits of shape (b,); ``MF`` is the plain matrix factorization with an item
bias that a BPR baseline trains.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

MODELS = ("gmf", "mlp", "neumf")
EMBEDDING_INIT = nn.initializers.normal(stddev=0.01)
READOUT_INIT = nn.initializers.variance_scaling(1.0, "fan_in", "uniform")  # LeCun uniform


def tower(factors: int, layers: int) -> tuple[int, ...]:
    """The widths of the MLP's hidden layers: halving, ending at ``factors``
    (factors 8, 3 layers: 32, 16, 8, over embeddings of 32 each, i.e. [64, 32, 16, 8])."""
    return tuple(factors * 2 ** (layers - 1 - i) for i in range(layers))


def _embed(count: int, width: int, name: str) -> nn.Embed:
    return nn.Embed(count, width, embedding_init=EMBEDDING_INIT, name=name)


class GMFFeatures(nn.Module):
    """phi_GMF = p_u (.) q_i."""

    num_users: int
    num_items: int
    factors: int

    @nn.compact
    def __call__(self, user, item):
        p = _embed(self.num_users, self.factors, "user")(user)
        q = _embed(self.num_items, self.factors, "item")(item)
        return p * q


class MLPFeatures(nn.Module):
    """phi_MLP: ReLU layers of ``tower(factors, layers)`` over [p_u; q_i], embeddings as wide
    as the first layer."""

    num_users: int
    num_items: int
    factors: int
    layers: int = 3

    @nn.compact
    def __call__(self, user, item):
        widths = tower(self.factors, self.layers)
        p = _embed(self.num_users, widths[0], "user")(user)
        q = _embed(self.num_items, widths[0], "item")(item)
        x = jnp.concatenate([p, q], axis=-1)
        for i, width in enumerate(widths):
            x = nn.relu(
                nn.Dense(width, kernel_init=nn.initializers.glorot_uniform(), name=f"layer{i}")(x)
            )
        return x


def _readout(phi) -> jax.Array:
    return nn.Dense(1, kernel_init=READOUT_INIT, name="predict")(phi)[..., 0]


class GMF(nn.Module):
    """Generalized matrix factorization: logit = h^T (p_u (.) q_i) + b."""

    num_users: int
    num_items: int
    factors: int = 8

    @nn.compact
    def __call__(self, user, item):
        phi = GMFFeatures(self.num_users, self.num_items, self.factors, name="gmf")(user, item)
        return _readout(phi)


class MLP(nn.Module):
    """Multi-layer perceptron over the concatenated embeddings: logit = h^T phi_MLP + b."""

    num_users: int
    num_items: int
    factors: int = 8
    layers: int = 3

    @nn.compact
    def __call__(self, user, item):
        mlp = MLPFeatures(self.num_users, self.num_items, self.factors, self.layers, name="mlp")
        return _readout(mlp(user, item))


class NeuMF(nn.Module):
    """Neural matrix factorization: logit = h^T [phi_GMF; phi_MLP] + b, each tower with its
    own embeddings."""

    num_users: int
    num_items: int
    factors: int = 8
    layers: int = 3

    @nn.compact
    def __call__(self, user, item):
        gmf = GMFFeatures(self.num_users, self.num_items, self.factors, name="gmf")
        mlp = MLPFeatures(self.num_users, self.num_items, self.factors, self.layers, name="mlp")
        return _readout(jnp.concatenate([gmf(user, item), mlp(user, item)], axis=-1))


class MF(nn.Module):
    """Matrix factorization with an item bias: logit = <p_u, q_i> + b_i (the BPR baseline)."""

    num_users: int
    num_items: int
    factors: int = 8

    @nn.compact
    def __call__(self, user, item):
        p = _embed(self.num_users, self.factors, "user")(user)
        q = _embed(self.num_items, self.factors, "item")(item)
        b = nn.Embed(self.num_items, 1, embedding_init=nn.initializers.zeros, name="bias")(item)
        return jnp.sum(p * q, axis=-1) + b[..., 0]


def build(name: str, num_users: int, num_items: int, factors: int, layers: int = 3):
    """The model called ``name`` (gmf, mlp, neumf or mf)."""
    if name == "gmf":
        return GMF(num_users, num_items, factors)
    if name == "mlp":
        return MLP(num_users, num_items, factors, layers)
    if name == "neumf":
        return NeuMF(num_users, num_items, factors, layers)
    if name == "mf":
        return MF(num_users, num_items, factors)
    raise ValueError(f"unknown model {name!r}; choose one of {', '.join((*MODELS, 'mf'))}")


def init(model: nn.Module, key) -> dict:
    """The model's parameters (the ``params`` collection)."""
    ids = jnp.zeros((1,), jnp.int32)
    return model.init(key, ids, ids)["params"]


def neumf_from_pretrained(gmf_params: dict, mlp_params: dict, alpha: float = 0.5) -> dict:
    """NeuMF parameters from a trained GMF and a trained MLP of the same factors: both towers
    copied, read-out h = [alpha h_GMF; (1 - alpha) h_MLP], b = alpha b_GMF + (1 - alpha) b_MLP
    (He et al. 2017, section 3.4.1)."""
    g, m = gmf_params["predict"], mlp_params["predict"]
    predict = {
        "kernel": jnp.concatenate([alpha * g["kernel"], (1 - alpha) * m["kernel"]], axis=0),
        "bias": alpha * g["bias"] + (1 - alpha) * m["bias"],
    }
    return {"gmf": gmf_params["gmf"], "mlp": mlp_params["mlp"], "predict": predict}
