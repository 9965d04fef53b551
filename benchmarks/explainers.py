"""Compare the built-in explainers on a confounded task (digits by default).

For a batch-balanced student trained on the default task (n = 100, k = 10,
3x16x16), each explainer produces counterfactuals of correctly classified
training images, half from each class. The script reports counterfactuals
per second (after the explainer's own fit, which is timed separately), the
flip rate on the student, the share of true counterfactuals according to an
oracle trained on well-conditioned data, and the mean absolute change.

    python benchmarks/explainers.py --n-counterfactuals 1000 --image-size 16
"""

import argparse
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
from imbcfkd.local_datasets import DATASETS, load_dataset


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=DATASETS, default="digits")
    parser.add_argument("--data-dir", help="folder of CelebA or Camelyon17")
    parser.add_argument("--n-counterfactuals", type=int, default=1000)
    parser.add_argument("--image-size", type=int, default=16)
    parser.add_argument("--random-state", type=int, default=0)
    args = parser.parse_args(argv)
    if args.dataset != "digits" and args.data_dir is None:
        parser.error(f"--dataset {args.dataset} needs --data-dir, the folder it is in")

    data = load_dataset(
        args.dataset,
        data_dir=args.data_dir,
        image_size=args.image_size,
        random_state=args.random_state,
    )
    train = data.train
    torch.manual_seed(args.random_state)
    student = make_net(input_shape=train.X.shape[1:]).fit(train.X, train.y)
    oracle = BaselineClassifier(random_state=args.random_state)
    oracle.fit(data.oracle.X, data.oracle.y)

    rng = np.random.RandomState(args.random_state)
    correct = student.predict(train.X) == train.y
    half = args.n_counterfactuals // 2
    sources = np.concatenate(
        [
            rng.choice(np.flatnonzero(correct & (train.y == label)), size, replace=True)
            for label, size in ((0, half), (1, args.n_counterfactuals - half))
        ]
    )
    X, target = train.X[sources], 1 - train.y[sources]

    print(
        f"{len(X)} counterfactuals at {'x'.join(map(str, X.shape[1:]))}, "
        f"{torch.get_num_threads()} threads"
    )
    print(
        f"{'explainer':22s}{'fit s':>8s}{'cf/s':>8s}{'flip':>7s}{'true':>7s}"
        f"{'change':>8s}"
    )
    explainers = {
        "GradientExplainer": GradientExplainer(),
        "AutoencoderExplainer": AutoencoderExplainer(random_state=args.random_state),
    }
    for name, explainer in explainers.items():
        start = time.perf_counter()
        explainer.fit(train.X, train.y)
        fit_seconds = time.perf_counter() - start
        start = time.perf_counter()
        counterfactuals, _ = explainer.explain(student, X, target)
        explain_seconds = time.perf_counter() - start
        flipped = student.predict(counterfactuals) == target
        true = oracle.predict(counterfactuals[flipped]) == target[flipped]
        print(
            f"{name:22s}{fit_seconds:8.1f}{len(X) / explain_seconds:8.0f}"
            f"{flipped.mean():7.3f}{true.mean():7.3f}"
            f"{np.abs(counterfactuals - X).mean():8.3f}"
        )


if __name__ == "__main__":
    try:
        main()
    except FileNotFoundError as error:  # a dataset folder is missing
        sys.exit(f"error: {error}")
