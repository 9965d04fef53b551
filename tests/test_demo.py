"""The demo and the counterfactual figure."""

import numpy as np
import pytest

from imbcfkd import demo
from imbcfkd.plotting import plot_counterfactuals


def test_demo_runs_end_to_end_and_writes_the_figure(tmp_path, capsys):
    result = demo.main(
        [
            "--n-minority",
            "30",
            "--imbalance-ratio",
            "3",
            "--n-counterfactuals",
            "40",
            "--n-rounds",
            "1",
            "--epochs",
            "3",
            "--output-dir",
            str(tmp_path),
        ]
    )
    output = capsys.readouterr().out
    for row in ("batch balancing (CE+BB)", "CFKD", "oracle teacher", "worst group"):
        assert row in output
    assert "flipped it" in output
    assert result["figure"] == (tmp_path / "counterfactuals.png").resolve()
    assert result["figure"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(result["history"]) == 1


def test_demo_without_correction_or_figure(capsys):
    result = demo.main(
        [
            "--n-minority",
            "20",
            "--imbalance-ratio",
            "2",
            "--epochs",
            "2",
            "--n-rounds",
            "0",
            "--no-figure",
        ]
    )
    assert result["figure"] is None and result["history"] == []
    assert "CFKD" in capsys.readouterr().out


def test_figure_shows_false_and_true_counterfactuals():
    rng = np.random.RandomState(0)
    n = 12
    records = {
        "source": rng.rand(n, 3, 8, 8),
        "counterfactual": rng.rand(n, 3, 8, 8),
        "source_label": np.array([0, 1] * 6),
        "target_label": np.array([1, 0] * 6),
        "teacher_label": np.array([0, 1, 1, 0] * 3, dtype=object),
        "verdict": np.array(["false", "false", "true", "true"] * 3, dtype=object),
    }
    figure = plot_counterfactuals(records, n_examples=6, class_names={0: "a", 1: "b"})
    texts = [t.get_text() for axis in figure.axes for t in axis.texts]
    assert len(texts) == 6
    assert sum("FALSE" in t for t in texts) == 3
    assert sum("TRUE" in t for t in texts) == 3
    assert any("classifier: a -> b" in t for t in texts)

    records["verdict"][:] = ""
    with pytest.raises(ValueError, match="No judged counterfactual"):
        plot_counterfactuals(records)
