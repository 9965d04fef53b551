"""Measure the quality and speed of counterfactual explainers, ingredient by ingredient.

A batch-balanced student is trained on a confounded task (digits by default:
n = 100, k = 10, 3x16x16). Each explainer then produces counterfactuals of
correctly classified training images, half from each class, and the script
reports, per explainer:

- ``fit s``: the explainer's own training (an autoencoder prior), once;
- ``cf/s``: counterfactuals per second, surrogate distillation included;
- ``flip``: share that flips the student;
- ``true``: share of the flipped ones whose class an oracle (trained on
  well-conditioned data) confirms;
- ``shortcut``: share of the flipped ones that changed the confounder, as
  recognised by a classifier trained on the oracle set's confounder labels,
  while the oracle kept the class (the shortcut-detection rate);
- ``change``: mean absolute change (closeness); ``sparsity``: share of
  pixels changed by more than 0.02;
- ``nn dist``: root mean squared distance to the nearest training image,
  and ``recon``: reconstruction error under an autoencoder prior trained on
  the training images (for reference, real images score ``recon`` of the
  prior's own error), both measures of realism.

``ideal`` is not a method but a yardstick: it swaps the colour cast under
the ink, which is what a perfect explainer of the confounded digits would
do. The variants (see :data:`VARIANTS`) switch one ingredient off or on at a
time: the multi-scale search with its whole-image colour shift
(``-scales``) and the target confidence (``-confidence``) of the default
gradient explainer, and the SCE ingredients: the smooth surrogate
(``+noise``, ``+adversarial``), the on-manifold prior (``autoencoder``),
sparsity (``+sparse``) and exploration (``+explore``: a second
counterfactual per source with the first one's region locked; its rows
describe the second counterfactuals).

    python benchmarks/explainers.py                      # all variants
    python benchmarks/explainers.py --variants gradient autoencoder+noise
    python benchmarks/explainers.py --quick              # a smoke test, seconds
"""

import argparse
import csv
import sys
import time

import numpy as np
import torch

from imbcfkd import (
    AutoencoderExplainer,
    BaselineClassifier,
    GradientExplainer,
    make_net,
)
from imbcfkd.explainers import changed_region
from imbcfkd.local_datasets import DATASETS, load_dataset
from imbcfkd.metrics import score_counterfactuals

#: Share of its largest change a pixel of the first counterfactual needs to be
#: locked for the second one in the ``+explore`` variants.
EXPLORE_THRESHOLD = 0.5

#: Options of each explainer variant, by name. ``gradient`` is
#: GradientExplainer's defaults (a whole-image colour shift plus a 4x4
#: pattern, searched until the student is 90% sure); ``-scales`` drops the
#: colour shift, ``-confidence`` stops at the first flip, and
#: ``gradient-scales-confidence`` is what the gradient explainer did before
#: both were added. ``+`` switches one SCE ingredient on.
VARIANTS = {
    "gradient": ("gradient", {}),
    "gradient-scales": ("gradient", {"smoothing": 4}),
    "gradient-confidence": ("gradient", {"target_confidence": None}),
    "gradient-scales-confidence": (
        "gradient",
        {"smoothing": 4, "target_confidence": None},
    ),
    "gradient+noise": ("gradient", {"surrogate": "noise"}),
    "gradient+adversarial": (
        "gradient",
        {"surrogate": "adversarial", "surrogate_noise": 0.03},
    ),
    "gradient+sparse": ("gradient", {"mask_threshold": 0.25}),
    "gradient+explore": ("gradient", {}),
    "autoencoder": ("autoencoder", {}),
    "autoencoder+noise": ("autoencoder", {"surrogate": "noise"}),
    "autoencoder+sparse": ("autoencoder", {"mask_threshold": 0.25}),
    "autoencoder+explore": ("autoencoder", {}),
    "ideal": ("ideal", {}),
}

#: Tiny settings for a smoke test: 8x8 images, small nets, few epochs.
QUICK = {
    "image_size": 8,
    "dataset_params": {"n_minority": 30, "n_oracle": 200},
    "net_params": {"max_epochs": 3, "module__width": 4},
    "prior_params": {"epochs": 3},
    "n_counterfactuals": 40,
}

COLUMNS = (
    ("fit_seconds", "fit s", "8.1f"),
    ("counterfactuals_per_second", "cf/s", "7.0f"),
    ("flip_rate", "flip", "6.2f"),
    ("true_rate", "true", "6.2f"),
    ("shortcut_detection_rate", "shortcut", "9.2f"),
    ("closeness", "change", "7.3f"),
    ("sparsity", "sparsity", "9.2f"),
    ("nearest_neighbour_distance", "nn dist", "8.3f"),
    ("reconstruction_error", "recon", "7.3f"),
)


class CastToggle:
    """The ideal explainer of the colour-cast digits, an upper bound.

    It knows how :func:`imbcfkd.datasets.render_digits` draws an image (ink
    over a grey or a warm background, the green channel the same in both)
    and swaps the background under the ink, adding the cast where there was
    none and removing it where there was one: exactly the edit that exposes
    the shortcut. Only for ``make_confounded_digits(confounder="colour")``
    in its own value range; ``reached`` says where the swap flipped the net.
    """

    def explain(self, net, X, target, locked=None):
        from imbcfkd.datasets import _BACKGROUND, _CAST_BACKGROUND, _INK

        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 4 or X.shape[1] != 3:
            raise ValueError(f"CastToggle needs RGB digits; got shape {X.shape}.")
        green = 1
        ink = (X[:, green] - _BACKGROUND[green]) / (_INK[green] - _BACKGROUND[green])
        background = 1 - np.clip(ink, 0, 1)[:, None]
        # The cast is warm: red above blue in the background.
        warmth = ((X[:, 0] - X[:, 2]) * background[:, 0]).sum(axis=(1, 2))
        has_cast = warmth / background[:, 0].sum(axis=(1, 2)) > 0.15
        swap = np.where(
            has_cast[:, None],
            _BACKGROUND - _CAST_BACKGROUND,
            _CAST_BACKGROUND - _BACKGROUND,
        ).astype(np.float32)
        counterfactuals = np.clip(X + background * swap[:, :, None, None], 0, 1)
        counterfactuals = counterfactuals.astype(np.float32)
        return counterfactuals, net.predict(counterfactuals) == np.asarray(target)


def make_explainer(variant, random_state=None, prior_params=None):
    """The unfitted explainer of a variant named in :data:`VARIANTS`.

    ``prior_params`` are extra options of the autoencoder variants.
    """
    kind, options = VARIANTS[variant]
    if kind == "ideal":
        return CastToggle()
    if kind == "gradient":
        return GradientExplainer(random_state=random_state, **options)
    return AutoencoderExplainer(
        random_state=random_state, **options, **(prior_params or {})
    )


def prepare(
    dataset="digits",
    data_dir=None,
    image_size=16,
    random_state=0,
    *,
    dataset_params=None,
    net_params=None,
    prior_params=None,
):
    """Task, student, oracle, confounder model and a prior for realism."""
    data = load_dataset(
        dataset,
        data_dir=data_dir,
        image_size=image_size,
        random_state=random_state,
        **(dataset_params or {}),
    )
    train = data.train
    net_params = net_params or {}

    def net():
        return make_net(input_shape=train.X.shape[1:], **net_params)

    torch.manual_seed(random_state)
    student = net().fit(train.X, train.y)
    oracle = BaselineClassifier(net=net(), random_state=random_state)
    oracle.fit(data.oracle.X, data.oracle.y)
    confounder = BaselineClassifier(net=net(), random_state=random_state)
    confounder.fit(data.oracle.X, data.oracle.confounder.astype(int))
    prior = AutoencoderExplainer(random_state=random_state + 1, **(prior_params or {}))
    prior.fit(train.X)
    return data, student, oracle, confounder, prior


def prepare_from_args(args):
    """:func:`prepare` with the command line's settings (and ``--quick``)."""
    quick = QUICK if args.quick else {}
    return prepare(
        args.dataset,
        args.data_dir,
        quick.get("image_size", args.image_size),
        args.random_state,
        dataset_params=quick.get("dataset_params"),
        net_params=quick.get("net_params"),
        prior_params=quick.get("prior_params"),
    )


def draw_sources(train, student, n, random_state=0, replace=True):
    """Correctly classified training images, half from each class.

    With ``replace`` (needed for more sources than the rare class has), an
    image may be drawn more than once.
    """
    rng = np.random.RandomState(random_state)
    correct = student.predict(train.X) == train.y
    half = n // 2
    sources = np.concatenate(
        [
            rng.choice(
                np.flatnonzero(correct & (train.y == label)), size, replace=replace
            )
            for label, size in ((0, half), (1, n - half))
        ]
    )
    return train.X[sources], 1 - train.y[sources]


def measure(variant, setup, X, target, random_state=0, prior_params=None):
    """One row of the table for one variant."""
    data, student, oracle, confounder, prior = setup
    explainer = make_explainer(variant, random_state, prior_params)
    start = time.perf_counter()
    if hasattr(explainer, "fit"):
        explainer.fit(data.train.X, data.train.y)
    fit_seconds = time.perf_counter() - start
    start = time.perf_counter()
    counterfactuals, _ = explainer.explain(student, X, target)
    n_explained = len(X)
    overlap = np.nan
    if variant.endswith("+explore"):
        first = changed_region(X, counterfactuals, EXPLORE_THRESHOLD)
        counterfactuals, _ = explainer.explain(student, X, target, locked=first)
        second = changed_region(X, counterfactuals, EXPLORE_THRESHOLD)
        overlap = float((first & second).sum() / max(1, second.sum()))
        n_explained *= 2
    seconds = time.perf_counter() - start
    scores = score_counterfactuals(
        X,
        counterfactuals,
        target,
        classifier=student,
        teacher=oracle,
        confounder=confounder,
        reference=data.train.X,
        autoencoder=prior,
    )
    return {
        "variant": variant,
        "fit_seconds": fit_seconds,
        "counterfactuals_per_second": n_explained / seconds,
        **scores,
        "region_overlap": overlap,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=DATASETS, default="digits")
    parser.add_argument("--data-dir", help="folder of CelebA or Camelyon17")
    parser.add_argument("--n-counterfactuals", type=int, default=1000)
    parser.add_argument("--image-size", type=int, default=16)
    parser.add_argument("--random-state", type=int, default=0)
    parser.add_argument(
        "--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS)
    )
    parser.add_argument("--output", help="also write the rows to this CSV file")
    parser.add_argument("--quick", action="store_true", help="a tiny smoke test")
    args = parser.parse_args(argv)
    if args.dataset != "digits" and args.data_dir is None:
        parser.error(f"--dataset {args.dataset} needs --data-dir, the folder it is in")

    setup = prepare_from_args(args)
    n = QUICK["n_counterfactuals"] if args.quick else args.n_counterfactuals
    X, target = draw_sources(setup[0].train, setup[1], n, args.random_state)
    print(
        f"{len(X)} counterfactuals at {'x'.join(map(str, X.shape[1:]))}, "
        f"{torch.get_num_threads()} threads; prior's error on real images "
        f"{setup[4].reconstruction_error_:.3f}"
    )
    print(
        f"{'variant':26s}" + "".join(f"{h:>{f.split('.')[0]}}" for _, h, f in COLUMNS)
    )
    rows = []
    for variant in args.variants:
        prior_params = QUICK["prior_params"] if args.quick else None
        row = measure(variant, setup, X, target, args.random_state, prior_params)
        rows.append(row)
        print(
            f"{variant:26s}" + "".join(f"{row[key]:{f}}" for key, _, f in COLUMNS),
            flush=True,
        )
    if args.output:
        with open(args.output, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)


if __name__ == "__main__":
    try:
        main()
    except FileNotFoundError as error:  # a dataset folder is missing
        sys.exit(f"error: {error}")
