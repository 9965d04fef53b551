"""The gradient explainer."""

import numpy as np
import pytest
import torch

from imbcfkd.explainers import GradientExplainer
from imbcfkd.networks import make_net


def _sources(net, X, y, n=60):
    correct = np.flatnonzero(net.predict(X) == y)
    return X[correct[:n]], y[correct[:n]]


def test_explainer_flips_a_trained_classifier(bars, trained_net):
    X, y = _sources(trained_net, *bars[:2])
    target = 1 - y
    explainer = GradientExplainer(steps=60).fit(*bars[:2])
    counterfactuals, reached = explainer.explain(trained_net, X, target)

    assert counterfactuals.shape == X.shape and counterfactuals.dtype == np.float32
    predicted = trained_net.predict(counterfactuals)
    assert reached.mean() >= 0.9
    # What the explainer claims is what the classifier does.
    np.testing.assert_array_equal(predicted == target, reached)


def test_counterfactuals_stay_close_and_in_range(bars, trained_net):
    X_train, y_train = bars[:2]
    X, y = _sources(trained_net, X_train, y_train)
    explainer = GradientExplainer(smoothing=2).fit(X_train, y_train)
    counterfactuals, _ = explainer.explain(trained_net, X, 1 - y)

    # A counterfactual is nearer its source than real images of its target are.
    change = np.abs(counterfactuals - X).mean()
    others = X_train[y_train == 1][: len(X)] if y[0] == 0 else X_train[y_train == 0]
    distance_to_target_images = np.mean(
        [np.abs(X[i] - others[i % len(others)]).mean() for i in range(len(X))]
    )
    assert change < 0.75 * distance_to_target_images
    low = explainer.data_min_.reshape(1, -1, 1, 1)
    high = explainer.data_max_.reshape(1, -1, 1, 1)
    assert np.all(counterfactuals >= low - 1e-6)
    assert np.all(counterfactuals <= high + 1e-6)

    # A stronger closeness penalty gives smaller edits.
    strict = GradientExplainer(smoothing=2, closeness=2.0).fit(X_train, y_train)
    strict_counterfactuals, _ = strict.explain(trained_net, X, 1 - y)
    assert np.abs(strict_counterfactuals - X).mean() < change


def test_smoothing_gives_low_frequency_edits(bars, trained_net):
    X, y = _sources(trained_net, *bars[:2], n=30)

    def roughness(smoothing):
        explainer = GradientExplainer(steps=40, smoothing=smoothing)
        counterfactuals, _ = explainer.explain(trained_net, X, 1 - y)
        delta = counterfactuals - X
        # Energy of differences between neighbouring pixels, relative to the edit.
        neighbours = np.diff(delta, axis=-1) ** 2
        return neighbours.mean() / (delta**2).mean()

    assert roughness(4) < 0.5 * roughness(1)


def test_samples_stop_once_they_reach_the_target(bars, trained_net):
    X, y = _sources(trained_net, *bars[:2], n=20)
    short = GradientExplainer(steps=10, step_size=0.2)
    long = GradientExplainer(steps=80, step_size=0.2)
    cf_short, reached_short = short.explain(trained_net, X, 1 - y)
    cf_long, _ = long.explain(trained_net, X, 1 - y)
    # A sample that reached its target within 10 steps is not moved further.
    assert reached_short.any()
    np.testing.assert_allclose(cf_long[reached_short], cf_short[reached_short])


def test_explainer_handles_feature_vectors_and_restores_training_mode():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(80, 4)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    torch.manual_seed(0)
    net = make_net("mlp", input_shape=(4,), max_epochs=20).fit(X, y)
    net.module_.train()
    counterfactuals, reached = GradientExplainer(steps=100, step_size=0.1).explain(
        net, X, 1 - y
    )
    assert net.module_.training
    assert reached.mean() > 0.9
    # Only the first feature decides the class, so it changes the most.
    change = np.abs(counterfactuals - X)[reached].mean(axis=0)
    assert change.argmax() == 0


def test_explainer_rejects_bad_settings(trained_net, bars):
    with pytest.raises(ValueError, match="steps"):
        GradientExplainer(steps=0).explain(trained_net, bars[0][:2], [0, 1])


@pytest.fixture(scope="module")
def digits_task():
    """A trained student on the confounded digits, and sources it gets right."""
    from imbcfkd.datasets import make_confounded_digits

    data = make_confounded_digits(n_minority=60, imbalance_ratio=5, random_state=0)
    torch.manual_seed(0)
    net = make_net(input_shape=(3, 16, 16), max_epochs=10, module__width=8)
    net.fit(data.train.X, data.train.y)
    correct = np.flatnonzero(net.predict(data.train.X) == data.train.y)
    sources = np.r_[
        correct[data.train.y[correct] == 0][:40],
        correct[data.train.y[correct] == 1][:40],
    ]
    return data, net, sources


def test_autoencoder_explainer_flips_the_student(digits_task):
    from imbcfkd.explainers import AutoencoderExplainer

    data, net, sources = digits_task
    X, y = data.train.X[sources], data.train.y[sources]
    explainer = AutoencoderExplainer(epochs=60, random_state=0).fit(data.train.X)
    assert explainer.reconstruction_error_ < 0.1

    counterfactuals, reached = explainer.explain(net, X, 1 - y)
    assert reached.mean() >= 0.9
    np.testing.assert_array_equal(net.predict(counterfactuals) == 1 - y, reached)

    # Edits are bounded: within the data's range, and much smaller than the
    # difference between two real images.
    assert counterfactuals.min() >= explainer.data_min_.min() - 1e-6
    assert counterfactuals.max() <= explainer.data_max_.max() + 1e-6
    change = np.abs(counterfactuals - X).mean(axis=(1, 2, 3))
    between_images = np.abs(X - X[::-1]).mean(axis=(1, 2, 3))
    assert np.median(change) < 0.75 * np.median(between_images)
    # Pixels the autoencoder cannot reproduce (the noise) are kept: the edit
    # is smooth, unlike the image itself.
    delta = counterfactuals - X
    assert np.abs(np.diff(delta, axis=-1)).mean() < np.abs(np.diff(X, axis=-1)).mean()


def test_autoencoder_explainer_is_reproducible_and_checks_its_state(digits_task):
    from imbcfkd.explainers import AutoencoderExplainer

    data, net, sources = digits_task
    X, y = data.train.X[sources[:10]], data.train.y[sources[:10]]
    with pytest.raises(ValueError, match="must be fitted"):
        AutoencoderExplainer().explain(net, X, 1 - y)
    first = AutoencoderExplainer(epochs=2, random_state=3).fit(data.train.X)
    second = AutoencoderExplainer(epochs=2, random_state=3).fit(data.train.X)
    np.testing.assert_array_equal(
        first.explain(net, X, 1 - y)[0], second.explain(net, X, 1 - y)[0]
    )


def test_autoencoder_explainer_on_feature_vectors():
    from imbcfkd.explainers import AutoencoderExplainer

    rng = np.random.RandomState(0)
    X = rng.normal(size=(200, 6)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 0).astype(np.int64)
    torch.manual_seed(0)
    net = make_net("mlp", input_shape=(6,), max_epochs=20).fit(X, y)
    explainer = AutoencoderExplainer(epochs=30, random_state=0).fit(X)
    _, reached = explainer.explain(net, X[:50], 1 - y[:50])
    assert reached.mean() > 0.8
