"""Confounder-controlled, imbalanced tasks built from the paper's real datasets.

:func:`load_celeba` and :func:`load_camelyon17` read CelebA and the WILDS
Camelyon17 patches from a folder the user names, and build the same kind of
task as :func:`imbcfkd.datasets.make_confounded_digits`: a binary task whose
rare class (label 1) co-occurs with a confounder in the training and
validation data, and is independent of it in the test and oracle data. The
counts are exact: each set holds exactly the number of images of each class
and of each (class, confounder) group that was asked for, drawn without
replacement from disjoint pools of images, so no image is in two sets.

Nothing is ever downloaded: when the files are missing, the loaders raise a
:class:`FileNotFoundError` that says what to download and where to put it.
:func:`load_dataset` dispatches by name between these loaders and the
digits task that ships with scikit-learn.
"""

import csv
import os
from numbers import Integral, Real
from pathlib import Path

import numpy as np
from sklearn.utils import Bunch, check_random_state
from sklearn.utils._param_validation import Interval, validate_params

from .datasets import make_confounded_digits

__all__ = [
    "DATASETS",
    "check_data_dir",
    "load_camelyon17",
    "load_celeba",
    "load_dataset",
]

#: Names accepted by :func:`load_dataset`.
DATASETS = ("digits", "celeba", "camelyon17")

_SETS = ("train", "validation", "test", "oracle")
# Index of the pool each set is drawn from: the oracle set shares the pool of
# the training set (drawn without replacement after it), the validation and
# test sets have pools of their own.
_POOL_OF = {"train": 0, "validation": 1, "test": 2, "oracle": 0}
_POOL_NAMES = ("train+oracle", "validation", "test")
_SIZE_PARAMETER = {
    "train": "n_minority",
    "validation": "n_validation_minority",
    "test": "n_test_minority",
    "oracle": "n_oracle",
}

_CELEBA_URL = "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html"
_WILDS_URL = "https://wilds.stanford.edu/datasets/"
_NO_DOWNLOAD = "imbcfkd never downloads anything."

_COMMON_PARAMETERS = {
    "n_minority": [Interval(Integral, 1, None, closed="left")],
    "imbalance_ratio": [Interval(Real, 1, None, closed="left")],
    "minority_prevalence": [Interval(Real, 0, 1, closed="both")],
    "majority_prevalence": [Interval(Real, 0, 1, closed="both")],
    "image_size": [Interval(Integral, 8, None, closed="left")],
    "n_test_minority": [Interval(Integral, 1, None, closed="left")],
    "n_validation_minority": [Interval(Integral, 1, None, closed="left")],
    "n_oracle": [Interval(Integral, 4, None, closed="left")],
    "random_state": ["random_state"],
}


@validate_params(
    {
        "data_dir": [str, os.PathLike],
        "target": [str],
        "confounder": [str, None],
        **_COMMON_PARAMETERS,
    },
    prefer_skip_nested_validation=True,
)
def load_celeba(
    data_dir,
    *,
    target="Smiling",
    confounder=None,
    n_minority=100,
    imbalance_ratio=10,
    minority_prevalence=0.9,
    majority_prevalence=0.1,
    image_size=32,
    n_test_minority=200,
    n_validation_minority=50,
    n_oracle=1000,
    random_state=None,
):
    """CelebA faces whose rare attribute co-occurs with a confounding one.

    The minority class (label 1) is the faces with the attribute ``target``
    (``"Smiling"`` and ``"Male"`` give the paper's C-Smile and C-Male tasks;
    any of the 40 CelebA attributes is accepted), the majority class
    (label 0) the faces without it. The confounder is another attribute,
    present in ``minority_prevalence`` of the training and validation
    minority images and in ``majority_prevalence`` of the majority ones, and
    in exactly half of each class in the test and oracle sets.

    The rows of the attribute file are split into three disjoint pools, per
    (class, confounder) group and anew for each ``random_state``: 50% for
    the training and oracle sets (which are drawn from it without
    replacement, so they share no image either), 25% for the validation set
    and 25% for the test set. The official ``list_eval_partition.txt`` is
    not used. Only the images that end up in a set are read; each is
    centre-cropped to a square, resized to ``image_size`` (bilinear, with
    antialiasing) and converted to RGB.

    Parameters
    ----------
    data_dir : str or path-like
        Folder with CelebA in its official layout:
        ``data_dir/img_align_celeba/000001.jpg, ...`` (the "Align&Cropped
        Images", ``img_align_celeba.zip``) and
        ``data_dir/list_attr_celeba.txt`` (``Anno/list_attr_celeba.txt``),
        both from https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html. The
        attribute file may also lie in ``data_dir/Anno/``, the images in
        ``data_dir/Img/img_align_celeba/``, and the Kaggle variant is
        accepted too: ``list_attr_celeba.csv`` (header ``image_id,
        5_o_Clock_Shadow, ...``) and images in
        ``img_align_celeba/img_align_celeba/``.
    target : str, default="Smiling"
        The attribute that defines the minority class.
    confounder : str, default=None
        The attribute used as the confounder. ``None`` means
        ``"Blond_Hair"`` for the target ``"Male"`` and ``"Male"`` for any
        other target. This is our choice: the paper does not name the
        confounders of its CelebA tasks.
    n_minority : int, default=100
        Minority images in the training set.
    imbalance_ratio : float, default=10
        Majority images per minority image (``k`` in the paper); the
        training set holds ``round(n_minority * imbalance_ratio)`` majority
        images, and the validation and test sets keep this ratio.
    minority_prevalence : float, default=0.9
        Share of training and validation minority images with the
        confounder (exactly ``round(minority_prevalence * count)`` images).
    majority_prevalence : float, default=0.1
        Share of training and validation majority images with the
        confounder.
    image_size : int, default=32
        Side of the square RGB images, at least 8.
    n_test_minority : int, default=200
        Minority images in the test set, which has the confounder on exactly
        half of each class.
    n_validation_minority : int, default=50
        Minority images in the validation set, which is confounded like the
        training set.
    n_oracle : int, default=1000
        Images in the well-conditioned set for training an oracle teacher:
        balanced classes, and the confounder on half of each class.
    random_state : int, RandomState instance or None, default=None
        Seed of the pools and of the draws; the same seed gives the same
        sets.

    Returns
    -------
    data : Bunch
        ``train``, ``validation``, ``test`` and ``oracle``, each a Bunch with
        ``X`` (float32, shape ``(n, 3, image_size, image_size)``, values in
        [0, 1]), ``y`` (0 majority, 1 minority), ``confounder`` (bool),
        ``groups`` (``2 * y + confounder``, named by ``group_names``) and
        ``source`` (the image file names, str). Also ``group_names``,
        ``target_names`` and ``description``.

    Raises
    ------
    FileNotFoundError
        If ``data_dir``, the attribute file, the image folder or an image
        that was drawn is missing.
    ValueError
        If an attribute name is unknown, or a pool has too few images of a
        group for what was asked.

    Examples
    --------
    >>> from imbcfkd.local_datasets import load_celeba
    >>> data = load_celeba("data/celeba", target="Smiling", n_minority=50,
    ...                    imbalance_ratio=10, random_state=0)  # doctest: +SKIP
    >>> data.train.X.shape, int(data.train.y.sum())  # doctest: +SKIP
    ((550, 3, 32, 32), 50)
    """
    data_dir = Path(data_dir)
    attr_file, image_dir = _find_celeba(data_dir)
    names, files, rows = _read_celeba_attributes(attr_file)
    if confounder is None:
        confounder = "Blond_Hair" if target == "Male" else "Male"
    for kind, name in (("target", target), ("confounder", confounder)):
        if name not in names:
            raise ValueError(
                f"Unknown CelebA attribute {name!r} for {kind}; the attributes "
                f"in {str(attr_file)!r} are: {', '.join(names)}."
            )
    if target == confounder:
        raise ValueError(
            f"target and confounder must be different attributes, got {target!r} "
            "for both."
        )
    y = _attribute(rows, names, target).astype(np.int64)
    flag = _attribute(rows, names, confounder)
    del rows

    rng = check_random_state(random_state)
    pool = _split_rows(2 * y + flag, rng)
    group_names = (
        f"not {target}, not {confounder}",
        f"not {target}, {confounder}",
        f"{target}, not {confounder}",
        f"{target}, {confounder}",
    )
    counts, shares = _set_sizes(
        n_minority,
        imbalance_ratio,
        minority_prevalence,
        majority_prevalence,
        n_test_minority,
        n_validation_minority,
        n_oracle,
    )
    chosen = _draw(y, flag, pool, counts, shares, rng, group_names)

    data = Bunch(
        group_names=group_names,
        target_names=(f"not {target}", target),
        description=(
            f"CelebA task: minority = {target}, n_minority={n_minority}, "
            f"imbalance_ratio={imbalance_ratio}, confounder {confounder!r} in "
            f"{minority_prevalence:.0%} of minority and {majority_prevalence:.0%} "
            "of majority training images; independent of the class in test."
        ),
    )
    for name in _SETS:
        index = chosen[name]
        source = files[index]
        X = _load_images([image_dir / file for file in source], image_size, attr_file)
        data[name] = _make_set(X, y[index], flag[index], source)
    return data


@validate_params(
    {
        "data_dir": [str, os.PathLike],
        "confounder_center": [Interval(Integral, 0, None, closed="left")],
        **_COMMON_PARAMETERS,
    },
    prefer_skip_nested_validation=True,
)
def load_camelyon17(
    data_dir,
    *,
    confounder_center=0,
    n_minority=100,
    imbalance_ratio=10,
    minority_prevalence=0.9,
    majority_prevalence=0.1,
    image_size=32,
    n_test_minority=200,
    n_validation_minority=50,
    n_oracle=1000,
    random_state=None,
):
    """Camelyon17 tissue patches whose tumour class co-occurs with a hospital.

    The minority class (label 1) is the patches with tumour tissue, the
    majority class (label 0) the others. The confounder is the hospital: a
    patch has it if it comes from hospital (``center``)
    ``confounder_center``, as in the paper, where stain differences between
    hospitals are the shortcut. The confounder is present in
    ``minority_prevalence`` of the training and validation minority images
    and in ``majority_prevalence`` of the majority ones, and in exactly half
    of each class in the test and oracle sets.

    The pools are split by patient, so that no patient has patches in two
    pools and the test set never shares a patient with the training set:
    the patients of each hospital are shuffled anew for each
    ``random_state``, and ``max(1, n // 4)`` of a hospital's ``n`` patients
    go to the validation pool, as many to the test pool, and the rest (about
    half or more) to the pool of the training and oracle sets, which are
    drawn from it without replacement (so they share no patch, but may share
    patients). A hospital with too few patients falls back gracefully: with
    two patients, one goes to the training pool and one to the test pool;
    with one, it goes to the training pool. The WILDS ``split`` column is
    not used. Only the patches that end up in a set are read; each 96x96
    patch is resized to ``image_size`` (bilinear, with antialiasing).

    Parameters
    ----------
    data_dir : str or path-like
        The folder ``camelyon17_v1.0`` of the WILDS archive (its parent is
        accepted too), holding ``metadata.csv`` and the patches
        ``patches/<folder>/patch_<folder>_x_{x_coord}_y_{y_coord}.png`` with
        ``<folder>`` = ``patient_{patient:03d}_node_{node}``. Get it on a machine with
        internet, e.g. with the ``wilds`` package's
        ``get_dataset(dataset="camelyon17", download=True)``, or from
        https://wilds.stanford.edu/datasets/.
    confounder_center : int, default=0
        The hospital (0 to 4 in WILDS) whose patches carry the confounder.
    n_minority : int, default=100
        Minority images in the training set.
    imbalance_ratio : float, default=10
        Majority images per minority image (``k`` in the paper); the
        training set holds ``round(n_minority * imbalance_ratio)`` majority
        images, and the validation and test sets keep this ratio.
    minority_prevalence : float, default=0.9
        Share of training and validation minority images from hospital
        ``confounder_center`` (exactly ``round(minority_prevalence *
        count)`` images).
    majority_prevalence : float, default=0.1
        Share of training and validation majority images from hospital
        ``confounder_center``.
    image_size : int, default=32
        Side of the square RGB images, at least 8.
    n_test_minority : int, default=200
        Minority images in the test set, which has the confounder on exactly
        half of each class.
    n_validation_minority : int, default=50
        Minority images in the validation set, which is confounded like the
        training set.
    n_oracle : int, default=1000
        Images in the well-conditioned set for training an oracle teacher:
        balanced classes, and the confounder on half of each class.
    random_state : int, RandomState instance or None, default=None
        Seed of the pools and of the draws; the same seed gives the same
        sets.

    Returns
    -------
    data : Bunch
        ``train``, ``validation``, ``test`` and ``oracle``, each a Bunch with
        ``X`` (float32, shape ``(n, 3, image_size, image_size)``, values in
        [0, 1]), ``y`` (0 normal, 1 tumour), ``confounder`` (bool),
        ``groups`` (``2 * y + confounder``, named by ``group_names``),
        ``source`` (the patch file names, str), ``patient`` and ``center``
        (int). Also ``group_names``, ``target_names`` and ``description``.

    Raises
    ------
    FileNotFoundError
        If ``data_dir``, ``metadata.csv``, the ``patches`` folder or a patch
        that was drawn is missing.
    ValueError
        If ``metadata.csv`` lacks a column or ``confounder_center``, or a
        pool has too few images of a group for what was asked.

    Examples
    --------
    >>> from imbcfkd.local_datasets import load_camelyon17
    >>> data = load_camelyon17("data/camelyon17_v1.0", n_minority=50,
    ...                        random_state=0)  # doctest: +SKIP
    >>> data.train.X.shape, int(data.train.y.sum())  # doctest: +SKIP
    ((550, 3, 32, 32), 50)
    """
    data_dir = Path(data_dir)
    metadata_file, patch_dir = _find_camelyon17(data_dir)
    meta = _read_camelyon17_metadata(metadata_file)
    centers = np.unique(meta["center"]).tolist()
    if confounder_center not in centers:
        raise ValueError(
            f"confounder_center={confounder_center} does not occur in "
            f"{str(metadata_file)!r}; its centers are: {centers}."
        )
    y = (meta["tumor"] > 0).astype(np.int64)
    flag = meta["center"] == confounder_center

    rng = check_random_state(random_state)
    pool = _split_patients(meta["patient"], meta["center"], rng)
    group_names = (
        f"normal, not hospital {confounder_center}",
        f"normal, hospital {confounder_center}",
        f"tumor, not hospital {confounder_center}",
        f"tumor, hospital {confounder_center}",
    )
    counts, shares = _set_sizes(
        n_minority,
        imbalance_ratio,
        minority_prevalence,
        majority_prevalence,
        n_test_minority,
        n_validation_minority,
        n_oracle,
    )
    chosen = _draw(
        y, flag, pool, counts, shares, rng, group_names, unit="patches by patient"
    )

    data = Bunch(
        group_names=group_names,
        target_names=("normal", "tumor"),
        description=(
            f"Camelyon17 task: minority = tumor, n_minority={n_minority}, "
            f"imbalance_ratio={imbalance_ratio}, confounder hospital "
            f"{confounder_center} in {minority_prevalence:.0%} of minority and "
            f"{majority_prevalence:.0%} of majority training images; independent "
            "of the class in test."
        ),
    )
    for name in _SETS:
        index = chosen[name]
        paths = [
            _patch_path(meta["patient"][i], meta["node"][i], meta["x"][i], meta["y"][i])
            for i in index
        ]
        X = _load_images(
            [patch_dir / folder / file for folder, file in paths],
            image_size,
            metadata_file,
        )
        data[name] = _make_set(
            X,
            y[index],
            flag[index],
            np.array([file for _, file in paths], dtype=str),
            patient=meta["patient"][index],
            center=meta["center"][index],
        )
    return data


def load_dataset(name, *, data_dir=None, **params):
    """Load one of the tasks of :data:`DATASETS` by name.

    Parameters
    ----------
    name : {"digits", "celeba", "camelyon17"}
        ``"digits"`` calls
        :func:`~imbcfkd.datasets.make_confounded_digits` (nothing to read;
        its defaults, such as ``image_size=16``, apply), ``"celeba"``
        :func:`load_celeba` and ``"camelyon17"`` :func:`load_camelyon17`.
    data_dir : str or path-like, default=None
        The folder to read ``"celeba"`` and ``"camelyon17"`` from; required
        for them, and must be ``None`` for ``"digits"``.
    **params
        Further keyword arguments of the loader, such as ``n_minority``,
        ``imbalance_ratio`` or ``random_state``.

    Returns
    -------
    data : Bunch
        What the loader returns: ``train``, ``validation``, ``test``,
        ``oracle``, ``group_names``, ``target_names`` and ``description``.

    Examples
    --------
    >>> from imbcfkd.local_datasets import load_dataset
    >>> data = load_dataset("digits", n_minority=20, imbalance_ratio=5,
    ...                     n_test_minority=20, n_oracle=40, random_state=0)
    >>> data.train.X.shape, int(data.train.y.sum())
    ((120, 3, 16, 16), 20)
    """
    if name not in DATASETS:
        raise ValueError(
            f"Unknown dataset {name!r}; choose one of {', '.join(DATASETS)}."
        )
    if name == "digits":
        if data_dir is not None:
            raise ValueError(
                "The digits task ships with scikit-learn and reads no folder; "
                f"pass data_dir=None, not {data_dir!r}."
            )
        return make_confounded_digits(**params)
    if data_dir is None:
        layout = {
            "celeba": (
                "the CelebA folder holding img_align_celeba/ (000001.jpg, ...) and "
                "list_attr_celeba.txt"
            ),
            "camelyon17": (
                "the WILDS folder camelyon17_v1.0 holding metadata.csv and patches/"
            ),
        }[name]
        raise ValueError(
            f"load_dataset({name!r}) needs data_dir: {layout}. {_NO_DOWNLOAD}"
        )
    loader = load_celeba if name == "celeba" else load_camelyon17
    return loader(data_dir, **params)


def check_data_dir(name, data_dir=None):
    """Fail now, with instructions, if the files of a dataset are not there.

    Checks the folder, the attribute or metadata file and the image folder,
    without reading them, so that a long benchmark fails before it starts.

    Parameters
    ----------
    name : {"digits", "celeba", "camelyon17"}
        The dataset, as in :func:`load_dataset`.
    data_dir : str or path-like, default=None
        Its folder; ignored for ``"digits"``.

    Raises
    ------
    FileNotFoundError
        If something is missing; the message says what to download and where
        to put it.
    ValueError
        If ``name`` is unknown, or ``data_dir`` is missing for a dataset
        that needs it.
    """
    if name not in DATASETS:
        raise ValueError(
            f"Unknown dataset {name!r}; choose one of {', '.join(DATASETS)}."
        )
    if name == "digits":
        return
    if data_dir is None:
        raise ValueError(f"Dataset {name!r} needs data_dir. {_NO_DOWNLOAD}")
    find = _find_celeba if name == "celeba" else _find_camelyon17
    find(Path(data_dir))


# --------------------------------------------------------------------------
# Finding and reading the files.


def _celeba_help(data_dir):
    return (
        f"Download the 'Align&Cropped Images' (img_align_celeba.zip) and "
        f"Anno/list_attr_celeba.txt from the official CelebA page {_CELEBA_URL}, "
        f"and unpack them so that the images lie in "
        f"'{data_dir / 'img_align_celeba'}' (000001.jpg, ...) and the attribute "
        f"file is '{data_dir / 'list_attr_celeba.txt'}'. {_NO_DOWNLOAD}"
    )


def _find_celeba(data_dir):
    """Return the attribute file and the image folder of a CelebA folder."""
    if not data_dir.is_dir():
        raise FileNotFoundError(
            f"CelebA folder '{data_dir}' does not exist. {_celeba_help(data_dir)}"
        )
    attr_candidates = [
        data_dir / "list_attr_celeba.txt",
        data_dir / "Anno" / "list_attr_celeba.txt",
        data_dir / "list_attr_celeba.csv",
    ]
    attr_file = next((path for path in attr_candidates if path.is_file()), None)
    if attr_file is None:
        raise FileNotFoundError(
            f"CelebA attribute file '{attr_candidates[0]}' is missing (the Kaggle "
            f"variant '{attr_candidates[2]}' is accepted too). "
            f"{_celeba_help(data_dir)}"
        )
    image_candidates = [
        data_dir / "img_align_celeba" / "img_align_celeba",  # Kaggle archive
        data_dir / "img_align_celeba",
        data_dir / "Img" / "img_align_celeba",
    ]
    image_dir = next((path for path in image_candidates if path.is_dir()), None)
    if image_dir is None:
        raise FileNotFoundError(
            f"CelebA image folder '{image_candidates[1]}' is missing. "
            f"{_celeba_help(data_dir)}"
        )
    return attr_file, image_dir


def _read_celeba_attributes(path):
    """Read the attribute names, the file names and the rows of values (str)."""
    with open(path, newline="") as file:
        if path.suffix == ".csv":
            rows = csv.reader(file)
            header = next(rows, [])
            names = [name.strip() for name in header[1:]]
            rows = [row for row in rows if row]
        else:
            lines = (line.split() for line in file)
            first = next(lines, [])
            # The official file starts with the number of images; tolerate a
            # file that starts with the attribute names right away.
            is_count = len(first) == 1 and first[0].isdigit()
            names = next(lines, []) if is_count else first
            rows = [row for row in lines if row]
            if rows and len(rows[0]) == len(names):
                names = names[1:]  # the header names the file column too
    if not names or not rows:
        raise ValueError(f"CelebA attribute file '{path}' holds no attributes.")
    width = len(names) + 1
    bad = next((row for row in rows if len(row) != width), None)
    if bad is not None:
        raise ValueError(
            f"CelebA attribute file '{path}' names {len(names)} attributes but "
            f"has a row with {len(bad) - 1} values: {' '.join(bad)[:80]!r}."
        )
    files = np.array([row[0].strip() for row in rows], dtype=str)
    return names, files, rows


def _attribute(rows, names, name):
    """Whether each row has the attribute ``name`` (value 1, not -1 or 0)."""
    column = names.index(name) + 1
    return np.array([int(row[column]) > 0 for row in rows], dtype=bool)


def _camelyon17_help(data_dir):
    return (
        "Download the WILDS archive camelyon17_v1.0 on a machine with internet, "
        "e.g. with the wilds package: pip install wilds, then "
        "wilds.get_dataset(dataset='camelyon17', download=True, root_dir='data'), "
        f"or from {_WILDS_URL}, and unpack it so that "
        f"'{data_dir / 'metadata.csv'}' and the folder "
        f"'{data_dir / 'patches'}' (patient_004_node_4/patch_patient_004_node_4_"
        "x_3328_y_21792.png, ...) exist (passing the parent of camelyon17_v1.0 "
        f"works too). {_NO_DOWNLOAD}"
    )


def _find_camelyon17(data_dir):
    """Return the metadata file and the patch folder of a Camelyon17 folder."""
    if not data_dir.is_dir():
        raise FileNotFoundError(
            f"Camelyon17 folder '{data_dir}' does not exist. "
            f"{_camelyon17_help(data_dir)}"
        )
    if (
        not (data_dir / "metadata.csv").is_file()
        and (data_dir / "camelyon17_v1.0" / "metadata.csv").is_file()
    ):
        data_dir = data_dir / "camelyon17_v1.0"
    metadata_file = data_dir / "metadata.csv"
    if not metadata_file.is_file():
        raise FileNotFoundError(
            f"Camelyon17 metadata file '{metadata_file}' is missing. "
            f"{_camelyon17_help(data_dir)}"
        )
    patch_dir = data_dir / "patches"
    if not patch_dir.is_dir():
        raise FileNotFoundError(
            f"Camelyon17 patch folder '{patch_dir}' is missing. "
            f"{_camelyon17_help(data_dir)}"
        )
    return metadata_file, patch_dir


_CAMELYON17_COLUMNS = {
    "patient": "patient",
    "node": "node",
    "x": "x_coord",
    "y": "y_coord",
    "tumor": "tumor",
    "center": "center",
}


def _read_camelyon17_metadata(path):
    """Read the columns of ``metadata.csv`` that the task needs, as int arrays."""
    with open(path, newline="") as file:
        rows = csv.reader(file)
        header = [name.strip() for name in next(rows, [])]
        missing = [
            column for column in _CAMELYON17_COLUMNS.values() if column not in header
        ]
        if missing:
            raise ValueError(
                f"Camelyon17 metadata file '{path}' lacks the columns "
                f"{', '.join(missing)}; its columns are: {', '.join(header)}."
            )
        where = [header.index(column) for column in _CAMELYON17_COLUMNS.values()]
        values = [[row[i] for i in where] for row in rows if row]
    if not values:
        raise ValueError(f"Camelyon17 metadata file '{path}' lists no patches.")
    table = np.array(values, dtype=float).astype(np.int64)
    return {key: table[:, j] for j, key in enumerate(_CAMELYON17_COLUMNS)}


def _patch_path(patient, node, x, y):
    """Folder and file name of a patch in the WILDS layout."""
    folder = f"patient_{patient:03d}_node_{node}"
    return folder, f"patch_{folder}_x_{x}_y_{y}.png"


def _load_image(path, image_size):
    """One image, centre-cropped to a square, as float32 (3, size, size)."""
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert("RGB")
        width, height = image.size
        side = min(width, height)
        left, top = (width - side) // 2, (height - side) // 2
        # Crop first, so that no pixel outside the square bleeds in.
        image = image.crop((left, top, left + side, top + side))
        image = image.resize((image_size, image_size), Image.Resampling.BILINEAR)
        pixels = np.asarray(image, dtype=np.float32)
    return pixels.transpose(2, 0, 1) / 255.0


def _load_images(paths, image_size, listed_in):
    """Stack the images at ``paths``; a missing one raises FileNotFoundError."""
    X = np.empty((len(paths), 3, image_size, image_size), dtype=np.float32)
    for i, path in enumerate(paths):
        if not path.is_file():
            raise FileNotFoundError(
                f"Image '{path}' is listed in '{listed_in}' but missing on disk; "
                "unpack the complete archive there. " + _NO_DOWNLOAD
            )
        X[i] = _load_image(path, image_size)
    return np.clip(X, 0, 1, out=X)


# --------------------------------------------------------------------------
# Pools and draws.


def _split_rows(groups, rng):
    """Pool of each row: 50% train+oracle, 25% validation, 25% test per group."""
    pool = np.empty(len(groups), dtype=np.int64)
    for group in range(4):
        rows = rng.permutation(np.flatnonzero(groups == group))
        half, three_quarters = len(rows) // 2, (3 * len(rows)) // 4
        pool[rows[:half]] = 0
        pool[rows[half:three_quarters]] = 1
        pool[rows[three_quarters:]] = 2
    return pool


def _split_patients(patient, center, rng):
    """Pool of each patch, with all patches of a patient in one pool.

    Each hospital's patients are shuffled; ``max(1, n // 4)`` go to the
    validation pool and as many to the test pool, the rest to the
    train+oracle pool. With two patients, one goes to the train+oracle pool
    and one to the test pool; with one, it goes to the train+oracle pool.
    """
    patients = np.unique(patient)
    # A patient belongs to the hospital most of its patches come from.
    home = np.array(
        [np.bincount(center[patient == p]).argmax() for p in patients],
        dtype=np.int64,
    )
    patient_pool = np.zeros(len(patients), dtype=np.int64)
    for hospital in np.unique(home):
        members = rng.permutation(np.flatnonzero(home == hospital))
        n = len(members)
        if n == 1:
            continue
        if n == 2:
            patient_pool[members[1]] = 2
            continue
        quarter = max(1, n // 4)
        patient_pool[members[:quarter]] = 1
        patient_pool[members[quarter : 2 * quarter]] = 2
    return patient_pool[np.searchsorted(patients, patient)]


def _set_sizes(
    n_minority,
    imbalance_ratio,
    minority_prevalence,
    majority_prevalence,
    n_test_minority,
    n_validation_minority,
    n_oracle,
):
    """Class counts ``(majority, minority)`` and confounder shares per set."""
    confounded = (majority_prevalence, minority_prevalence)
    independent = (0.5, 0.5)
    counts = {
        "train": (int(round(n_minority * imbalance_ratio)), n_minority),
        "validation": (
            int(round(n_validation_minority * imbalance_ratio)),
            n_validation_minority,
        ),
        "test": (int(round(n_test_minority * imbalance_ratio)), n_test_minority),
        "oracle": (n_oracle - n_oracle // 2, n_oracle // 2),
    }
    shares = {
        "train": confounded,
        "validation": confounded,
        "test": independent,
        "oracle": independent,
    }
    return counts, shares


def _draw(y, flag, pool, counts, shares, rng, group_names, unit="images"):
    """Row indices of each set, drawn without replacement from its pool.

    Each set holds ``counts[set][label]`` rows of each class, of which
    exactly ``round(shares[set][label] * count)`` have the confounder. The
    rows of each (pool, group) are shuffled once and handed out in turn, so
    that the training and oracle sets, which share a pool, are disjoint.
    """
    groups = 2 * y + flag
    queues = {
        (p, g): rng.permutation(np.flatnonzero((pool == p) & (groups == g)))
        for p in range(3)
        for g in range(4)
    }
    used = dict.fromkeys(queues, 0)
    chosen = {}
    for name in _SETS:
        p = _POOL_OF[name]
        parts = []
        for label in (0, 1):
            count = counts[name][label]
            n_confounded = int(round(shares[name][label] * count))
            for has_flag, needed in (
                (False, count - n_confounded),
                (True, n_confounded),
            ):
                g = 2 * label + int(has_flag)
                start, queue = used[p, g], queues[p, g]
                if start + needed > len(queue):
                    raise ValueError(
                        _too_few_message(
                            name,
                            label,
                            has_flag,
                            needed,
                            len(queue),
                            start,
                            group_names[g],
                            unit,
                        )
                    )
                parts.append(queue[start : start + needed])
                used[p, g] = start + needed
        index = np.concatenate(parts)
        chosen[name] = index[rng.permutation(len(index))]
    return chosen


def _too_few_message(name, label, has_flag, needed, available, taken, group, unit):
    pool = _POOL_NAMES[_POOL_OF[name]]
    taken_note = f", of which the training set already took {taken}" if taken else ""
    hint = _SIZE_PARAMETER[name]
    if label == 0 and name != "oracle":
        hint += " or imbalance_ratio"
    if name in ("train", "validation"):
        prevalence = "minority_prevalence" if label else "majority_prevalence"
        hint += f", or {'lower' if has_flag else 'raise'} {prevalence}"
    if name == "oracle":
        hint += " (or n_minority: the oracle set takes what the training set leaves)"
    return (
        f"Too few images in group {group!r} for the {name} set: it needs "
        f"{needed} but the {pool} pool has {available}{taken_note} (the pools "
        f"are disjoint splits of the {unit}). Lower {hint}."
    )


def _make_set(X, y, flag, source, **extra):
    return Bunch(
        X=X,
        y=np.asarray(y, dtype=np.int64),
        confounder=np.asarray(flag, dtype=bool),
        groups=2 * np.asarray(y, dtype=np.int64) + np.asarray(flag, dtype=np.int64),
        source=np.asarray(source, dtype=str),
        **extra,
    )
