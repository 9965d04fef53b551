"""The paper's Table 1: every method on every (n, k) cell, several seeds.

For each minority size n and imbalance ratio k, each method trains the same
network on the same confounded training set and is scored on a test set
where the confounder is independent of the class: F1 of the minority class
(as the paper), average group accuracy (AGA) and worst group accuracy
(WGA), mean ± standard deviation over seeds. CFKD's total fit time is
divided by CE+BB's, both measured in this run.

    python benchmarks/table1.py                       # the full grid, 5 seeds
    python benchmarks/table1.py --quick               # a smoke test, seconds
    python benchmarks/table1.py --dataset celeba --data-dir ~/data/celeba
    python benchmarks/table1.py --methods CFKD --explainer autoencoder+sparse
    python benchmarks/table1.py --methods CFKD --explore-threshold 0.5
    python benchmarks/table1.py --rows old/runs.csv new/runs.csv   # merge, no runs

Writes ``runs.csv`` (one line per run) and ``table1.md`` to ``--output-dir``.
With ``--rows``, nothing is run: the tables are made from earlier
``runs.csv`` files, a later file's run replacing an earlier file's run of the
same cell, seed and method.
"""

import argparse
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from imbcfkd.experiments import (
    METHODS,
    markdown_table,
    read_csv,
    run_grid,
    summarize,
    write_csv,
)
from imbcfkd.local_datasets import DATASETS

# The explainer variants of the explainer benchmark, a script beside this one.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from explainers import VARIANTS, make_explainer  # noqa: E402

FULL_CELLS = [(n, k) for n in (100, 200) for k in (10, 20, 30)]
QUICK = {
    "cells": [(20, 2), (20, 4)],
    "seeds": [0],
    "dataset_params": {
        "image_size": 8,
        "n_test_minority": 40,
        "n_validation_minority": 10,
        "n_oracle": 200,
    },
    "net_params": {"max_epochs": 3, "module__width": 4},
    "cfkd_params": {"n_counterfactuals": 40, "finetune_epochs": 1},
}
METRICS = {
    "f1": "F1 of the minority class (%)",
    "worst_group_accuracy": "Worst group accuracy (%)",
    "average_group_accuracy": "Average group accuracy (%)",
}


def main(argv=None):
    args = _parse(argv)
    settings = _settings(args)
    output = Path(args.output_dir)
    output.mkdir(parents=True, exist_ok=True)

    if args.rows:
        return _merge(args, output)
    start = time.perf_counter()
    rows = run_grid(
        args.methods,
        cells=settings["cells"],
        seeds=settings["seeds"],
        n_jobs=args.n_jobs,
        verbose=args.verbose,
        dataset=args.dataset,
        data_dir=args.data_dir,
        dataset_params=settings["dataset_params"],
        net_params=settings["net_params"],
        cfkd_params=settings["cfkd_params"],
    )
    seconds = time.perf_counter() - start
    write_csv(rows, output / "runs.csv")
    report = _report(rows, args, settings, seconds)
    (output / "table1.md").write_text(report)
    if not args.quiet:
        print(report)
        print(f"Wrote {output / 'runs.csv'} and {output / 'table1.md'}.")
    return rows


def _merge(args, output):
    merged = {}
    for path in args.rows:
        for row in read_csv(path):
            key = (row["n_minority"], row["imbalance_ratio"], row["seed"])
            merged[key + (row["method"],)] = row
    rows = list(merged.values())
    write_csv(rows, output / "runs.csv")
    lines = [
        f"# Table 1 on {rows[0]['dataset'] if rows else args.dataset}",
        "",
        "Command: `" + " ".join(["python benchmarks/table1.py", *args.argv]) + "`",
        "",
    ]
    for path in args.rows:
        methods = sorted({row["method"] for row in read_csv(path)})
        lines.append(f"- `{path}`: {', '.join(methods)}")
    lines.append("")
    report = "\n".join(lines) + "\n" + _tables(rows)
    (output / "table1.md").write_text(report)
    if not args.quiet:
        print(report)
    return rows


def fit_time_ratio(rows):
    """Mean CFKD fit time over mean CE+BB fit time, per cell.

    Parameters
    ----------
    rows : list of dict
        Rows of :func:`imbcfkd.experiments.run_grid`.

    Returns
    -------
    ratios : dict
        ``{(n_minority, imbalance_ratio): ratio}`` for the cells with both.
    """
    seconds = summarize(rows, "fit_seconds")
    return {
        cell: by_method["CFKD"][0] / by_method["CE+BB"][0]
        for cell, by_method in seconds.items()
        if "CFKD" in by_method and "CE+BB" in by_method
    }


def _report(rows, args, settings, seconds):
    lines = [
        f"# Table 1 on {args.dataset}",
        "",
        "Command: `" + " ".join(["python benchmarks/table1.py", *args.argv]) + "`",
        f"Date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC. "
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, "
        f"Python {platform.python_version()}, torch {torch.__version__}. "
        f"Wall time: {seconds / 60:.1f} min with {args.n_jobs} parallel runs.",
        f"Seeds: {len(settings['seeds'])}. Network: make_net("
        f"{_kwargs(settings['net_params'])}); CFKD: "
        f"{_kwargs(settings['cfkd_params']) or 'defaults'}; data: "
        f"{_kwargs(settings['dataset_params']) or 'defaults'}.",
        "",
    ]
    return "\n".join(lines) + "\n" + _tables(rows)


def targets(rows):
    """CFKD against the other methods and the oracle, cell by cell.

    Parameters
    ----------
    rows : list of dict
        Rows of :func:`imbcfkd.experiments.run_grid` with CFKD, CE+BB and the
        oracle, and any other methods.

    Returns
    -------
    summary : dict
        ``best_f1`` and ``best_wga``: the cells where CFKD has the best mean
        (the oracle aside); ``gap_closed``: per cell, the share of the worst
        group accuracy gap between CE+BB and the oracle that CFKD closes,
        ``(CFKD - CE+BB) / (Oracle - CE+BB)`` of the means; ``n_cells``.
    """
    f1, wga = summarize(rows, "f1"), summarize(rows, "worst_group_accuracy")

    def best(summary, cell):
        means = {m: v[0] for m, v in summary[cell].items() if m != "Oracle"}
        return max(means, key=means.get) == "CFKD"

    cells = sorted(c for c in wga if {"CFKD", "CE+BB", "Oracle"} <= set(wga[c]))
    gap = {}
    for cell in cells:
        base, oracle = wga[cell]["CE+BB"][0], wga[cell]["Oracle"][0]
        gap[cell] = (wga[cell]["CFKD"][0] - base) / (oracle - base)
    return {
        "best_f1": [c for c in cells if best(f1, c)],
        "best_wga": [c for c in cells if best(wga, c)],
        "gap_closed": gap,
        "n_cells": len(cells),
    }


def _tables(rows):
    lines = []
    for metric, title in METRICS.items():
        lines += [f"## {title}", "", markdown_table(rows, metric), ""]
    summary = targets(rows)
    if summary["n_cells"]:
        gaps = summary["gap_closed"]
        lines += [
            "## CFKD against the others",
            "",
            f"- Best mean F1 in {len(summary['best_f1'])} of "
            f"{summary['n_cells']} cells, best mean worst group accuracy in "
            f"{len(summary['best_wga'])} (the oracle aside).",
            "- Share of the worst group accuracy gap between CE+BB and the oracle "
            f"that CFKD closes: {100 * np.mean(list(gaps.values())):.0f}% on "
            "average; "
            + ", ".join(
                f"{100 * g:.0f}% at n={c[0]}, k={c[1]:g}" for c, g in gaps.items()
            )
            + ".",
            "",
        ]
    ratios = fit_time_ratio(rows)
    if ratios:
        fit = summarize(rows, "fit_seconds")
        lines += [
            "## Fit time: CFKD / CE+BB (target: at most 2)",
            "",
            "| n | k | CE+BB fit (s) | CFKD fit (s) | ratio |",
            "|---|---|---|---|---|",
        ]
        for cell, ratio in sorted(ratios.items()):
            lines.append(
                f"| {cell[0]} | {cell[1]:g} | {fit[cell]['CE+BB'][0]:.1f} | "
                f"{fit[cell]['CFKD'][0]:.1f} | {ratio:.2f} |"
            )
        totals = [sum(fit[c][m][0] for c in ratios) for m in ("CE+BB", "CFKD")]
        lines.append(
            f"| all | | {totals[0]:.1f} | {totals[1]:.1f} | "
            f"{totals[1] / totals[0]:.2f} |"
        )
        lines.append("")
    cfkd = [row for row in rows if row["method"] == "CFKD" and "flip_rate" in row]
    if cfkd:
        lines.append(
            "CFKD's first round, mean over runs: flip rate "
            f"{np.mean([r['flip_rate'] for r in cfkd]):.2f}, true counterfactuals "
            f"{np.nanmean([r['feedback_accuracy'] for r in cfkd]):.2f}, "
            f"{np.mean([r['n_kept'] for r in cfkd]):.0f} kept, fine-tuned model "
            f"accepted in {sum(bool(r['accepted']) for r in cfkd)} of {len(cfkd)} "
            "runs."
        )
        lines.append("")
    return "\n".join(lines)


def _kwargs(params):
    return ", ".join(f"{key}={value!r}" for key, value in params.items())


def _settings(args):
    if args.quick:
        settings = dict(QUICK)
    else:
        settings = {
            "cells": FULL_CELLS,
            "seeds": list(range(args.seeds)),
            "dataset_params": {},
            "net_params": {},
            "cfkd_params": {},
        }
    if args.image_size is not None:
        settings["dataset_params"] = {
            **settings["dataset_params"],
            "image_size": args.image_size,
        }
    if args.epochs is not None:
        settings["net_params"] = {**settings["net_params"], "max_epochs": args.epochs}
    if args.n_rounds is not None:
        settings["cfkd_params"] = {**settings["cfkd_params"], "n_rounds": args.n_rounds}
    if args.explore_threshold is not None:
        settings["cfkd_params"] = {
            **settings["cfkd_params"],
            "explore_threshold": args.explore_threshold,
        }
    if args.explainer is not None:
        settings["cfkd_params"] = {
            **settings["cfkd_params"],
            "explainer": make_explainer(args.explainer),
        }
    if args.cells:
        settings["cells"] = args.cells
    return settings


def _cell(text):
    try:
        n, k = text.split(",")
        return int(n), float(k) if "." in k else int(k)
    except ValueError as error:
        raise argparse.ArgumentTypeError(
            f"a cell is n,k such as 100,10; got {text!r}"
        ) from error


def _parse(argv):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--dataset", choices=DATASETS, default="digits")
    parser.add_argument(
        "--data-dir", help="folder of CelebA or Camelyon17 (not for digits)"
    )
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0 .. SEEDS-1")
    parser.add_argument(
        "--cells",
        type=_cell,
        nargs="+",
        help="n,k pairs (default: n in 100, 200 and k in 10, 20, 30)",
    )
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=METHODS)
    parser.add_argument("--image-size", type=int, help="override the dataset's")
    parser.add_argument("--epochs", type=int, help="training epochs of every net")
    parser.add_argument("--n-rounds", type=int, help="CFKD rounds (default 1)")
    parser.add_argument(
        "--explainer",
        choices=[name for name in VARIANTS if not name.endswith("+explore")],
        help="CFKD's explainer, a variant of benchmarks/explainers.py "
        "(default: GradientExplainer's defaults)",
    )
    parser.add_argument(
        "--explore-threshold",
        type=float,
        help="CFKD's explore_threshold: recycled sources get new explanations",
    )
    parser.add_argument("--n-jobs", type=int, default=2, help="parallel runs")
    parser.add_argument("--quick", action="store_true", help="a tiny smoke test")
    parser.add_argument(
        "--rows",
        nargs="+",
        metavar="CSV",
        help="make the tables from these runs.csv files instead of running",
    )
    parser.add_argument("--output-dir", default="benchmark-results/table1")
    parser.add_argument("--verbose", type=int, default=0, help="joblib progress")
    parser.add_argument("--quiet", action="store_true", help="print nothing")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    if args.dataset != "digits" and args.data_dir is None:
        parser.error(f"--dataset {args.dataset} needs --data-dir, the folder it is in")
    args.argv = argv
    return args


if __name__ == "__main__":
    try:
        main()
    except FileNotFoundError as error:  # a dataset folder is missing
        sys.exit(f"error: {error}")
