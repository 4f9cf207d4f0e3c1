"""GMF, MLP and NeuMF against literal NumPy float64 transcriptions of He et al.'s formulas."""

import jax
import numpy as np
import pytest

from lexicon.nn import ncf

USERS, ITEMS = 7, 11
USER = np.array([0, 3, 6, 2], np.int32)
ITEM = np.array([10, 0, 5, 5], np.int32)


def params_of(name, factors=4, layers=3, seed=0):
    """Random parameters of the model's shapes (traced, not compiled: the tests stay fast)."""
    model = ncf.build(name, USERS, ITEMS, factors, layers)
    shapes = jax.eval_shape(lambda key: ncf.init(model, key), jax.random.key(0))
    rng = np.random.default_rng(seed)
    params = jax.tree.map(lambda s: rng.normal(0, 0.5, s.shape).astype(np.float32), shapes)
    return model, params


def relu(x):
    return np.maximum(x, 0.0)


def gmf_reference(p, user, item):
    phi = p["gmf"]["user"]["embedding"][user] * p["gmf"]["item"]["embedding"][item]
    return phi


def mlp_reference(p, user, item):
    x = np.concatenate(
        [p["mlp"]["user"]["embedding"][user], p["mlp"]["item"]["embedding"][item]], axis=1
    )
    i = 0
    while f"layer{i}" in p["mlp"]:
        x = relu(x @ p["mlp"][f"layer{i}"]["kernel"] + p["mlp"][f"layer{i}"]["bias"])
        i += 1
    return x


def readout(p, phi):
    return (phi @ p["predict"]["kernel"])[:, 0] + p["predict"]["bias"][0]


def test_tower_halves_down_to_the_factors():
    assert ncf.tower(8, 3) == (32, 16, 8)
    assert ncf.tower(64, 3) == (256, 128, 64)
    assert ncf.tower(16, 1) == (16,)
    _, p = params_of("mlp", factors=8)
    assert p["mlp"]["user"]["embedding"].shape == (USERS, 32)
    assert p["mlp"]["layer0"]["kernel"].shape == (64, 32)  # the code's [64, 32, 16, 8]
    assert p["mlp"]["layer2"]["kernel"].shape == (16, 8)


def test_models_match_numpy(x64):
    for name in ("gmf", "mlp", "neumf"):
        model, p = params_of(name)
        p = jax.tree.map(lambda a: np.asarray(a, np.float64), p)
        ours = np.asarray(jax.jit(model.apply)({"params": p}, USER, ITEM))
        if name == "gmf":
            phi = gmf_reference(p, USER, ITEM)
        elif name == "mlp":
            phi = mlp_reference(p, USER, ITEM)
        else:
            phi = np.concatenate([gmf_reference(p, USER, ITEM), mlp_reference(p, USER, ITEM)], 1)
        assert ours.dtype == np.float64
        np.testing.assert_allclose(ours, readout(p, phi), rtol=1e-12, atol=1e-15)


def test_gmf_with_identity_output_is_the_dot_product():
    model, p = params_of("gmf", factors=5)
    p["predict"] = {"kernel": np.ones((5, 1), np.float32), "bias": np.zeros(1, np.float32)}
    logits = np.asarray(jax.jit(model.apply)({"params": p}, USER, ITEM))
    pu, qi = p["gmf"]["user"]["embedding"][USER], p["gmf"]["item"]["embedding"][ITEM]
    np.testing.assert_allclose(logits, np.sum(pu * qi, axis=1), rtol=1e-6)
    mf = ncf.MF(USERS, ITEMS, 5)
    mf_params = {"user": p["gmf"]["user"], "item": p["gmf"]["item"]}
    mf_params["bias"] = {"embedding": np.zeros((ITEMS, 1), np.float32)}
    mf_logits = jax.jit(mf.apply)({"params": mf_params}, USER, ITEM)
    np.testing.assert_allclose(mf_logits, logits, rtol=1e-6)


def test_initialization_follows_the_paper():
    model = ncf.build("neumf", USERS, ITEMS, 16)
    p = jax.jit(lambda key: ncf.init(model, key))(jax.random.key(0))
    embeddings = np.concatenate(
        [p[t][side]["embedding"].ravel() for t in ("gmf", "mlp") for side in ("user", "item")]
    )
    assert abs(embeddings.std() - 0.01) < 0.001  # N(0, 0.01^2)
    assert np.all(p["predict"]["bias"] == 0)


def test_neumf_pretrained_init_copies_both_towers():
    _, gmf = params_of("gmf", seed=1)
    _, mlp = params_of("mlp", seed=2)
    for tower in (gmf, mlp):
        tower["predict"]["bias"] = np.array([0.3 if tower is gmf else -0.1], np.float32)
    alpha = 0.3
    p = ncf.neumf_from_pretrained(gmf, mlp, alpha)
    model, fresh = params_of("neumf")
    assert jax.tree.structure(p) == jax.tree.structure(fresh)
    for a, b in zip(jax.tree.leaves(p["gmf"]), jax.tree.leaves(gmf["gmf"])):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(jax.tree.leaves(p["mlp"]), jax.tree.leaves(mlp["mlp"])):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(
        p["predict"]["kernel"],
        np.concatenate([alpha * gmf["predict"]["kernel"], (1 - alpha) * mlp["predict"]["kernel"]]),
        rtol=1e-6,
    )
    np.testing.assert_allclose(p["predict"]["bias"], [alpha * 0.3 - (1 - alpha) * 0.1], rtol=1e-6)
    # NeuMF's logit is then alpha GMF logit + (1 - alpha) MLP logit.
    gmf_logit = jax.jit(ncf.build("gmf", USERS, ITEMS, 4).apply)({"params": gmf}, USER, ITEM)
    mlp_logit = jax.jit(ncf.build("mlp", USERS, ITEMS, 4).apply)({"params": mlp}, USER, ITEM)
    np.testing.assert_allclose(
        jax.jit(model.apply)({"params": p}, USER, ITEM),
        alpha * gmf_logit + (1 - alpha) * mlp_logit,
        rtol=1e-5,
        atol=1e-7,
    )


def test_unknown_model():
    with pytest.raises(ValueError, match="gmf, mlp, neumf"):
        ncf.build("svd", USERS, ITEMS, 4)
