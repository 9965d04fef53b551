"""The paper's story on a laptop: a shortcut learned from a rare class, repaired.

Run it with ``python -m imbcfkd.demo`` (``--help`` lists the options). It
builds a confounded digits task (:func:`imbcfkd.datasets.make_confounded_digits`):
the rare class is the round digits, and in the training data 90% of them,
but only 10% of the others, have a warm colour cast. It then trains

1. an oracle teacher on a separate, well-conditioned set (balanced classes,
   colour cast independent of the class),
2. a classifier with batch balancing on the confounded training set, which
   learns "colour cast means rare class", and
3. CFKD on top of it, with the oracle as the teacher,

and prints how each does on test images where the colour cast is independent
of the class, plus a picture of counterfactuals and the teacher's verdicts.
Nothing is downloaded.
"""

import argparse
import time
from pathlib import Path

import numpy as np

from . import (
    AutoencoderExplainer,
    CFKDClassifier,
    GradientExplainer,
    OracleTeacher,
    make_net,
)
from .datasets import make_confounded_digits
from .metrics import (
    average_group_accuracy,
    group_accuracies,
    minority_f1_score,
    worst_group_accuracy,
)

_EXPLAINERS = {"gradient": GradientExplainer, "autoencoder": AutoencoderExplainer}
_SHORT_GROUPS = ("other, plain", "other, cast", "round, plain", "round, cast")


def main(argv=None):
    args = _parse(argv)
    started = time.perf_counter()
    say = print if not args.quiet else _silent

    data = make_confounded_digits(
        args.n_minority,
        args.imbalance_ratio,
        confounder=args.confounder,
        image_size=args.image_size,
        random_state=args.random_state,
    )
    kind = "colour cast" if args.confounder == "colour" else "corner stamp"
    short_groups = [g.replace("cast", kind.split()[-1]) for g in _SHORT_GROUPS]
    say(
        f"Task: tell round digits (0, 3, 6, 8, 9: the rare class) from the others.\n"
        f"Training set: {int(data.train.y.sum())} round and "
        f"{int((data.train.y == 0).sum())} other digits; the {kind} marks "
        f"{args.minority_prevalence:.0%} of the round ones but only "
        f"{args.majority_prevalence:.0%} of the others.\n"
        f"Test set: {len(data.test.y)} digits, the {kind} on half of each class.\n"
    )

    epochs = args.epochs
    say(f"[1/3] Training the oracle teacher on {len(data.oracle.y)} balanced images.")
    oracle = CFKDClassifier(
        net=make_net(max_epochs=epochs), n_counterfactuals=0, random_state=0
    ).fit(data.oracle.X, data.oracle.y)

    say(
        "[2/3] Training the classifier with batch balancing, then CFKD: "
        f"{args.n_rounds} rounds of {args.n_counterfactuals} counterfactuals "
        "judged by the oracle."
    )
    clf = CFKDClassifier(
        teacher=OracleTeacher(oracle),
        net=make_net(max_epochs=epochs),
        explainer=_EXPLAINERS[args.explainer](),
        n_counterfactuals=args.n_counterfactuals,
        n_rounds=args.n_rounds,
        random_state=args.random_state,
        verbose=0 if args.quiet else 1,
    ).fit(data.train.X, data.train.y)

    say("[3/3] Evaluating on the test set.\n")
    test = data.test
    predictions = {
        "batch balancing (CE+BB)": clf.classes_[clf.base_net_.predict(test.X)],
        "CFKD": clf.predict(test.X),
        "oracle teacher": oracle.predict(test.X),
    }
    table = _table(predictions, test, short_groups)
    say(table)
    if clf.history_:
        say(_describe_first_round(clf.history_))
    say(
        "F1: of the rare class. Group accuracy: accuracy within each (class, "
        f"{kind.split()[-1]}) group; a shortcut shows as a low worst group."
    )

    figure_path = _save_figure(clf, args)
    if figure_path is not None:
        say(
            "\nCounterfactuals of the batch-balanced classifier, with the "
            f"teacher's verdicts: {figure_path}"
        )
    say(f"Done in {time.perf_counter() - started:.0f} s.")
    return {"table": table, "history": clf.history_, "figure": figure_path}


def _describe_first_round(history):
    entry = history[0]
    accepted = sum(e["accepted"] for e in history)
    text = (
        f"\nIn its first round CFKD made {entry['n_counterfactuals']} "
        "counterfactuals (small edits meant to flip the classifier); "
        f"{entry['flip_rate']:.0%} flipped it. The teacher judged "
        f"{entry['n_judged']}: {entry['feedback_accuracy']:.0%} really changed "
        "the digit's class (true counterfactuals); the rest flipped the "
        "classifier without changing the class, exposing a shortcut. "
        f"{entry['n_kept']} of those were used for fine-tuning. "
        f"{accepted} of {len(history)} rounds improved the classifier on "
        "held-out data and were kept."
    )
    if len(history) > 1:
        shares = ", ".join(f"{e['feedback_accuracy']:.0%}" for e in history)
        text += (
            f" Round by round, the share of true counterfactuals was {shares}: "
            "the more it grows, the less the classifier's decisions hang on "
            "the shortcut."
        )
    return text


def _table(predictions, test, short_groups):
    header = f"{'':26s}{'F1':>6s}{'avg group':>11s}{'worst group':>13s}  " + "  ".join(
        f"{name:>13s}" for name in short_groups
    )
    lines = [header, "-" * len(header)]
    for name, predicted in predictions.items():
        groups = group_accuracies(test.y, predicted, groups=test.groups)
        lines.append(
            f"{name:26s}{minority_f1_score(test.y, predicted):6.3f}"
            f"{average_group_accuracy(test.y, predicted, groups=test.groups):11.3f}"
            f"{worst_group_accuracy(test.y, predicted, groups=test.groups):13.3f}  "
            + "  ".join(f"{groups.get(g, np.nan):13.3f}" for g in range(4))
        )
    return "\n".join(lines)


def _save_figure(clf, args):
    if args.no_figure:
        return None
    try:
        from .plotting import plot_counterfactuals
    except ImportError:
        return None
    # The first round explains the batch-balanced classifier itself.
    first_round = clf.counterfactuals_["round"] == 0
    records = {key: values[first_round] for key, values in clf.counterfactuals_.items()}
    if not (records["verdict"] != "").any():
        return None
    output = Path(args.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    figure = plot_counterfactuals(
        records,
        class_names={0: "other digit", 1: "round digit"},
        random_state=args.random_state,
    )
    path = output / "counterfactuals.png"
    figure.savefig(path, dpi=110)
    return path.resolve()


def _parse(argv):
    parser = argparse.ArgumentParser(
        prog="python -m imbcfkd.demo",
        description="CFKD repairs a shortcut learned from a rare class.",
    )
    parser.add_argument("--random-state", type=int, default=0)
    parser.add_argument("--confounder", choices=("colour", "stamp"), default="colour")
    parser.add_argument("--n-minority", type=int, default=100)
    parser.add_argument("--imbalance-ratio", type=float, default=10)
    parser.add_argument(
        "--n-counterfactuals", type=int, default=250, help="per round (default 250)"
    )
    parser.add_argument("--n-rounds", type=int, default=4)
    parser.add_argument("--explainer", choices=sorted(_EXPLAINERS), default="gradient")
    parser.add_argument("--image-size", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument(
        "--output-dir",
        default="imbcfkd-demo",
        help="where the PNG of counterfactuals goes (default: ./imbcfkd-demo)",
    )
    parser.add_argument("--no-figure", action="store_true", help="do not write the PNG")
    parser.add_argument("--quiet", action="store_true", help="print nothing")
    args = parser.parse_args(argv)
    args.minority_prevalence, args.majority_prevalence = 0.9, 0.1
    return args


def _silent(*args, **kwargs):
    pass


if __name__ == "__main__":
    main()
