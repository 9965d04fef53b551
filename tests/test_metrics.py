"""Group metrics and scorers, against values computed by hand."""

import numpy as np
import pytest
import sklearn
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
