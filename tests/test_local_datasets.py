"""The CelebA and Camelyon17 loaders, on tiny fake folders in their layouts."""

import shutil

import numpy as np
import pytest
from PIL import Image

from imbcfkd.datasets import make_confounded_digits
from imbcfkd.local_datasets import (
    DATASETS,
    _load_image,
    load_camelyon17,
    load_celeba,
    load_dataset,
)

ATTRIBUTES = ("5_o_Clock_Shadow", "Blond_Hair", "Male", "Smiling", "Young")
SMALL = {
    "n_minority": 10,
    "imbalance_ratio": 2,
    "n_test_minority": 10,
    "n_validation_minority": 5,
    "n_oracle": 20,
    "image_size": 16,
}
SETS = ("train", "validation", "test", "oracle")


def make_fake_celeba(root, n_images=600, kaggle=False, seed=0):
    """CelebA in its official (or Kaggle) layout: 20x24 jpgs of one colour.

    Returns the attribute table (n_images, n_attributes) of -1/1 values, the
    file names and the colour of each image.
    """
    rng = np.random.RandomState(seed)
    values = rng.choice([-1, 1], size=(n_images, len(ATTRIBUTES)))
    files = [f"{i + 1:06d}.jpg" for i in range(n_images)]
    colours = rng.randint(0, 256, size=(n_images, 3))
    image_dir = root / "img_align_celeba"
    if kaggle:
        image_dir = image_dir / "img_align_celeba"
    image_dir.mkdir(parents=True)
    for file, colour in zip(files, colours, strict=True):
        Image.new("RGB", (20, 24), tuple(int(c) for c in colour)).save(
            image_dir / file, quality=95
        )
    if kaggle:
        lines = ["image_id," + ",".join(ATTRIBUTES)]
        lines += [
            f"{f}," + ",".join(map(str, v)) for f, v in zip(files, values, strict=True)
        ]
        (root / "list_attr_celeba.csv").write_text("\n".join(lines) + "\n")
    else:
        lines = [str(n_images), " ".join(ATTRIBUTES)]
        lines += [
            f"{f} " + " ".join(f"{x:2d}" for x in v)
            for f, v in zip(files, values, strict=True)
        ]
        (root / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    return values, np.array(files), colours


def make_fake_camelyon17(root, n_centers=5, n_patients=4, n_patches=30, seed=0):
    """WILDS camelyon17_v1.0 layout: 96x96 pngs; half of each patient's tumour.

    Returns a dict from patch file name to (patient, center, tumor, colour).
    """
    rng = np.random.RandomState(seed)
    lines = [",patient,node,x_coord,y_coord,tumor,slide,center,split"]
    patches = {}
    row = 0
    for center in range(n_centers):
        for k in range(n_patients):
            patient = 10 * center + k + 1
            node = k % 5
            folder = root / "patches" / f"patient_{patient:03d}_node_{node}"
            folder.mkdir(parents=True)
            for j in range(n_patches):
                x, y, tumor = 96 * j, 3 * j + 1, j % 2
                colour = tuple(int(c) for c in rng.randint(0, 256, 3))
                name = f"patch_patient_{patient:03d}_node_{node}_x_{x}_y_{y}.png"
                Image.new("RGB", (96, 96), colour).save(folder / name)
                lines.append(
                    f"{row},{patient},{node},{x},{y},{tumor},{patient},{center},0"
                )
                patches[name] = (patient, center, tumor, colour)
                row += 1
    (root / "metadata.csv").write_text("\n".join(lines) + "\n")
    return patches


@pytest.fixture(scope="module")
def celeba(tmp_path_factory):
    root = tmp_path_factory.mktemp("celeba")
    return root, *make_fake_celeba(root)


@pytest.fixture(scope="module")
def camelyon(tmp_path_factory):
    root = tmp_path_factory.mktemp("wilds") / "camelyon17_v1.0"
    root.mkdir()
    return root, make_fake_camelyon17(root)


def check_counts(data, image_size=16, prevalence=(0.1, 0.9)):
    """Exact class and confounder counts, shapes and dtypes of every set."""
    k = SMALL["imbalance_ratio"]
    expected = {
        "train": ((20, 10), prevalence),
        "validation": ((10, 5), prevalence),
        "test": ((20, 10), (0.5, 0.5)),
        "oracle": ((10, 10), (0.5, 0.5)),
    }
    assert expected["train"][0] == (SMALL["n_minority"] * k, SMALL["n_minority"])
    for name, (counts, shares) in expected.items():
        part = data[name]
        n = sum(counts)
        assert part.X.shape == (n, 3, image_size, image_size)
        assert part.X.dtype == np.float32
        assert 0 <= part.X.min() and part.X.max() <= 1
        assert part.y.dtype.kind == "i" and part.confounder.dtype == bool
        assert part.source.dtype.kind == "U" and len(part.source) == n
        assert np.bincount(part.y, minlength=2).tolist() == list(counts)
        for label in (0, 1):
            n_confounded = int(round(shares[label] * counts[label]))
            assert part.confounder[part.y == label].sum() == n_confounded
        np.testing.assert_array_equal(part.groups, 2 * part.y + part.confounder)
    assert len(data.group_names) == 4 and len(data.target_names) == 2
    assert isinstance(data.description, str)


def check_disjoint(data):
    sources = [set(data[name].source.tolist()) for name in SETS]
    for name, source in zip(SETS, sources, strict=True):
        assert len(source) == len(data[name].source), f"repeats in {name}"
    for i in range(4):
        for j in range(i + 1, 4):
            assert not sources[i] & sources[j], (SETS[i], SETS[j])


def assert_same(a, b):
    for name in SETS:
        for key in ("X", "y", "confounder", "groups", "source"):
            np.testing.assert_array_equal(a[name][key], b[name][key])


# --------------------------------------------------------------------------
# CelebA


@pytest.mark.parametrize(
    "target, confounder, used",
    [("Smiling", None, "Male"), ("Male", None, "Blond_Hair")],
)
def test_celeba_counts_labels_and_pixels(celeba, target, confounder, used):
    root, values, files, colours = celeba
    data = load_celeba(
        root, target=target, confounder=confounder, random_state=0, **SMALL
    )
    check_counts(data)
    check_disjoint(data)
    assert data.target_names == (f"not {target}", target)
    assert data.group_names[3] == f"{target}, {used}"
    row = {file: i for i, file in enumerate(files)}
    t, c = ATTRIBUTES.index(target), ATTRIBUTES.index(used)
    for name in SETS:
        part = data[name]
        rows = np.array([row[s] for s in part.source])
        # Labels and confounder are the attributes of the file named in source.
        np.testing.assert_array_equal(part.y, values[rows, t] == 1)
        np.testing.assert_array_equal(part.confounder, values[rows, c] == 1)
        # The pixels are those of that file (one colour, up to jpeg error).
        mean_colour = part.X.mean(axis=(2, 3))
        np.testing.assert_allclose(mean_colour, colours[rows] / 255, atol=0.03)


def test_celeba_is_deterministic(celeba):
    root = celeba[0]
    a = load_celeba(root, random_state=3, **SMALL)
    b = load_celeba(root, random_state=3, **SMALL)
    assert_same(a, b)
    c = load_celeba(root, random_state=4, **SMALL)
    assert set(c.train.source) != set(a.train.source)


def test_celeba_other_prevalences_and_sizes(celeba):
    params = {**SMALL, "image_size": 8}
    data = load_celeba(
        celeba[0],
        target="Young",
        confounder="Smiling",
        minority_prevalence=0.7,
        majority_prevalence=0.3,
        random_state=1,
        **params,
    )
    check_counts(data, image_size=8, prevalence=(0.3, 0.7))


def test_celeba_kaggle_csv_variant(tmp_path):
    values, files, _ = make_fake_celeba(tmp_path, n_images=300, kaggle=True)
    assert not (tmp_path / "list_attr_celeba.txt").exists()
    params = {**SMALL, "n_minority": 5, "n_oracle": 10}
    data = load_celeba(tmp_path, target="Male", random_state=0, **params)
    row = {file: i for i, file in enumerate(files)}
    rows = np.array([row[s] for s in data.train.source])
    np.testing.assert_array_equal(
        data.train.y, values[rows, ATTRIBUTES.index("Male")] == 1
    )
    np.testing.assert_array_equal(
        data.train.confounder, values[rows, ATTRIBUTES.index("Blond_Hair")] == 1
    )
    assert np.bincount(data.train.y).tolist() == [10, 5]


def test_celeba_unknown_attribute(celeba):
    with pytest.raises(ValueError, match="Unknown CelebA attribute 'Smile'.*Smiling"):
        load_celeba(celeba[0], target="Smile", **SMALL)
    with pytest.raises(ValueError, match="'Hat' for confounder.*Blond_Hair"):
        load_celeba(celeba[0], confounder="Hat", **SMALL)
    with pytest.raises(ValueError, match="different"):
        load_celeba(celeba[0], target="Male", confounder="Male", **SMALL)


def test_celeba_too_few_images(celeba):
    # The train+oracle pool holds about 75 images of each group.
    with pytest.raises(ValueError) as info:
        load_celeba(
            celeba[0],
            **{**SMALL, "n_minority": 100, "imbalance_ratio": 1},
            majority_prevalence=0.5,
            random_state=0,
        )
    message = str(info.value)
    assert "'Smiling, Male'" in message and "train set" in message
    assert "needs 90 but the train+oracle pool has" in message
    assert "Lower n_minority, or lower minority_prevalence" in message
    with pytest.raises(ValueError, match=r"test set.*Lower n_test_minority"):
        load_celeba(celeba[0], **{**SMALL, "n_test_minority": 200}, random_state=0)
    with pytest.raises(ValueError, match=r"oracle set.*already took 18.*n_oracle"):
        load_celeba(celeba[0], **{**SMALL, "n_oracle": 280}, random_state=0)


def test_celeba_missing_files(tmp_path, celeba):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError) as info:
        load_celeba(missing)
    message = str(info.value)
    assert f"'{missing}' does not exist" in message
    assert str(missing / "img_align_celeba") in message
    assert "img_align_celeba.zip" in message and "mmlab.ie.cuhk.edu.hk" in message
    assert "never downloads" in message

    (tmp_path / "img_align_celeba").mkdir()
    with pytest.raises(FileNotFoundError) as info:
        load_celeba(tmp_path)
    assert f"'{tmp_path / 'list_attr_celeba.txt'}' is missing" in str(info.value)

    shutil.copy(celeba[0] / "list_attr_celeba.txt", tmp_path)
    (tmp_path / "img_align_celeba").rmdir()
    with pytest.raises(FileNotFoundError, match="image folder.*is missing"):
        load_celeba(tmp_path)

    # An image that is listed and drawn but missing on disk is named.
    shutil.copytree(celeba[0] / "img_align_celeba", tmp_path / "img_align_celeba")
    drawn = load_celeba(tmp_path, random_state=0, **SMALL).test.source[0]
    (tmp_path / "img_align_celeba" / drawn).unlink()
    with pytest.raises(FileNotFoundError) as info:
        load_celeba(tmp_path, random_state=0, **SMALL)
    assert str(tmp_path / "img_align_celeba" / drawn) in str(info.value)
    assert "list_attr_celeba.txt" in str(info.value)


def test_load_image_centre_crops_and_resizes(tmp_path):
    # 20 wide, 40 high: red top, green middle square, blue bottom.
    image = Image.new("RGB", (20, 40), (255, 0, 0))
    image.paste((0, 255, 0), (0, 10, 20, 30))
    image.paste((0, 0, 255), (0, 30, 20, 40))
    image.save(tmp_path / "bands.png")
    X = _load_image(tmp_path / "bands.png", 8)
    assert X.shape == (3, 8, 8) and X.dtype == np.float32
    np.testing.assert_allclose(X[1], 1.0)
    np.testing.assert_allclose(X[[0, 2]], 0.0)


# --------------------------------------------------------------------------
# Camelyon17


def test_camelyon17_counts_labels_and_patients(camelyon):
    root, patches = camelyon
    # The parent of camelyon17_v1.0, as the wilds package lays it out, works too.
    data = load_camelyon17(root.parent, confounder_center=2, random_state=0, **SMALL)
    check_counts(data)
    check_disjoint(data)
    assert data.target_names == ("normal", "tumor")
    patients = {}
    for name in SETS:
        part = data[name]
        info = [patches[s] for s in part.source]
        np.testing.assert_array_equal(part.patient, [i[0] for i in info])
        np.testing.assert_array_equal(part.center, [i[1] for i in info])
        np.testing.assert_array_equal(part.y, [i[2] for i in info])
        np.testing.assert_array_equal(part.confounder, part.center == 2)
        colours = np.array([i[3] for i in info]) / 255
        np.testing.assert_allclose(part.X.mean(axis=(2, 3)), colours, atol=1e-5)
        patients[name] = set(part.patient.tolist())
    # Test and validation patients are never training (or oracle) patients.
    for held_out in ("validation", "test"):
        for seen in ("train", "oracle"):
            assert not patients[held_out] & patients[seen]
    assert not patients["validation"] & patients["test"]


def test_camelyon17_pools_split_patients_of_every_center(camelyon):
    # With 4 patients per center: 2 train+oracle, 1 validation, 1 test.
    root = camelyon[0]
    for seed in range(3):
        data = load_camelyon17(root, random_state=seed, **SMALL)
        for center in range(5):
            patients = {
                name: set(data[name].patient[data[name].center == center].tolist())
                for name in SETS
            }
            assert len(patients["train"] | patients["oracle"]) <= 2
            assert len(patients["validation"]) <= 1 and len(patients["test"]) <= 1
            # The confounding hospital is used by all sets.
            if center == 0:
                assert all(patients.values())


def test_camelyon17_is_deterministic(camelyon):
    a = load_camelyon17(camelyon[0], random_state=5, **SMALL)
    b = load_camelyon17(camelyon[0], random_state=5, **SMALL)
    assert_same(a, b)
    np.testing.assert_array_equal(a.test.patient, b.test.patient)


def test_camelyon17_too_few_and_bad_center(camelyon):
    # Center 0 has 2 patients (30 tumour patches) in the train+oracle pool.
    with pytest.raises(ValueError) as info:
        load_camelyon17(camelyon[0], **{**SMALL, "n_minority": 40}, random_state=0)
    message = str(info.value)
    assert "'tumor, hospital 0'" in message and "needs 36 but" in message
    assert "has 30" in message and "Lower n_minority" in message
    with pytest.raises(ValueError, match=r"confounder_center=7.*\[0, 1, 2, 3, 4\]"):
        load_camelyon17(camelyon[0], confounder_center=7, **SMALL)


def test_camelyon17_missing_files(tmp_path, camelyon):
    missing = tmp_path / "camelyon17_v1.0"
    with pytest.raises(FileNotFoundError) as info:
        load_camelyon17(missing)
    message = str(info.value)
    assert f"'{missing}' does not exist" in message
    assert str(missing / "metadata.csv") in message
    assert "get_dataset(dataset='camelyon17', download=True" in message
    assert "wilds.stanford.edu" in message and "never downloads" in message

    missing.mkdir()
    with pytest.raises(FileNotFoundError, match="metadata.csv' is missing"):
        load_camelyon17(missing)
    shutil.copy(camelyon[0] / "metadata.csv", missing)
    with pytest.raises(FileNotFoundError) as info:
        load_camelyon17(missing)
    assert f"'{missing / 'patches'}' is missing" in str(info.value)

    shutil.copytree(camelyon[0] / "patches", missing / "patches")
    drawn = load_camelyon17(missing, random_state=0, **SMALL)
    name = drawn.validation.source[0]
    folder = name[len("patch_") : name.index("_x_")]
    (missing / "patches" / folder / name).unlink()
    with pytest.raises(FileNotFoundError) as info:
        load_camelyon17(missing, random_state=0, **SMALL)
    assert str(missing / "patches" / folder / name) in str(info.value)


# --------------------------------------------------------------------------
# load_dataset


def test_load_dataset_dispatches(celeba, camelyon):
    assert DATASETS == ("digits", "celeba", "camelyon17")
    assert_same(
        load_dataset("celeba", data_dir=celeba[0], random_state=0, **SMALL),
        load_celeba(celeba[0], random_state=0, **SMALL),
    )
    assert_same(
        load_dataset("camelyon17", data_dir=camelyon[0], random_state=0, **SMALL),
        load_camelyon17(camelyon[0], random_state=0, **SMALL),
    )
    params = {"n_minority": 5, "n_test_minority": 5, "n_oracle": 10, "random_state": 0}
    digits = load_dataset("digits", **params)
    assert digits.train.X.shape[-1] == 16  # make_confounded_digits's default
    assert_same(digits, make_confounded_digits(**params))


def test_load_dataset_errors(celeba):
    with pytest.raises(ValueError, match="Unknown dataset 'mnist'.*celeba, camelyon17"):
        load_dataset("mnist")
    with pytest.raises(ValueError, match="digits.*data_dir=None"):
        load_dataset("digits", data_dir=celeba[0])
    with pytest.raises(ValueError, match="needs data_dir.*img_align_celeba"):
        load_dataset("celeba")
    with pytest.raises(ValueError, match="needs data_dir.*metadata.csv"):
        load_dataset("camelyon17")


def test_check_data_dir_fails_before_reading(tmp_path):
    from imbcfkd.local_datasets import check_data_dir

    check_data_dir("digits")
    (tmp_path / "celeba").mkdir()
    with pytest.raises(FileNotFoundError, match="list_attr_celeba.txt"):
        check_data_dir("celeba", tmp_path / "celeba")
    (tmp_path / "celeba" / "list_attr_celeba.txt").write_text("0\nSmiling\n")
    with pytest.raises(FileNotFoundError, match="img_align_celeba"):
        check_data_dir("celeba", tmp_path / "celeba")
    (tmp_path / "celeba" / "img_align_celeba").mkdir()
    check_data_dir("celeba", tmp_path / "celeba")
    with pytest.raises(FileNotFoundError, match="metadata.csv"):
        check_data_dir("camelyon17", tmp_path / "celeba")
    with pytest.raises(ValueError, match="needs data_dir"):
        check_data_dir("camelyon17")
