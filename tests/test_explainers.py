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
    # Minimal edits: each search stops as soon as the net predicts the target.
    explainer = GradientExplainer(smoothing=2, target_confidence=None)
    explainer.fit(X_train, y_train)
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
    strict = GradientExplainer(smoothing=2, closeness=2.0, target_confidence=None)
    strict.fit(X_train, y_train)
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
    explainer = GradientExplainer(steps=100, step_size=0.1, target_confidence=None)
    counterfactuals, reached = explainer.explain(net, X, 1 - y)
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
    explainer = AutoencoderExplainer(epochs=60, target_confidence=None, random_state=0)
    explainer.fit(data.train.X)
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


def test_target_confidence_asks_for_edits_the_net_is_sure_of(digits_task):
    data, net, sources = digits_task
    X, y = data.train.X[sources], data.train.y[sources]
    minimal, minimal_reached = GradientExplainer(target_confidence=None).explain(
        net, X, 1 - y
    )
    sure, reached = GradientExplainer(target_confidence=0.95).explain(net, X, 1 - y)

    assert reached.mean() >= 0.9
    proba = net.predict_proba(sure)[np.arange(len(y)), 1 - y]
    # Reached means predicted, and with the confidence asked for.
    assert np.all(net.predict(sure)[reached] == 1 - y[reached])
    assert np.all(proba[reached] >= 0.95 - 1e-4)
    minimal_proba = net.predict_proba(minimal)[np.arange(len(y)), 1 - y]
    assert np.mean(minimal_proba[minimal_reached] < 0.95) > 0.5
    # Getting there takes a larger edit than just crossing the boundary.
    assert np.abs(sure - X).mean() > 1.2 * np.abs(minimal - X).mean()


def test_coarsest_scale_is_a_colour_shift_towards_the_cast(digits_task):
    data, net, sources = digits_task
    X, y = data.train.X[sources], data.train.y[sources]
    cast = data.train.confounder[sources]
    explainer = GradientExplainer(smoothing=(16,))
    shift, reached = explainer.explain(net, X, 1 - y)
    change = shift - X
    # One value per channel: the same change at every pixel (where not clipped).
    inside = (shift > 0.01) & (shift < 0.99)
    spread = [
        np.ptp(change[i, c][inside[i, c]]) for i in range(len(X)) for c in range(3)
    ]
    assert np.median(spread) < 1e-5
    # The student links the warm cast (red above blue) with the rare class, so
    # the shift warms plain majority digits and cools cast minority digits.
    warmth = (change[:, 0] - change[:, 2]).mean(axis=(1, 2))
    assert np.mean(warmth[reached & (y == 0) & ~cast] > 0) > 0.8
    assert np.mean(warmth[reached & (y == 1) & cast] < 0) > 0.8

    # Scales add up: the default's edit is neither scale's alone.
    both, both_reached = GradientExplainer(smoothing=(16, 4)).explain(net, X, 1 - y)
    local, _ = GradientExplainer(smoothing=4).explain(net, X, 1 - y)
    assert both_reached.mean() >= 0.9
    assert not np.allclose(both, shift) and not np.allclose(both, local)
    with pytest.raises(ValueError, match="smoothing must be"):
        GradientExplainer(smoothing=(4, 0)).explain(net, X[:2], 1 - y[:2])


# The SCE ingredients: smooth surrogate, sparsity, exploration -----------------


def test_surrogate_is_smooth_faithful_and_reused(digits_task):
    from imbcfkd.explainers import _fingerprint

    data, net, sources = digits_task
    X, y = data.train.X[sources], data.train.y[sources]
    explainer = GradientExplainer(
        surrogate="adversarial", surrogate_noise=0.03, random_state=0
    ).fit(data.train.X)
    counterfactuals, reached = explainer.explain(net, X, 1 - y)

    # Success is judged on the student, not on the surrogate.
    assert reached.mean() >= 0.8
    np.testing.assert_array_equal(net.predict(counterfactuals) == 1 - y, reached)
    surrogate = explainer.surrogate_
    kinds = {type(m) for m in surrogate.modules()}
    assert torch.nn.Softplus in kinds and torch.nn.ReLU not in kinds
    # The distilled surrogate agrees with the student on the images it saw.
    with torch.no_grad():
        agree = surrogate(torch.from_numpy(X)).argmax(1).numpy() == net.predict(X)
    assert agree.mean() >= 0.9
    # The student itself is untouched, and the surrogate is reused as long
    # as the student's weights stay the same.
    assert torch.nn.ReLU in {type(m) for m in net.module_.modules()}
    explainer.explain(net, X[:5], 1 - y[:5])
    assert explainer.surrogate_ is surrogate
    weights = _fingerprint(net.module_)
    with torch.no_grad():
        next(net.module_.parameters()).add_(0.01)
    try:
        explainer.explain(net, X[:5], 1 - y[:5])
        assert explainer.surrogate_ is not surrogate
    finally:
        with torch.no_grad():
            next(net.module_.parameters()).sub_(0.01)
    assert _fingerprint(net.module_) == pytest.approx(weights)


def test_noise_surrogate_is_reproducible(digits_task):
    data, net, sources = digits_task
    X, y = data.train.X[sources[:20]], data.train.y[sources[:20]]

    def explain():
        explainer = GradientExplainer(
            steps=20, surrogate="noise", surrogate_epochs=1, random_state=4
        )
        return explainer.explain(net, X, 1 - y)[0]

    np.testing.assert_array_equal(explain(), explain())


@pytest.mark.parametrize("kind", ["gradient", "autoencoder"])
def test_sparse_counterfactuals_restore_the_rest_exactly(digits_task, kind):
    from imbcfkd.explainers import AutoencoderExplainer
    from imbcfkd.metrics import changed_pixel_share

    data, net, sources = digits_task
    X, y = data.train.X[sources[::2]], data.train.y[sources[::2]]
    if kind == "gradient":
        explainer = GradientExplainer()
    else:
        explainer = AutoencoderExplainer(epochs=30, random_state=0).fit(data.train.X)
    full, full_reached = explainer.explain(net, X, 1 - y)
    explainer.set_params(mask_threshold=0.5)
    sparse, reached = explainer.explain(net, X, 1 - y)

    np.testing.assert_array_equal(net.predict(sparse) == 1 - y, reached)
    assert reached.mean() >= full_reached.mean() - 0.05
    # Outside the region that mattered, pixels are the original's, exactly.
    assert np.all(sparse == X, axis=1).mean() > np.all(full == X, axis=1).mean() + 0.1
    assert changed_pixel_share(X, sparse) < changed_pixel_share(X, full)


def test_locked_region_forces_another_explanation(digits_task):
    from imbcfkd.explainers import changed_region

    data, net, sources = digits_task
    X, y = data.train.X[sources], data.train.y[sources]
    explainer = GradientExplainer(smoothing=2, target_confidence=None)
    first, _ = explainer.explain(net, X, 1 - y)
    locked = changed_region(X, first, threshold=0.5)
    assert 0 < locked.mean() < 1

    second, reached = explainer.explain(net, X, 1 - y, locked=locked)
    np.testing.assert_array_equal(net.predict(second) == 1 - y, reached)
    delta = second - X
    # Nothing moves inside the locked region; the edit lies elsewhere.
    assert np.all(delta.transpose(1, 0, 2, 3)[:, locked] == 0)
    free = ~locked.all(axis=(1, 2))
    assert free.mean() > 0.5
    assert np.abs(delta[free]).sum(axis=(1, 2, 3)).min() > 0

    # A lock per value (the shape of X) works too; a wrong shape says what
    # was expected.
    per_value = np.broadcast_to(locked[:, None], X.shape)
    again, _ = explainer.explain(net, X, 1 - y, locked=per_value)
    np.testing.assert_allclose(again, second)
    with pytest.raises(ValueError, match="locked must have the shape"):
        explainer.explain(net, X, 1 - y, locked=locked[:, :4])


def test_changed_region_follows_the_change():
    from imbcfkd.explainers import changed_region

    X = np.zeros((2, 3, 10, 10), dtype=np.float32)
    cf = X.copy()
    cf[0, 1, 2:5, 6:9] = 0.8  # a square in one channel
    cf[0, :, 9, 0] = 0.01  # a faint speck, below the threshold
    region = changed_region(X, cf)
    assert region[0, 2:5, 6:9].all() and not region[0, 9, 0]
    assert not region[0, 8:, :3].any()
    # An unchanged image has an empty region.
    assert not region[1].any()
    with pytest.raises(ValueError, match="same shape"):
        changed_region(X, cf[:, :2])
