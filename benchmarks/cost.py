"""What CFKD costs: explainer speed, memory of explanation, fit time against CE+BB.

Three measurements, on the confounded digits:

1. Counterfactuals per second of each explainer at 3x16x16 and 3x32x32
   (target: at least 100 per second at 3x16x16 on two CPU cores), for a
   batch-balanced student, with the explainer's own fit timed apart.
2. Peak memory of generating counterfactuals for 1,000 and 10,000 images,
   each in a fresh process: the growth of the resident set during
   ``explain`` beyond the memory of its output. It must not grow with the
   number of images, since the explainer works in batches.
3. CFKD's total fit time divided by CE+BB's on the Table 1 setting
   (n = 100, k = 10), one run after the other in this process (target: at
   most 2).

    python benchmarks/cost.py
    python benchmarks/cost.py --threads 1 --ratio-seeds 1
    python benchmarks/cost.py --quick                 # a smoke test

Writes ``cost.md`` to ``--output-dir`` and prints it.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

import numpy as np
import torch

from imbcfkd import (
    AutoencoderExplainer,
    BaselineClassifier,
    GradientExplainer,
    make_net,
)
from imbcfkd.experiments import run_experiment
from imbcfkd.local_datasets import DATASETS, check_data_dir, load_dataset

QUICK = {
    "sizes": [8],
    "n_counterfactuals": 40,
    "memory_counts": [100, 400],
    "ratio_seeds": 1,
    "epochs": 2,
    "cfkd_params": {"n_counterfactuals": 40, "finetune_epochs": 1},
    "dataset_params": {
        "n_minority": 20,
        "imbalance_ratio": 3,
        "n_test_minority": 20,
        "n_validation_minority": 5,
        "n_oracle": 100,
    },
}
EXPLAINERS = {
    "GradientExplainer": GradientExplainer,
    "AutoencoderExplainer": partial(AutoencoderExplainer, random_state=0),
}


def main(argv=None):
    args = _parse(argv)
    torch.set_num_threads(args.threads)
    if args.memory_probe:
        print(json.dumps(_memory_probe(args.memory_probe, args)))
        return None
    check_data_dir(args.dataset, args.data_dir)
    output = Path(args.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    size = args.sizes[0]

    lines = [
        f"# Cost of CFKD on {args.dataset}",
        "",
        "Command: `" + " ".join(["python benchmarks/cost.py", *args.argv]) + "`",
        f"Date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC. Machine: "
        f"{platform.machine()}, {os.cpu_count()} CPU cores, {args.threads} "
        f"PyTorch threads, torch {torch.__version__}.",
        "",
        f"## Counterfactuals per second (target: at least 100 at 3x16x16), "
        f"{args.n_counterfactuals} per explainer",
        "",
        "| explainer | image | counterfactuals per second | explainer fit (s) | "
        "flip rate |",
        "|---|---|---|---|---|",
    ]
    for side in args.sizes:
        for name, seconds, fit_seconds, flip_rate in _speed(side, args):
            lines.append(
                f"| {name} | 3x{side}x{side} | {args.n_counterfactuals / seconds:.0f} "
                f"| {fit_seconds:.1f} | {flip_rate:.2f} |"
            )
    lines += [
        "",
        f"## Peak memory of explaining (GradientExplainer, 3x{size}x{size})",
        "",
        "Growth of the resident set during `explain`, in a fresh process; the "
        "output array alone grows with the number of images.",
        "",
        "| images | growth (MB) | of which the output (MB) | working memory (MB) |",
        "|---|---|---|---|",
    ]
    for count in args.memory_counts:
        probe = _run_probe(count, args)
        growth = probe["growth_bytes"] / 2**20
        out = probe["output_bytes"] / 2**20
        lines.append(f"| {count} | {growth:.1f} | {out:.1f} | {growth - out:.1f} |")

    params = _data_params(args, size)
    n_minority = params.pop("n_minority", 100)
    ratio = params.pop("imbalance_ratio", 10)
    lines += [
        "",
        f"## Fit time, CFKD / CE+BB (target: at most 2), n = {n_minority}, k = {ratio}",
        "",
        "| seed | CE+BB fit (s) | CFKD fit (s) | ratio |",
        "|---|---|---|---|",
    ]
    setting = {
        "dataset": args.dataset,
        "data_dir": args.data_dir,
        "n_minority": n_minority,
        "imbalance_ratio": ratio,
        "dataset_params": params,
        "net_params": {"max_epochs": args.epochs},
        "cfkd_params": args.cfkd_params,
    }
    ratios = []
    for seed in range(args.ratio_seeds):
        base = run_experiment("CE+BB", random_state=seed, **setting)["fit_seconds"]
        cfkd = run_experiment("CFKD", random_state=seed, **setting)["fit_seconds"]
        ratios.append(cfkd / base)
        lines.append(f"| {seed} | {base:.1f} | {cfkd:.1f} | {cfkd / base:.2f} |")
    lines += [f"| mean | | | {np.mean(ratios):.2f} |", ""]
    report = "\n".join(lines)
    (output / "cost.md").write_text(report)
    if not args.quiet:
        print(report)
    return report


def _data_params(args, size):
    return {**args.dataset_params, "image_size": size}


def _student(size, args, seed=0, max_epochs=None):
    """The task at ``size`` pixels and a CE+BB classifier trained on it."""
    data = load_dataset(
        args.dataset,
        data_dir=args.data_dir,
        random_state=seed,
        **_data_params(args, size),
    )
    epochs = args.epochs if max_epochs is None else max_epochs
    student = BaselineClassifier(net=make_net(max_epochs=epochs), random_state=seed)
    student.fit(data.train.X, data.train.y)
    return data, student


def _sources(data, student, n):
    """``n`` correctly classified training images, alternating the classes."""
    X, y = data.train.X, data.train.y
    correct = student.predict(X) == y
    rows = [np.flatnonzero(correct & (y == c)) for c in (0, 1)]
    order = np.ravel(
        np.column_stack([np.resize(rows[0], n // 2), np.resize(rows[1], n // 2)])
    )
    return X[order], (1 - y[order]).astype(np.int64)


def _speed(size, args):
    data, student = _student(size, args)
    X, target = _sources(data, student, args.n_counterfactuals)
    results = []
    for name, make_explainer in EXPLAINERS.items():
        explainer = make_explainer()
        start = time.perf_counter()
        explainer.fit(data.train.X, data.train.y)
        fit_seconds = time.perf_counter() - start
        # One small call first, so that PyTorch's one-off set-up is not timed.
        explainer.explain(student.net_, X[:8], target[:8])
        start = time.perf_counter()
        counterfactuals, _ = explainer.explain(student.net_, X, target)
        seconds = time.perf_counter() - start
        flip_rate = np.mean(student.net_.predict(counterfactuals) == target)
        results.append((name, seconds, fit_seconds, flip_rate))
    return results


def _run_probe(count, args):
    command = [sys.executable, __file__, *args.argv, "--memory-probe", str(count)]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def _memory_probe(count, args):
    data, student = _student(args.sizes[0], args, max_epochs=min(3, args.epochs))
    X, target = _sources(data, student, count)
    explainer = GradientExplainer().fit(data.train.X)
    # Warm up once, so that one-off allocations of PyTorch do not count.
    explainer.explain(student.net_, X[:8], target[:8])
    before = _resident_bytes()
    _reset_peak()
    counterfactuals, _ = explainer.explain(student.net_, X, target)
    peak = _peak_resident_bytes()
    return {
        "images": count,
        "growth_bytes": max(0, peak - before),
        "output_bytes": counterfactuals.nbytes,
    }


def _status_bytes(field):
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def _resident_bytes():
    return _status_bytes("VmRSS")


def _reset_peak():
    # Linux resets the peak resident set (VmHWM) when 5 is written here.
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")


def _peak_resident_bytes():
    return _status_bytes("VmHWM")


def _parse(argv):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--dataset", choices=DATASETS, default="digits")
    parser.add_argument("--data-dir", help="folder of CelebA or Camelyon17")
    parser.add_argument("--sizes", type=int, nargs="+", default=[16, 32])
    parser.add_argument("--n-counterfactuals", type=int, default=1000)
    parser.add_argument("--memory-counts", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--ratio-seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=15, help="of every net")
    parser.add_argument("--quick", action="store_true", help="a tiny smoke test")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--output-dir", default="benchmark-results/cost")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--memory-probe", type=int, help=argparse.SUPPRESS)
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    if args.dataset != "digits" and args.data_dir is None:
        parser.error(f"--dataset {args.dataset} needs --data-dir, the folder it is in")
    args.argv = argv
    args.dataset_params, args.cfkd_params = {}, {}
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    return args


if __name__ == "__main__":
    try:
        main()
    except FileNotFoundError as error:  # a dataset folder is missing
        sys.exit(f"error: {error}")
