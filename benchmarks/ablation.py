"""What each ingredient of the explainer and of the CFKD schedule does to CFKD.

Runs CFKD on Table 1 cells once per configuration, every other setting at
its default, beside its base classifier (CE+BB) and the oracle, and reports
per configuration and cell: minority F1, worst group accuracy (WGA), the
share of the WGA gap between CE+BB and the oracle that CFKD closes, and the
fit time over CE+BB's. The configurations:

- ``CFKD``: the defaults (4 rounds of 250 counterfactuals, 2 epochs of
  fine-tuning each, ``GradientExplainer()``);
- one per explainer variant of ``benchmarks/explainers.py`` (``ideal`` is
  the yardstick that swaps the colour cast exactly), which switches one
  ingredient off (``-scales``, ``-confidence``) or on (``+noise``,
  ``+adversarial``, ``+sparse``, the ``autoencoder`` prior);
- ``explore``: recycled sources get new explanations
  (``explore_threshold=0.5``);
- ``keep true``: true counterfactuals are fine-tuned on too;
- ``1 epoch per round``: half the fine-tuning of the default, and
  ``8 rounds`` of 125 counterfactuals with 1 epoch each;
- ``1 round``: one round of 1000 counterfactuals and 5 epochs, the schedule
  before rounds became the default, and ``1 round, previous explainer``,
  which is CFKD as it was before both changes.

    python benchmarks/ablation.py                       # both cells, 5 seeds
    python benchmarks/ablation.py --cells 100,10 --configs CFKD "1 round"
    python benchmarks/ablation.py --quick               # a smoke test

Writes ``runs.csv`` and ``ablation.md`` to ``--output-dir``.
"""

import argparse
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from imbcfkd.experiments import run_grid, summarize, write_csv

sys.path.insert(0, str(Path(__file__).resolve().parent))
from explainers import VARIANTS, make_explainer  # noqa: E402
from table1 import QUICK, _cell  # noqa: E402

PREVIOUS_SCHEDULE = {"n_rounds": 1, "n_counterfactuals": 1000, "finetune_epochs": 5}


def configurations():
    """CFKD parameters of every configuration, by name (explainers unfitted)."""
    configs = {"CFKD": {}}
    for variant in VARIANTS:
        if variant != "gradient" and not variant.endswith("+explore"):
            configs[variant] = {"explainer": make_explainer(variant)}
    configs["explore"] = {"explore_threshold": 0.5}
    configs["keep true"] = {"keep_true_counterfactuals": True}
    configs["1 epoch per round"] = {"finetune_epochs": 1}
    configs["8 rounds"] = {
        "n_rounds": 8,
        "n_counterfactuals": 125,
        "finetune_epochs": 1,
    }
    configs["1 round"] = dict(PREVIOUS_SCHEDULE)
    configs["1 round, previous explainer"] = {
        **PREVIOUS_SCHEDULE,
        "explainer": make_explainer("gradient-scales-confidence"),
    }
    return configs


def main(argv=None):
    args = _parse(argv)
    configs = configurations()
    names = args.configs or list(configs)
    unknown = sorted(set(names) - set(configs))
    if unknown:
        sys.exit(
            f"error: unknown configurations {unknown}; choose from {list(configs)}"
        )
    quick = QUICK if args.quick else {}
    cells = args.cells or quick.get("cells") or [(100, 10), (200, 30)]
    seeds = quick.get("seeds") or list(range(args.seeds))
    common = {
        "cells": cells,
        "seeds": seeds,
        "n_jobs": args.n_jobs,
        "dataset_params": quick.get("dataset_params"),
        "net_params": quick.get("net_params"),
    }
    small = quick.get("cfkd_params", {})

    start = time.perf_counter()
    rows = run_grid(["CE+BB", "Oracle"], **common)
    for name in names:
        params = {**small, **configs[name]}
        if args.quick and "n_counterfactuals" in configs[name]:
            params["n_counterfactuals"] = small["n_counterfactuals"]
        for row in run_grid(["CFKD"], cfkd_params=params, **common):
            rows.append({**row, "method": name})
        if not args.quiet:
            print(f"{name}: done after {time.perf_counter() - start:.0f} s", flush=True)
    minutes = (time.perf_counter() - start) / 60

    output = Path(args.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    write_csv(rows, output / "runs.csv")
    command = shlex.join(["python", "benchmarks/ablation.py", *(argv or sys.argv[1:])])
    report = (
        f"Command: `{command}`; {len(seeds)} seeds, {minutes:.1f} min.\n\n"
        + ablation_table(rows, names)
    )
    (output / "ablation.md").write_text(report)
    if not args.quiet:
        print(report)
    return rows


def ablation_table(rows, names):
    """Markdown: one line per configuration, F1 / WGA / gap / time per cell.

    The gap closed is ``(WGA - WGA of CE+BB) / (WGA of the oracle - WGA of
    CE+BB)`` of the means over seeds; the time is the mean fit time over
    CE+BB's mean fit time.
    """
    f1, wga, seconds = (
        summarize(rows, m) for m in ("f1", "worst_group_accuracy", "fit_seconds")
    )
    cells = sorted(wga)
    header = "| configuration | " + " | ".join(
        f"F1 / WGA / gap / time, n={n} k={k:g}" for n, k in cells
    )
    lines = [header + " |", "|---|" + "---|" * len(cells)]
    for name in ["CE+BB", "Oracle", *names]:
        entries = []
        for cell in cells:
            if name not in wga[cell]:
                entries.append("")
                continue
            base, oracle = wga[cell]["CE+BB"][0], wga[cell]["Oracle"][0]
            mean = wga[cell][name][0]
            gap = (mean - base) / (oracle - base) if oracle > base else np.nan
            text = f"{100 * f1[cell][name][0]:.1f} / {100 * mean:.1f}"
            if name != "Oracle":
                ratio = seconds[cell][name][0] / seconds[cell]["CE+BB"][0]
                closed = "n/a" if np.isnan(gap) else f"{round(100 * gap)}%"
                text += f" / {closed} / {ratio:.2f}"
            entries.append(text)
        lines.append(f"| {name} | " + " | ".join(entries) + " |")
    return "\n".join(lines) + "\n"


def _parse(argv):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--cells", type=_cell, nargs="+", help="n,k pairs")
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0 .. SEEDS-1")
    parser.add_argument("--configs", nargs="+", help="configurations to run")
    parser.add_argument("--n-jobs", type=int, default=2, help="parallel runs")
    parser.add_argument("--quick", action="store_true", help="a tiny smoke test")
    parser.add_argument("--output-dir", default="benchmark-results/ablation")
    parser.add_argument("--quiet", action="store_true", help="print nothing")
    return parser.parse_args(argv)


if __name__ == "__main__":
    main()
