"""Figures of counterfactuals, with matplotlib (an optional dependency)."""

import numpy as np

__all__ = ["plot_counterfactuals"]


def plot_counterfactuals(
    counterfactuals, n_examples=8, *, class_names=None, random_state=None
):
    """Show originals, counterfactuals, their difference and the verdict.

    One row per counterfactual: the source image, the counterfactual, the
    absolute difference (summed over channels, brighter is a larger change)
    and a text with the classes and the teacher's verdict. False
    counterfactuals (the ones that expose a shortcut) and true ones are shown
    in equal numbers where both exist.

    Parameters
    ----------
    counterfactuals : dict of ndarray
        The ``counterfactuals_`` attribute of a fitted
        :class:`imbcfkd.CFKDClassifier` fitted on images (4-D ``X``).
    n_examples : int, default=8
        Rows of the figure.
    class_names : dict, default=None
        Display name of each label; labels are shown as they are otherwise.
    random_state : int, RandomState instance or None, default=None
        Which judged counterfactuals are shown.

    Returns
    -------
    figure : matplotlib.figure.Figure
    """
    try:
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError(
            "plot_counterfactuals needs matplotlib: pip install matplotlib"
        ) from error

    images = counterfactuals["counterfactual"]
    if images.ndim != 4:
        raise ValueError(
            "plot_counterfactuals needs images of shape (n, channels, height, "
            f"width); got counterfactuals of shape {images.shape}."
        )
    rows = _choose_rows(counterfactuals["verdict"], n_examples, random_state)
    if len(rows) == 0:
        raise ValueError("No judged counterfactual to show: every one was rejected.")
    names = class_names or {}

    # A bare Figure, so that the user's pyplot backend and state stay as they are.
    figure = Figure(figsize=(7.5, 1.7 * len(rows)))
    axes = figure.subplots(len(rows), 4, squeeze=False)
    for titles, column in zip(
        ("original", "counterfactual", "difference", "teacher's verdict"),
        axes[0],
        strict=True,
    ):
        column.set_title(titles, fontsize=9)
    # One colour scale for every difference, so rows can be compared.
    largest = max(
        np.abs(images[i] - counterfactuals["source"][i]).sum(axis=0).max() for i in rows
    )
    for axis_row, index in zip(axes, rows, strict=True):
        source = counterfactuals["source"][index]
        edited = images[index]
        difference = np.abs(edited - source).sum(axis=0)
        axis_row[0].imshow(_as_picture(source), cmap="gray", vmin=0, vmax=1)
        axis_row[1].imshow(_as_picture(edited), cmap="gray", vmin=0, vmax=1)
        axis_row[2].imshow(difference, cmap="magma", vmin=0, vmax=largest or 1)
        verdict = counterfactuals["verdict"][index]
        source_name = names.get(counterfactuals["source_label"][index])
        target_name = names.get(counterfactuals["target_label"][index])
        teacher_name = names.get(counterfactuals["teacher_label"][index])
        source_name = source_name or counterfactuals["source_label"][index]
        target_name = target_name or counterfactuals["target_label"][index]
        teacher_name = teacher_name or counterfactuals["teacher_label"][index]
        meaning = (
            "shortcut exposed" if verdict == "false" else "teacher sees the change"
        )
        axis_row[3].text(
            0.0,
            0.5,
            f"{verdict.upper()} counterfactual\n"
            f"classifier: {source_name} -> {target_name}\n"
            f"teacher: {teacher_name}\n({meaning})",
            fontsize=8,
            va="center",
            color="firebrick" if verdict == "false" else "darkgreen",
        )
        for axis in axis_row:
            axis.set_xticks([])
            axis.set_yticks([])
        axis_row[3].axis("off")
    figure.tight_layout()
    return figure


def _choose_rows(verdicts, n_examples, random_state):
    from sklearn.utils import check_random_state

    rng = check_random_state(random_state)
    false = rng.permutation(np.flatnonzero(verdicts == "false"))
    other = rng.permutation(np.flatnonzero((verdicts != "false") & (verdicts != "")))
    n_false = min(len(false), max(n_examples - len(other), n_examples // 2))
    return np.concatenate([false[:n_false], other[: n_examples - n_false]]).astype(int)


def _as_picture(image):
    """Channels-first array to something imshow shows: RGB, or grey."""
    picture = np.clip(np.moveaxis(image, 0, -1), 0, 1)
    if picture.shape[-1] == 1:
        return picture[..., 0]
    if picture.shape[-1] != 3:
        return picture.mean(axis=-1)
    return picture
