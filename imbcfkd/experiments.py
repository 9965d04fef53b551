"""Run the paper's comparison: every method on the same imbalanced, confounded task.

One *run* trains one method on one task (a dataset, a minority size ``n``, an
imbalance ratio ``k`` and a seed) and scores it on the task's test set, where
the confounder is independent of the class. Runs are independent, so
:func:`run_grid` spreads them over processes with joblib; a user with a
cluster selects a Dask or Ray backend with :func:`joblib.parallel_config` and
nothing else changes. The scripts in ``benchmarks/`` are thin command lines
around these functions.

The methods are named as in the paper's Table 1 (CE, CE+BB, FL, CFKD) plus
the other common remedies: class-weighted CE (CW), random over-sampling
(ROS), random under-sampling (RUS), SMOTE, and the oracle, a batch-balanced
classifier trained on well-conditioned data (balanced classes, confounder
independent of the class) that also serves as CFKD's teacher.
"""

import csv
import os
import time
from itertools import product

import numpy as np
import torch
from imblearn.over_sampling import SMOTE, RandomOverSampler
from imblearn.under_sampling import RandomUnderSampler
from joblib import Parallel, delayed

from .baselines import BaselineClassifier
from .cfkd import CFKDClassifier
from .local_datasets import check_data_dir, load_dataset
from .metrics import (
    average_group_accuracy,
    group_accuracies,
    minority_f1_score,
    worst_group_accuracy,
)
from .networks import make_net
from .teachers import OracleTeacher

__all__ = [
    "METHODS",
    "make_method",
    "representation",
    "run_experiment",
    "markdown_table",
    "read_csv",
    "run_grid",
    "summarize",
    "write_csv",
]

#: Method names, in the order of the tables.
METHODS = ("CE", "CE+BB", "FL", "CW", "ROS", "RUS", "SMOTE", "CFKD", "Oracle")

_BASELINES = {
    "CE": ("cross_entropy", None),
    "CE+BB": ("batch_balancing", None),
    "FL": ("focal_loss", None),
    "CW": ("class_weight", None),
    "ROS": ("resampling", RandomOverSampler),
    "RUS": ("resampling", RandomUnderSampler),
    "SMOTE": ("resampling", SMOTE),
    "Oracle": ("batch_balancing", None),
}


def make_method(name, *, net=None, teacher=None, random_state=None, **cfkd_params):
    """The unfitted estimator for one method of the comparison.

    Parameters
    ----------
    name : str
        One of :data:`METHODS`.
    net : skorch.NeuralNetClassifier, default=None
        The network every method trains; ``None`` uses
        :func:`imbcfkd.networks.make_net`'s defaults.
    teacher : callable, default=None
        CFKD's teacher; required for ``"CFKD"`` and ignored otherwise.
    random_state : int, default=None
        Seed of the estimator.
    **cfkd_params
        Other parameters of :class:`imbcfkd.CFKDClassifier`, for ``"CFKD"``.

    Returns
    -------
    estimator : BaselineClassifier or CFKDClassifier

    Examples
    --------
    >>> from imbcfkd.experiments import make_method
    >>> make_method("SMOTE", random_state=0).sampler
    SMOTE()
    """
    if name == "CFKD":
        return CFKDClassifier(
            teacher, net=net, random_state=random_state, **cfkd_params
        )
    if name not in _BASELINES:
        raise ValueError(f"Unknown method {name!r}; choose from {list(METHODS)}.")
    method, sampler = _BASELINES[name]
    return BaselineClassifier(
        method,
        net=net,
        sampler=None if sampler is None else sampler(),
        random_state=random_state,
    )


def run_experiment(
    method,
    *,
    dataset="digits",
    n_minority=100,
    imbalance_ratio=10,
    random_state=0,
    data_dir=None,
    dataset_params=None,
    net_params=None,
    cfkd_params=None,
    oracle=None,
    oracle_fit_seconds=None,
    n_threads=None,
    return_features=False,
):
    """Train one method on one task and score it on the task's test set.

    Parameters
    ----------
    method : str
        One of :data:`METHODS`.
    dataset : {"digits", "celeba", "camelyon17"}, default="digits"
        See :func:`imbcfkd.local_datasets.load_dataset`.
    n_minority : int, default=100
        Training images of the rare class (the paper's ``n``).
    imbalance_ratio : float, default=10
        Majority images per minority image (the paper's ``k``).
    random_state : int, default=0
        Seeds the data and the estimator.
    data_dir : str or path, default=None
        Folder of CelebA or Camelyon17.
    dataset_params : dict, default=None
        Other arguments of the dataset loader, e.g. ``image_size``.
    net_params : dict, default=None
        Arguments of :func:`imbcfkd.networks.make_net`, shared by all methods.
    cfkd_params : dict, default=None
        Arguments of :class:`imbcfkd.CFKDClassifier` for ``"CFKD"``.
    oracle : fitted classifier, default=None
        The oracle, used as CFKD's teacher and scored as ``"Oracle"``. ``None``
        trains one on the task's oracle set when the method needs it.
    oracle_fit_seconds : float, default=None
        How long the given ``oracle`` took to fit, reported in the
        ``"Oracle"`` row.
    n_threads : int, default=None
        PyTorch threads inside this run; ``None`` leaves the setting alone.
    return_features : bool, default=False
        Also return the network's representation of the test images (the
        input of its last layer) as ``"features"``, with their
        ``"groups"``, for plots such as t-SNE.

    Returns
    -------
    row : dict
        ``dataset``, ``n_minority``, ``imbalance_ratio``, ``seed``,
        ``method``, ``f1`` (of the minority class), ``average_group_accuracy``,
        ``worst_group_accuracy``, ``group_0`` .. ``group_3`` (accuracy per
        group), ``fit_seconds``, ``n_train``, ``pid`` (of the process that
        ran it) and, for CFKD, ``flip_rate``, ``feedback_accuracy``,
        ``n_kept`` and ``accepted`` of its first round, ``n_rounds`` and
        ``n_accepted`` (rounds run and kept), and ``last_feedback_accuracy``
        (the share of true counterfactuals in its last round).
    """
    data, net = _prepare(
        dataset,
        data_dir,
        n_minority,
        imbalance_ratio,
        random_state,
        dataset_params,
        net_params,
        n_threads,
    )
    if oracle is None and method in ("CFKD", "Oracle"):
        oracle, oracle_fit_seconds = _fit_oracle(data, net, random_state)

    if method == "Oracle":
        estimator = oracle
        fit_seconds = np.nan if oracle_fit_seconds is None else oracle_fit_seconds
    else:
        extra = {}
        if method == "CFKD":
            extra = {"teacher": OracleTeacher(oracle), **(cfkd_params or {})}
        estimator = make_method(method, net=net, random_state=random_state, **extra)
        start = time.perf_counter()
        estimator.fit(data.train.X, data.train.y)
        fit_seconds = time.perf_counter() - start

    test = data.test
    predicted = estimator.predict(test.X)
    per_group = group_accuracies(test.y, predicted, groups=test.groups)
    row = {
        "dataset": dataset,
        "n_minority": n_minority,
        "imbalance_ratio": imbalance_ratio,
        "seed": random_state,
        "method": method,
        "f1": minority_f1_score(test.y, predicted, minority_label=1),
        "average_group_accuracy": average_group_accuracy(
            test.y, predicted, groups=test.groups
        ),
        "worst_group_accuracy": worst_group_accuracy(
            test.y, predicted, groups=test.groups
        ),
        **{f"group_{g}": per_group.get(g, np.nan) for g in range(4)},
        "fit_seconds": fit_seconds,
        "n_train": len((data.oracle if method == "Oracle" else data.train).y),
        "pid": os.getpid(),
    }
    if method == "CFKD" and estimator.history_:
        first = estimator.history_[0]
        row.update(
            flip_rate=first["flip_rate"],
            feedback_accuracy=first["feedback_accuracy"],
            n_kept=first["n_kept"],
            accepted=first["accepted"],
            n_rounds=len(estimator.history_),
            n_accepted=sum(entry["accepted"] for entry in estimator.history_),
            last_feedback_accuracy=estimator.history_[-1]["feedback_accuracy"],
        )
    if return_features:
        row["features"] = representation(estimator, test.X)
        row["groups"] = np.asarray(test.groups)
    return row


def run_grid(
    methods=METHODS,
    *,
    cells=((100, 10),),
    seeds=(0,),
    n_jobs=None,
    verbose=0,
    **params,
):
    """Run every method on every ``(n_minority, imbalance_ratio)`` cell and seed.

    The oracle of each seed is trained once, first, on the oracle set of the
    first cell, and shared by that seed's CFKD runs (as their teacher) and
    ``"Oracle"`` rows in every cell. Then every run is a joblib task.

    Sharing is valid because a seed's oracle images come from the same pool
    of source digits in every cell, disjoint from every cell's test set; but
    which images are drawn from that pool depends on the cell. So a cell's
    CFKD and oracle rows depend on which cell comes first in ``cells``, and
    :func:`run_experiment` on its own (which trains the cell's own oracle)
    gives the same rows as a grid only for the grid's first cell.

    Parameters
    ----------
    methods : sequence of str, default=METHODS
        Methods to run.
    cells : sequence of (int, float), default=((100, 10),)
        ``(n_minority, imbalance_ratio)`` pairs.
    seeds : sequence of int, default=(0,)
        Seeds; each seed draws its own data.
    n_jobs : int, default=None
        joblib's number of workers. ``None`` follows the active
        :func:`joblib.parallel_config` (one worker outside of it). Each
        worker uses ``os.cpu_count() // n_jobs`` PyTorch threads when
        ``n_jobs`` is a positive number.
    verbose : int, default=0
        joblib's progress messages.
    **params
        Passed to :func:`run_experiment` (``dataset``, ``data_dir``,
        ``net_params``, ``cfkd_params``, ...).

    Returns
    -------
    rows : list of dict
        One row per run, as returned by :func:`run_experiment`, in the order
        cells, seeds, methods.

    Examples
    --------
    A Dask cluster runs the same grid without other changes::

        from dask.distributed import Client
        from joblib import parallel_config

        client = Client("scheduler-address:8786")
        with parallel_config(backend="dask"):
            rows = run_grid(cells=[(100, 10), (200, 30)], seeds=range(5))
    """
    methods = list(methods)
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise ValueError(f"Unknown methods {unknown}; choose from {list(METHODS)}.")
    cells, seeds = list(cells), list(seeds)
    check_data_dir(params.get("dataset", "digits"), params.get("data_dir"))
    if n_jobs is not None and n_jobs > 0:
        params.setdefault("n_threads", max(1, (os.cpu_count() or 1) // n_jobs))
    parallel = Parallel(n_jobs=n_jobs, verbose=verbose)

    oracles = {}
    if {"CFKD", "Oracle"} & set(methods):
        # The oracle images of a seed come from the same pool in every cell,
        # disjoint from every test set, so one oracle per seed serves all
        # cells (drawn for the first cell; see the docstring).
        n_minority, imbalance_ratio = cells[0]
        fitted = parallel(
            delayed(_fit_oracle_task)(n_minority, imbalance_ratio, seed, **params)
            for seed in seeds
        )
        oracles = dict(zip(seeds, fitted, strict=True))

    tasks = []
    for (n_minority, imbalance_ratio), seed, method in product(cells, seeds, methods):
        oracle, oracle_fit_seconds = oracles.get(seed, (None, None))
        tasks.append(
            delayed(run_experiment)(
                method,
                n_minority=n_minority,
                imbalance_ratio=imbalance_ratio,
                random_state=seed,
                oracle=oracle,
                oracle_fit_seconds=oracle_fit_seconds,
                **params,
            )
        )
    return parallel(tasks)


def representation(estimator, X, batch_size=512):
    """The input of the network's last layer for each image of ``X``.

    Parameters
    ----------
    estimator : fitted BaselineClassifier or CFKDClassifier
        Its module must have a ``features`` method, as the modules of
        :mod:`imbcfkd.networks` do.
    X : array-like
        Images, in the layout given to ``fit``.
    batch_size : int, default=512
        Images per forward pass.

    Returns
    -------
    features : ndarray of shape (n_samples, n_features)
    """
    X = estimator._validate_prediction_data(X)
    module = estimator.net_.module_
    device = next(module.parameters()).device
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            parts = [
                module.features(torch.from_numpy(X[i : i + batch_size]).to(device))
                for i in range(0, len(X), batch_size)
            ]
    finally:
        module.train(was_training)
    return torch.cat(parts).flatten(1).cpu().numpy()


def _fit_oracle_task(
    n_minority,
    imbalance_ratio,
    seed,
    *,
    dataset="digits",
    data_dir=None,
    dataset_params=None,
    net_params=None,
    n_threads=None,
    **ignored,
):
    data, net = _prepare(
        dataset,
        data_dir,
        n_minority,
        imbalance_ratio,
        seed,
        dataset_params,
        net_params,
        n_threads,
    )
    return _fit_oracle(data, net, seed)


def _prepare(
    dataset,
    data_dir,
    n_minority,
    imbalance_ratio,
    seed,
    dataset_params,
    net_params,
    n_threads,
):
    """The task of one run and the unfitted net, in a worker set to n_threads."""
    if n_threads is not None:
        torch.set_num_threads(n_threads)
    data = load_dataset(
        dataset,
        data_dir=data_dir,
        n_minority=n_minority,
        imbalance_ratio=imbalance_ratio,
        random_state=seed,
        **(dataset_params or {}),
    )
    return data, make_net(**(net_params or {}))


def _fit_oracle(data, net, seed):
    """The oracle, trained on the task's oracle set, and its fit time."""
    oracle = make_method("Oracle", net=net, random_state=seed)
    start = time.perf_counter()
    oracle.fit(data.oracle.X, data.oracle.y)
    return oracle, time.perf_counter() - start


def summarize(rows, metric):
    """Mean and standard deviation of ``metric`` per cell and method.

    Parameters
    ----------
    rows : list of dict
        Rows of :func:`run_grid`.
    metric : str
        A numeric key of the rows, e.g. ``"f1"``.

    Returns
    -------
    summary : dict
        ``{(n_minority, imbalance_ratio): {method: (mean, std, n_runs)}}``;
        the standard deviation is that of the runs (``ddof=1``), NaN for a
        single run.
    """
    values = {}
    for row in rows:
        cell = (row["n_minority"], row["imbalance_ratio"])
        values.setdefault(cell, {}).setdefault(row["method"], []).append(row[metric])
    summary = {}
    for cell, by_method in values.items():
        summary[cell] = {}
        for method, runs in by_method.items():
            runs = np.asarray(runs, dtype=float)
            std = runs.std(ddof=1) if len(runs) > 1 else np.nan
            summary[cell][method] = (float(runs.mean()), float(std), len(runs))
    return summary


def markdown_table(rows, metric, *, scale=100, digits=1, best="max"):
    """A Markdown table of ``metric``: one line per cell, one column per method.

    Each entry is ``mean ± std`` over seeds, multiplied by ``scale``; the best
    mean of each line among the methods other than the oracle is in bold.

    Parameters
    ----------
    rows : list of dict
        Rows of :func:`run_grid`.
    metric : str
        A numeric key of the rows.
    scale : float, default=100
        Factor applied to the values (100 gives percentages).
    digits : int, default=1
        Decimals shown.
    best : {"max", "min", None}, default="max"
        Which mean to highlight per line.

    Returns
    -------
    table : str
    """
    summary = summarize(rows, metric)
    methods = [m for m in METHODS if any(m in s for s in summary.values())]
    lines = [
        "| n | k | " + " | ".join(methods) + " |",
        "|---|---|" + "---|" * len(methods),
    ]
    for (n_minority, ratio), by_method in sorted(summary.items()):
        contenders = {
            m: by_method[m][0]
            for m in methods
            if m in by_method and m != "Oracle" and np.isfinite(by_method[m][0])
        }
        top = None
        if best and contenders:
            pick = max if best == "max" else min
            top = pick(contenders, key=contenders.get)
        entries = []
        for method in methods:
            if method not in by_method:
                entries.append("")
                continue
            mean, std, _ = by_method[method]
            text = f"{mean * scale:.{digits}f}"
            if np.isfinite(std):
                text += f" ± {std * scale:.{digits}f}"
            entries.append(f"**{text}**" if method == top else text)
        lines.append(f"| {n_minority} | {ratio:g} | " + " | ".join(entries) + " |")
    return "\n".join(lines)


def write_csv(rows, path):
    """Write the rows of :func:`run_grid` to a CSV file, one line per run.

    Columns are the union of the rows' keys in first-seen order; array values
    (features) are left out.

    Parameters
    ----------
    rows : list of dict
    path : str or path
    """
    columns = []
    for row in rows:
        for key, value in row.items():
            if key not in columns and not isinstance(value, np.ndarray):
                columns.append(key)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def read_csv(path):
    """Read a CSV of :func:`write_csv` back into rows with numeric values.

    Parameters
    ----------
    path : str or path

    Returns
    -------
    rows : list of dict
    """
    with open(path, newline="") as handle:
        return [
            {key: _parse_value(value) for key, value in row.items()}
            for row in csv.DictReader(handle)
        ]


def _parse_value(text):
    if text in ("True", "False"):
        return text == "True"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text
