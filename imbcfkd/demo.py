"""A short CFKD run on scikit-learn's handwritten digits, offline.

Run it with ``python -m imbcfkd.demo``. The task is "is this digit a zero?",
a rare class (about one image in ten). A logistic regression trained on a
balanced, separate set of digits plays the teacher. The demo prints the
balanced accuracy of the batch-balanced base classifier and of CFKD on held
out digits, and what the CFKD round did.
"""

import argparse
import time

import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import train_test_split

from . import CFKDClassifier, OracleTeacher, make_net


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--random-state", type=int, default=0)
    parser.add_argument("--n-counterfactuals", type=int, default=300)
    args = parser.parse_args(argv)

    digits = load_digits()
    X = (digits.images[:, None] / 16.0).astype(np.float32)
    y = np.where(digits.target == 0, "zero", "other")
    X_fit, X_test, y_fit, y_test = train_test_split(
        X, y, test_size=0.3, stratify=y, random_state=args.random_state
    )
    X_train, X_teacher, y_train, y_teacher = train_test_split(
        X_fit, y_fit, test_size=0.4, stratify=y_fit, random_state=args.random_state
    )
    oracle = LogisticRegression(max_iter=1000, class_weight="balanced")
    oracle.fit(X_teacher.reshape(len(X_teacher), -1), y_teacher)

    def teacher(images):
        return OracleTeacher(oracle)(images.reshape(len(images), -1))

    print(
        f"Training on {len(y_train)} digits, {np.sum(y_train == 'zero')} of them "
        f"zeros; testing on {len(y_test)}."
    )
    start = time.perf_counter()
    clf = CFKDClassifier(
        teacher=teacher,
        net=make_net(max_epochs=10),
        n_counterfactuals=args.n_counterfactuals,
        random_state=args.random_state,
        verbose=1,
    ).fit(X_train, y_train)
    seconds = time.perf_counter() - start

    base = clf.classes_[clf.base_net_.predict(X_test)]
    entry = clf.history_[0]
    print(f"\nFit in {seconds:.1f} s.")
    print(f"Balanced accuracy, base : {balanced_accuracy_score(y_test, base):.3f}")
    print(f"Balanced accuracy, CFKD : {clf.score(X_test, y_test):.3f}")
    print(
        f"Counterfactuals: {entry['n_counterfactuals']} generated, flip rate "
        f"{entry['flip_rate']:.2f}, {entry['feedback_accuracy']:.0%} judged true "
        f"by the teacher, {entry['n_kept']} kept for fine-tuning "
        f"({'fine-tuned model kept' if entry['accepted'] else 'base model kept'})."
    )


if __name__ == "__main__":
    main()
