import os

import numpy as np
import pytest

from kerasseq.data import lra
from kerasseq.data.errors import DataFormatError
from kerasseq.data.errors import DataNotFoundError
from kerasseq.models import HEADS
from tests.data.test_pixels import write_cifar


def write_imdb(directory, per_label=3, nested=True):
    """A small aclImdb tree; returns {split: [(text, label), ...]} in the
    loader's order (negatives first, files by name)."""
    root = os.path.join(directory, "aclImdb") if nested else directory
    written = {}
    for split in ("train", "test"):
        written[split] = []
        for label, name in enumerate(lra.IMDB_LABELS):
            os.makedirs(os.path.join(root, split, name), exist_ok=True)
            for i in range(per_label):
                text = f"{split} {name} review {i}: caf\u00e9 " + "x" * i
                path = os.path.join(root, split, name, f"{i}_{7 + i}.txt")
                with open(path, "w", encoding="utf-8") as f:
                    f.write(text)
                written[split].append((text, label))
    return written


def write_aan(directory, rows_per_split=4, seed=0):
    """LRA's AAN pair TSVs; returns {split: [(label, text1, text2)]}."""
    rng = np.random.default_rng(seed)
    os.makedirs(directory, exist_ok=True)
    written = {}
    for split, name in lra.RETRIEVAL_FILES.items():
        rows = []
        with open(os.path.join(directory, name), "w") as f:
            for i in range(rows_per_split):
                label = int(rng.integers(2))
                first = f"paper {split} {i} cites " + "a" * int(rng.integers(9))
                second = f"other {i} \u00fc"
                value = f"{label}.0" if i % 2 else str(label)
                f.write(f"{value}\tid{i}a\tid{i}b\t{first}\t{second}\n")
                rows.append((label, first, second))
        written[split] = rows
    return written


def test_task_specs_match_lra():
    assert set(lra.SPECS) == set(lra.TASKS)
    lengths = {t: s.max_length for t, s in lra.SPECS.items()}
    assert lengths == {
        "listops": 2000,
        "text": 4000,
        "retrieval": 4000,
        "image": 1024,
        "pathfinder": 1024,
    }
    for spec in lra.SPECS.values():
        assert spec.head in HEADS
    with pytest.raises(ValueError, match="expected one of.*'listops'"):
        lra.task_spec("cifar")


def test_byte_encoding():
    ids, mask = lra.encode_bytes(["ab", "caf\u00e9", b"\x00\xff"], 4)
    assert ids.tolist() == [
        [98, 99, 0, 0],
        [100, 98, 103, 196],  # the UTF-8 bytes of "caf\u00e9", cut at 4
        [1, 256, 0, 0],
    ]
    assert mask.tolist() == [
        [True, True, False, False],
        [True] * 4,
        [True, True, False, False],
    ]
    assert ids.max() < lra.BYTE_VOCABULARY_SIZE


@pytest.mark.parametrize("nested", [True, False])
def test_imdb_reviews_from_the_official_layout(tmp_path, nested):
    written = write_imdb(str(tmp_path), nested=nested)
    for split in ("train", "test"):
        data = lra.load_text(str(tmp_path), split, 40)
        texts = [text for text, _ in written[split]]
        expected, mask = lra.encode_bytes(texts, 40)
        np.testing.assert_array_equal(data.inputs["token_ids"], expected)
        np.testing.assert_array_equal(data.inputs["padding_mask"], mask)
        assert data.labels.tolist() == [label for _, label in written[split]]


def test_missing_imdb_fails_at_once_naming_the_files(tmp_path):
    with pytest.raises(DataNotFoundError, match="aclImdb/train/pos/\\*.txt"):
        lra.load_text(str(tmp_path), "train", 10)
    os.makedirs(tmp_path / "aclImdb" / "train" / "pos")
    os.makedirs(tmp_path / "aclImdb" / "train" / "neg")
    with pytest.raises(DataNotFoundError, match="No reviews in .*neg"):
        lra.load_text(str(tmp_path), "train", 10)


def test_aan_pairs(tmp_path):
    written = write_aan(str(tmp_path))
    data = lra.load_retrieval(str(tmp_path), "val", 12)
    rows = written["val"]
    assert data.labels.tolist() == [label for label, _, _ in rows]
    for key, column in (("1", 1), ("2", 2)):
        expected, mask = lra.encode_bytes([r[column] for r in rows], 12)
        np.testing.assert_array_equal(data.inputs[f"token_ids_{key}"], expected)
        np.testing.assert_array_equal(data.inputs[f"padding_mask_{key}"], mask)
    assert len(data.take(slice(1, 3))) == 2


@pytest.mark.parametrize(
    "row, message",
    [
        ("1\tid1\tid2\tonly four", r"new_aan_pairs.eval.tsv:2: expected 5 .*"),
        ("2\ta\tb\tc\td", r"new_aan_pairs.eval.tsv:2: expected a label 0 or 1"),
        ("yes\ta\tb\tc\td", r":2: expected a label 0 or 1, got 'yes'"),
    ],
)
def test_malformed_aan_rows_name_file_and_line(tmp_path, row, message):
    path = tmp_path / lra.RETRIEVAL_FILES["val"]
    path.write_text("0\ta\tb\tfirst\tsecond\n" + row + "\n")
    with pytest.raises(DataFormatError, match=message):
        lra.load_retrieval(str(tmp_path), "val", 8)


def test_missing_aan_names_the_files(tmp_path):
    with pytest.raises(DataNotFoundError, match="new_aan_pairs.train.tsv"):
        lra.load_retrieval(str(tmp_path), "train", 8)


def test_cifar_in_grayscale(tmp_path):
    written = write_cifar(str(tmp_path), per_batch=2)
    data = lra.load_image(str(tmp_path), "test", 1024)
    images, labels = written["test"]
    # ITU-R 601 luma, scaled as tf.image.convert_image_dtype scales back
    weights = np.array([0.2989, 0.5870, 0.1140])
    gray = np.floor((images / 255.0) @ weights * 255.5).reshape(-1, 1024)
    np.testing.assert_array_equal(data.inputs["token_ids"], gray)
    assert data.inputs["padding_mask"].all()
    assert data.labels.tolist() == labels.tolist()
    with pytest.raises(DataFormatError, match="wrong size.*expected 784"):
        lra.pixel_tokens(images[..., 0], labels, 784)
