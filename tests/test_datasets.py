"""The confounded digits generator."""

import numpy as np
import pytest

from imbcfkd.datasets import GROUP_NAMES, make_confounded_digits


@pytest.fixture(scope="module")
def data():
    return make_confounded_digits(
        n_minority=60, imbalance_ratio=5, n_test_minority=100, random_state=0
    )


def test_sizes_and_class_ratio(data):
    assert data.train.X.shape == (360, 3, 16, 16)
    assert data.train.X.dtype == np.float32
    assert np.bincount(data.train.y).tolist() == [300, 60]
    # The test set keeps the class ratio of the training set.
    assert np.bincount(data.test.y).tolist() == [500, 100]
    assert np.bincount(data.validation.y).tolist() == [250, 50]
    assert np.bincount(data.oracle.y).tolist() == [500, 500]
    for part in ("train", "validation", "test", "oracle"):
        X = data[part].X
        assert X.min() >= 0 and X.max() <= 1


def test_classes_are_digit_shapes(data):
    for part in ("train", "test"):
        minority_digits = set(data[part].digit[data[part].y == 1].tolist())
        assert minority_digits == {0, 3, 6, 8, 9}
        assert set(data[part].digit[data[part].y == 0].tolist()) == {1, 2, 4, 5, 7}


@pytest.mark.parametrize("minority, majority", [(0.9, 0.1), (0.7, 0.3)])
def test_confounder_prevalence_is_what_was_asked(minority, majority):
    data = make_confounded_digits(
        n_minority=80,
        imbalance_ratio=4,
        minority_prevalence=minority,
        majority_prevalence=majority,
        random_state=1,
    )
    train = data.train
    # Prevalences are exact up to rounding, well inside sampling error.
    assert train.confounder[train.y == 1].mean() == pytest.approx(minority, abs=0.01)
    assert train.confounder[train.y == 0].mean() == pytest.approx(majority, abs=0.01)
    # Test and oracle sets make the confounder independent of the class.
    for part in (data.test, data.oracle):
        for label in (0, 1):
            assert part.confounder[part.y == label].mean() == pytest.approx(
                0.5, abs=0.01
            )


def test_groups_combine_class_and_confounder(data):
    train = data.train
    np.testing.assert_array_equal(train.groups, 2 * train.y + train.confounder)
    assert len(GROUP_NAMES) == 4 and data.group_names == GROUP_NAMES
    assert set(np.unique(data.test.groups)) == {0, 1, 2, 3}


def test_sets_come_from_disjoint_source_digits(data):
    train = set(data.train.source.tolist())
    validation = set(data.validation.source.tolist())
    test = set(data.test.source.tolist())
    assert not train & validation
    assert not train & test
    assert not validation & test
    # The oracle learns from the training half of the source digits only: with
    # validation and test sets this large, they use every digit of their
    # quarters, and the oracle still shares none of them.
    large = make_confounded_digits(
        n_minority=20,
        imbalance_ratio=1,
        n_validation_minority=1500,
        n_test_minority=1500,
        random_state=0,
    )
    held_out = set(large.validation.source.tolist()) | set(large.test.source.tolist())
    assert len(held_out) > 0.49 * 1797
    assert not set(large.oracle.source.tolist()) & held_out


def test_jitter_makes_distinct_images_from_one_source(data):
    train = data.train
    source = np.bincount(train.source).argmax()
    copies = train.X[train.source == source]
    assert len(copies) >= 2
    assert not np.allclose(copies[0], copies[1])


def test_confounders_are_visible_where_expected():
    colour = make_confounded_digits(
        n_minority=50, imbalance_ratio=2, random_state=0, confounder="colour"
    ).test
    # A colour cast raises red and lowers blue in the background.
    corner = colour.X[:, :, :2, :2].mean(axis=(2, 3))
    warmth = corner[:, 0] - corner[:, 2]
    assert warmth[colour.confounder].min() > warmth[~colour.confounder].max()

    stamp = make_confounded_digits(
        n_minority=50, imbalance_ratio=2, random_state=0, confounder="stamp"
    ).test
    top_right = stamp.X[:, 2, 1:3, -3:-1].mean(axis=(1, 2))
    assert top_right[stamp.confounder].min() > top_right[~stamp.confounder].max()


def test_same_seed_same_data_and_other_seed_other_data():
    first = make_confounded_digits(n_minority=10, imbalance_ratio=2, random_state=5)
    second = make_confounded_digits(n_minority=10, imbalance_ratio=2, random_state=5)
    third = make_confounded_digits(n_minority=10, imbalance_ratio=2, random_state=6)
    np.testing.assert_array_equal(first.train.X, second.train.X)
    np.testing.assert_array_equal(first.test.groups, second.test.groups)
    assert not np.array_equal(first.train.X, third.train.X)


def test_image_size_and_bad_arguments():
    data = make_confounded_digits(
        n_minority=5, imbalance_ratio=2, image_size=32, random_state=0
    )
    assert data.train.X.shape[1:] == (3, 32, 32)
    with pytest.raises(ValueError, match="confounder"):
        make_confounded_digits(confounder="watermark")
    with pytest.raises(ValueError, match="imbalance_ratio"):
        make_confounded_digits(imbalance_ratio=0.5)
