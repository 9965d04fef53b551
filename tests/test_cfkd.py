"""The CFKD loop: correction of a shortcut, fitted state, cascade and errors."""

import collections
import copy

import numpy as np
import pytest
import skorch
import torch
from conftest import group_accuracies, tiny_cfkd
from sklearn.datasets import load_digits
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from skorch.dataset import Dataset as SkorchDataset
from skorch.dataset import ValidSplit
from torch.utils.data import Subset

from imbcfkd import (
    OUT_OF_DISTRIBUTION,
    CFKDClassifier,
    CounterfactualWarning,
    GradientExplainer,
    OracleTeacher,
    make_net,
)
from imbcfkd.cfkd import _finetuning_loader
from imbcfkd.sampling import BalancedBatchSampler


@pytest.fixture(scope="module")
def corrected(bars, oracle_teacher):
    # The default schedule (4 rounds of 2 epochs), with 50 counterfactuals a
    # round for these small images.
    X, y = bars[:2]
    clf = CFKDClassifier(
        teacher=oracle_teacher,
        net=make_net(max_epochs=10),
        n_counterfactuals=50,
        random_state=1,
    )
    return clf.fit(X, y)


def test_cfkd_repairs_the_group_without_the_shortcut(bars, corrected):
    *_, X_test, y_test, cast_test = bars
    base = group_accuracies(
        y_test, corrected.classes_[corrected.base_net_.predict(X_test)], cast_test
    )
    after = group_accuracies(y_test, corrected.predict(X_test), cast_test)

    # The base model learned "colour cast means minority": it misses most
    # minority images without the cast. CFKD's false counterfactuals fix it.
    assert base[(1, False)] < 0.5
    assert after[(1, False)] > base[(1, False)] + 0.3
    assert min(after.values()) > min(base.values()) + 0.3
    assert len(corrected.history_) == 4
    assert any(entry["accepted"] for entry in corrected.history_)
    assert corrected.net_ is not corrected.base_net_


def test_fitted_state_describes_every_counterfactual(bars, corrected):
    X, y = bars[:2]
    records = corrected.counterfactuals_
    n = 200
    assert set(records) >= {
        "source",
        "counterfactual",
        "source_label",
        "target_label",
        "teacher_label",
        "flipped",
        "kept",
        "reason",
        "verdict",
        "round",
        "source_index",
    }
    assert all(len(values) == n for values in records.values())
    assert records["counterfactual"].shape == (n, 3, 8, 8)
    # Sources alternate between the classes whatever their frequency.
    assert collections.Counter(records["source_label"].tolist()) == {0: 100, 1: 100}
    assert np.all(records["target_label"] != records["source_label"])
    # By default only false counterfactuals are kept, with the source label.
    kept = records["kept"]
    assert set(records["verdict"][kept]) == {"false"}
    np.testing.assert_array_equal(
        records["teacher_label"][kept].astype(int), records["source_label"][kept]
    )
    assert set(records["reason"][~kept]) <= {
        "true_counterfactual_not_kept",
        "not_flipped",
        "teacher_wrong_on_source",
    }

    # One summary per round, each describing that round's records; later
    # rounds replay the counterfactuals kept before them.
    np.testing.assert_array_equal(np.bincount(records["round"].astype(int)), [50] * 4)
    n_replayed = 0
    for index, entry in enumerate(corrected.history_):
        rows = records["round"] == index
        judged = rows & (records["verdict"] != "")
        n_replayed += kept[rows].sum()
        assert entry["n_counterfactuals"] == 50
        assert entry["flip_rate"] == pytest.approx(records["flipped"][rows].mean())
        assert entry["feedback_accuracy"] == pytest.approx(
            np.mean(records["verdict"][judged] == "true")
        )
        assert entry["n_kept"] == kept[rows].sum()
        assert entry["n_replayed"] == n_replayed
        assert entry["seconds"] > 0 and entry["counterfactuals_per_second"] > 0
    assert corrected.history_[0]["score_after"] > corrected.history_[0]["score_before"]
    assert corrected.classes_.tolist() == [0, 1]
    assert corrected.n_features_in_ == 3 * 8 * 8


class _LazyExplainer(GradientExplainer):
    """Leaves every fourth source unchanged."""

    def explain(self, net, X, target):
        counterfactuals, reached = super().explain(net, X, target)
        counterfactuals[::4] = X[::4]
        reached[::4] = False
        return counterfactuals, reached


class _UnsureTeacher:
    """A noisy oracle that cannot tell every third counterfactual.

    CFKD asks about the sources first and their counterfactuals second, so
    every second call is about counterfactuals.
    """

    def __init__(self, oracle):
        self.oracle = oracle
        self.calls = 0

    def __call__(self, images):
        self.calls += 1
        labels = self.oracle(images)
        if self.calls % 2 == 0:
            labels[::3] = OUT_OF_DISTRIBUTION
        return labels


def test_rejection_cascade_records_each_reason(bars, oracle_teacher):
    X, y = bars[:2]
    noisy = OracleTeacher(
        oracle_teacher.classifier, flip_probability=0.2, random_state=0
    )
    clf = tiny_cfkd(
        teacher=_UnsureTeacher(noisy),
        explainer=_LazyExplainer(steps=20),
        n_counterfactuals=60,
    ).fit(X, y)
    records = clf.counterfactuals_
    reason = records["reason"]

    assert set(reason) == {
        "",
        "teacher_wrong_on_source",
        "not_flipped",
        "out_of_distribution",
        "true_counterfactual_not_kept",
    }
    not_flipped = reason == "not_flipped"
    assert not records["flipped"][not_flipped].any()
    assert not_flipped.sum() >= 60 // 4 - np.sum(
        reason[::4] == "teacher_wrong_on_source"
    )
    for unasked in ("teacher_wrong_on_source", "not_flipped", "out_of_distribution"):
        assert all(
            label is None for label in records["teacher_label"][reason == unasked]
        )
    assert np.all(records["flipped"][reason == "out_of_distribution"])
    assert set(records["verdict"][reason == ""]) == {"false"}
    assert set(records["verdict"][reason == "true_counterfactual_not_kept"]) <= {
        "true",
        "other",
    }


def test_true_counterfactuals_can_be_kept_with_their_target_label(bars):
    # A teacher that always answers 0: counterfactuals of class-1 sources (target
    # 0) are true, those of class-0 sources (target 1) are false.
    def always_zero(images):
        return np.zeros(len(images), dtype=int)

    clf = tiny_cfkd(
        teacher=always_zero,
        keep_true_counterfactuals=True,
        teacher_checks_sources=False,
    ).fit(*bars[:2])
    records = clf.counterfactuals_
    flipped = records["flipped"]
    assert flipped.any()
    source = records["source_label"].astype(int)
    expected = np.where(source == 1, "true", "false")
    np.testing.assert_array_equal(records["verdict"][flipped], expected[flipped])
    np.testing.assert_array_equal(records["kept"], flipped)
    assert set(records["teacher_label"][flipped]) == {0}


@pytest.mark.parametrize("share", [0.25, 0.75])
def test_counterfactual_share_sets_the_mix_of_finetuning_batches(
    bars, oracle_teacher, monkeypatch, share
):
    shares = []
    original_iter = BalancedBatchSampler.__iter__

    def recording_iter(self):
        group_of = {
            i: g for g, cells in enumerate(self._cells) for cell in cells for i in cell
        }
        for batch in original_iter(self):
            shares.append(np.mean([group_of[i] for i in batch]))
            yield batch

    monkeypatch.setattr(BalancedBatchSampler, "__iter__", recording_iter)
    tiny_cfkd(
        teacher=oracle_teacher,
        counterfactual_share=share,
        finetune_epochs=2,
        net=make_net(max_epochs=5, module__width=8, batch_size=32),
    ).fit(*bars[:2])

    finetuning = [s for s in shares if s > 0]
    assert len(finetuning) >= 2
    assert np.mean(finetuning) == pytest.approx(share, abs=0.05)


def test_finetuning_continues_from_the_base_weights(bars, oracle_teacher):
    clf = tiny_cfkd(teacher=oracle_teacher, finetune_epochs=2).fit(*bars[:2])
    assert clf.history_[0]["accepted"]
    # The fine-tuned net carries the base net's epochs plus its own.
    assert len(clf.base_net_.history) == 5
    assert len(clf.net_.history) == 5 + 2


def test_base_model_is_kept_when_finetuning_does_not_help(bars, oracle_teacher):
    # A learning rate of 1e-12 leaves the (batch-norm free) MLP as it was, so
    # the fine-tuned model scores exactly as the base: the base is kept.
    X, y = bars[:2]
    clf = tiny_cfkd(
        teacher=oracle_teacher, net=make_net("mlp", max_epochs=5), finetune_lr=1e-12
    ).fit(X.reshape(len(X), -1), y)
    entry = clf.history_[0]
    assert entry["n_kept"] > 0
    assert entry["score_after"] == entry["score_before"]
    assert not entry["accepted"]
    assert clf.net_ is clf.base_net_


def test_later_rounds_replay_earlier_counterfactuals(bars, oracle_teacher, monkeypatch):
    pool_sizes = []
    original_init = BalancedBatchSampler.__init__

    def recording_init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        if len(self._cells) == 2:
            pool_sizes.append(sum(len(cell) for cell in self._cells[1]))

    monkeypatch.setattr(BalancedBatchSampler, "__init__", recording_init)
    clf = tiny_cfkd(teacher=oracle_teacher, n_rounds=2).fit(*bars[:2])
    first, second = clf.history_
    assert first["n_kept"] > 0
    # The second fine-tuning draws from the counterfactuals of both rounds.
    assert pool_sizes == [first["n_kept"], first["n_kept"] + second["n_kept"]]
    assert second["n_replayed"] == first["n_kept"] + second["n_kept"]
    assert set(clf.counterfactuals_["round"]) == {0, 1}


def test_source_index_points_at_rows_of_x(bars, corrected):
    X = bars[0]
    records = corrected.counterfactuals_
    np.testing.assert_array_equal(X[records["source_index"]], records["source"])


def test_finetuning_learning_rate(bars, oracle_teacher):
    X, y = bars[:2]
    kept_lr = tiny_cfkd(teacher=oracle_teacher, finetune_epochs=1).fit(X, y)
    assert kept_lr.history_[0]["accepted"]
    assert kept_lr.net_.optimizer_.param_groups[0]["lr"] == 1e-3
    own_lr = tiny_cfkd(teacher=oracle_teacher, finetune_lr=0.02).fit(X, y)
    assert own_lr.history_[0]["n_kept"] > 0
    finetuned = copy.deepcopy(own_lr.base_net_)
    own_lr._finetune(finetuned, (X[:40], y[:40]), (X[:8], y[:8]))
    assert own_lr.base_net_.optimizer_.param_groups[0]["lr"] == 1e-3


def test_finetuning_works_with_the_nets_own_validation_split(bars, oracle_teacher):
    net = make_net(
        max_epochs=5, batch_size=16, module__width=8, train_split=ValidSplit(4)
    )
    clf = tiny_cfkd(teacher=oracle_teacher, net=net).fit(*bars[:2])
    assert clf.history_[0]["n_kept"] > 0
    assert "valid_loss" in clf.base_net_.history[-1]


def test_finetuning_loader_skips_groups_missing_from_a_split():
    X = np.zeros((12, 2), dtype=np.float32)
    y = np.array([0, 1] * 6)
    groups = np.r_[np.zeros(8, int), np.ones(4, int)]
    subset = Subset(SkorchDataset(X, y), np.arange(8))
    loader = _finetuning_loader(subset, 4, groups, {0: 0.5, 1: 0.5})
    assert all(len(batch[1]) == 4 for batch in loader)


def test_a_finetuning_epoch_shows_each_original_once_whatever_the_pool(
    bars, oracle_teacher
):
    X, y = bars[:2]
    for n_pool in (40, 400):
        X_all = np.concatenate([X, np.resize(X, (n_pool,) + X.shape[1:])])
        y_all = np.r_[y, np.resize(y, n_pool)]
        groups = np.r_[np.zeros(len(y), int), np.ones(n_pool, int)]
        loader = _finetuning_loader(
            SkorchDataset(X_all, y_all), 16, groups, {0: 0.75, 1: 0.25}
        )
        # 12 originals a batch: the 240 originals take 20 batches.
        assert [len(batch[1]) for batch in loader] == [16] * 20

    # Each round fine-tunes for finetune_epochs such epochs, while the pool
    # of counterfactuals grows.
    clf = tiny_cfkd(
        teacher=oracle_teacher,
        n_rounds=2,
        finetune_epochs=3,
        validation_fraction=None,
    ).fit(X, y)
    assert clf.history_[1]["n_replayed"] > clf.history_[0]["n_kept"] > 0
    epochs = clf.net_.history[-6:]
    assert [len(epoch["batches"]) for epoch in epochs] == [len(y) // 8] * 6


def test_no_round_trains_on_all_data(bars):
    X, y = bars[:2]
    clf = tiny_cfkd(n_rounds=0).fit(X, y)
    assert clf.history_ == []
    # 240 samples in batches of 16: no validation share was held out.
    assert len(clf.base_net_.history[-1]["batches"]) == 15


def test_verbose_two_shows_the_explainers_progress(bars, oracle_teacher, capsys):
    clf = tiny_cfkd(teacher=oracle_teacher, verbose=2).fit(*bars[:2])
    assert clf.explainer_.verbose == 1
    assert "counterfactuals" in capsys.readouterr().err


def test_labels_of_any_type(bars, oracle_teacher):
    X, y = bars[:2]
    for names in (np.array(["dog", "cat"]), np.array([-1, 1])):
        labelled = names[y]

        def teacher(images, names=names):
            return names[oracle_teacher(images).astype(int)]

        clf = tiny_cfkd(teacher=teacher).fit(X, labelled)
        assert set(clf.classes_) == set(names)
        assert set(clf.predict(X)) <= set(names)
        assert set(clf.counterfactuals_["source_label"]) == set(names)
        assert np.mean(clf.predict(X) == labelled) > 0.8


def test_more_than_two_classes_move_to_the_most_likely_other_class():
    digits = load_digits()
    keep = digits.target < 3
    X = (digits.data[keep] / 16.0).astype(np.float32)
    y = digits.target[keep]
    teacher = OracleTeacher(LogisticRegression(max_iter=500).fit(X, y))
    clf = tiny_cfkd(
        teacher=teacher,
        input_shape=(1, 8, 8),
        n_counterfactuals=30,
        net=make_net(max_epochs=5, module__width=8),
    ).fit(X, y)
    records = clf.counterfactuals_

    assert collections.Counter(records["source_label"].tolist()) == {
        0: 10,
        1: 10,
        2: 10,
    }
    # Round one explains the base classifier.
    student_proba = clf.base_net_.predict_proba(records["source"].reshape(-1, 1, 8, 8))
    student_proba[np.arange(30), records["source_label"]] = -1
    np.testing.assert_array_equal(records["target_label"], student_proba.argmax(1))
    assert np.mean(clf.predict(X) == y) > 0.9
    assert clf.predict_proba(X).shape == (len(X), 3)


@pytest.fixture
def no_training(monkeypatch):
    """Make any training fail, to show an error comes before it."""

    def refuse(*args, **kwargs):
        raise AssertionError("training started before the input was checked")

    monkeypatch.setattr(skorch.NeuralNet, "fit", refuse)


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (
            lambda X, y: (
                np.where(np.arange(X.size).reshape(X.shape) == 5, np.nan, X),
                y,
            ),
            "NaN",
        ),
        (
            lambda X, y: (
                np.where(np.arange(X.size).reshape(X.shape) == 5, np.inf, X),
                y,
            ),
            "infinity",
        ),
        (lambda X, y: (X[:, 0], y), "Add a channel axis"),
        (lambda X, y: (X, np.zeros_like(y)), "at least two classes"),
        (lambda X, y: (X, y.astype(float) + 0.5), "Unknown label type"),
    ],
    ids=["nan", "inf", "three_dims", "one_class", "continuous_y"],
)
def test_bad_input_fails_before_training(
    bars, oracle_teacher, no_training, corrupt, message
):
    X, y = corrupt(*bars[:2])
    with pytest.raises(ValueError, match=message):
        tiny_cfkd(teacher=oracle_teacher).fit(X, y)


def test_misconfigured_estimator_fails_before_training(bars, no_training):
    X, y = bars[:2]
    with pytest.raises(ValueError, match="needs a teacher"):
        tiny_cfkd().fit(X, y)
    with pytest.raises(ValueError, match="explainer"):
        tiny_cfkd(teacher=lambda images: None, explainer=object()).fit(X, y)
    with pytest.raises(ValueError, match="input_shape=\\(3, 4, 4\\) holds 48"):
        tiny_cfkd(teacher=lambda images: None, input_shape=(3, 4, 4)).fit(
            X.reshape(len(X), -1), y
        )


class _ShapeBreakingExplainer:
    def explain(self, net, X, target):
        return X[:, :, :4], np.ones(len(X), dtype=bool)


def test_explainer_returning_wrong_shape_fails_before_training(bars, no_training):
    with pytest.raises(ValueError, match=r"must return counterfactuals of shape"):
        tiny_cfkd(teacher=lambda images: None, explainer=_ShapeBreakingExplainer()).fit(
            *bars[:2]
        )


@pytest.mark.parametrize(
    "teacher, message",
    [
        (lambda images: np.zeros(len(images) + 1, int), "returned 41 labels for 40"),
        (lambda images: np.full(len(images), 7), r"outside classes_ \[0, 1\]: \['7'\]"),
    ],
    ids=["wrong_count", "unknown_label"],
)
def test_misbehaving_teacher_gets_a_clear_error(bars, teacher, message):
    # The teacher is first asked about the 40 sources the classifier gets right.
    X, y = bars[:2]
    with pytest.raises(ValueError, match=message):
        tiny_cfkd(teacher=teacher, n_counterfactuals=40).fit(X, y)


class _IdleExplainer:
    def explain(self, net, X, target):
        return X.copy(), np.zeros(len(X), dtype=bool)


def test_explainer_that_flips_nothing_warns_and_keeps_the_base(bars, oracle_teacher):
    clf = tiny_cfkd(teacher=oracle_teacher, explainer=_IdleExplainer())
    with pytest.warns(CounterfactualWarning, match="flipped none"):
        clf.fit(*bars[:2])
    assert clf.net_ is clf.base_net_
    assert set(clf.counterfactuals_["reason"]) == {"not_flipped"}
    assert clf.history_[0]["flip_rate"] == 0


def test_teacher_that_cannot_tell_anything_warns_and_keeps_the_base(bars):
    clf = tiny_cfkd(
        teacher=lambda images: [OUT_OF_DISTRIBUTION] * len(images),
        teacher_checks_sources=False,
    )
    with pytest.warns(CounterfactualWarning, match="rejection cascade"):
        clf.fit(*bars[:2])
    assert clf.net_ is clf.base_net_
    assert "out_of_distribution" in set(clf.counterfactuals_["reason"])


def test_prediction_input_is_checked(bars, oracle_teacher):
    X, y = bars[:2]
    with pytest.raises(NotFittedError):
        tiny_cfkd(teacher=oracle_teacher).predict(X)
    clf = tiny_cfkd(teacher=oracle_teacher, n_counterfactuals=0).fit(X, y)
    with pytest.raises(ValueError, match=r"fitted on samples of shape \(3, 8, 8\)"):
        clf.predict(np.zeros((2, 3, 16, 16), dtype=np.float32))
    with pytest.raises(ValueError, match="NaN"):
        clf.predict(np.full((2, 3, 8, 8), np.nan))
    # Flattened images of the right size are accepted too.
    np.testing.assert_array_equal(clf.predict(X.reshape(len(X), -1)), clf.predict(X))


def test_same_random_state_gives_same_predictions(bars, oracle_teacher):
    X, y, _, X_test, *_ = bars
    state = torch.random.get_rng_state()
    first = tiny_cfkd(teacher=oracle_teacher, random_state=3).fit(X, y)
    # Fitting leaves PyTorch's global random state as it was.
    assert torch.equal(torch.random.get_rng_state(), state)
    second = tiny_cfkd(teacher=oracle_teacher, random_state=3).fit(X, y)
    other = tiny_cfkd(teacher=oracle_teacher, random_state=4).fit(X, y)

    np.testing.assert_array_equal(
        first.predict_proba(X_test), second.predict_proba(X_test)
    )
    np.testing.assert_array_equal(
        first.counterfactuals_["counterfactual"],
        second.counterfactuals_["counterfactual"],
    )
    assert not np.array_equal(first.predict_proba(X_test), other.predict_proba(X_test))


def test_exploration_gives_recycled_sources_new_explanations(bars, oracle_teacher):
    from imbcfkd.explainers import changed_region

    X, y = bars[:2]
    # 160 counterfactuals from about 32 minority sources: each is recycled.
    clf = tiny_cfkd(
        teacher=oracle_teacher, n_counterfactuals=160, explore_threshold=0.5
    ).fit(X, y)
    cf = clf.counterfactuals_
    index = cf["source_index"]
    minority = np.flatnonzero(y[index] == 1)
    firsts = {}
    n_repeats = 0
    for row in minority:
        source = index[row]
        if source not in firsts:
            firsts[source] = row
            continue
        n_repeats += 1
        first = firsts[source]
        region = changed_region(
            cf["source"][first : first + 1],
            cf["counterfactual"][first : first + 1],
            0.5,
        )[0]
        change = np.abs(cf["counterfactual"][row] - cf["source"][row])
        # A later counterfactual leaves the first one's region exactly alone.
        assert np.all(change[:, region] == 0)
    assert n_repeats > 20

    # Without exploration, a recycled source gets the same counterfactual.
    plain = tiny_cfkd(teacher=oracle_teacher, n_counterfactuals=160).fit(X, y)
    cf = plain.counterfactuals_
    rows = np.flatnonzero(cf["source_index"] == cf["source_index"][minority[0]])
    assert len(rows) > 1
    np.testing.assert_allclose(
        cf["counterfactual"][rows[1]], cf["counterfactual"][rows[0]]
    )


class _ExplainerWithoutLocks:
    def explain(self, net, X, target):
        return X.copy(), np.zeros(len(X), dtype=bool)


def test_exploration_needs_images_and_an_explainer_that_locks(bars, no_training):
    X, y = bars[:2]
    with pytest.raises(ValueError, match="explainer whose explain takes locked"):
        tiny_cfkd(
            teacher=lambda images: None,
            explainer=_ExplainerWithoutLocks(),
            explore_threshold=0.5,
        ).fit(X, y)
    with pytest.raises(ValueError, match="explore_threshold needs images"):
        tiny_cfkd(
            teacher=lambda images: None,
            net=make_net("mlp", input_shape=(X[0].size,), max_epochs=1),
            explore_threshold=0.5,
        ).fit(X.reshape(len(X), -1), y)
