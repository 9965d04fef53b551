"""Balanced batches: exact balance, cycling, group shares and skorch splits."""

import numpy as np
import pytest
import torch
from imblearn.over_sampling import SMOTE
from imblearn.under_sampling import RandomUnderSampler
from skorch import NeuralNetClassifier
from skorch.dataset import Dataset, ValidSplit
from torch.utils.data import Subset

from imbcfkd.networks import MLP
from imbcfkd.sampling import (
    BalancedBatchLoader,
    BalancedBatchSampler,
    ImageResampler,
    dataset_labels,
)


def test_every_batch_is_class_balanced_and_majority_is_covered():
    labels = np.r_[np.zeros(90, int), np.ones(10, int)]
    sampler = BalancedBatchSampler(labels, batch_size=20, seed=0)
    batches = list(sampler)

    assert len(batches) == len(sampler) == 5
    for batch in batches:
        assert len(batch) == 20
        assert np.bincount(labels[batch], minlength=2).tolist() == [10, 10]
    # 50 majority draws over 90 samples: no majority sample repeats in an epoch.
    majority = [i for b in batches for i in b if labels[i] == 0]
    assert len(set(majority)) == 50
    # The 10 minority samples are cycled: each appears five times.
    minority = [i for b in batches for i in b if labels[i] == 1]
    assert np.bincount(minority)[90:].tolist() == [5] * 10


def test_each_epoch_continues_with_new_batches():
    labels = np.r_[np.zeros(80, int), np.ones(20, int)]
    sampler = BalancedBatchSampler(labels, batch_size=20, seed=0)
    first, second = list(sampler), list(sampler)
    assert first != second
    # Over two epochs the 80 majority samples are all seen (50 draws each).
    majority = {i for batch in first + second for i in batch if labels[i] == 0}
    assert majority == set(range(80))


def test_odd_batch_size_balances_on_average():
    labels = np.r_[np.zeros(300, int), np.ones(30, int)]
    sampler = BalancedBatchSampler(labels, batch_size=7, n_batches=400, seed=1)
    counts = np.array([np.bincount(labels[b], minlength=2) for b in sampler])
    assert set(counts[:, 1].tolist()) == {3, 4}
    assert counts[:, 1].mean() == pytest.approx(3.5, abs=0.15)


def test_group_shares_fix_the_mix_and_classes_balance_inside_groups():
    labels = np.r_[np.zeros(80, int), np.ones(20, int), np.zeros(10, int), [1] * 10]
    groups = np.r_[np.zeros(100, int), np.ones(20, int)]
    sampler = BalancedBatchSampler(
        labels, 16, groups=groups, group_shares={0: 0.75, 1: 0.25}, seed=0
    )
    for batch in sampler:
        batch = np.asarray(batch)
        in_group = groups[batch] == 1
        assert in_group.sum() == 4
        assert np.bincount(labels[batch][in_group], minlength=2).tolist() == [2, 2]
        assert np.bincount(labels[batch][~in_group], minlength=2).tolist() == [6, 6]


def test_sampler_is_reproducible_from_torch_seed():
    labels = np.r_[np.zeros(50, int), np.ones(5, int)]
    torch.manual_seed(3)
    first = list(BalancedBatchSampler(labels, 8))
    torch.manual_seed(3)
    second = list(BalancedBatchSampler(labels, 8))
    third = list(BalancedBatchSampler(labels, 8))
    assert first == second
    assert first != third


def test_sampler_rejects_bad_arguments():
    with pytest.raises(ValueError, match="non-empty 1-D"):
        BalancedBatchSampler([], 4)
    with pytest.raises(ValueError, match="one group per sample"):
        BalancedBatchSampler([0, 1], 2, groups=[0])
    with pytest.raises(ValueError, match="group_shares"):
        BalancedBatchSampler([0, 1], 2, groups=[0, 1], group_shares={2: 1.0})


def test_loader_reads_labels_of_the_training_subset_only():
    X = np.zeros((12, 2), dtype=np.float32)
    y = np.r_[np.zeros(10, int), np.ones(2, int)]
    subset = Subset(Dataset(X, y), [0, 1, 2, 3, 10])
    assert dataset_labels(subset).tolist() == [0, 0, 0, 0, 1]

    loader = BalancedBatchLoader(subset, batch_size=4)
    for _X_batch, y_batch in loader:
        assert y_batch.tolist().count(1) == 2
    with pytest.raises(ValueError, match="remove iterator_train__shuffle"):
        BalancedBatchLoader(subset, batch_size=4, shuffle=True)


def test_loader_works_with_skorch_internal_validation_split():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(110, 5)).astype(np.float32)
    y = np.r_[np.zeros(100, int), np.ones(10, int)]
    seen = []

    class RecordingLoader(BalancedBatchLoader):
        def __iter__(self):
            for X_batch, y_batch in super().__iter__():
                seen.append(y_batch.numpy())
                yield X_batch, y_batch

    net = NeuralNetClassifier(
        MLP,
        module__input_shape=(5,),
        iterator_train=RecordingLoader,
        train_split=ValidSplit(5, stratified=True),
        max_epochs=2,
        batch_size=16,
    )
    net.fit(X, y)

    # 88 training samples (8 minority) after the split: 6 batches of 16.
    assert len(seen) == 12
    assert all(batch.tolist().count(1) == 8 for batch in seen)
    assert "valid_loss" in net.history[-1]


def test_image_resampler_keeps_image_shape():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(30, 3, 8, 8))
    y = np.r_[np.zeros(24, int), np.ones(6, int)]
    X_under, y_under = ImageResampler(RandomUnderSampler(random_state=0)).fit_resample(
        X, y
    )
    assert X_under.shape == (12, 3, 8, 8)
    assert np.bincount(y_under).tolist() == [6, 6]
    # Every undersampled image is one of the originals, unchanged.
    flat = X.reshape(30, -1)
    for image in X_under.reshape(12, -1):
        assert np.any(np.all(flat == image, axis=1))

    X_smote, y_smote = ImageResampler(
        SMOTE(k_neighbors=3, random_state=0)
    ).fit_resample(X, y)
    assert X_smote.shape == (48, 3, 8, 8)
    assert np.bincount(y_smote).tolist() == [24, 24]
