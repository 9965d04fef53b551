"""Each explainer's counterfactuals of the same sources, side by side.

Uses the set-up of ``benchmarks/explainers.py`` (a batch-balanced student on
the confounded digits, an oracle and a confounder model trained on
well-conditioned data). The figure has one row per source image: the source,
then the counterfactual of each explainer variant. Above each counterfactual:
the student's class (``s``), the oracle's (``o``) and whether the confounder
model sees a colour cast (``cast``/``none``); a red frame marks a
counterfactual that did not flip the student. Half the sources are majority
digits, half minority.

    python benchmarks/counterfactual_figure.py
    python benchmarks/counterfactual_figure.py --variants gradient autoencoder
    python benchmarks/counterfactual_figure.py --quick --output /tmp/quick.png

Writes the figure to ``--output`` (default ``docs/figures/counterfactuals.png``).
"""

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from explainers import (  # noqa: E402
    QUICK,
    VARIANTS,
    draw_sources,
    make_explainer,
    prepare_from_args,
)

DEFAULT_VARIANTS = [
    "ideal",
    "gradient",
    "gradient-scales-confidence",
    "gradient+adversarial",
    "gradient+sparse",
    "autoencoder",
    "autoencoder+sparse",
]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-sources", type=int, default=6)
    parser.add_argument("--random-state", type=int, default=0)
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=[name for name in VARIANTS if not name.endswith("+explore")],
        default=DEFAULT_VARIANTS,
    )
    parser.add_argument("--output", default="docs/figures/counterfactuals.png")
    parser.add_argument("--quick", action="store_true", help="a tiny smoke test")
    args = parser.parse_args(argv)
    args.dataset, args.data_dir, args.image_size = "digits", None, 16
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        sys.exit("error: the figure needs matplotlib: pip install 'imbcfkd[plot]'")

    data, student, oracle, confounder, _ = prepare_from_args(args)
    X, target = draw_sources(
        data.train, student, args.n_sources, args.random_state, replace=False
    )
    columns = [("source", X)]
    for variant in args.variants:
        prior_params = QUICK["prior_params"] if args.quick else None
        explainer = make_explainer(variant, args.random_state, prior_params)
        if hasattr(explainer, "fit"):
            explainer.fit(data.train.X, data.train.y)
        columns.append((variant, explainer.explain(student, X, target)[0]))

    low, high = data.train.X.min(), data.train.X.max()
    figure, axes = plt.subplots(
        len(X),
        len(columns),
        figsize=(1.6 * len(columns), 1.75 * len(X)),
        squeeze=False,
    )
    for col, (name, images) in enumerate(columns):
        student_says = student.predict(images)
        oracle_says = oracle.predict(images)
        cast = confounder.predict(images)
        for row in range(len(X)):
            ax = axes[row, col]
            picture = (np.moveaxis(images[row], 0, -1) - low) / (high - low)
            ax.imshow(np.clip(picture, 0, 1), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(
                f"s{student_says[row]} o{oracle_says[row]} "
                f"{'cast' if cast[row] else 'none'}",
                fontsize=7,
            )
            if col and student_says[row] != target[row]:
                for spine in ax.spines.values():
                    spine.set_edgecolor("red")
                    spine.set_linewidth(2)
        axes[0, col].set_title(
            f"{name}\n{axes[0, col].get_title()}", fontsize=7, fontweight="bold"
        )
    figure.tight_layout()
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=150)
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
