"""The paper's Figure 2: what more majority images do to a batch-balanced classifier.

CE+BB with n = 100 minority images and imbalance ratios k in {1, 5, 10, 20,
30}: average (and worst) group accuracy against k, mean ± standard deviation
over seeds, and a t-SNE of the learned representation of the test images
(the input of the last layer) for the first seed, coloured by the four
(class, confounder) groups.

    python benchmarks/figure2.py
    python benchmarks/figure2.py --dataset camelyon17 --data-dir ~/data/camelyon17

Writes ``runs.csv``, ``figure2.md`` and ``figure2.png`` to ``--output-dir``.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from imbcfkd.datasets import GROUP_NAMES
from imbcfkd.experiments import markdown_table, run_grid, summarize, write_csv
from imbcfkd.local_datasets import DATASETS

GROUP_COLOURS = ("#4c72b0", "#8fb1e3", "#c44e52", "#f0a0a2")


def main(argv=None):
    args = _parse(argv)
    output = Path(args.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    cells = [(args.n_minority, k) for k in args.ratios]
    dataset_params = {} if args.image_size is None else {"image_size": args.image_size}
    net_params = {} if args.epochs is None else {"max_epochs": args.epochs}

    start = time.perf_counter()
    rows = run_grid(
        ["CE+BB"],
        cells=cells,
        seeds=range(args.seeds),
        n_jobs=args.n_jobs,
        dataset=args.dataset,
        data_dir=args.data_dir,
        dataset_params=dataset_params,
        net_params=net_params,
        return_features=True,
    )
    seconds = time.perf_counter() - start
    write_csv(rows, output / "runs.csv")

    report = _report(rows, args, seconds)
    (output / "figure2.md").write_text(report)
    figure_path = _plot(rows, args, output / "figure2.png")
    if not args.quiet:
        print(report)
        print(
            f"Wrote {output / 'runs.csv'}, {output / 'figure2.md'} and {figure_path}."
        )
    return rows


def _report(rows, args, seconds):
    aga = summarize(rows, "average_group_accuracy")
    wga = summarize(rows, "worst_group_accuracy")
    lines = [
        f"# Figure 2 on {args.dataset}: CE+BB, n = {args.n_minority}",
        "",
        "Command: `" + " ".join(["python benchmarks/figure2.py", *args.argv]) + "`",
        f"Seeds: {args.seeds}. Wall time: {seconds / 60:.1f} min.",
        "",
        "| k | average group accuracy (%) | worst group accuracy (%) |",
        "|---|---|---|",
    ]
    for cell in sorted(aga):
        mean_a, std_a, _ = aga[cell]["CE+BB"]
        mean_w, std_w, _ = wga[cell]["CE+BB"]
        lines.append(
            f"| {cell[1]:g} | {100 * mean_a:.1f} ± {100 * std_a:.1f} | "
            f"{100 * mean_w:.1f} ± {100 * std_w:.1f} |"
        )
    lines += ["", "F1 of the minority class (%):", "", markdown_table(rows, "f1"), ""]
    return "\n".join(lines)


def _plot(rows, args, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.manifold import TSNE

    aga = summarize(rows, "average_group_accuracy")
    wga = summarize(rows, "worst_group_accuracy")
    ratios = [cell[1] for cell in sorted(aga)]
    first_seed = min(row["seed"] for row in rows)
    embedded = {
        row["imbalance_ratio"]: row
        for row in rows
        if row["seed"] == first_seed and "features" in row
    }

    figure, axes = plt.subplots(
        1, 1 + len(ratios), figsize=(3.2 * (1 + len(ratios)), 3.4)
    )
    curve = axes[0]
    for summary, label, marker in ((aga, "AGA", "o"), (wga, "WGA", "s")):
        means = np.array([summary[(args.n_minority, k)]["CE+BB"][0] for k in ratios])
        stds = np.array([summary[(args.n_minority, k)]["CE+BB"][1] for k in ratios])
        curve.errorbar(ratios, means, yerr=stds, marker=marker, capsize=3, label=label)
    curve.set_xlabel("imbalance ratio k")
    curve.set_ylabel("group accuracy")
    curve.set_ylim(0, 1)
    curve.set_title(f"CE+BB, n = {args.n_minority}")
    curve.legend(loc="lower right")

    rng = np.random.RandomState(0)
    for ax, k in zip(axes[1:], ratios, strict=True):
        row = embedded[k]
        chosen = _balanced_subsample(row["groups"], args.tsne_per_group, rng)
        points = TSNE(
            n_components=2,
            init="pca",
            perplexity=min(30.0, len(chosen) / 4),
            random_state=0,
        ).fit_transform(row["features"][chosen])
        for group in range(4):
            mask = row["groups"][chosen] == group
            ax.scatter(
                *points[mask].T,
                s=6,
                c=GROUP_COLOURS[group],
                label=GROUP_NAMES[group],
                alpha=0.8,
                linewidths=0,
            )
        ax.set_title(f"k = {k:g}: AGA {row['average_group_accuracy']:.2f}")
        ax.set_xticks([])
        ax.set_yticks([])
    handles, labels = axes[1].get_legend_handles_labels()
    figure.legend(
        handles, labels, loc="lower center", ncol=4, markerscale=3, frameon=False
    )
    figure.tight_layout(rect=(0, 0.08, 1, 1))
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _balanced_subsample(groups, per_group, rng):
    """Up to ``per_group`` test images of each group, so that rare groups show."""
    chosen = [
        rng.choice(
            np.flatnonzero(groups == g),
            size=min(per_group, int((groups == g).sum())),
            replace=False,
        )
        for g in np.unique(groups)
    ]
    return np.sort(np.concatenate(chosen))


def _parse(argv):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--dataset", choices=DATASETS, default="digits")
    parser.add_argument("--data-dir", help="folder of CelebA or Camelyon17")
    parser.add_argument("--n-minority", type=int, default=100)
    parser.add_argument("--ratios", type=float, nargs="+", default=[1, 5, 10, 20, 30])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--image-size", type=int, help="override the dataset's")
    parser.add_argument("--epochs", type=int, help="training epochs")
    parser.add_argument("--tsne-per-group", type=int, default=250)
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--output-dir", default="benchmark-results/figure2")
    parser.add_argument("--quiet", action="store_true")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    if args.dataset != "digits" and args.data_dir is None:
        parser.error(f"--dataset {args.dataset} needs --data-dir, the folder it is in")
    args.ratios = [int(k) if float(k).is_integer() else k for k in args.ratios]
    args.argv = argv
    return args


if __name__ == "__main__":
    try:
        main()
    except FileNotFoundError as error:  # a dataset folder is missing
        sys.exit(f"error: {error}")
