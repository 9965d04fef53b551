"""Metrics for imbalanced, confounded classification.

Group labels combine the class with the presence of a confounder (see
:func:`imbcfkd.datasets.make_confounded_digits`). A classifier that relies on
the confounder does well on the groups where class and confounder agree and
badly on the others, which the average and worst group accuracy reveal and
plain accuracy hides.

The group metrics need the group of each sample, which scikit-learn's
scorers do not receive by default. :func:`make_group_scorer` builds a scorer
that asks for ``groups`` through scikit-learn's metadata routing.
"""

import numpy as np
from sklearn.metrics import f1_score, make_scorer
from sklearn.utils.validation import check_consistent_length, column_or_1d

__all__ = [
    "average_group_accuracy",
    "group_accuracies",
    "make_group_scorer",
    "minority_f1_score",
    "worst_group_accuracy",
]


def group_accuracies(y_true, y_pred, *, groups):
    """Accuracy within each group.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels.
    y_pred : array-like of shape (n_samples,)
        Predicted labels.
    groups : array-like of shape (n_samples,)
        Group of each sample.

    Returns
    -------
    accuracies : dict
        Accuracy of each group, keyed by the group, in sorted order.

    Examples
    --------
    >>> from imbcfkd.metrics import group_accuracies
    >>> group_accuracies([0, 0, 1, 1], [0, 1, 1, 1], groups=[0, 0, 1, 1])
    {0: 0.5, 1: 1.0}
    """
    y_true, y_pred, groups = _check(y_true, y_pred, groups)
    return {
        (group.item() if isinstance(group, np.generic) else group): float(
            np.mean(y_true[groups == group] == y_pred[groups == group])
        )
        for group in np.unique(groups)
    }


def average_group_accuracy(y_true, y_pred, *, groups):
    """Unweighted mean of the group accuracies (AGA).

    Parameters
    ----------
    y_true, y_pred, groups : array-like of shape (n_samples,)
        As in :func:`group_accuracies`.

    Returns
    -------
    score : float
    """
    return float(
        np.mean(list(group_accuracies(y_true, y_pred, groups=groups).values()))
    )


def worst_group_accuracy(y_true, y_pred, *, groups):
    """Lowest of the group accuracies (WGA).

    Parameters
    ----------
    y_true, y_pred, groups : array-like of shape (n_samples,)
        As in :func:`group_accuracies`.

    Returns
    -------
    score : float
    """
    return float(min(group_accuracies(y_true, y_pred, groups=groups).values()))


def minority_f1_score(y_true, y_pred, *, minority_label=None):
    """F1 score of the minority class, as reported in the paper's Table 1.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels.
    y_pred : array-like of shape (n_samples,)
        Predicted labels.
    minority_label : label, default=None
        The class to score. ``None`` takes the least frequent class of
        ``y_true`` (the first in sorted order on a tie).

    Returns
    -------
    score : float

    Examples
    --------
    >>> from imbcfkd.metrics import minority_f1_score
    >>> minority_f1_score([0, 0, 0, 1, 1], [0, 0, 1, 1, 0])
    0.5
    """
    y_true = column_or_1d(y_true)
    if minority_label is None:
        labels, counts = np.unique(y_true, return_counts=True)
        minority_label = labels[np.argmin(counts)]
    return float(
        f1_score(
            y_true, y_pred, labels=[minority_label], average="macro", zero_division=0
        )
    )


_GROUP_METRICS = {
    "average_group_accuracy": average_group_accuracy,
    "worst_group_accuracy": worst_group_accuracy,
}


def make_group_scorer(metric="worst_group_accuracy"):
    """A scorer for cross-validation and grid search that uses group labels.

    The scorer asks for ``groups`` through metadata routing, which must be
    switched on with ``sklearn.set_config(enable_metadata_routing=True)``
    before the scorer is built. Pass the groups of every sample to
    ``cross_validate(..., params={"groups": groups})`` or to
    ``GridSearchCV.fit(X, y, groups=groups)``; each fold's scorer then gets
    the groups of its test samples.

    Parameters
    ----------
    metric : {"worst_group_accuracy", "average_group_accuracy"}, \
default="worst_group_accuracy"
        The group metric to score with.

    Returns
    -------
    scorer : callable
        ``scorer(estimator, X, y, groups=...)``.
    """
    if metric not in _GROUP_METRICS:
        raise ValueError(
            f"metric must be one of {sorted(_GROUP_METRICS)}; got {metric!r}."
        )
    return make_scorer(_GROUP_METRICS[metric]).set_score_request(groups=True)


def _check(y_true, y_pred, groups):
    y_true, y_pred, groups = (column_or_1d(a) for a in (y_true, y_pred, groups))
    check_consistent_length(y_true, y_pred, groups)
    if len(y_true) == 0:
        raise ValueError("Group metrics need at least one sample; got none.")
    return y_true, y_pred, groups
