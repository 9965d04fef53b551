"""The experiment runner behind the benchmarks: runs, grids, tables."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from imbcfkd.experiments import (
    METHODS,
    make_method,
    markdown_table,
    read_csv,
    representation,
    run_experiment,
    run_grid,
    summarize,
    write_csv,
)

ROOT = Path(__file__).resolve().parents[1]

# A task and networks small enough for a run to take well under a second.
TINY = {
    "dataset_params": {
        "image_size": 8,
        "n_test_minority": 20,
        "n_validation_minority": 5,
        "n_oracle": 60,
    },
    "net_params": {"max_epochs": 2, "module__width": 4, "batch_size": 16},
    "cfkd_params": {"n_counterfactuals": 10, "finetune_epochs": 1},
}


def test_make_method_names_every_method():
    for name in METHODS:
        estimator = make_method(name, random_state=3)
        assert estimator.random_state == 3
    assert make_method("ROS").sampler.__class__.__name__ == "RandomOverSampler"
    assert make_method("CE+BB").method == "batch_balancing"
    assert make_method("CFKD", teacher=len, n_rounds=2).n_rounds == 2
    with pytest.raises(ValueError, match="Unknown method 'GroupDRO'"):
        make_method("GroupDRO")


@pytest.mark.filterwarnings("ignore::imbcfkd.CounterfactualWarning")
def test_run_experiment_scores_on_the_test_set():
    row = run_experiment(
        "CFKD", n_minority=10, imbalance_ratio=2, random_state=1, **TINY
    )
    assert row["method"] == "CFKD" and row["seed"] == 1
    assert row["n_train"] == 30
    for key in ("f1", "average_group_accuracy", "worst_group_accuracy"):
        assert 0.0 <= row[key] <= 1.0
    groups = [row[f"group_{g}"] for g in range(4)]
    assert row["worst_group_accuracy"] == min(groups)
    assert row["average_group_accuracy"] == pytest.approx(np.mean(groups))
    assert row["fit_seconds"] > 0
    assert 0.0 <= row["flip_rate"] <= 1.0

    oracle = run_experiment(
        "Oracle", n_minority=10, imbalance_ratio=2, return_features=True, **TINY
    )
    assert oracle["n_train"] == 60
    # Test set: 20 minority and 40 majority images; 4 channels after pooling.
    assert oracle["features"].shape == (60, 4 * 4)
    assert sorted(set(oracle["groups"].tolist())) == [0, 1, 2, 3]


def test_representation_is_the_input_of_the_last_layer():
    from imbcfkd import BaselineClassifier, make_net

    rng = np.random.RandomState(0)
    X = rng.uniform(size=(30, 3, 8, 8)).astype(np.float32)
    y = np.r_[np.zeros(20, int), np.ones(10, int)]
    clf = BaselineClassifier(
        net=make_net(max_epochs=1, module__width=4), random_state=0
    ).fit(X, y)
    features = representation(clf, X, batch_size=7)
    head = clf.net_.module_.head
    logits = features @ head.weight.detach().numpy().T + head.bias.detach().numpy()
    expected = np.log(clf.predict_proba(X))
    np.testing.assert_allclose(
        logits - logits.max(1, keepdims=True),
        expected - expected.max(1, keepdims=True),
        atol=1e-4,
    )


def _rows():
    rows = []
    for seed, (ce, cfkd) in enumerate([(0.5, 0.7), (0.7, 0.9)]):
        for method, value in (("CE", ce), ("CFKD", cfkd), ("Oracle", 0.99)):
            rows.append(
                {
                    "n_minority": 100,
                    "imbalance_ratio": 10,
                    "seed": seed,
                    "method": method,
                    "f1": value,
                    "fit_seconds": 2.0 * (1 + seed),
                }
            )
    return rows


def test_summary_and_markdown_table():
    summary = summarize(_rows(), "f1")
    mean, std, n_runs = summary[(100, 10)]["CE"]
    assert mean == pytest.approx(0.6) and n_runs == 2
    assert std == pytest.approx(np.std([0.5, 0.7], ddof=1))

    table = markdown_table(_rows(), "f1")
    lines = table.splitlines()
    assert lines[0] == "| n | k | CE | CFKD | Oracle |"
    # The best method other than the oracle is in bold.
    assert lines[2] == "| 100 | 10 | 60.0 ± 14.1 | **80.0 ± 14.1** | 99.0 ± 0.0 |"


def test_csv_round_trip(tmp_path):
    rows = _rows()
    rows[0]["features"] = np.zeros((3, 2))
    rows[1]["accepted"] = True
    write_csv(rows, tmp_path / "runs.csv")
    back = read_csv(tmp_path / "runs.csv")
    assert len(back) == len(rows)
    assert "features" not in back[0]
    assert back[1]["accepted"] is True and back[0]["accepted"] == ""
    assert back[3]["f1"] == 0.7 and back[3]["seed"] == 1


@pytest.mark.filterwarnings("ignore::imbcfkd.CounterfactualWarning")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_grid_runs_on_a_dask_cluster_through_joblib():
    distributed = pytest.importorskip("distributed")
    from joblib import parallel_config

    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=50,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        worker_pids = set(client.run(os.getpid).values())
        with parallel_config(backend="dask"):
            rows = run_grid(
                ["CE+BB", "CFKD", "Oracle"],
                cells=[(10, 2), (10, 3)],
                seeds=[0],
                **TINY,
            )
    assert [(r["n_minority"], r["imbalance_ratio"], r["method"]) for r in rows] == [
        (10, 2, "CE+BB"),
        (10, 2, "CFKD"),
        (10, 2, "Oracle"),
        (10, 3, "CE+BB"),
        (10, 3, "CFKD"),
        (10, 3, "Oracle"),
    ]
    # Every run happened in a worker of the cluster, none in this process.
    assert {row["pid"] for row in rows} <= worker_pids
    assert os.getpid() not in worker_pids
    # One oracle per seed, shared by both cells.
    oracle_rows = [row for row in rows if row["method"] == "Oracle"]
    assert oracle_rows[0]["fit_seconds"] == oracle_rows[1]["fit_seconds"]


def test_unknown_methods_are_refused_before_any_work():
    with pytest.raises(ValueError, match=r"Unknown methods \['XE'\]"):
        run_grid(["CE", "XE"])


def test_table1_quick_mode_from_the_command_line(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "table1.py"),
            "--quick",
            "--n-jobs",
            "1",
            "--output-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    rows = read_csv(tmp_path / "runs.csv")
    assert len(rows) == 2 * len(METHODS)
    assert {row["method"] for row in rows} == set(METHODS)
    report = (tmp_path / "table1.md").read_text()
    assert "## Worst group accuracy (%)" in report
    assert "| 20 | 2 |" in report and "| 20 | 4 |" in report
    assert "Fit time: CFKD / CE+BB" in report
    assert report in result.stdout

    # --rows merges earlier runs without running anything: a later file's
    # run replaces an earlier file's run of the same cell, seed and method.
    rerun = [dict(row, f1=0.123) for row in rows if row["method"] == "CFKD"]
    write_csv(rerun, tmp_path / "rerun.csv")
    merged_dir = tmp_path / "merged"
    _run_script(
        "table1.py", "--rows", tmp_path / "runs.csv", tmp_path / "rerun.csv",
        "--output-dir", merged_dir, "--quiet",
    )  # fmt: skip
    merged = read_csv(merged_dir / "runs.csv")
    assert len(merged) == len(rows)
    assert {row["f1"] for row in merged if row["method"] == "CFKD"} == {0.123}
    assert "| 12.3 |" in (merged_dir / "table1.md").read_text()


def _run_script(name, *arguments):
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / name), *map(str, arguments)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_figure2_script_writes_curve_and_tsne(tmp_path):
    _run_script(
        "figure2.py",
        "--n-minority", 10, "--ratios", 1, 3, "--seeds", 2, "--image-size", 8,
        "--epochs", 1, "--tsne-per-group", 10, "--n-jobs", 1,
        "--output-dir", tmp_path, "--quiet",
    )  # fmt: skip
    rows = read_csv(tmp_path / "runs.csv")
    assert [(r["imbalance_ratio"], r["seed"]) for r in rows] == [
        (1, 0), (1, 1), (3, 0), (3, 1)
    ]  # fmt: skip
    assert {r["method"] for r in rows} == {"CE+BB"}
    report = (tmp_path / "figure2.md").read_text()
    assert "| 1 |" in report and "| 3 |" in report
    assert (tmp_path / "figure2.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_explainer_benchmark_and_figure_quick_modes(tmp_path):
    variants = ["gradient", "gradient+explore", "autoencoder+sparse"]
    stdout = _run_script(
        "explainers.py", "--quick", "--variants", *variants,
        "--output", tmp_path / "explainers.csv",
    )  # fmt: skip
    rows = read_csv(tmp_path / "explainers.csv")
    assert [row["variant"] for row in rows] == variants
    for row in rows:
        assert 0 <= row["flip_rate"] <= 1 and row["counterfactuals_per_second"] > 0
        assert 0 <= row["shortcut_detection_rate"] <= 1
        assert row["reconstruction_error"] > 0 and row["nearest_neighbour_distance"] > 0
        assert f"{row['variant']:26s}" in stdout
    # The explored counterfactuals avoid most of the first ones' regions.
    assert rows[1]["region_overlap"] < 0.5

    _run_script(
        "counterfactual_figure.py", "--quick", "--n-sources", 2,
        "--variants", "gradient", "--output", tmp_path / "figure.png",
    )  # fmt: skip
    assert (tmp_path / "figure.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cost_script_quick_mode(tmp_path):
    stdout = _run_script("cost.py", "--quick", "--output-dir", tmp_path)
    report = (tmp_path / "cost.md").read_text()
    assert report in stdout
    for explainer in ("GradientExplainer", "AutoencoderExplainer"):
        assert f"| {explainer} | 3x8x8 |" in report
    # The memory probes ran in their own processes and reported numbers.
    assert "| 100 |" in report and "| 400 |" in report
    assert "| mean | | |" in report


def test_scripts_say_what_to_download_when_a_folder_is_missing(tmp_path):
    for script in ("table1.py", "figure2.py", "cost.py"):
        result = subprocess.run(
            [
                sys.executable,
                str(ROOT / "benchmarks" / script),
                "--dataset",
                "celeba",
                "--data-dir",
                str(tmp_path / "celeba"),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode != 0
        message = result.stderr.strip().splitlines()[-1]
        assert message.startswith("error: CelebA folder"), message
        assert "img_align_celeba" in message and "never downloads" in message


def test_targets_count_cells_and_the_gap_closed():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from table1 import targets

    def row(cell, method, f1, wga):
        return {
            "n_minority": cell[0],
            "imbalance_ratio": cell[1],
            "method": method,
            "f1": f1,
            "worst_group_accuracy": wga,
        }

    rows = [
        # CFKD best in both metrics; closes (0.7 - 0.2) / (0.9 - 0.2) of the gap.
        row((100, 10), "CE+BB", 0.5, 0.2),
        row((100, 10), "FL", 0.6, 0.3),
        row((100, 10), "CFKD", 0.7, 0.7),
        row((100, 10), "Oracle", 0.9, 0.9),
        # FL has the best F1; the oracle's F1 does not count.
        row((200, 30), "CE+BB", 0.5, 0.4),
        row((200, 30), "FL", 0.8, 0.5),
        row((200, 30), "CFKD", 0.7, 0.6),
        row((200, 30), "Oracle", 0.9, 0.8),
    ]
    summary = targets(rows)
    assert summary["n_cells"] == 2
    assert summary["best_f1"] == [(100, 10)]
    assert summary["best_wga"] == [(100, 10), (200, 30)]
    assert summary["gap_closed"][(100, 10)] == pytest.approx(5 / 7)
    assert summary["gap_closed"][(200, 30)] == pytest.approx(0.5)


def test_ablation_script_quick_mode(tmp_path):
    stdout = _run_script(
        "ablation.py", "--quick", "--n-jobs", 1, "--cells", "20,2",
        "--configs", "CFKD", "1 round", "--output-dir", tmp_path,
    )  # fmt: skip
    rows = read_csv(tmp_path / "runs.csv")
    assert sorted({row["method"] for row in rows}) == [
        "1 round",
        "CE+BB",
        "CFKD",
        "Oracle",
    ]
    # The default runs four rounds; the previous schedule one.
    rounds = {row["method"]: row["n_rounds"] for row in rows if row["n_rounds"] != ""}
    report = (tmp_path / "ablation.md").read_text()
    for name in ("CE+BB", "Oracle", "CFKD", "1 round"):
        assert f"| {name} |" in report
    assert report in stdout
    assert rounds == {"CFKD": 4, "1 round": 1}
