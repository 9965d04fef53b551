"""What a working folder costs, and what resuming from it saves.

Fits the demo's CFKD (confounded digits, n = 100, k = 10, the default four
rounds of 250 counterfactuals, an oracle teacher) four ways: without a
working folder; with one, from scratch; interrupted at a teacher call and
started again; and once more on the finished folder. Prints the fit times,
the size of the folder, the teacher calls made by each fit, and whether
every fit ends with the same model::

    python benchmarks/resume.py
    python benchmarks/resume.py --quick
"""

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from imbcfkd import CFKDClassifier, OracleTeacher, make_net
from imbcfkd.datasets import make_confounded_digits


class CountingTeacher:
    """Asks ``teacher``; is interrupted at call ``interrupt_at``."""

    def __init__(self, teacher, interrupt_at=None):
        self.teacher = teacher
        self.interrupt_at = interrupt_at
        self.calls = 0

    def __call__(self, X):
        if self.calls == self.interrupt_at:
            raise KeyboardInterrupt
        self.calls += 1
        return self.teacher(X)


def main(argv=None):
    args = _parse(argv)
    torch.set_num_threads(args.threads)
    if args.quick:
        data = make_confounded_digits(30, 5, image_size=8, n_oracle=200, random_state=0)
    else:
        data = make_confounded_digits(100, 10, random_state=0)
    epochs = 2 if args.quick else 15
    oracle = CFKDClassifier(
        net=make_net(max_epochs=epochs), n_counterfactuals=0, random_state=0
    ).fit(data.oracle.X, data.oracle.y)
    params = dict(
        net=make_net(max_epochs=epochs),
        n_counterfactuals=20 if args.quick else 250,
        n_rounds=2 if args.quick else 4,
        random_state=0,
    )
    folder = Path(tempfile.mkdtemp(prefix="imbcfkd-resume-"))

    def fit(label, work_dir=None, interrupt_at=None):
        teacher = CountingTeacher(OracleTeacher(oracle), interrupt_at)
        start = time.perf_counter()
        try:
            clf = CFKDClassifier(teacher=teacher, work_dir=work_dir, **params)
            clf.fit(data.train.X, data.train.y)
        except KeyboardInterrupt:
            clf = None
        seconds = time.perf_counter() - start
        print(f"{label:46s}{seconds:8.1f} s{teacher.calls:8d} calls")
        return clf

    print(f"{'fit':46s}{'time':>10s}{'teacher':>14s}")
    reference = fit("without a working folder")
    fresh = fit("with a working folder, from scratch", folder / "a")
    size = sum(p.stat().st_size for p in (folder / "a").rglob("*") if p.is_file())
    n_stages = len(list((folder / "a" / "stages").glob("*.npz")))
    fit("interrupted at the teacher's 6th call", folder / "b", interrupt_at=5)
    resumed = fit("  started again", folder / "b")
    again = fit("on the finished folder", folder / "a")

    same = all(
        np.array_equal(
            clf.predict_proba(data.test.X), reference.predict_proba(data.test.X)
        )
        for clf in (fresh, resumed, again)
    )
    print(f"\nWorking folder: {size / 1e6:.1f} MB in {n_stages} stage files.")
    print(f"Every fit ends with the same model as the one without a folder: {same}")
    shutil.rmtree(folder, ignore_errors=True)


def _parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="PyTorch threads")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny run: 8x8 images, 2 rounds of 20, 2 epochs",
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    main()
