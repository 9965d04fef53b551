"""Teachers."""

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression

from imbcfkd import CFKDClassifier
from imbcfkd.teachers import OUT_OF_DISTRIBUTION, OracleTeacher, is_out_of_distribution


@pytest.fixture
def oracle():
    X = np.linspace(-3, 3, 40).reshape(-1, 1)
    return LogisticRegression().fit(X, np.where(X[:, 0] > 0, "yes", "no"))


def test_oracle_teacher_answers_in_the_label_space(oracle):
    labels = OracleTeacher(oracle)(np.array([[-2.0], [2.0]]))
    assert labels.tolist() == ["no", "yes"]


def test_oracle_teacher_abstains_when_unsure(oracle):
    teacher = OracleTeacher(oracle, min_confidence=0.9)
    labels = teacher(np.array([[-3.0], [0.01], [3.0]]))
    assert labels.tolist() == ["no", OUT_OF_DISTRIBUTION, "yes"]
    assert is_out_of_distribution(labels).tolist() == [False, True, False]


def test_noisy_oracle_flips_at_the_requested_rate(oracle):
    X = np.full((2000, 1), 3.0)
    labels = OracleTeacher(oracle, flip_probability=0.1, random_state=0)(X)
    assert np.mean(labels == "no") == pytest.approx(0.1, abs=0.02)
    with pytest.raises(ValueError, match="flip_probability"):
        OracleTeacher(oracle, flip_probability=2)(X)


def test_unfitted_oracle_is_refused():
    with pytest.raises(ValueError, match="fit the oracle first"):
        OracleTeacher(LogisticRegression())(np.zeros((1, 1)))


def test_clone_keeps_the_fitted_oracle(oracle):
    clf = CFKDClassifier(teacher=OracleTeacher(oracle))
    copied = clone(clf).teacher
    assert copied is not clf.teacher
    assert copied(np.array([[2.0]])).tolist() == ["yes"]
