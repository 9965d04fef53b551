"""BaselineClassifier: each remedy trains the same net its own way."""

import numpy as np
import pytest
import torch
from conftest import make_bars
from imblearn.over_sampling import SMOTE, RandomOverSampler
from imblearn.pipeline import make_pipeline
from imblearn.under_sampling import RandomUnderSampler
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from torch import nn
from torch.utils.data import DataLoader

from imbcfkd import BaselineClassifier, FocalLoss, make_net
from imbcfkd.baselines import METHODS
from imbcfkd.sampling import BalancedBatchLoader, ImageResampler


def small_net(**params):
    defaults = {"max_epochs": 4, "batch_size": 16, "module__width": 8}
    return make_net("resnet", **{**defaults, **params})


@pytest.fixture(scope="module")
def imbalanced_bars():
    """Strongly imbalanced bars (10 minority, 100 majority), no shortcut."""
    X, y, _ = make_bars(
        n_minority=10,
        imbalance_ratio=10,
        minority_prevalence=0.5,
        majority_prevalence=0.5,
        random_state=3,
    )
    return X, y


@pytest.mark.parametrize("method", METHODS)
def test_every_method_trains_the_given_net(method, imbalanced_bars):
    X, y = imbalanced_bars
    net = small_net(lr=0.002, max_epochs=2)
    clf = BaselineClassifier(method, net=net, random_state=0).fit(X, y)

    # The network settings come from the given net; the method sets the rest.
    trained = clf.net_
    assert trained is not net and not hasattr(net, "module_")
    assert (trained.lr, trained.max_epochs, trained.batch_size) == (0.002, 2, 16)
    assert len(trained.history) == 2
    expected_iterator = (
        BalancedBatchLoader if method == "batch_balancing" else DataLoader
    )
    assert trained.iterator_train is expected_iterator
    expected_criterion = FocalLoss if method == "focal_loss" else nn.CrossEntropyLoss
    assert isinstance(trained.criterion_, expected_criterion)

    proba = clf.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    assert set(clf.predict(X)) <= {0, 1}


def test_class_weights_are_inverse_class_frequencies(imbalanced_bars):
    X, y = imbalanced_bars
    clf = BaselineClassifier("class_weight", net=small_net(max_epochs=1)).fit(X, y)
    # 110 samples, 100 and 10 per class: 110 / (2 * count).
    np.testing.assert_allclose(clf.class_weight_, [0.55, 5.5])
    np.testing.assert_allclose(
        clf.net_.criterion_.weight.numpy(), [0.55, 5.5], rtol=1e-6
    )


def test_focal_gamma_reaches_the_loss(imbalanced_bars):
    X, y = imbalanced_bars
    clf = BaselineClassifier(
        "focal_loss", net=small_net(max_epochs=1), focal_gamma=0.5
    ).fit(X, y)
    assert clf.net_.criterion_.gamma == 0.5


@pytest.mark.parametrize(
    "sampler, expected_counts",
    [
        (None, [100, 100]),
        (RandomOverSampler(), [100, 100]),
        (RandomUnderSampler(), [10, 10]),
        (SMOTE(k_neighbors=3), [100, 100]),
    ],
)
def test_resampling_changes_the_training_set(sampler, expected_counts, imbalanced_bars):
    X, y = imbalanced_bars
    clf = BaselineClassifier(
        "resampling", net=small_net(max_epochs=1), sampler=sampler, random_state=0
    ).fit(X, y)
    assert clf.n_training_samples_ == sum(expected_counts)
    # The sampler was seeded from random_state and left the given one alone.
    assert clf.sampler_.random_state is not None
    assert sampler is None or sampler.random_state is None


def test_smote_synthesises_new_images(imbalanced_bars):
    X, y = imbalanced_bars
    resampler = ImageResampler(SMOTE(k_neighbors=3, random_state=0))
    X_res, y_res = resampler.fit_resample(X, y)
    synthetic = X_res[len(X) :]
    assert synthetic.shape == (90,) + X.shape[1:]
    assert (y_res[len(X) :] == 1).all()
    # Interpolated, so not copies of any original minority image.
    minority = X[y == 1].reshape(10, -1)
    distances = np.abs(synthetic.reshape(90, 1, -1) - minority[None]).max(axis=2)
    assert (distances.min(axis=1) > 1e-4).mean() > 0.9


def test_balancing_learns_the_minority_that_plain_cross_entropy_ignores():
    # One minority image in twenty: cross-entropy, trained briefly, predicts
    # the common class even for the rare training images; balanced batches
    # and class weights learn them, and give unseen rare images more weight.
    X, y, _ = make_bars(
        n_minority=10,
        imbalance_ratio=20,
        minority_prevalence=0.5,
        majority_prevalence=0.5,
        random_state=4,
    )
    X_test, y_test, _ = make_bars(
        n_minority=60, imbalance_ratio=1, independent=True, random_state=5
    )
    recall, proba = {}, {}
    for method in ("cross_entropy", "batch_balancing", "class_weight"):
        clf = BaselineClassifier(
            method, net=small_net(max_epochs=4), random_state=0
        ).fit(X, y)
        recall[method] = np.mean(clf.predict(X)[y == 1] == 1)
        proba[method] = clf.predict_proba(X_test)[y_test == 1, 1].mean()
    assert recall["cross_entropy"] <= 0.2, recall
    assert recall["batch_balancing"] >= 0.8 and recall["class_weight"] >= 0.8, recall
    assert min(proba["batch_balancing"], proba["class_weight"]) > proba["cross_entropy"]


def test_same_seed_same_model_and_global_state_untouched(imbalanced_bars):
    X, y = imbalanced_bars
    state = torch.random.get_rng_state()
    first = BaselineClassifier("focal_loss", net=small_net(), random_state=7)
    second = clone(first)
    first.fit(X, y)
    assert torch.equal(torch.random.get_rng_state(), state)
    proba = first.predict_proba(X)
    np.testing.assert_array_equal(second.fit(X, y).predict_proba(X), proba)


def test_string_labels_and_flattened_images(imbalanced_bars):
    X, y = imbalanced_bars
    labels = np.array(["common", "rare"])[y]
    clf = BaselineClassifier(
        "resampling",
        net=small_net(max_epochs=1),
        input_shape=X.shape[1:],
        random_state=0,
    ).fit(X.reshape(len(X), -1), labels)
    assert clf.classes_.tolist() == ["common", "rare"]
    assert set(clf.predict(X.reshape(len(X), -1))) <= {"common", "rare"}
    assert clf.input_shape_ == X.shape[1:]


def test_grid_search_over_methods_and_in_an_imblearn_pipeline(imbalanced_bars):
    X, y = imbalanced_bars
    search = GridSearchCV(
        BaselineClassifier(net=small_net(max_epochs=1), random_state=0),
        {"method": ["cross_entropy", "class_weight"], "net__lr": [1e-3, 1e-2]},
        cv=StratifiedKFold(2),
        scoring="balanced_accuracy",
    ).fit(X, y)
    assert len(search.cv_results_["params"]) == 4
    assert search.best_params_["method"] in ("cross_entropy", "class_weight")

    pipe = make_pipeline(
        ImageResampler(RandomUnderSampler(random_state=0)),
        BaselineClassifier(net=small_net(max_epochs=1), random_state=0),
    ).fit(X, y)
    assert pipe.predict(X).shape == y.shape


def test_errors_say_what_to_change(imbalanced_bars):
    X, y = imbalanced_bars
    with pytest.raises(ValueError, match="method"):
        BaselineClassifier("oversample").fit(X, y)
    with pytest.raises(ValueError, match="at least two classes"):
        BaselineClassifier(net=small_net()).fit(X[y == 0], y[y == 0])
