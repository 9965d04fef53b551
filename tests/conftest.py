"""Shared fixtures: a tiny image task whose minority class has a shortcut."""

import numpy as np
import pytest


def make_bars(
    n_minority=40,
    imbalance_ratio=5,
    size=8,
    minority_prevalence=0.9,
    majority_prevalence=0.1,
    independent=False,
    random_state=0,
):
    """Images of bars: horizontal (class 1, minority) or vertical (class 0).

    The spurious feature is a colour cast of the background (first channel
    raised). It appears in ``minority_prevalence`` of the minority images and
    ``majority_prevalence`` of the majority ones; with ``independent=True`` it
    appears in half of each class, which exposes a classifier relying on it.

    Returns images of shape (n, 3, size, size), labels and the cast flag.
    """
    rng = np.random.RandomState(random_state)
    n_majority = n_minority * imbalance_ratio
    y = np.r_[np.ones(n_minority, int), np.zeros(n_majority, int)]
    if independent:
        cast = rng.random_sample(len(y)) < 0.5
    else:
        prevalence = np.where(y == 1, minority_prevalence, majority_prevalence)
        cast = rng.random_sample(len(y)) < prevalence
    X = rng.normal(0.0, 0.15, size=(len(y), 3, size, size))
    for i, label in enumerate(y):
        position = rng.randint(1, size - 1)
        start = rng.randint(0, size // 2)
        stop = start + size // 2
        if label == 1:
            X[i, :, position, start:stop] += 1.0
        else:
            X[i, :, start:stop, position] += 1.0
    X[cast, 0] += 0.6
    order = rng.permutation(len(y))
    return X[order].astype(np.float32), y[order], cast[order]


@pytest.fixture(scope="session")
def bars():
    """Confounded training data and an unconfounded test set."""
    X, y, cast = make_bars(random_state=0)
    X_test, y_test, cast_test = make_bars(
        n_minority=60, imbalance_ratio=2, independent=True, random_state=1
    )
    return X, y, cast, X_test, y_test, cast_test


@pytest.fixture(scope="session")
def trained_net(bars):
    """A small batch-balanced ResNet trained on the confounded bars."""
    import torch

    from imbcfkd.networks import make_net

    X, y = bars[:2]
    torch.manual_seed(0)
    return make_net("resnet", input_shape=X.shape[1:], max_epochs=8).fit(X, y)


def tiny_cfkd(**params):
    """A CFKDClassifier small enough to fit in about a second."""
    from imbcfkd import CFKDClassifier, GradientExplainer, make_net

    defaults = {
        "net": make_net("resnet", max_epochs=5, batch_size=16, module__width=8),
        "explainer": GradientExplainer(steps=20),
        "n_counterfactuals": 20,
        "n_rounds": 1,
        "finetune_epochs": 1,
        "random_state": 0,
    }
    defaults.update(params)
    return CFKDClassifier(**defaults)


@pytest.fixture(scope="session")
def oracle_teacher():
    """An oracle trained on bars whose colour cast is independent of the class."""
    from imbcfkd import CFKDClassifier, OracleTeacher, make_net

    X, y, _ = make_bars(
        n_minority=150, imbalance_ratio=1, independent=True, random_state=2
    )
    oracle = CFKDClassifier(
        net=make_net(max_epochs=10), n_counterfactuals=0, random_state=0
    ).fit(X, y)
    return OracleTeacher(oracle)


def group_accuracies(y_true, y_pred, cast):
    """Accuracy of each (class, colour cast) group, keyed by that pair."""
    return {
        (label, flag): float(
            np.mean(y_pred[(y_true == label) & (cast == flag)] == label)
        )
        for label in np.unique(y_true)
        for flag in (False, True)
    }
