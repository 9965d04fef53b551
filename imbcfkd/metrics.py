"""Metrics for imbalanced, confounded classification.

Group labels combine the class with the presence of a confounder (see
:func:`imbcfkd.datasets.make_confounded_digits`). A classifier that relies on
the confounder does well on the groups where class and confounder agree and
badly on the others, which the average and worst group accuracy reveal and
plain accuracy hides.

The group metrics need the group of each sample, which scikit-learn's
scorers do not receive by default. :func:`make_group_scorer` builds a scorer
that asks for ``groups`` through scikit-learn's metadata routing.

The counterfactual metrics judge an explainer rather than a classifier: how
often its counterfactuals flip the classifier, how often the change is real
according to a teacher, how small, sparse and realistic the change is, and,
on data whose confounder is known, how often it is the confounder that
changed (:func:`shortcut_detection_rate`). :func:`score_counterfactuals`
computes them all at once.
"""

import numpy as np
import torch
from sklearn.metrics import f1_score, make_scorer
from sklearn.utils.validation import check_consistent_length, column_or_1d

__all__ = [
    "average_group_accuracy",
    "changed_pixel_share",
    "flip_rate",
    "mean_absolute_change",
    "nearest_neighbour_distance",
    "reconstruction_error",
    "score_counterfactuals",
    "shortcut_detection_rate",
    "true_counterfactual_rate",
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


# -- counterfactual quality ------------------------------------------------


def flip_rate(y_counterfactual, target):
    """Share of counterfactuals the classifier assigns to their target class.

    Parameters
    ----------
    y_counterfactual : array-like of shape (n,)
        The classifier's predictions on the counterfactuals.
    target : array-like of shape (n,)
        The class each counterfactual was meant to reach.

    Returns
    -------
    rate : float
        ``nan`` when there are no counterfactuals.
    """
    return _share_equal(y_counterfactual, target)


def true_counterfactual_rate(teacher_counterfactual, target):
    """Share of counterfactuals whose target class the teacher confirms.

    A low rate means the edits flip the classifier without changing what the
    image shows: the classifier follows a shortcut (or the edits are
    adversarial). Pass only the counterfactuals that flipped the classifier
    to get the paper's feedback accuracy.

    Parameters
    ----------
    teacher_counterfactual : array-like of shape (n,)
        The teacher's labels of the counterfactuals.
    target : array-like of shape (n,)
        The class each counterfactual was meant to reach.

    Returns
    -------
    rate : float
        ``nan`` when there are no counterfactuals.
    """
    return _share_equal(teacher_counterfactual, target)


def shortcut_detection_rate(
    confounder_source, confounder_counterfactual, teacher_source, teacher_counterfactual
):
    """Share of counterfactuals that changed the confounder but not the class.

    On data whose confounder is known (through labels or a classifier trained
    to recognise it), such a counterfactual is exactly the one CFKD needs: it
    shows the classifier changing its mind over the shortcut alone.

    Parameters
    ----------
    confounder_source, confounder_counterfactual : array-like of shape (n,)
        Whether the confounder is present in each source image and in its
        counterfactual (as labels or predictions of a confounder classifier).
    teacher_source, teacher_counterfactual : array-like of shape (n,)
        The teacher's (or the ground truth's) class of each source and of its
        counterfactual.

    Returns
    -------
    rate : float
        ``nan`` when there are no counterfactuals.

    Examples
    --------
    >>> from imbcfkd.metrics import shortcut_detection_rate
    >>> shortcut_detection_rate([1, 1, 0], [0, 1, 1], [1, 1, 0], [1, 0, 1])
    0.3333333333333333
    """
    arrays = _paired(
        confounder_source,
        confounder_counterfactual,
        teacher_source,
        teacher_counterfactual,
    )
    if len(arrays[0]) == 0:
        return float("nan")
    changed_confounder = arrays[0] != arrays[1]
    kept_class = arrays[2] == arrays[3]
    return float(np.mean(changed_confounder & kept_class))


def mean_absolute_change(X, counterfactuals):
    """Closeness: the mean absolute difference between images and counterfactuals.

    Parameters
    ----------
    X, counterfactuals : array-like of the same shape
        Original images (or feature vectors) and their counterfactuals.

    Returns
    -------
    change : float
    """
    X, counterfactuals = _images(X, counterfactuals)
    return float(np.mean(np.abs(counterfactuals - X)))


def changed_pixel_share(X, counterfactuals, *, tol=0.02):
    """Sparsity: the share of pixels a counterfactual changed by more than ``tol``.

    A pixel counts as changed when any of its channels moved by more than
    ``tol``; for feature vectors every value is its own pixel.

    Parameters
    ----------
    X, counterfactuals : array-like of the same shape
        Original images and their counterfactuals.
    tol : float, default=0.02
        Smallest change that counts, in the images' units (a fiftieth of the
        range of images in [0, 1]).

    Returns
    -------
    share : float
        Between 0 (nothing changed) and 1 (every pixel changed).
    """
    X, counterfactuals = _images(X, counterfactuals)
    changed = np.abs(counterfactuals - X) > tol
    if changed.ndim == 4:
        changed = changed.any(axis=1)
    return float(np.mean(changed))


def nearest_neighbour_distance(counterfactuals, reference, *, batch_size=256):
    """Realism: mean distance from each counterfactual to its nearest real image.

    Parameters
    ----------
    counterfactuals : array-like of shape (n, ...)
        The counterfactuals.
    reference : array-like of shape (m, ...)
        Real images, usually the training images.
    batch_size : int, default=256
        Counterfactuals compared at once; memory grows with
        ``batch_size * m``.

    Returns
    -------
    distance : float
        Mean over counterfactuals of the root mean squared difference to the
        nearest reference image, in the images' units.
    """
    counterfactuals = np.asarray(counterfactuals, dtype=np.float32)
    reference = np.asarray(reference, dtype=np.float32)
    if counterfactuals.shape[1:] != reference.shape[1:]:
        raise ValueError(
            "counterfactuals and reference must hold samples of the same shape; "
            f"got {counterfactuals.shape[1:]} and {reference.shape[1:]}."
        )
    flat_reference = torch.from_numpy(reference.reshape(len(reference), -1))
    flat = torch.from_numpy(counterfactuals.reshape(len(counterfactuals), -1))
    nearest = [
        torch.cdist(batch, flat_reference).amin(dim=1)
        for batch in flat.split(batch_size)
    ]
    if not nearest:
        return float("nan")
    size = flat.shape[1]
    return float(torch.cat(nearest).mean()) / np.sqrt(size)


def reconstruction_error(counterfactuals, autoencoder, *, batch_size=256):
    """Realism: how badly a generative prior reproduces the counterfactuals.

    Parameters
    ----------
    counterfactuals : array-like of shape (n, ...)
        The counterfactuals.
    autoencoder : torch.nn.Module or fitted AutoencoderExplainer
        A module with ``encode`` and ``decode`` methods, trained on real
        images (an :class:`imbcfkd.AutoencoderExplainer`'s ``autoencoder_``).

    Returns
    -------
    error : float
        Mean absolute difference between the counterfactuals and their
        reconstructions; compare it with the same error on real images.
    """
    autoencoder = getattr(autoencoder, "autoencoder_", autoencoder)
    parameter = next(autoencoder.parameters(), None)
    device = "cpu" if parameter is None else parameter.device
    X = torch.from_numpy(np.asarray(counterfactuals, dtype=np.float32))
    total = 0.0
    with torch.no_grad():
        for batch in X.split(batch_size):
            batch = batch.to(device)
            reconstruction = autoencoder.decode(autoencoder.encode(batch))
            total += float((reconstruction - batch).abs().sum())
    return total / max(1, X.numel())


def score_counterfactuals(
    X,
    counterfactuals,
    target,
    *,
    classifier,
    teacher=None,
    confounder=None,
    reference=None,
    autoencoder=None,
    tol=0.02,
):
    """Every counterfactual metric at once, for one explainer's output.

    Parameters
    ----------
    X : array-like of shape (n, ...)
        Source images.
    counterfactuals : array-like of the same shape
        Their counterfactuals.
    target : array-like of shape (n,)
        The class each counterfactual was meant to reach, in the labels of
        ``classifier``.
    classifier : fitted classifier
        The classifier explained (anything with ``predict``).
    teacher : callable or fitted classifier, default=None
        Labels images with their true class: a teacher callable or a fitted
        classifier (its ``predict`` is used). ``None`` skips the metrics
        that need it.
    confounder : callable or fitted classifier, default=None
        Says whether the confounder is present in an image, e.g. a
        classifier trained on the confounder labels of well-conditioned
        data. Needs ``teacher``. ``None`` skips the shortcut detection rate.
    reference : array-like, default=None
        Real images for :func:`nearest_neighbour_distance`.
    autoencoder : torch.nn.Module or AutoencoderExplainer, default=None
        A prior for :func:`reconstruction_error`.
    tol : float, default=0.02
        See :func:`changed_pixel_share`.

    Returns
    -------
    scores : dict
        ``flip_rate``, ``closeness`` (mean absolute change) and ``sparsity``
        (changed pixel share) always; ``true_rate`` (among the flipped
        counterfactuals) with a teacher; ``shortcut_detection_rate`` (among
        the flipped counterfactuals) with a teacher and a confounder model;
        ``nearest_neighbour_distance`` with a reference and
        ``reconstruction_error`` with an autoencoder.
    """
    target = column_or_1d(np.asarray(target))
    flipped = np.asarray(classifier.predict(counterfactuals)) == target
    scores = {
        "flip_rate": float(np.mean(flipped)),
        "closeness": mean_absolute_change(X, counterfactuals),
        "sparsity": changed_pixel_share(X, counterfactuals, tol=tol),
    }
    if teacher is not None:
        teach = getattr(teacher, "predict", teacher)
        X_flipped = np.asarray(X)[flipped]
        cf_flipped = np.asarray(counterfactuals)[flipped]
        teacher_cf = np.asarray(teach(cf_flipped)) if flipped.any() else target[:0]
        scores["true_rate"] = true_counterfactual_rate(teacher_cf, target[flipped])
        if confounder is not None:
            if flipped.any():
                recognise = getattr(confounder, "predict", confounder)
                scores["shortcut_detection_rate"] = shortcut_detection_rate(
                    np.asarray(recognise(X_flipped)),
                    np.asarray(recognise(cf_flipped)),
                    np.asarray(teach(X_flipped)),
                    teacher_cf,
                )
            else:
                scores["shortcut_detection_rate"] = float("nan")
    if reference is not None:
        scores["nearest_neighbour_distance"] = nearest_neighbour_distance(
            counterfactuals, reference
        )
    if autoencoder is not None:
        scores["reconstruction_error"] = reconstruction_error(
            counterfactuals, autoencoder
        )
    return scores


def _share_equal(labels, target):
    labels, target = _paired(labels, target)
    if len(target) == 0:
        return float("nan")
    return float(np.mean(labels == target))


def _paired(*arrays):
    arrays = [column_or_1d(np.asarray(a, dtype=object)) for a in arrays]
    check_consistent_length(*arrays)
    return arrays


def _images(X, counterfactuals):
    X = np.asarray(X, dtype=np.float64)
    counterfactuals = np.asarray(counterfactuals, dtype=np.float64)
    if X.shape != counterfactuals.shape:
        raise ValueError(
            "Images and counterfactuals must have the same shape; got "
            f"{X.shape} and {counterfactuals.shape}."
        )
    return X, counterfactuals
