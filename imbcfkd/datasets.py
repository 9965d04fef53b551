"""Confounder-controlled image tasks built from scikit-learn's digits.

:func:`make_confounded_digits` turns the 1,797 handwritten digits that ship
with scikit-learn into a binary image task with a controlled shortcut, in the
spirit of the paper's confounder-controlled Camelyon17 experiment: the class
is a property of the digit's shape, and a confounder (a colour cast of the
background, or a small stamp in a corner) co-occurs with the rare class in
the training data but is independent of the class in the test data. Nothing
is downloaded.
"""

from numbers import Integral, Real

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.utils import Bunch, check_random_state
from sklearn.utils._param_validation import Interval, StrOptions, validate_params

__all__ = ["GROUP_NAMES", "make_confounded_digits", "render_digits"]

#: Names of the four groups, indexed by ``2 * label + confounder``.
GROUP_NAMES = (
    "majority, no confounder",
    "majority, confounder",
    "minority, no confounder",
    "minority, confounder",
)

_MINORITY_DIGITS = (0, 6, 8, 9, 3)
_BACKGROUND = np.array([0.35, 0.35, 0.35])
_CAST_BACKGROUND = np.array([0.55, 0.35, 0.2])
_INK = np.array([0.95, 0.95, 0.95])
_STAMP = np.array([0.1, 0.8, 0.9])


@validate_params(
    {
        "n_minority": [Interval(Integral, 1, None, closed="left")],
        "imbalance_ratio": [Interval(Real, 1, None, closed="left")],
        "minority_prevalence": [Interval(Real, 0, 1, closed="both")],
        "majority_prevalence": [Interval(Real, 0, 1, closed="both")],
        "confounder": [StrOptions({"colour", "stamp"})],
        "image_size": [Interval(Integral, 8, None, closed="left")],
        "n_test_minority": [Interval(Integral, 1, None, closed="left")],
        "n_validation_minority": [Interval(Integral, 1, None, closed="left")],
        "n_oracle": [Interval(Integral, 4, None, closed="left")],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def make_confounded_digits(
    n_minority=100,
    imbalance_ratio=10,
    *,
    minority_prevalence=0.9,
    majority_prevalence=0.1,
    confounder="colour",
    image_size=16,
    n_test_minority=200,
    n_validation_minority=50,
    n_oracle=1000,
    random_state=None,
):
    """Binary digit images whose rare class co-occurs with a confounder.

    The minority class (label 1) is the round digits 0, 3, 6, 8 and 9; the
    majority class (label 0) the others. Each source digit is rendered many
    times at ``image_size`` with a small random rotation, scaling and shift,
    white ink on a grey background. The confounder is either a warm colour
    cast of the background (``"colour"``, like stain differences between
    hospitals) or a cyan square in the top-right corner (``"stamp"``, like a
    copyright tag).

    The training, validation, test and oracle sets are rendered from
    disjoint halves of the source digits: training and oracle sets from one
    half, validation and test sets from two disjoint parts of the other, so
    no set shares a handwritten digit with the training set except the
    oracle set.

    Parameters
    ----------
    n_minority : int, default=100
        Minority images in the training set.
    imbalance_ratio : float, default=10
        Majority images per minority image (``k`` in the paper); the
        training set holds ``round(n_minority * imbalance_ratio)`` majority
        images.
    minority_prevalence : float, default=0.9
        Share of training and validation minority images with the
        confounder.
    majority_prevalence : float, default=0.1
        Share of training and validation majority images with the
        confounder.
    confounder : {"colour", "stamp"}, default="colour"
        The kind of shortcut.
    image_size : int, default=16
        Side of the square RGB images, at least 8.
    n_test_minority : int, default=200
        Minority images in the test set, which keeps the training class
        ratio but has the confounder on exactly half of each class, so that
        a classifier relying on it is exposed.
    n_validation_minority : int, default=50
        Minority images in the validation set, which is confounded like the
        training set (a user would not have an unconfounded one).
    n_oracle : int, default=1000
        Images in the well-conditioned set for training an oracle teacher:
        balanced classes, and the confounder on half of each class.
    random_state : int, RandomState instance or None, default=None
        Seed; the same seed gives the same images.

    Returns
    -------
    data : Bunch
        ``train``, ``validation``, ``test`` and ``oracle``, each a Bunch with
        ``X`` (float32, shape ``(n, 3, image_size, image_size)``, values in
        [0, 1]), ``y`` (0 majority, 1 minority), ``confounder`` (bool),
        ``groups`` (``2 * y + confounder``, named by :data:`GROUP_NAMES`),
        ``digit`` (the source digit) and ``source`` (index into
        ``sklearn.datasets.load_digits``). Also ``group_names``,
        ``target_names`` and ``description``.

    Examples
    --------
    >>> from imbcfkd.datasets import make_confounded_digits
    >>> data = make_confounded_digits(n_minority=20, imbalance_ratio=5,
    ...                               random_state=0)
    >>> data.train.X.shape, int(data.train.y.sum())
    ((120, 3, 16, 16), 20)
    """
    rng = check_random_state(random_state)
    digits = load_digits()
    is_minority = np.isin(digits.target, _MINORITY_DIGITS)

    # Split the source digits of each class into disjoint parts.
    parts = {"train": [], "validation": [], "test": []}
    for label in (0, 1):
        sources = rng.permutation(np.flatnonzero(is_minority == label))
        half, three_quarters = len(sources) // 2, (3 * len(sources)) // 4
        parts["train"].append(sources[:half])
        parts["validation"].append(sources[half:three_quarters])
        parts["test"].append(sources[three_quarters:])

    n_majority = int(round(n_minority * imbalance_ratio))
    n_val_majority = int(round(n_validation_minority * imbalance_ratio))
    n_test_majority = int(round(n_test_minority * imbalance_ratio))
    prevalence = (majority_prevalence, minority_prevalence)
    independent = (0.5, 0.5)
    settings = {
        "train": (parts["train"], (n_majority, n_minority), prevalence),
        "validation": (
            parts["validation"],
            (n_val_majority, n_validation_minority),
            prevalence,
        ),
        "test": (parts["test"], (n_test_majority, n_test_minority), independent),
        "oracle": (
            parts["train"],
            (n_oracle - n_oracle // 2, n_oracle // 2),
            independent,
        ),
    }
    data = Bunch(
        group_names=GROUP_NAMES,
        target_names=("majority (1, 2, 4, 5, 7)", "minority (0, 3, 6, 8, 9)"),
        description=(
            f"Digits task: n_minority={n_minority}, imbalance_ratio="
            f"{imbalance_ratio}, confounder={confounder!r} in "
            f"{minority_prevalence:.0%} of minority and {majority_prevalence:.0%} "
            "of majority training images; independent of the class in test."
        ),
    )
    for name, (sources, counts, shares) in settings.items():
        data[name] = _draw_set(
            digits, sources, counts, shares, confounder, image_size, rng
        )
    return data


def render_digits(images, image_size=16, confounder=None, kind="colour", rng=None):
    """Render 8x8 digit images as RGB images with random jitter.

    Parameters
    ----------
    images : ndarray of shape (n, 8, 8)
        Grey digits with values in [0, 16], as in ``load_digits().images``.
    image_size : int, default=16
        Side of the rendered images.
    confounder : array-like of bool, shape (n,), default=None
        Which images get the confounder. ``None`` gives none.
    kind : {"colour", "stamp"}, default="colour"
        The confounder's kind.
    rng : RandomState, default=None
        Source of the jitter and of the pixel noise.

    Returns
    -------
    X : ndarray of float32, shape (n, 3, image_size, image_size)
        Values in [0, 1].
    """
    rng = check_random_state(rng)
    n = len(images)
    confounder = np.zeros(n, bool) if confounder is None else np.asarray(confounder)

    # Random rotation (up to 12 degrees), scale (0.9 to 1.1) and shift.
    angle = np.deg2rad(rng.uniform(-12, 12, n))
    scale = rng.uniform(0.9, 1.1, n)
    shift = rng.uniform(-0.12, 0.12, (n, 2))
    theta = np.zeros((n, 2, 3))
    theta[:, 0, 0] = theta[:, 1, 1] = np.cos(angle) / scale
    theta[:, 0, 1] = -np.sin(angle) / scale
    theta[:, 1, 0] = np.sin(angle) / scale
    theta[:, :, 2] = shift
    ink = torch.from_numpy(images[:, None] / 16.0).float()
    ink = F.interpolate(ink, size=(image_size, image_size), mode="bilinear")
    grid = F.affine_grid(
        torch.from_numpy(theta).float(), list(ink.shape), align_corners=False
    )
    ink = F.grid_sample(ink, grid, align_corners=False).clamp(0, 1).numpy()

    background = np.where(
        (confounder & (kind == "colour"))[:, None], _CAST_BACKGROUND, _BACKGROUND
    )
    X = ink * _INK[None, :, None, None] + (1 - ink) * background[:, :, None, None]
    if kind == "stamp":
        side = max(2, image_size // 6)
        X[confounder, :, 1 : 1 + side, -1 - side : -1] = _STAMP[:, None, None]
    X = X + rng.normal(0, 0.03, X.shape)
    return np.clip(X, 0, 1).astype(np.float32)


def _draw_set(digits, sources, counts, shares, kind, image_size, rng):
    """Render one set: ``counts[label]`` images per class from ``sources``."""
    chosen, labels, flags = [], [], []
    for label in (0, 1):
        pool = sources[label]
        chosen.append(rng.choice(pool, size=counts[label], replace=True))
        labels.append(np.full(counts[label], label))
        n_confounded = int(round(shares[label] * counts[label]))
        flag = np.zeros(counts[label], bool)
        flag[:n_confounded] = True
        flags.append(rng.permutation(flag))
    order = rng.permutation(sum(counts))
    source = np.concatenate(chosen)[order]
    y = np.concatenate(labels)[order]
    confounder = np.concatenate(flags)[order]
    X = render_digits(digits.images[source], image_size, confounder, kind, rng)
    return Bunch(
        X=X,
        y=y,
        confounder=confounder,
        groups=2 * y + confounder,
        digit=digits.target[source],
        source=source,
    )
