"""Group metrics and scorers, against values computed by hand."""

import numpy as np
import pytest
import sklearn
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, KFold, cross_validate

from imbcfkd.metrics import (
    average_group_accuracy,
    group_accuracies,
    make_group_scorer,
    minority_f1_score,
    worst_group_accuracy,
)

# Four groups: (class 0, no confounder), (0, confounder), (1, no), (1, yes).
Y_TRUE = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 1])
Y_PRED = np.array([0, 0, 0, 1, 1, 0, 1, 0, 0, 1])
GROUPS = np.array([0, 0, 0, 1, 1, 1, 2, 2, 3, 3])


def test_group_accuracies_by_hand():
    # Group 0: 3 of 3; group 1: 1 of 3; group 2: 1 of 2; group 3: 1 of 2.
    assert group_accuracies(Y_TRUE, Y_PRED, groups=GROUPS) == {
        0: 1.0,
        1: pytest.approx(1 / 3),
        2: 0.5,
        3: 0.5,
    }
    assert average_group_accuracy(Y_TRUE, Y_PRED, groups=GROUPS) == pytest.approx(
        (1 + 1 / 3 + 0.5 + 0.5) / 4
    )
    assert worst_group_accuracy(Y_TRUE, Y_PRED, groups=GROUPS) == pytest.approx(1 / 3)
    # Plain accuracy (0.6) hides the worst group.
    assert np.mean(Y_TRUE == Y_PRED) == 0.6


def test_group_labels_of_any_type():
    groups = np.array(["plain", "cast", "cast"], dtype=object)
    assert group_accuracies([0, 1, 1], [0, 1, 0], groups=groups) == {
        "cast": 0.5,
        "plain": 1.0,
    }


def test_minority_f1_by_hand():
    # Class 1 is the minority: 2 true positives, 2 false positives (samples 3
    # and 4), 2 false negatives: precision 0.5, recall 0.5, F1 0.5.
    assert minority_f1_score(Y_TRUE, Y_PRED) == pytest.approx(0.5)
    # Precision 4/6, recall 4/6 for class 0.
    assert minority_f1_score(Y_TRUE, Y_PRED, minority_label=0) == pytest.approx(4 / 6)
    assert minority_f1_score(["a", "b", "b"], ["b", "b", "b"]) == 0.0


def test_metrics_check_their_input():
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        group_accuracies([0, 1], [0, 1], groups=[0])
    with pytest.raises(ValueError, match="at least one sample"):
        worst_group_accuracy([], [], groups=[])
    with pytest.raises(ValueError, match="metric must be one of"):
        make_group_scorer("accuracy")


@pytest.fixture
def routing():
    with sklearn.config_context(enable_metadata_routing=True):
        yield


def _confounded_table(n=200, seed=0):
    rng = np.random.RandomState(seed)
    y = rng.randint(0, 2, n)
    confounder = np.where(rng.rand(n) < 0.9, y, 1 - y)
    X = np.c_[y + rng.normal(0, 2.0, n), confounder + rng.normal(0, 0.1, n)]
    return X, y, 2 * y + confounder


def test_group_scorer_in_cross_validation(routing):
    X, y, groups = _confounded_table()
    scorer = make_group_scorer("worst_group_accuracy")
    result = cross_validate(
        LogisticRegression(),
        X,
        y,
        cv=KFold(3),
        scoring={"wga": scorer, "aga": make_group_scorer("average_group_accuracy")},
        params={"groups": groups},
        return_estimator=True,
    )
    # Each fold is scored on its own test samples' groups.
    for fold, (_, test) in enumerate(KFold(3).split(X)):
        predicted = result["estimator"][fold].predict(X[test])
        assert result["test_wga"][fold] == pytest.approx(
            worst_group_accuracy(y[test], predicted, groups=groups[test])
        )
    # The shortcut feature makes the rare disagreeing groups the worst.
    assert np.all(result["test_wga"] < result["test_aga"])


def test_group_scorer_in_grid_search(routing):
    X, y, groups = _confounded_table()
    search = GridSearchCV(
        LogisticRegression(),
        {"C": [0.01, 1.0]},
        scoring=make_group_scorer(),
        cv=KFold(2),
    )
    search.fit(X, y, groups=groups)
    expected = [
        worst_group_accuracy(
            y[test],
            LogisticRegression(C=1.0).fit(X[train], y[train]).predict(X[test]),
            groups=groups[test],
        )
        for train, test in KFold(2).split(X)
    ]
    assert search.cv_results_["mean_test_score"][1] == pytest.approx(np.mean(expected))


# Counterfactual quality -------------------------------------------------------


def test_counterfactual_rates_by_hand():
    from imbcfkd.metrics import (
        flip_rate,
        shortcut_detection_rate,
        true_counterfactual_rate,
    )

    assert flip_rate([1, 0, 1, 1], [1, 1, 1, 0]) == 0.5
    assert true_counterfactual_rate([1, 1, 0], [1, 0, 0]) == pytest.approx(2 / 3)
    # Counterfactual 0 changed the confounder and kept the class: a shortcut.
    # 1 changed both, 2 changed neither, 3 changed the confounder only.
    confounder = ([0, 0, 1, 1], [1, 1, 1, 0])
    rate = shortcut_detection_rate(*confounder, [0, 0, 1, 1], [0, 1, 1, 1])
    assert rate == 0.5
    assert np.isnan(flip_rate([], []))
    with pytest.raises(ValueError, match="inconsistent"):
        flip_rate([0, 1], [0])


def test_closeness_sparsity_and_realism_by_hand():
    from imbcfkd.metrics import (
        changed_pixel_share,
        mean_absolute_change,
        nearest_neighbour_distance,
        reconstruction_error,
    )

    X = np.zeros((2, 1, 2, 2))
    cf = X.copy()
    cf[0, 0, 0, 0] = 0.4  # one value of eight changes by 0.4
    cf[1, 0, 1, 1] = 0.01  # below the tolerance
    assert mean_absolute_change(X, cf) == pytest.approx(0.41 / 8)
    assert changed_pixel_share(X, cf) == pytest.approx(1 / 8)
    assert changed_pixel_share(X, cf, tol=0.005) == pytest.approx(2 / 8)

    # Root mean square distance per value to the nearest reference image.
    reference = np.stack([X[0], np.full((1, 2, 2), 1.0)])
    expected = (0.4 / 2 + 0.01 / 2) / 2  # sqrt(0.16 / 4), sqrt(1e-4 / 4)
    assert nearest_neighbour_distance(cf, reference) == pytest.approx(expected)
    assert nearest_neighbour_distance(reference, reference) == pytest.approx(0)

    # The identity is a perfect prior; one that decodes zeros misses by |x|.
    class Prior(torch.nn.Module):
        def __init__(self, scale):
            super().__init__()
            self.scale = scale

        def encode(self, x):
            return x

        def decode(self, code):
            return self.scale * code

    assert reconstruction_error(cf, Prior(1.0)) == pytest.approx(0)
    assert reconstruction_error(cf, Prior(0.0)) == pytest.approx(0.41 / 8)
    with pytest.raises(ValueError, match="same shape"):
        mean_absolute_change(X, cf[:1])


def test_score_counterfactuals_on_a_known_rule():
    from imbcfkd.metrics import score_counterfactuals

    # The classifier looks at feature 1 (the shortcut), the teacher at
    # feature 0 (the class), the confounder model at feature 1.
    class Threshold:
        def __init__(self, feature):
            self.feature = feature

        def predict(self, X):
            return (np.asarray(X)[:, self.feature] > 0.5).astype(int)

    X = np.array([[0.0, 0.0], [0.0, 0.0], [1.0, 1.0], [1.0, 1.0]])
    cf = np.array([[0.0, 1.0], [1.0, 1.0], [1.0, 1.0], [1.0, 0.0]])
    scores = score_counterfactuals(
        X,
        cf,
        [1, 1, 0, 0],
        classifier=Threshold(1),
        teacher=Threshold(0).predict,
        confounder=Threshold(1),
        reference=X,
    )
    # Flipped: 0, 1 and 3. True among them: only 1. Shortcut: 0 and 3.
    assert scores["flip_rate"] == 0.75
    assert scores["true_rate"] == pytest.approx(1 / 3)
    assert scores["shortcut_detection_rate"] == pytest.approx(2 / 3)
    assert scores["closeness"] == pytest.approx(4 / 8)
    assert scores["sparsity"] == pytest.approx(4 / 8)
    assert "reconstruction_error" not in scores
    assert scores["nearest_neighbour_distance"] > 0
