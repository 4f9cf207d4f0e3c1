"""MovieLens atomic files, the synthetic generator and the leave-one-out protocol."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lexicon.data import DataError, movielens, prepare

INTER = """user_id:token\titem_id:token\trating:float\ttimestamp:float
196\t242\t3\t881250949
186\t302\t3\t891717742
196\t302\t4\t881250950
22\t377\t1\t878887116
186\t242\t5\t891717742
22\t242\t2\t878887117
196\t377\t4\t881250950
"""
ITEM = """item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq
242\tKolya\t1996\tComedy
302\tL.A. Confidential\t1997\tCrime Film-Noir Mystery Thriller
377\tHeavyweights\t1994\tChildren's Comedy
999\tunkonwn\tunkonwn\tunknown
"""


@pytest.fixture
def tiny_ml100k(tmp_path):
    (tmp_path / "ml-100k.inter").write_text(INTER)
    (tmp_path / "ml-100k.item").write_text(ITEM)
    return tmp_path


def test_parser_reads_the_ml100k_format(tiny_ml100k):
    columns = movielens.read_atomic(tiny_ml100k / "ml-100k.inter")
    assert columns["user_id"][:2] == ["196", "186"]
    np.testing.assert_array_equal(columns["rating"], [3, 3, 4, 1, 5, 2, 4])
    assert columns["timestamp"].dtype == np.float64 and columns["timestamp"][1] == 891717742
    items = movielens.read_atomic(tiny_ml100k / "ml-100k.item")
    assert items["class"][1] == ["Crime", "Film-Noir", "Mystery", "Thriller"]
    assert items["movie_title"][1] == ["L.A.", "Confidential"]

    data = movielens.ml100k(tiny_ml100k)
    assert (data.num_users, data.num_items, len(data.user)) == (3, 4, 7)
    # Users in sorted order of their ids (as strings: "186" < "196" < "22"); items in file order.
    np.testing.assert_array_equal(data.user, [1, 0, 1, 2, 0, 2, 1])
    np.testing.assert_array_equal(data.item, [0, 1, 1, 2, 0, 0, 2])
    names = data.feature_names
    assert names[: names.index("unknown") + 1][-1] == "unknown" and "1990s" in names
    kolya = dict(zip(names, data.item_features[0]))
    assert kolya["Comedy"] == 1 and kolya["1990s"] == 1 and data.item_features[0].sum() == 2
    assert data.item_features[3].tolist().count(1.0) == 1  # "unknown" genre, no year


def test_bad_files_and_missing_data_raise_data_errors(tmp_path, monkeypatch):
    (tmp_path / "ml-100k.inter").write_text("user_id\titem_id\n1\t2\n")
    with pytest.raises(DataError, match="name:type"):
        movielens.read_atomic(tmp_path / "ml-100k.inter")
    with pytest.raises(DataError, match="synthetic"):
        movielens.ml100k(tmp_path / "nowhere")

    def offline(*args):
        raise DataError("cannot fetch recbole with pip (offline)")

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(prepare, "fetch_package", offline)
    with pytest.raises(DataError, match="not prepared and cannot be fetched.*synthetic"):
        movielens.ml100k()
    assert not movielens.available("ml-100k") and movielens.available("synthetic")
    assert prepare.PREPARED["movielens"] == "lexicon.data.movielens:prepare"


def test_repeated_pairs_keep_the_latest(tmp_path):
    (tmp_path / "ml-100k.inter").write_text(INTER + "196\t242\t1\t881250999\n")
    (tmp_path / "ml-100k.item").write_text(ITEM)
    data = movielens.ml100k(tmp_path)
    assert len(data.user) == 7
    kept = data.timestamp[(data.user == 1) & (data.item == 0)]
    np.testing.assert_array_equal(kept, [881250999])


def test_leave_one_out_holds_out_the_latest_item(tiny_ml100k):
    data = movielens.ml100k(tiny_ml100k)
    split = movielens.leave_one_out(data, negatives=0)
    # user 0 ("186"): items 1 and 0 at the same time, the later row (item 0) is held out;
    # user 1 ("196"): items 1 and 2 share the latest time; the later row is item 2.
    np.testing.assert_array_equal(split.test_item, [0, 2, 0])
    assert len(split.train_user) == 4
    pairs = set(zip(split.train_user.tolist(), split.train_item.tolist()))
    assert pairs == {(0, 1), (1, 0), (1, 1), (2, 2)}


def test_synthetic_split_protocol():
    data = movielens.synthetic(num_users=120, num_items=300, mean_items=30, seed=3)
    again = movielens.synthetic(num_users=120, num_items=300, mean_items=30, seed=3)
    np.testing.assert_array_equal(data.item, again.item)
    assert 0.03 < data.density < 0.2 and data.item_features.shape == (300, 12)
    counts = np.bincount(data.item, minlength=300)
    assert counts.max() > 5 * np.median(counts)  # a popularity skew

    split = movielens.leave_one_out(data, seed=5)
    assert split.candidates.shape == (120, 100)
    for u in range(data.num_users):
        mine = data.item[data.user == u]
        latest = data.item[data.user == u][np.argmax(data.timestamp[data.user == u])]
        assert split.candidates[u, 0] == split.test_item[u] == latest
        negatives = split.candidates[u, 1:]
        assert len(negatives) == 99 and len(set(negatives.tolist())) == 99
        assert not set(negatives.tolist()) & set(mine.tolist())
        train = split.train_item[split.train_user == u]
        assert sorted(train.tolist() + [latest]) == sorted(mine.tolist())
    np.testing.assert_array_equal(
        split.candidates, movielens.leave_one_out(data, seed=5).candidates
    )
    assert not np.array_equal(split.candidates, movielens.leave_one_out(data, seed=6).candidates)


def test_packed_positives_and_training_negatives():
    data = movielens.synthetic(num_users=40, num_items=150, mean_items=60, seed=1)
    split = movielens.leave_one_out(data)
    train = split.train_matrix().astype(bool)
    users, items = np.meshgrid(np.arange(40), np.arange(150), indexing="ij")
    bits = movielens.is_positive(jnp.asarray(split.positives), users, items)
    np.testing.assert_array_equal(np.asarray(bits), train)

    user = jnp.asarray(np.repeat(np.arange(40), 50).astype(np.int32))
    draw = jax.jit(
        lambda key: movielens.sample_negatives(key, jnp.asarray(split.positives), user, 4, 150)
    )
    negatives = np.asarray(draw(jax.random.key(0)))
    assert negatives.shape == (2000, 4)
    assert not train[np.asarray(user)[:, None], negatives].any()
    np.testing.assert_array_equal(negatives, np.asarray(draw(jax.random.key(0))))
    assert not np.array_equal(negatives, np.asarray(draw(jax.random.key(1))))
    # Uniform over the user's non-training items: every such item of user 0 turns up.
    assert set(negatives[:50].ravel()) <= set(np.flatnonzero(~train[0]))


def test_missing_ml1m_copy_names_the_alternatives(tmp_path):
    with pytest.raises(DataError, match="MovieLens 1M has no prepared TFDS copy.*synthetic"):
        movielens.load("ml-1m", data_dir=str(tmp_path))
    with pytest.raises(DataError, match="ml-100k, ml-1m, synthetic"):
        movielens.load("netflix")
