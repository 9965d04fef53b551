"""A CFKD fit with a working folder survives interruptions and resumes exactly."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import make_bars, tiny_cfkd


class FlakyTeacher:
    """Answers like ``teacher`` but is interrupted at call ``fail_at``.

    Records the number of images of each call it answered.
    """

    def __init__(self, teacher, fail_at=None):
        self.teacher = teacher
        self.fail_at = fail_at
        self.calls = []

    def __call__(self, X):
        if self.fail_at is not None and len(self.calls) == self.fail_at:
            raise KeyboardInterrupt
        self.calls.append(len(X))
        return self.teacher(X)


def fit(teacher, **params):
    X, y, _ = make_bars(random_state=0)
    return tiny_cfkd(teacher=teacher, n_rounds=2, **params).fit(X, y)


@pytest.fixture(scope="module")
def uninterrupted(oracle_teacher):
    teacher = FlakyTeacher(oracle_teacher)
    return fit(teacher), teacher.calls


def test_work_dir_alone_changes_nothing(oracle_teacher, uninterrupted, tmp_path):
    reference, calls = uninterrupted
    teacher = FlakyTeacher(oracle_teacher)
    clf = fit(teacher, work_dir=tmp_path)
    X_test = make_bars(random_state=1, independent=True)[0]
    np.testing.assert_array_equal(
        clf.predict_proba(X_test), reference.predict_proba(X_test)
    )
    assert teacher.calls == calls


@pytest.mark.parametrize("interruptions", [(0,), (2,), (1, 3), (5, 2)])
def test_interrupted_fit_resumes_to_the_same_model(
    oracle_teacher, uninterrupted, interruptions, tmp_path
):
    reference, calls = uninterrupted
    asked = []
    for fail_at in interruptions:
        teacher = FlakyTeacher(oracle_teacher, fail_at)
        with pytest.raises(KeyboardInterrupt):
            fit(teacher, work_dir=tmp_path)
        asked += teacher.calls
    teacher = FlakyTeacher(oracle_teacher)
    resumed = fit(teacher, work_dir=tmp_path)
    asked += teacher.calls

    # Every question was asked once over all attempts, in the same batches.
    assert asked == calls
    X_test = make_bars(random_state=1, independent=True)[0]
    np.testing.assert_array_equal(
        resumed.predict_proba(X_test), reference.predict_proba(X_test)
    )
    for key, values in reference.counterfactuals_.items():
        np.testing.assert_array_equal(
            resumed.counterfactuals_[key], values, err_msg=key
        )
    assert [h["accepted"] for h in resumed.history_] == [
        h["accepted"] for h in reference.history_
    ]
    # The base classifier was loaded from the folder, not trained again:
    # a loaded skorch net has no training history.
    assert len(resumed.base_net_.history) == 0
    assert len(reference.base_net_.history) == 5


def test_a_finished_run_asks_nothing_again(oracle_teacher, tmp_path):
    first = fit(FlakyTeacher(oracle_teacher), work_dir=tmp_path)
    teacher = FlakyTeacher(oracle_teacher)
    again = fit(teacher, work_dir=tmp_path)
    assert teacher.calls == []
    X_test = make_bars(random_state=1, independent=True)[0]
    np.testing.assert_array_equal(again.predict(X_test), first.predict(X_test))


def test_unseeded_run_resumes_its_own_split(oracle_teacher, tmp_path):
    with pytest.raises(KeyboardInterrupt):
        fit(FlakyTeacher(oracle_teacher, 1), work_dir=tmp_path, random_state=None)
    finished = fit(FlakyTeacher(oracle_teacher), work_dir=tmp_path, random_state=None)
    teacher = FlakyTeacher(oracle_teacher)
    again = fit(teacher, work_dir=tmp_path, random_state=None)
    assert teacher.calls == []
    X_test = make_bars(random_state=1, independent=True)[0]
    np.testing.assert_array_equal(
        again.predict_proba(X_test), finished.predict_proba(X_test)
    )


def test_folder_of_another_run_is_refused(oracle_teacher, tmp_path):
    X, y, _ = make_bars(random_state=0)
    tiny_cfkd(teacher=oracle_teacher, work_dir=tmp_path).fit(X, y)
    with pytest.raises(ValueError, match="other data"):
        tiny_cfkd(teacher=oracle_teacher, work_dir=tmp_path).fit(X[:-1], y[:-1])
    with pytest.raises(ValueError, match="other parameters"):
        tiny_cfkd(teacher=oracle_teacher, work_dir=tmp_path, n_counterfactuals=10).fit(
            X, y
        )
    # Another teacher (say a person instead of an oracle) may take over.
    tiny_cfkd(teacher=FlakyTeacher(oracle_teacher), work_dir=tmp_path, verbose=0).fit(
        X, y
    )


def test_folder_holds_no_pickles(oracle_teacher, tmp_path):
    fit(oracle_teacher, work_dir=tmp_path)
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))
    assert "run.json" in files
    assert {"stages/base.npz", "stages/round1-finetune.npz"} <= set(files)
    assert all(f.endswith((".npz", ".json")) or f == "stages" for f in files)
    assert set(json.loads((tmp_path / "run.json").read_text())) == {
        "data",
        "parameters",
    }


def test_resume_benchmark_ends_with_the_same_model():
    script = Path(__file__).parents[1] / "benchmarks" / "resume.py"
    result = subprocess.run(
        [sys.executable, str(script), "--quick", "--threads", "1"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "the same model as the one without a folder: True" in result.stdout
    assert re.search(r"on the finished folder\s+[\d.]+ s\s+0 calls", result.stdout)
