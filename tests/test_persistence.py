"""Saving and loading fitted classifiers without pickle."""

import zipfile

import numpy as np
import pytest
import torch
from conftest import tiny_cfkd

from imbcfkd import BaselineClassifier, load_model, make_net, save_model
from imbcfkd._serialization import load_tree, save_tree


def test_tree_round_trip_keeps_types(tmp_path):
    tree = {
        "labels": np.array(["a", "b"]),
        "objects": np.array([None, "x", 3], dtype=object),
        "tensor": torch.arange(4, dtype=torch.float32),
        "shape": (3, 8, 8),
        "nested": [1, 2.5, True, None, {"inner": np.int64(7)}],
        0: "integer key",
        "nan": float("nan"),
    }
    save_tree(tree, tmp_path / "tree.npz")
    loaded = load_tree(tmp_path / "tree.npz")

    assert loaded["labels"].tolist() == ["a", "b"]
    assert loaded["objects"].tolist() == [None, "x", 3]
    assert isinstance(loaded["tensor"], torch.Tensor)
    assert loaded["tensor"].tolist() == [0.0, 1.0, 2.0, 3.0]
    assert loaded["shape"] == (3, 8, 8)
    assert loaded["nested"] == [1, 2.5, True, None, {"inner": 7}]
    assert loaded[0] == "integer key"
    assert np.isnan(loaded["nan"])


def test_a_pickled_array_is_refused_not_loaded(tmp_path):
    # An object array in an .npz can only be read by unpickling it.
    path = tmp_path / "evil.npz"
    np.savez(path, __structure__=np.frombuffer(b"{}", np.uint8), a0=np.array([{}]))
    with pytest.raises(ValueError, match="pickle"):
        load_tree(path)


def test_a_file_from_elsewhere_is_refused(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, weights=np.zeros(3))
    with pytest.raises(ValueError, match="not a file written by imbcfkd"):
        load_tree(path)


def test_unsupported_values_are_refused_before_writing(tmp_path):
    with pytest.raises(TypeError, match="Cannot save a value of type object"):
        save_tree({"x": object()}, tmp_path / "t.npz")
    assert not (tmp_path / "t.npz").exists()
    assert list(tmp_path.iterdir()) == []


def test_cfkd_classifier_round_trip(bars, oracle_teacher, tmp_path):
    X, y = bars[:2]
    fitted = tiny_cfkd(teacher=oracle_teacher).fit(X, y)
    path = save_model(fitted, tmp_path / "model")
    assert path.suffix == ".npz"

    loaded = load_model(path, tiny_cfkd(teacher=None, verbose=1))
    X_test = bars[3]
    np.testing.assert_array_equal(
        loaded.predict_proba(X_test), fitted.predict_proba(X_test)
    )
    assert loaded.predict(X_test[:5]).tolist() == fitted.predict(X_test[:5]).tolist()
    assert loaded.classes_.tolist() == [0, 1]
    assert loaded.history_[0]["n_kept"] == fitted.history_[0]["n_kept"]
    np.testing.assert_array_equal(
        loaded.counterfactuals_["counterfactual"],
        fitted.counterfactuals_["counterfactual"],
    )
    assert (loaded.base_net_ is loaded.net_) == (fitted.base_net_ is fitted.net_)
    # The archive holds arrays only: nothing in it needs pickle.
    with zipfile.ZipFile(path) as archive:
        assert all(name.endswith(".npy") for name in archive.namelist())


def test_baseline_round_trip_with_class_weights_and_string_labels(bars, tmp_path):
    X, y = bars[:2]
    y = np.where(y == 1, "minority", "majority")
    params = dict(
        method="class_weight",
        net=make_net("resnet", max_epochs=2, module__width=8),
        random_state=0,
    )
    fitted = BaselineClassifier(**params).fit(X, y)
    loaded = load_model(
        save_model(fitted, tmp_path / "baseline.npz"), BaselineClassifier(**params)
    )
    np.testing.assert_array_equal(loaded.predict_proba(X), fitted.predict_proba(X))
    np.testing.assert_allclose(loaded.class_weight_, fitted.class_weight_)
    assert loaded.sampler_ is None
    assert loaded.predict(X[:3]).tolist() == fitted.predict(X[:3]).tolist()
    assert set(loaded.classes_.tolist()) == {"majority", "minority"}


def test_loading_into_other_parameters_is_refused(bars, tmp_path):
    X, y = bars[:2]
    net = make_net("resnet", max_epochs=1, module__width=8)
    fitted = BaselineClassifier(net=net, random_state=0).fit(X, y)
    path = save_model(fitted, tmp_path / "m.npz")
    other = make_net("resnet", max_epochs=1, module__width=16)
    with pytest.raises(ValueError, match="other values of \\['net'\\]"):
        load_model(path, BaselineClassifier(net=other, random_state=0))
    with pytest.raises(ValueError, match="holds a BaselineClassifier"):
        load_model(path, tiny_cfkd())
