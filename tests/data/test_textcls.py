import numpy as np
import pytest

from kerasseq.data import textcls
from kerasseq.data.errors import DataFormatError
from kerasseq.data.errors import DataNotFoundError


def write_folder(directory, per_class=10, classes=("sport", "business")):
    """A folder data set: `per_class` texts per class, each naming its
    class; returns the directory."""
    for name in classes:
        (directory / name).mkdir(parents=True)
        for i in range(per_class):
            text = f"A {name} story number {i}. " + f"{name} " * (i + 1)
            (directory / name / f"{i:03d}.txt").write_text(text)
    return directory


def test_classes_sorted_and_every_file_read(tmp_path):
    write_folder(tmp_path, per_class=3, classes=("tech", "arts", "sport"))
    (tmp_path / "tech" / "notes.md").write_text("not an example")
    folder = textcls.load_folder(str(tmp_path))
    assert folder.class_names == ("arts", "sport", "tech")
    assert folder.files[:3] == ["arts/000.txt", "arts/001.txt", "arts/002.txt"]
    np.testing.assert_array_equal(folder.labels, [0] * 3 + [1] * 3 + [2] * 3)
    assert all(
        folder.class_names[label] in text
        for text, label in zip(folder.texts, folder.labels, strict=True)
    )
    assert folder.latin1_files == []


def test_a_latin1_file_is_read_and_named(tmp_path):
    write_folder(tmp_path, per_class=2)
    (tmp_path / "sport" / "009.txt").write_bytes(b"a \xa315.8m signing")
    folder = textcls.load_folder(str(tmp_path))
    assert folder.latin1_files == ["sport/009.txt"]
    assert "a \u00a315.8m signing" in folder.texts


def test_split_is_stratified_disjoint_and_seeded():
    labels = np.array([0] * 50 + [1] * 30 + [2] * 20)
    splits = textcls.split_indices(labels, 0.1, 0.2, seed=3)
    joined = np.concatenate(list(splits.values()))
    assert sorted(joined) == list(range(100))  # each example exactly once
    assert np.bincount(labels[splits["test"]]).tolist() == [10, 6, 4]
    assert np.bincount(labels[splits["validation"]]).tolist() == [5, 3, 2]
    again = textcls.split_indices(labels, 0.1, 0.2, seed=3)
    other = textcls.split_indices(labels, 0.1, 0.2, seed=4)
    assert all(np.array_equal(splits[s], again[s]) for s in splits)
    assert not np.array_equal(splits["test"], other["test"])


def test_bad_folders_and_fractions(tmp_path):
    with pytest.raises(DataNotFoundError, match="DATA_DIR/<class name>"):
        textcls.load_folder(str(tmp_path / "absent"))
    (tmp_path / "one").mkdir()
    with pytest.raises(DataNotFoundError, match="1 class subdirectories"):
        textcls.load_folder(str(tmp_path))
    (tmp_path / "two").mkdir()
    with pytest.raises(DataNotFoundError, match="'one'.*no \\*.txt files"):
        textcls.load_folder(str(tmp_path))
    (tmp_path / "one" / "a.txt").write_text("text")
    (tmp_path / "two" / "b.txt").write_text("  \n")
    with pytest.raises(DataFormatError, match="two/b.txt .* is empty"):
        textcls.load_folder(str(tmp_path))
    with pytest.raises(ValueError, match="--test_fraction must be in"):
        textcls.split_indices([0, 1], 0.1, 1.5, 0)
    with pytest.raises(ValueError, match="must leave training examples"):
        textcls.split_indices([0, 1], 0.5, 0.5, 0)
