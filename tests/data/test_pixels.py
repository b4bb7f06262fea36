import gzip
import os
import pickle
import time

import numpy as np
import pytest

from kerasseq.data import pixels


def write_idx(path, array, compress=False):
    """An IDX file of unsigned bytes, as yann.lecun.com ships them."""
    array = np.asarray(array, np.uint8)
    magic = 0x0800 + array.ndim
    header = magic.to_bytes(4, "big") + b"".join(
        d.to_bytes(4, "big") for d in array.shape
    )
    opener = gzip.open if compress else open
    with opener(path + (".gz" if compress else ""), "wb") as f:
        f.write(header + array.tobytes())


def write_mnist(directory, num_train=12, num_test=5, seed=0, compress=False):
    """Small MNIST files in the real IDX layout; returns the arrays."""
    rng = np.random.default_rng(seed)
    os.makedirs(directory, exist_ok=True)
    arrays = {}
    for split, count in (("train", num_train), ("test", num_test)):
        images = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, count, dtype=np.uint8)
        images_name, labels_name = pixels.MNIST_FILES[split]
        write_idx(os.path.join(directory, images_name), images, compress)
        write_idx(os.path.join(directory, labels_name), labels, compress)
        arrays[split] = (images, labels)
    return arrays


def write_cifar(directory, per_batch=3, seed=0, nested=True):
    """Small CIFAR-10 python batches (pickled dicts of rows of 3072 bytes:
    the red, green and blue planes); returns the images (N, 32, 32, 3)."""
    rng = np.random.default_rng(seed)
    root = (
        os.path.join(directory, "cifar-10-batches-py") if nested else directory
    )
    os.makedirs(root, exist_ok=True)
    arrays = {}
    for split, names in pixels.CIFAR_FILES.items():
        images, labels = [], []
        for name in names:
            batch = rng.integers(0, 256, (per_batch, 32, 32, 3), np.uint8)
            batch_labels = rng.integers(0, 10, per_batch).tolist()
            rows = batch.transpose(0, 3, 1, 2).reshape(per_batch, 3072)
            with open(os.path.join(root, name), "wb") as f:
                pickle.dump({b"data": rows, b"labels": batch_labels}, f)
            images.append(batch)
            labels += batch_labels
        arrays[split] = (np.concatenate(images), np.array(labels))
    return arrays


@pytest.mark.parametrize("compress", [False, True])
def test_mnist_idx_round_trip(tmp_path, compress):
    arrays = write_mnist(str(tmp_path), compress=compress)
    for split in ("train", "test"):
        images, labels = pixels.load_images("smnist", split, str(tmp_path))
        np.testing.assert_array_equal(images, arrays[split][0])
        np.testing.assert_array_equal(labels, arrays[split][1])


@pytest.mark.parametrize("nested", [False, True])
def test_cifar_batches_round_trip(tmp_path, nested):
    arrays = write_cifar(str(tmp_path), nested=nested)
    images, labels = pixels.load_images("scifar", "train", str(tmp_path))
    assert images.shape == (15, 32, 32, 3)
    np.testing.assert_array_equal(images, arrays["train"][0])
    np.testing.assert_array_equal(labels, arrays["train"][1])
    # sCIFAR: pixels row by row, RGB as 3 features, scaled to [0, 1]
    x = pixels.to_sequences(images, "scifar")
    assert x.shape == (15, 1024, 3)
    np.testing.assert_allclose(x[2, 32 * 5 + 7], images[2, 5, 7] / 255.0)


def test_sequences_and_permutation(tmp_path):
    arrays = write_mnist(str(tmp_path))
    images = arrays["train"][0]
    x = pixels.to_sequences(images, "smnist")
    assert x.shape == (12, 784, 1) and x.dtype == np.float32
    np.testing.assert_allclose(x[0, 28 * 3 + 4, 0], images[0, 3, 4] / 255.0)
    permutation = pixels.make_permutation(784, seed=7)
    np.testing.assert_array_equal(
        permutation, pixels.make_permutation(784, seed=7)
    )
    assert not np.array_equal(permutation, pixels.make_permutation(784, 8))
    permuted = pixels.to_sequences(images, "psmnist", permutation)
    np.testing.assert_array_equal(permuted, x[:, permutation])
    # every pixel exactly once
    np.testing.assert_array_equal(np.sort(permutation), np.arange(784))


def test_dataset_batches(tmp_path):
    arrays = write_mnist(str(tmp_path))
    x = pixels.to_sequences(arrays["train"][0], "smnist")
    dataset = pixels.make_dataset(
        x,
        arrays["train"][1],
        batch_size=5,
        seed=1,
        shuffle=True,
        drop_remainder=True,
    )
    batches = list(dataset)
    assert len(batches) == 2
    inputs, labels = batches[0]
    assert tuple(inputs["features"].shape) == (5, 784, 1)
    assert inputs["padding_mask"].dtype.name == "bool"
    assert bool(np.all(inputs["padding_mask"]))
    # a seeded shuffle: the same order on every run
    again = [
        b[1].numpy()
        for b in pixels.make_dataset(
            x,
            arrays["train"][1],
            batch_size=5,
            seed=1,
            shuffle=True,
            drop_remainder=True,
        )
    ]
    np.testing.assert_array_equal(again[0], labels.numpy())


def test_missing_data_fails_at_once_naming_the_files(tmp_path):
    start = time.perf_counter()
    with pytest.raises(pixels.DataNotFoundError) as error:
        pixels.load_images("smnist", "train", str(tmp_path))
    message = str(error.value)
    for name in ("train-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        assert name in message
    assert str(tmp_path) in message
    with pytest.raises(pixels.DataNotFoundError, match="data_batch_1"):
        pixels.load_images("scifar", "test", str(tmp_path))
    assert time.perf_counter() - start < 5


def test_malformed_files_name_the_file(tmp_path):
    write_mnist(str(tmp_path))
    images_path = os.path.join(str(tmp_path), "train-images-idx3-ubyte")
    write_idx(images_path, np.zeros((3, 32, 32)))
    with pytest.raises(pixels.DataFormatError, match=r"wrong size.*\(32, 32\)"):
        pixels.load_images("smnist", "train", str(tmp_path))
    with open(images_path, "wb") as f:
        f.write(b"\x00\x00\x08\x01" + b"\x00" * 20)
    with pytest.raises(pixels.DataFormatError, match="magic number 0x0801"):
        pixels.load_images("smnist", "train", str(tmp_path))
    write_cifar(str(tmp_path / "c"), nested=False)
    with open(str(tmp_path / "c" / "test_batch"), "wb") as f:
        pickle.dump({b"data": np.zeros((2, 1024), np.uint8), b"labels": [0]}, f)
    with pytest.raises(pixels.DataFormatError, match=r"test_batch.*3072"):
        pixels.load_images("scifar", "test", str(tmp_path / "c"))


def test_bad_permutation_and_task():
    with pytest.raises(
        pixels.DataFormatError, match="range\\(784\\).*\\(783,\\)"
    ):
        pixels.check_permutation(np.arange(783), 784)
    with pytest.raises(pixels.DataFormatError, match="not a permutation"):
        pixels.check_permutation(np.zeros(784, int), 784)
    with pytest.raises(ValueError, match="`task`.*'mnist'"):
        pixels.task_spec("mnist")
