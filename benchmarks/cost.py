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
from imbcfkd.datasets import make_confounded_digits
from imbcfkd.experiments import run_experiment

EXPLAINERS = {
    "GradientExplainer": GradientExplainer,
    "AutoencoderExplainer": partial(AutoencoderExplainer, random_state=0),
}


def main(argv=None):
    args = _parse(argv)
    if args.memory_probe:
        print(json.dumps(_memory_probe(args.memory_probe, args)))
        return None
    torch.set_num_threads(args.threads)
    output = Path(args.output_dir)
    output.mkdir(parents=True, exist_ok=True)

    lines = [
        "# Cost of CFKD",
        "",
        "Command: `" + " ".join(["python benchmarks/cost.py", *args.argv]) + "`",
        f"Date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC. Machine: "
        f"{platform.machine()}, {os.cpu_count()} CPU cores, {args.threads} "
        f"PyTorch threads, torch {torch.__version__}.",
        "",
        "## Counterfactuals per second (target: at least 100 at 3x16x16)",
        "",
        "| explainer | image | counterfactuals per second | explainer fit (s) | "
        "flip rate |",
        "|---|---|---|---|---|",
    ]
    for size in args.sizes:
        for name, seconds, fit_seconds, flip_rate in _speed(size, args):
            lines.append(
                f"| {name} | 3x{size}x{size} | {args.n_counterfactuals / seconds:.0f} "
                f"| {fit_seconds:.1f} | {flip_rate:.2f} |"
            )
    lines += [
        "",
        "## Peak memory of explaining (GradientExplainer, 3x16x16)",
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
    lines += [
        "",
        "## Fit time, CFKD / CE+BB (target: at most 2), n = 100, k = 10",
        "",
        "| seed | CE+BB fit (s) | CFKD fit (s) | ratio |",
        "|---|---|---|---|",
    ]
    ratios = []
    for seed in range(args.ratio_seeds):
        base = run_experiment("CE+BB", random_state=seed)["fit_seconds"]
        cfkd = run_experiment("CFKD", random_state=seed)["fit_seconds"]
        ratios.append(cfkd / base)
        lines.append(f"| {seed} | {base:.1f} | {cfkd:.1f} | {cfkd / base:.2f} |")
    lines.append(f"| mean | | | {np.mean(ratios):.2f} |")
    lines.append("")
    report = "\n".join(lines)
    (output / "cost.md").write_text(report)
    if not args.quiet:
        print(report)
    return report


def _student(size, seed=0, max_epochs=15):
    data = make_confounded_digits(image_size=size, random_state=seed)
    net = make_net(max_epochs=max_epochs)
    student = BaselineClassifier(net=net, random_state=seed)
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
    data, student = _student(size)
    X, target = _sources(data, student, args.n_counterfactuals)
    results = []
    for name, make_explainer in EXPLAINERS.items():
        explainer = make_explainer()
        start = time.perf_counter()
        explainer.fit(data.train.X, data.train.y)
        fit_seconds = time.perf_counter() - start
        start = time.perf_counter()
        counterfactuals, _ = explainer.explain(student.net_, X, target)
        seconds = time.perf_counter() - start
        flip_rate = np.mean(student.net_.predict(counterfactuals) == target)
        results.append((name, seconds, fit_seconds, flip_rate))
    return results


def _run_probe(count, args):
    command = [
        sys.executable,
        __file__,
        "--memory-probe",
        str(count),
        "--threads",
        str(args.threads),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def _memory_probe(count, args):
    torch.set_num_threads(args.threads)
    data, student = _student(16, max_epochs=3)
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
    parser.add_argument("--sizes", type=int, nargs="+", default=[16, 32])
    parser.add_argument("--n-counterfactuals", type=int, default=1000)
    parser.add_argument("--memory-counts", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--ratio-seeds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--output-dir", default="benchmark-results/cost")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--memory-probe", type=int, help=argparse.SUPPRESS)
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    args.argv = argv
    return args


if __name__ == "__main__":
    main()
