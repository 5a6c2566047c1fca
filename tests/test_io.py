"""Save/load: identical predictions after a round trip, no pickle, clear errors on bad files."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

import bayeslayers
from bayeslayers import Network, heads, io, layers
from bayeslayers.io import ModelFileError

RNG = np.random.default_rng(0)
X = RNG.normal(size=(40, 3))
Y_REG = np.sin(X[:, 0]) + 0.1 * X[:, 1]
Y_CLS = np.where(X[:, 0] > 0.3, "hi", np.where(X[:, 0] < -0.3, "lo", "mid"))


def _body(covariance):
    return [layers.ReLU(6), layers.TaylorTanh(4, covariance="diag"), layers.LeakyReLU(3)]


@pytest.mark.parametrize("covariance", ["unit", "shared", "diag"])
def test_regression_round_trip_identical(tmp_path, covariance):
    net = Network(
        _body(covariance),
        head=heads.Gaussian(learn_noise=True),
        covariance=covariance,
        clip=5.0,
        seed=3,
    )
    net.fit(X, Y_REG, batch_size=4)
    path = net.save(tmp_path / "m.npz")
    back = bayeslayers.load(path)
    assert repr(back) == repr(net) and back.clip == 5.0 and back.seed == 3
    np.testing.assert_array_equal(back.predict(X), net.predict(X))
    for a, b in zip(
        back.predict(X, return_std=True, hidden="sample", n_samples=20),
        net.predict(X, return_std=True, hidden="sample", n_samples=20),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)
    assert back.n_samples_seen_ == net.n_samples_seen_ == 40
    # Training continues identically (same state, same generator).
    net.partial_fit(X[:10], Y_REG[:10], shuffle=True)
    back.partial_fit(X[:10], Y_REG[:10], shuffle=True)
    np.testing.assert_array_equal(back.predict(X), net.predict(X))


CLASSIFIER_HEADS = sorted(k for k, cls in heads.HEADS.items() if cls.is_classifier)


@pytest.mark.parametrize("kind", CLASSIFIER_HEADS)
def test_classifier_round_trip_every_registered_head(tmp_path, kind):
    net = Network([layers.ReLU(5)], head=heads.make_head(kind)).fit(X, Y_CLS)
    back = bayeslayers.load(net.save(tmp_path / "c.npz"))
    np.testing.assert_array_equal(back.classes_, net.classes_)
    np.testing.assert_array_equal(back.predict(X), net.predict(X))
    np.testing.assert_array_equal(back.predict_proba(X), net.predict_proba(X))
    np.testing.assert_array_equal(
        back.predict_proba(X, hidden="sample", n_samples=5),
        net.predict_proba(X, hidden="sample", n_samples=5),
    )
    assert type(back.head_state_) is type(net.head_state_)


def test_file_is_plain_npz_with_metadata(tmp_path):
    net = Network([layers.ReLU(4)]).fit(X, Y_REG)
    path = io.save(net, tmp_path / "m.npz", config={"train": {"passes": 1}})
    with np.load(path, allow_pickle=False) as archive:
        arrays = {k: archive[k] for k in archive.files}
    meta = json.loads(str(arrays["__meta__"]))
    assert meta["format"] == io.FORMAT and meta["format_version"] == io.FORMAT_VERSION
    assert meta["package_version"] == bayeslayers.__version__
    assert meta["network"]["layers"] == [
        {"kind": "relu", "units": 4, "covariance": None, "noise": None}
    ]
    assert io.read_metadata(path)["config"] == {"train": {"passes": 1}}
    np.testing.assert_array_equal(arrays["posteriors_.0.mean"], net.posteriors_[0].mean)


def test_unfitted_or_wrong_object_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unfitted"):
        Network().save(tmp_path / "m.npz")
    with pytest.raises(TypeError, match="Network"):
        io.save("net", tmp_path / "m.npz")


@pytest.fixture
def saved(tmp_path):
    net = Network([layers.ReLU(4)]).fit(X, Y_REG)
    return net.save(tmp_path / "m.npz")


def test_truncated_file(saved):
    data = saved.read_bytes()
    saved.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="truncated or corrupted"):
        bayeslayers.load(saved)


def test_corrupted_bytes(saved):
    data = bytearray(saved.read_bytes())
    with zipfile.ZipFile(saved) as z:
        info = z.getinfo("posteriors_.0.cov.npy")
    middle = info.header_offset + 100 + info.compress_size // 2
    data[middle : middle + 8] = b"\xff" * 8
    saved.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="truncated or corrupted"):
        bayeslayers.load(saved)


def _rewrite_meta(path, change):
    with np.load(path, allow_pickle=False) as archive:
        arrays = {k: archive[k] for k in archive.files}
    meta = json.loads(str(arrays["__meta__"]))
    change(meta)
    arrays["__meta__"] = np.array(json.dumps(meta))
    np.savez(path, **arrays)


def test_wrong_format_version(saved):
    _rewrite_meta(saved, lambda m: m.update(format_version=99))
    with pytest.raises(ModelFileError, match="format version 99"):
        bayeslayers.load(saved)


def test_foreign_files(tmp_path, saved):
    other = tmp_path / "other.npz"
    np.savez(other, a=np.arange(3))
    with pytest.raises(ModelFileError, match="not a bayeslayers model file"):
        bayeslayers.load(other)
    with pytest.raises(ModelFileError, match="no such model file"):
        bayeslayers.load(tmp_path / "missing.npz")
    _rewrite_meta(
        saved,
        lambda m: m["state"].update(head_state_={"namedtuple": "os:stat_result", "fields": {}}),
    )
    with pytest.raises(ModelFileError, match="not a bayeslayers type"):
        bayeslayers.load(saved)
