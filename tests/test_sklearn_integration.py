"""CFKDClassifier inside scikit-learn and imbalanced-learn tooling."""

import pickle
import warnings

import numpy as np
import pytest
from conftest import tiny_cfkd
from imblearn.over_sampling import RandomOverSampler
from imblearn.pipeline import make_pipeline as make_imblearn_pipeline
from imblearn.under_sampling import RandomUnderSampler
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils.estimator_checks import parametrize_with_checks

from imbcfkd import (
    OUT_OF_DISTRIBUTION,
    BaselineClassifier,
    CFKDClassifier,
    GradientExplainer,
    make_net,
)
from imbcfkd.sampling import ImageResampler


def test_clone_and_nested_parameters(oracle_teacher):
    clf = tiny_cfkd(teacher=oracle_teacher)
    params = clf.get_params()
    assert params["net__lr"] == 1e-3
    assert params["explainer__steps"] == 20

    clf.set_params(net__lr=0.01, explainer__steps=7, n_rounds=2)
    copy = clone(clf)
    assert copy.net.lr == 0.01
    assert copy.explainer.steps == 7
    assert copy.n_rounds == 2
    assert copy.net is not clf.net


def test_pipeline_with_a_preprocessing_step(bars, oracle_teacher):
    X, y, _, X_test, y_test, _ = bars
    pipe = make_pipeline(
        FunctionTransformer(lambda images: images * 1.0),
        tiny_cfkd(teacher=oracle_teacher),
    )
    pipe.fit(X, y)
    assert pipe.score(X_test, y_test) > 0.5


def test_cross_val_score_with_stratified_folds(bars, oracle_teacher):
    X, y = bars[:2]
    scores = cross_val_score(
        tiny_cfkd(teacher=oracle_teacher),
        X,
        y,
        cv=StratifiedKFold(3, shuffle=True, random_state=0),
        scoring="balanced_accuracy",
    )
    assert scores.shape == (3,)
    assert np.all(scores > 0.6)


def test_grid_search_over_cfkd_and_net_parameters(bars, oracle_teacher):
    X, y = bars[:2]
    search = GridSearchCV(
        tiny_cfkd(teacher=oracle_teacher),
        {"counterfactual_share": [0.25, 0.5], "net__lr": [1e-3, 3e-3]},
        cv=StratifiedKFold(2, shuffle=True, random_state=0),
        scoring="balanced_accuracy",
    )
    search.fit(X, y)
    assert len(search.cv_results_["params"]) == 4
    best = search.best_estimator_
    assert best.base_net_.lr == search.best_params_["net__lr"]
    assert best.counterfactual_share == search.best_params_["counterfactual_share"]
    assert set(search.best_params_) == {"counterfactual_share", "net__lr"}
    assert search.best_estimator_.predict(X).shape == y.shape


def test_imblearn_pipeline_resamples_image_arrays(bars, oracle_teacher):
    X, y, _, X_test, y_test, _ = bars
    pipe = make_imblearn_pipeline(
        ImageResampler(RandomUnderSampler(random_state=0)),
        tiny_cfkd(teacher=oracle_teacher, n_counterfactuals=10),
    )
    pipe.fit(X, y)
    # The classifier saw the undersampled, still 4-D, images: 40 + 40, of
    # which 64 train in batches of 16 (192 would make 12 batches).
    assert len(pipe[-1].base_net_.history[-1]["batches"]) == 4
    assert pipe[-1].input_shape_ == (3, 8, 8)
    assert pipe.predict(X_test).shape == y_test.shape


def test_imblearn_sampler_on_flattened_images(bars, oracle_teacher):
    X, y, _, X_test, *_ = bars
    pipe = make_imblearn_pipeline(
        RandomOverSampler(random_state=0),
        tiny_cfkd(teacher=oracle_teacher, input_shape=(3, 8, 8), n_counterfactuals=10),
    )
    pipe.fit(X.reshape(len(X), -1), y)
    assert pipe[-1].input_shape_ == (3, 8, 8)
    # Counterfactuals come back in the layout the user gave.
    assert pipe[-1].counterfactuals_["counterfactual"].shape[1:] == (192,)
    assert pipe.predict(X_test.reshape(len(X_test), -1)).shape == (len(X_test),)


def test_dataframe_column_names_are_kept_through_prediction(bars, oracle_teacher):
    pandas = pytest.importorskip("pandas")
    X, y = bars[:2]
    frame = pandas.DataFrame(X.reshape(len(X), -1))
    frame.columns = [f"pixel_{i}" for i in range(frame.shape[1])]
    clf = tiny_cfkd(
        teacher=oracle_teacher, input_shape=(3, 8, 8), n_counterfactuals=0
    ).fit(frame, y)
    assert clf.feature_names_in_[0] == "pixel_0"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clf.predict(frame)
    with pytest.warns(UserWarning, match="feature names"):
        clf.predict(frame.to_numpy())


def test_pickle_round_trip_gives_identical_predictions(bars, oracle_teacher, tmp_path):
    X, y, _, X_test, *_ = bars
    clf = tiny_cfkd(teacher=oracle_teacher).fit(X, y)
    path = tmp_path / "cfkd.pkl"
    path.write_bytes(pickle.dumps(clf))
    restored = pickle.loads(path.read_bytes())
    np.testing.assert_array_equal(
        restored.predict_proba(X_test), clf.predict_proba(X_test)
    )
    np.testing.assert_array_equal(restored.classes_, clf.classes_)


def _abstaining_teacher(X):
    """Cannot tell anything: the estimator checks exercise the full loop on any
    data, and the base classifier is kept."""
    return [OUT_OF_DISTRIBUTION] * len(X)


def _small_mlp():
    return make_net("mlp", max_epochs=3, batch_size=16, module__hidden_units=(16,))


def _check_instance():
    return CFKDClassifier(
        teacher=_abstaining_teacher,
        net=_small_mlp(),
        explainer=GradientExplainer(steps=3),
        n_counterfactuals=6,
        finetune_epochs=1,
        teacher_checks_sources=False,
        random_state=0,
    )


@parametrize_with_checks(
    [
        _check_instance(),
        BaselineClassifier("class_weight", net=_small_mlp(), random_state=0),
        BaselineClassifier(
            "resampling",
            net=_small_mlp(),
            sampler=RandomOverSampler(),
            random_state=0,
        ),
    ]
)
@pytest.mark.filterwarnings("ignore::imbcfkd.CounterfactualWarning")
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)
