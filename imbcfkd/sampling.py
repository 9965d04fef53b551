"""Class-balanced mini-batches for skorch and plain PyTorch.

Batch balancing is how CFKD trains its base classifier: every mini-batch holds
the same number of samples of each class, the minority class being cycled as
often as needed. :class:`BalancedBatchLoader` plugs into skorch as
``iterator_train`` and reads the labels from the dataset it is handed, which is
the training split only, so it works with skorch's internal validation split
and with cross-validation folds alike.

The same sampler also composes fine-tuning batches for CFKD: with ``groups``
(original or counterfactual) and ``group_shares`` it fills a fixed share of
each batch from each group, and balances the classes inside every group.
"""

import math

import numpy as np
import torch
from sklearn.base import BaseEstimator, clone
from sklearn.utils._param_validation import HasMethods
from torch.utils.data import DataLoader, Sampler, Subset

__all__ = ["BalancedBatchLoader", "BalancedBatchSampler", "ImageResampler"]

#: DataLoader options that decide the order of samples, which the balanced
#: sampler owns.
ORDER_OPTIONS = ("shuffle", "sampler", "batch_sampler", "drop_last")


class BalancedBatchSampler(Sampler):
    """Yield mini-batches with fixed shares of groups and balanced classes.

    Every batch is filled group by group according to ``group_shares``; the
    slots of a group are split equally among the classes present in that
    group. Each (group, class) cell is read in a random order and reshuffled
    when exhausted, so rare cells are cycled and frequent cells are covered
    once before any sample repeats. When slots do not divide evenly, the
    leftover slots go to randomly chosen cells, so shares hold on average.

    Parameters
    ----------
    labels : array-like of shape (n_samples,)
        Class of each sample, any hashable values.
    batch_size : int
        Samples per batch. Capped at ``n_samples``.
    groups : array-like of shape (n_samples,), default=None
        Group of each sample, e.g. 0 for originals and 1 for counterfactuals.
        ``None`` puts every sample in one group.
    group_shares : dict, default=None
        Share of each batch that goes to each group, e.g. ``{0: 0.5, 1: 0.5}``.
        Shares are normalised to sum to one. ``None`` gives equal shares.
    n_batches : int, default=None
        Batches per epoch. ``None`` gives ``ceil(n_samples / batch_size)``.
    seed : int, default=None
        Seed of the sampler's random generator. ``None`` draws one from
        PyTorch's global generator, so ``torch.manual_seed`` makes the batches
        reproducible. Iterating the sampler again continues the same random
        sequence: every epoch gets new batches.

    Examples
    --------
    >>> from imbcfkd.sampling import BalancedBatchSampler
    >>> sampler = BalancedBatchSampler([0] * 9 + [1], batch_size=4, seed=0)
    >>> [sorted(int(i == 9) for i in batch) for batch in sampler]
    [[0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 1, 1]]
    """

    def __init__(
        self,
        labels,
        batch_size,
        groups=None,
        group_shares=None,
        n_batches=None,
        seed=None,
    ):
        labels = np.asarray(labels)
        if labels.ndim != 1 or len(labels) == 0:
            raise ValueError(
                "BalancedBatchSampler needs a non-empty 1-D array of labels; "
                f"got an array of shape {labels.shape}."
            )
        if groups is None:
            groups = np.zeros(len(labels), dtype=int)
        groups = np.asarray(groups)
        if groups.shape != labels.shape:
            raise ValueError(
                "groups must give one group per sample: expected shape "
                f"{labels.shape}, got {groups.shape}."
            )
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be at least 1; got {batch_size}.")

        self.batch_size = min(int(batch_size), len(labels))
        self.n_batches = (
            math.ceil(len(labels) / self.batch_size) if n_batches is None else n_batches
        )
        if seed is None:
            seed = int(torch.randint(0, 2**31 - 1, (1,)).item())
        self.seed = seed
        self._rng = None
        self._streams = None

        group_values = np.unique(groups)
        if group_shares is None:
            group_shares = {g: 1.0 for g in group_values.tolist()}
        unknown = set(group_shares) - set(group_values.tolist())
        shares = np.array([float(group_shares.get(g, 0.0)) for g in group_values])
        if unknown or np.any(shares < 0) or shares.sum() <= 0:
            raise ValueError(
                "group_shares must map groups present in the data to non-negative "
                f"shares with a positive sum; groups are {group_values.tolist()}, "
                f"got {group_shares}."
            )
        self._group_shares = shares / shares.sum()

        # One cell per (group, class): the index pool the batches draw from.
        self._cells = [
            [
                np.flatnonzero((groups == g) & (labels == c))
                for c in np.unique(labels[groups == g])
            ]
            for g in group_values
        ]

    def __len__(self):
        return self.n_batches

    def __iter__(self):
        # The generator and the streams live across epochs: skorch iterates
        # one loader once per epoch, and each epoch must continue where the
        # last one stopped rather than repeat its batches.
        if self._rng is None:
            self._rng = np.random.default_rng(self.seed)
            self._streams = [
                [_CyclingStream(cell, self._rng) for cell in group]
                for group in self._cells
            ]
        rng, streams = self._rng, self._streams
        for _ in range(self.n_batches):
            batch = []
            group_counts = _allocate(self.batch_size, self._group_shares, rng)
            for group_streams, n_group in zip(streams, group_counts, strict=True):
                equal = np.full(len(group_streams), 1.0 / len(group_streams))
                for stream, n_cell in zip(
                    group_streams, _allocate(n_group, equal, rng), strict=True
                ):
                    batch.extend(stream.take(n_cell))
            yield rng.permutation(batch).tolist()


class BalancedBatchLoader(DataLoader):
    """A DataLoader whose batches are class-balanced, for skorch's training.

    Use it as ``iterator_train`` of a skorch net. The labels are read from the
    dataset the net hands over, which is only the training split when skorch
    splits off validation data, so the balancing never sees validation
    samples.

    Parameters
    ----------
    dataset : torch.utils.data.Dataset
        A skorch ``Dataset``, a ``TensorDataset`` or a ``Subset`` of either;
        any dataset whose items are ``(X, y)`` pairs works, more slowly.
    batch_size : int, default=64
        Samples per batch.
    groups : array-like of shape (n_total,), default=None
        Group of every sample of the *full* data passed to ``fit``; subsets
        are mapped through their indices. See :class:`BalancedBatchSampler`.
    group_shares : dict, default=None
        Share of each batch per group. See :class:`BalancedBatchSampler`.
    n_batches : int, default=None
        Batches per epoch. ``None`` covers the dataset once per epoch.
    **kwargs
        Passed to :class:`torch.utils.data.DataLoader` (``num_workers``,
        ``pin_memory``, ...). ``shuffle`` and ``sampler`` are not accepted:
        the balanced sampler decides the order.

    Examples
    --------
    >>> from skorch import NeuralNetClassifier
    >>> from imbcfkd.networks import MLP
    >>> from imbcfkd.sampling import BalancedBatchLoader
    >>> net = NeuralNetClassifier(
    ...     MLP, module__input_shape=(4,), module__n_classes=2,
    ...     iterator_train=BalancedBatchLoader, train_split=None,
    ... )
    """

    def __init__(
        self,
        dataset,
        batch_size=64,
        groups=None,
        group_shares=None,
        n_batches=None,
        **kwargs,
    ):
        for name in ORDER_OPTIONS:
            if kwargs.get(name) not in (None, False):
                raise ValueError(
                    f"BalancedBatchLoader composes its own batches; remove "
                    f"iterator_train__{name}={kwargs[name]!r} from the net."
                )
            kwargs.pop(name, None)
        labels = dataset_labels(dataset)
        if groups is not None:
            groups = np.asarray(groups)[dataset_indices(dataset, len(groups))]
        sampler = BalancedBatchSampler(
            labels, batch_size, groups, group_shares, n_batches
        )
        super().__init__(dataset, batch_sampler=sampler, **kwargs)


class ImageResampler(BaseEstimator):
    """Apply an imbalanced-learn sampler to arrays of images.

    imbalanced-learn's samplers accept only 2-D arrays. This wrapper flattens
    each image, resamples, and restores the image shape, so it can stand in
    an :class:`imblearn.pipeline.Pipeline` in front of an image classifier.
    Samplers that synthesise samples (SMOTE) then interpolate pixel by pixel.

    Parameters
    ----------
    sampler : imbalanced-learn sampler
        Any object with ``fit_resample(X, y)``, e.g.
        ``RandomOverSampler()``. It is cloned.

    Attributes
    ----------
    sampler_ : imbalanced-learn sampler
        The fitted clone of ``sampler``.

    Examples
    --------
    >>> import numpy as np
    >>> from imblearn.under_sampling import RandomUnderSampler
    >>> from imbcfkd.sampling import ImageResampler
    >>> X, y = np.zeros((10, 3, 8, 8)), np.array([0] * 8 + [1] * 2)
    >>> X_res, y_res = ImageResampler(RandomUnderSampler()).fit_resample(X, y)
    >>> X_res.shape, np.bincount(y_res).tolist()
    ((4, 3, 8, 8), [2, 2])
    """

    _parameter_constraints = {"sampler": [HasMethods(["fit_resample"])]}

    def __init__(self, sampler):
        self.sampler = sampler

    def fit_resample(self, X, y):
        """Resample the images ``X`` and their labels ``y``.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...)
            Images of any shape.
        y : array-like of shape (n_samples,)
            Labels.

        Returns
        -------
        X_resampled : ndarray of shape (n_resampled, ...)
        y_resampled : ndarray of shape (n_resampled,)
        """
        self._validate_params()
        X = np.asarray(X)
        self.sampler_ = clone(self.sampler)
        X_flat, y_resampled = self.sampler_.fit_resample(X.reshape(len(X), -1), y)
        return np.asarray(X_flat).reshape((-1,) + X.shape[1:]), y_resampled


def dataset_indices(dataset, n_total):
    """Indices of a (possibly nested) ``Subset`` into the full data.

    Parameters
    ----------
    dataset : torch.utils.data.Dataset
        The dataset, a ``Subset`` or a plain dataset of ``n_total`` items.
    n_total : int
        Size of the full data the indices refer to.

    Returns
    -------
    indices : ndarray of shape (len(dataset),)
    """
    if isinstance(dataset, Subset):
        inner = dataset_indices(dataset.dataset, n_total)
        return inner[np.asarray(dataset.indices, dtype=int)]
    if len(dataset) != n_total:
        raise ValueError(
            f"groups has {n_total} entries but the dataset has {len(dataset)} "
            "samples; pass one group per sample of the data given to fit."
        )
    return np.arange(n_total)


def dataset_labels(dataset):
    """Labels of a dataset of ``(X, y)`` pairs as a 1-D numpy array.

    Reads ``y`` directly from skorch datasets, tensor datasets and subsets of
    them; other datasets are iterated item by item.
    """
    if isinstance(dataset, Subset):
        return dataset_labels(dataset.dataset)[np.asarray(dataset.indices, dtype=int)]
    y = getattr(dataset, "y", None)
    if y is None and hasattr(dataset, "tensors") and len(dataset.tensors) > 1:
        y = dataset.tensors[1]
    if y is None:
        y = [dataset[i][1] for i in range(len(dataset))]
        if any(label is None for label in y):
            raise ValueError(
                "Balanced batches need labels, but the dataset yields no y; "
                "pass y to fit."
            )
    if isinstance(y, torch.Tensor):
        y = y.detach().cpu().numpy()
    return np.asarray(y).reshape(len(dataset), -1)[:, 0]


class _CyclingStream:
    """Reads an index pool in random order, reshuffling whenever it runs out."""

    def __init__(self, pool, rng):
        self.pool = pool
        self.rng = rng
        self.order = rng.permutation(pool)
        self.position = 0

    def take(self, n):
        taken = []
        while n > 0:
            if self.position == len(self.order):
                self.order = self.rng.permutation(self.pool)
                self.position = 0
            step = min(n, len(self.order) - self.position)
            taken.extend(self.order[self.position : self.position + step].tolist())
            self.position += step
            n -= step
        return taken


def _allocate(n, shares, rng):
    """Split ``n`` slots by ``shares``; leftover slots go to random entries."""
    exact = n * np.asarray(shares)
    counts = np.floor(exact).astype(int)
    leftover = n - counts.sum()
    if leftover:
        remainders = exact - counts
        chosen = rng.choice(
            len(shares), size=leftover, replace=False, p=remainders / remainders.sum()
        )
        counts[chosen] += 1
    return counts
