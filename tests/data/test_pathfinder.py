import collections
import inspect
import os
import time
import zlib

import numpy as np
import pytest
import tensorflow as tf

from kerasseq.data import pathfinder
from kerasseq.data.errors import DataFormatError
from kerasseq.data.errors import DataNotFoundError


def _neighbours(pixel, reach, shape):
    row, col = pixel
    for dr in range(-reach, reach + 1):
        for dc in range(-reach, reach + 1):
            r, c = row + dr, col + dc
            if (dr or dc) and 0 <= r < shape[0] and 0 <= c < shape[1]:
                yield r, c


def _flood(start, allowed, reach):
    """Breadth-first search from the pixels `start` over the `True` pixels
    of `allowed`, stepping to any within Chebyshev distance `reach`."""
    seen = set(start)
    queue = collections.deque(start)
    while queue:
        for pixel in _neighbours(queue.popleft(), reach, allowed.shape):
            if allowed[pixel] and pixel not in seen:
                seen.add(pixel)
                queue.append(pixel)
    return seen


def marker_blobs(image):
    """The markers, found from the image alone: the 8-connected blobs of
    pixels of value 255."""
    bright = image == pathfinder.MARKER_VALUE
    blobs, left = [], {tuple(p) for p in np.argwhere(bright)}
    while left:
        blob = _flood([min(left)], bright, reach=1)
        blobs.append(blob)
        left -= blob
    return blobs


def connected(image, reach=2):
    """1 if a flood fill over the lit pixels from one marker reaches the
    other, stepping across gaps to any lit pixel within Chebyshev distance
    `reach` (2 bridges the one-pixel gaps of a dashed contour)."""
    blobs = marker_blobs(image)
    assert len(blobs) == 2, f"expected 2 markers, found {len(blobs)}"
    reached = _flood(sorted(blobs[0]), image > 0, reach)
    return int(bool(reached & blobs[1]))


@pytest.fixture(scope="module")
def generated():
    """A few hundred images from several seeds and all three lengths."""
    sets = [pathfinder.generate(100, seed) for seed in (0, 1, 2)]
    sets.append(pathfinder.generate(40, 3, contour_length=9))
    sets.append(pathfinder.generate(16, 4, contour_length=14))
    images = np.concatenate([s[0] for s in sets])
    labels = np.concatenate([s[1] for s in sets])
    return images, labels, np.array([connected(x) for x in images])


def test_labels_equal_flood_fill_connectivity(generated):
    images, labels, found = generated
    assert len(images) == 356
    np.testing.assert_array_equal(found, labels)
    assert set(labels.tolist()) == {0, 1}


def test_the_check_catches_wrong_labels(generated):
    _, labels, found = generated
    flipped = 1 - labels
    assert not np.any(found == flipped)
    # and it reads the image: a dashed line with a marker on each end
    image = np.zeros((12, 32), np.uint8)
    image[6, 2:30] = 200
    image[6, 4:28:3] = 0  # one-pixel gaps
    image[5:8, 1:4] = image[5:8, 27:30] = 255
    assert connected(image) == 1
    image[6, 15:17] = 0  # a gap of two pixels cuts the contour
    assert connected(image) == 0


def test_the_separation_rule_is_what_keeps_contours_apart():
    # two dashed lines, a marker on each: 3 apart they stay two contours,
    # 2 apart the gap-bridging step of the check joins them
    for distance, expected in ((3, 0), (2, 1)):
        image = np.zeros((16, 32), np.uint8)
        for row in (4, 4 + distance):
            image[row, 6:26] = 200
            image[row, 8:26:3] = 0
        image[3:6, 1:4] = 255
        image[3 + distance : 6 + distance, 28:31] = 255
        image[4, 4:6] = image[4 + distance, 26:28] = 200
        assert connected(image) == expected


# drawing settings, each away from its default
OTHER_SETTINGS = {
    "paddle_length": 3,
    "max_turn": 45,
    "marker_radius": 1.0,
    "num_distractors": 6,
    "contour_value": 90,
}


def test_rules_hold_for_other_settings():
    defaults = inspect.signature(pathfinder.generate).parameters
    for name, value in OTHER_SETTINGS.items():
        assert value != defaults[name].default, name
    images, labels = pathfinder.generate(40, seed=6, **OTHER_SETTINGS)
    np.testing.assert_array_equal([connected(x) for x in images], labels)
    for image in images[labels == 1]:
        assert connected(image, reach=1) == 0


def test_gaps_are_real(generated):
    # with 8-neighbour steps only, no contour is connected across a gap
    images, labels, _ = generated
    for image in images[labels == 1][:60]:
        assert connected(image, reach=1) == 0


def test_shapes_balance_and_pixel_values():
    images, labels = pathfinder.generate(21, seed=5, image_size=40)
    assert images.shape == (21, 40, 40) and images.dtype == np.uint8
    assert labels.shape == (21,) and labels.dtype == np.int64
    assert np.bincount(labels).tolist() == [11, 10]
    assert set(np.unique(images).tolist()) == {0, 200, 255}
    # the one-pixel margin stays dark
    assert not images[:, [0, -1], :].any()
    assert not images[:, :, [0, -1]].any()
    for image in images:
        assert len(marker_blobs(image)) == 2


def test_reproducible_from_the_seed():
    first = pathfinder.generate(12, seed=7)
    again = pathfinder.generate(12, seed=7)
    other = pathfinder.generate(12, seed=8)
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[0], other[0])
    assert pathfinder.generate(0, seed=7)[0].shape == (0, 32, 32)
    # a fingerprint of seed 0, the same on every machine (the walk is
    # integer arithmetic); change it only with the generator
    images, labels = pathfinder.generate(6, seed=0)
    assert labels.tolist() == [1, 0, 1, 0, 0, 1]
    assert zlib.crc32(images.tobytes()) == 2600757820


def test_generate_rejects_bad_arguments():
    with pytest.raises(ValueError, match="`contour_value`.*got 255"):
        pathfinder.generate(2, 0, contour_value=255)
    with pytest.raises(ValueError, match="`max_turn`.*got 120"):
        pathfinder.generate(2, 0, max_turn=120)
    with pytest.raises(ValueError, match="`marker_radius`.*got 8"):
        pathfinder.generate(2, 0, marker_radius=8)
    with pytest.raises(ValueError, match="`num_examples`.*got -1"):
        pathfinder.generate(-1, 0)
    with pytest.raises(ValueError, match="Could not place 6 contours"):
        pathfinder.generate(1, 0, image_size=12, contour_length=14)


def _difficulty_dir(directory, difficulty="curv_baseline"):
    return os.path.join(directory, "pathfinder32", difficulty)


def test_write_load_round_trip(tmp_path):
    images, labels = pathfinder.generate(7, seed=11)
    root = str(tmp_path)
    directory = pathfinder.write(root, images, labels, examples_per_file=3)
    assert directory == _difficulty_dir(root)
    assert sorted(os.listdir(os.path.join(directory, "metadata"))) == [
        "0.npy",
        "1.npy",
        "2.npy",
    ]
    with open(os.path.join(directory, "metadata", "1.npy")) as f:
        text = f.read()
    assert text.endswith("\n") and len(text.splitlines()) == 3
    fields = text.splitlines()[2].split(" ")
    assert fields[:4] == ["imgs/1", "sample_2.png", "2", str(labels[5])]
    assert len(fields) == 11
    assert os.path.isfile(os.path.join(directory, "imgs/2/sample_0.png"))
    # data_dir may be the parent of pathfinder32/, it, or the difficulty
    for data_dir in (root, os.path.join(root, "pathfinder32"), directory):
        assert pathfinder.has_data(data_dir)
        loaded, loaded_labels = pathfinder.load(data_dir)
        assert loaded.dtype == np.uint8 and loaded_labels.dtype == np.int64
        np.testing.assert_array_equal(loaded, images)
        np.testing.assert_array_equal(loaded_labels, labels)


def test_files_are_read_in_numeric_order(tmp_path):
    # 12 files: 10.npy and 11.npy sort before 2.npy as strings
    images, labels = pathfinder.generate(12, seed=12)
    pathfinder.write(
        str(tmp_path),
        images,
        labels,
        difficulty="curv_contour_length_14",
        examples_per_file=1,
    )
    loaded, loaded_labels = pathfinder.load(
        str(tmp_path), "curv_contour_length_14"
    )
    np.testing.assert_array_equal(loaded, images)
    np.testing.assert_array_equal(loaded_labels, labels)


def test_reads_lra_style_lines(tmp_path):
    # a hand-written file as LRA's release has them: settings after the
    # label, other file names, a line ending in a space
    directory = _difficulty_dir(str(tmp_path))
    os.makedirs(os.path.join(directory, "metadata"))
    os.makedirs(os.path.join(directory, "imgs", "4"))
    image = np.arange(1024).reshape(32, 32).astype(np.uint8)
    with open(os.path.join(directory, "imgs", "4", "sample_9.png"), "wb") as f:
        f.write(tf.io.encode_png(image[:, :, None]).numpy())
    with open(os.path.join(directory, "metadata", "4.npy"), "w") as f:
        f.write("imgs/4 sample_9.png 9 1 1.8 6 2 2 1 3 1\n")
        f.write("imgs/4 sample_9.png 9 0 \n")
    images, labels = pathfinder.load(str(tmp_path))
    assert labels.tolist() == [1, 0]
    np.testing.assert_array_equal(images[0], image)


def test_missing_data_fails_at_once_naming_the_paths(tmp_path):
    start = time.perf_counter()
    with pytest.raises(DataNotFoundError) as error:
        pathfinder.load(str(tmp_path))
    message = str(error.value)
    for path in (
        _difficulty_dir(str(tmp_path)),
        os.path.join(str(tmp_path), "curv_baseline", "metadata"),
        os.path.join(str(tmp_path), "metadata"),
    ):
        assert path in message
    assert "imgs/<k>/sample_<j>.png" in message
    os.makedirs(os.path.join(_difficulty_dir(str(tmp_path)), "metadata"))
    with pytest.raises(DataNotFoundError, match="no metadata files"):
        pathfinder.load(str(tmp_path))
    assert not pathfinder.has_data(str(tmp_path))
    assert not pathfinder.has_data(str(tmp_path / "elsewhere"))
    assert time.perf_counter() - start < 5


def test_unknown_or_mismatched_difficulty(tmp_path):
    with pytest.raises(ValueError, match="`difficulty`.*curv_baseline"):
        pathfinder.load(str(tmp_path), difficulty="hard")
    images, labels = pathfinder.generate(2, seed=0)
    with pytest.raises(ValueError, match="curv_contour_length_9.*'easy'"):
        pathfinder.write(str(tmp_path), images, labels, difficulty="easy")
    directory = pathfinder.write(str(tmp_path), images, labels)
    with pytest.raises(ValueError, match="difficulty 'curv_baseline'"):
        pathfinder.load(directory, difficulty="curv_contour_length_9")
    with pytest.raises(FileExistsError, match="metadata"):
        pathfinder.write(str(tmp_path), images, labels)


def _write_two(tmp_path):
    images, labels = pathfinder.generate(2, seed=3)
    directory = pathfinder.write(str(tmp_path), images, labels)
    return directory, os.path.join(directory, "metadata", "0.npy")


@pytest.mark.parametrize(
    "line, match",
    [
        ("imgs/0 sample_1.png 1", "at least 4.*got 3"),
        ("imgs/0 sample_1.png 1 2 0", "label of 0 or 1.*got '2'"),
        ("", "at least 4.*got 0"),
    ],
)
def test_malformed_metadata_names_file_and_line(tmp_path, line, match):
    _, metadata = _write_two(tmp_path)
    with open(metadata) as f:
        first = f.readline()
    with open(metadata, "w") as f:
        f.write(first + line + "\n")
    with pytest.raises(DataFormatError, match=match) as error:
        pathfinder.load(str(tmp_path))
    assert f"{metadata}:2:" in str(error.value)
    assert repr(line) in str(error.value)


def test_binary_metadata_is_named(tmp_path):
    _, metadata = _write_two(tmp_path)
    with open(metadata, "wb") as f:
        np.save(f, np.array([["imgs/0", "sample_0.png", "0", "1"]]))
    with pytest.raises(DataFormatError, match="binary NumPy file"):
        pathfinder.load(str(tmp_path))


def test_missing_image_names_it_and_the_line(tmp_path):
    directory, metadata = _write_two(tmp_path)
    missing = os.path.join(directory, "imgs/0", "sample_1.png")
    os.remove(missing)
    with pytest.raises(DataNotFoundError) as error:
        pathfinder.load(str(tmp_path))
    assert missing in str(error.value)
    assert f"{metadata}:2" in str(error.value)


def test_bad_images_name_the_file(tmp_path):
    directory, _ = _write_two(tmp_path)
    path = os.path.join(directory, "imgs/0", "sample_0.png")
    with open(path, "wb") as f:
        f.write(tf.io.encode_png(np.zeros((28, 30, 1), np.uint8)).numpy())
    with pytest.raises(DataFormatError) as error:
        pathfinder.load(str(tmp_path))
    message = str(error.value)
    assert path in message and "28 x 30" in message and "32 x 32" in message
    with open(path, "wb") as f:
        f.write(b"not a png")
    with pytest.raises(DataFormatError, match="not a PNG"):
        pathfinder.load(str(tmp_path))
