"""Pathfinder: are two marked points joined by a contour? (Long Range Arena).

An example is a square grayscale image (32 x 32 in LRA's Pathfinder-32)
with two small bright discs, the markers, and several dashed curved
contours. The label is 1 when the markers sit on the two ends of one
contour and 0 when they sit on one end each of two different contours. A
model reads the image one pixel per step (1024 steps at 32 x 32), so it
has to follow a contour across the whole sequence.

The generator here is written anew in the style of LRA's data (made with
the generator of Linsley et al., github.com/drewlinsley/pathfinder):

    contour: a chain of dashes ("paddles") of `paddle_length` pixels. It is
        drawn as a walk of one-pixel steps (one pixel along the dominant
        axis of the heading, so consecutive walk pixels are 8-neighbours).
        The heading stays fixed along a dash and its gap, and turns by a
        whole number of degrees, at most `max_turn`, at the first pixel of
        the next dash.
    dash/gap rule: after each dash the walk skips `GAP = 1` unlit pixel, in
        a straight line, so the last pixel of a dash and the first of the
        next are at Chebyshev distance exactly 2. Pixels of different
        dashes of one contour (a marker counting with the dash it sits on)
        are never 8-neighbours (Chebyshev distance >= 2): every gap shows.
    separation rule: every pixel of a contour, markers included, is at
        Chebyshev distance >= `MIN_CONTOUR_DISTANCE = 3` from every pixel
        of every other contour, and at least `MARGIN = 1` pixel from the
        border.
    markers: discs of radius `marker_radius` (all pixels within it of the
        centre) at value 255, centred on contour ends; their centres are at
        Chebyshev distance >= `min_marker_distance`. Contours have value
        `contour_value` < 255, the background 0.

So a flood fill over the lit pixels that steps to any lit pixel within
Chebyshev distance 2 spreads along a whole contour and never onto another
one: the label is whether such a fill from one marker reaches the other
(tests/data/test_pathfinder.py checks exactly that, from the images alone).

Every image holds two main contours of `contour_length` dashes and
`num_distractors` shorter ones of `distractor_length` dashes without
markers. A positive image has the markers on both ends of one main contour,
a negative one on one end of each, so both classes show the same number of
long contours and markers. Contours are placed one by one, main ones
first: a shape is drawn (random start heading, random turns), redrawn while
it breaks the dash rule or fits nowhere, then moved to a place drawn
uniformly among those that keep the separation and marker rules. LRA's
three difficulties at 32 x 32 differ in the length of the main contours,
6, 9 and 14 dashes (`CONTOUR_LENGTHS`). The drawing is in
`kerasseq.data.pathfinder_drawing`.

Files use the layout of LRA's release (`lra_release/pathfinder32/`):

    <root>/pathfinder32/<difficulty>/metadata/<k>.npy
        despite the extension a text file, one example per line, fields
        separated by spaces: image directory, file name, image number,
        label, then further settings, e.g. `imgs/0 sample_3.png 3 1 0 ...`
    <root>/pathfinder32/<difficulty>/imgs/<k>/sample_<j>.png
        the 32 x 32 grayscale images

Nothing here downloads: `load` reads local files and fails at once, naming
the paths it expected, when they are missing.
"""

import os
import re

import numpy as np
import tensorflow as tf

from kerasseq import catalogue
from kerasseq.data.errors import DataFormatError
from kerasseq.data.errors import DataNotFoundError
from kerasseq.data.pathfinder_drawing import MARKER_VALUE
from kerasseq.data.pathfinder_drawing import disc
from kerasseq.data.pathfinder_drawing import draw_image
from kerasseq.data.sources import progress_bar
from kerasseq.ops.checks import check_int

DIFFICULTIES = catalogue.PATHFINDER_DIFFICULTIES
# dashes per main contour at each difficulty of LRA's Pathfinder-32
CONTOUR_LENGTHS = {
    "curv_baseline": 6,
    "curv_contour_length_9": 9,
    "curv_contour_length_14": 14,
}
# an image whose contour found no place is started again, at most this
# many times
_TRIES_PER_IMAGE = 100
_METADATA_NAME = re.compile(r"^(\d+)\.npy$")
# fields of a line of LRA's metadata: image directory, file name, image
# number, label, then seven settings of their generator (`write` puts 0)
_NUM_FIELDS = 11


def generate(
    num_examples,
    seed,
    image_size=32,
    contour_length=6,
    num_distractors=4,
    distractor_length=2,
    paddle_length=2,
    max_turn=30,
    marker_radius=1.5,
    min_marker_distance=5,
    contour_value=200,
    progress=False,
):
    """Draws Pathfinder images and labels (see the module docstring).

    Args:
        num_examples: number of images; labels are half 0 and half 1 (one
            more 0 when odd), in a seeded random order.
        seed: int; equal arguments give equal data on every machine.
        image_size: side of the square images in pixels.
        contour_length: dashes in each of the two main contours; 6, 9 and
            14 match LRA's difficulties (`CONTOUR_LENGTHS`).
        num_distractors: number of unmarked shorter contours.
        distractor_length: dashes in each distractor.
        paddle_length: pixels per dash.
        max_turn: largest change of heading from one dash to the next, in
            degrees (0 to 90).
        marker_radius: radius of the marker discs in pixels (1.5: 3 x 3).
        min_marker_distance: smallest Chebyshev distance between the two
            marker centres.
        contour_value: brightness of the contours, 1 to 254 (the markers
            are 255).
        progress: show a progress bar on stderr.

    Returns:
        `(images, labels)`: uint8 `(N, image_size, image_size)` and int64
        `(N,)` of 0 and 1.
    """
    check_int("num_examples", num_examples, 0)
    check_int("seed", seed, 0)
    check_int("image_size", image_size, 8)
    check_int("contour_length", contour_length, 2)
    check_int("num_distractors", num_distractors, 0)
    check_int("distractor_length", distractor_length, 1)
    check_int("paddle_length", paddle_length, 1)
    check_int("max_turn", max_turn, 0)
    check_int("min_marker_distance", min_marker_distance, 1)
    check_int("contour_value", contour_value, 1)
    if max_turn > 90:
        raise ValueError(
            "Received an invalid value for argument `max_turn`, expected "
            f"degrees from 0 to 90, got {max_turn!r}."
        )
    if contour_value >= MARKER_VALUE:
        raise ValueError(
            "Received an invalid value for argument `contour_value`, "
            f"expected 1 to {MARKER_VALUE - 1} (markers are "
            f"{MARKER_VALUE}), got {contour_value!r}."
        )
    if (
        isinstance(marker_radius, bool)
        or not isinstance(marker_radius, (int, float, np.number))
        or not 0 <= marker_radius < image_size / 4
    ):
        raise ValueError(
            "Received an invalid value for argument `marker_radius`, "
            f"expected a number from 0 to below image_size / 4 = "
            f"{image_size / 4}, got {marker_radius!r}."
        )
    settings = {
        "image_size": image_size,
        "contour_length": contour_length,
        "num_distractors": num_distractors,
        "distractor_length": distractor_length,
        "paddle_length": paddle_length,
        "max_turn": max_turn,
        "disc": disc(marker_radius),
        "min_marker_distance": min_marker_distance,
        "contour_value": contour_value,
    }
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(num_examples) % 2).astype(np.int64)
    images = np.zeros((num_examples, image_size, image_size), np.uint8)
    bar = progress_bar(num_examples, "pathfinder", progress)
    for i, label in enumerate(labels):
        for _ in range(_TRIES_PER_IMAGE):
            image = draw_image(rng, label, settings)
            if image is not None:
                break
        else:
            raise ValueError(
                f"Could not place {2 + num_distractors} contours in a "
                f"{image_size} x {image_size} image in {_TRIES_PER_IMAGE} "
                f"tries (contour_length={contour_length}, "
                f"num_distractors={num_distractors}, distractor_length="
                f"{distractor_length}, paddle_length={paddle_length}); "
                "ask for shorter or fewer contours or a larger image."
            )
        images[i] = image
        bar.update()
    bar.close()
    return images, labels


def _check_difficulty(difficulty):
    if difficulty not in DIFFICULTIES:
        raise ValueError(
            "Received an invalid value for argument `difficulty`, expected "
            f"one of {list(DIFFICULTIES)}, got {difficulty!r}."
        )


def write(
    root, images, labels, difficulty="curv_baseline", examples_per_file=1000
):
    """Writes images and labels in the layout of LRA's release.

    Example `i` goes to `imgs/<k>/sample_<j>.png` with
    `k, j = divmod(i, examples_per_file)`, listed on line `j + 1` of
    `metadata/<k>.npy` as `imgs/<k> sample_<j>.png <j> <label>` and seven
    more fields of `0`.

    Args:
        root: directory to write `pathfinder<S>/<difficulty>/` into.
        images: uint8 `(N, S, S)`.
        labels: `(N,)` of 0 and 1.
        difficulty: a name in `DIFFICULTIES`.
        examples_per_file: examples per metadata file and image directory.

    Returns:
        The difficulty directory written.
    """
    _check_difficulty(difficulty)
    check_int("examples_per_file", examples_per_file)
    images = np.asarray(images)
    labels = np.asarray(labels)
    if images.dtype != np.uint8 or images.ndim != 3:
        raise ValueError(
            "Received an invalid value for argument `images`, expected a "
            f"uint8 array (N, S, S), got {images.dtype} of shape "
            f"{images.shape}."
        )
    if labels.shape != images.shape[:1] or not np.isin(labels, (0, 1)).all():
        raise ValueError(
            "Received an invalid value for argument `labels`, expected "
            f"{len(images)} labels of 0 or 1, got an array of shape "
            f"{labels.shape} with values {np.unique(labels).tolist()[:10]}."
        )
    size = images.shape[1]
    directory = os.path.join(root, f"pathfinder{size}", difficulty)
    metadata_dir = os.path.join(directory, "metadata")
    if os.path.isdir(metadata_dir) and os.listdir(metadata_dir):
        raise FileExistsError(
            f"{metadata_dir} already holds files; write into an empty "
            "directory so that old examples do not mix with new ones."
        )
    os.makedirs(metadata_dir, exist_ok=True)
    padding = " 0" * (_NUM_FIELDS - 4)
    for k, start in enumerate(range(0, len(images), examples_per_file)):
        subdir = f"imgs/{k}"
        os.makedirs(os.path.join(directory, subdir), exist_ok=True)
        lines = []
        stop = min(start + examples_per_file, len(images))
        for j, i in enumerate(range(start, stop)):
            name = f"sample_{j}.png"
            png = tf.io.encode_png(images[i][:, :, None]).numpy()
            with open(os.path.join(directory, subdir, name), "wb") as f:
                f.write(png)
            lines.append(f"{subdir} {name} {j} {int(labels[i])}{padding}\n")
        with open(os.path.join(metadata_dir, f"{k}.npy"), "w") as f:
            f.writelines(lines)
    return directory


def _layout(image_size):
    folder = f"pathfinder{image_size}"
    return (
        f"metadata files {folder}/<difficulty>/metadata/<k>.npy (text, one "
        "example per line: `imgs/<k> sample_<j>.png <n> <label> ...`) and "
        f"images {folder}/<difficulty>/imgs/<k>/sample_<j>.png, as in "
        f"lra_release/{folder}/ of LRA's release"
    )


def find_directory(data_dir, difficulty="curv_baseline", image_size=32):
    """The difficulty directory of Pathfinder data under `data_dir`.

    Args:
        data_dir: the directory holding `pathfinder<S>/`, or
            `pathfinder<S>/` itself, or the difficulty directory (the one
            holding `metadata/`), looked for in that order.
        difficulty: a name in `DIFFICULTIES`.
        image_size: `S`, the image side (32 for Pathfinder-32).

    Returns:
        The path of the directory holding `metadata/` and `imgs/`.
    """
    _check_difficulty(difficulty)
    check_int("image_size", image_size)
    candidates = [
        os.path.join(data_dir, f"pathfinder{image_size}", difficulty),
        os.path.join(data_dir, difficulty),
        data_dir,
    ]
    for candidate in candidates:
        if os.path.isdir(os.path.join(candidate, "metadata")):
            break
    else:
        expected = ", ".join(
            os.path.join(c, "metadata", "<k>.npy") for c in candidates
        )
        raise DataNotFoundError(
            f"No Pathfinder data for difficulty {difficulty!r} in "
            f"data_dir={data_dir!r}: expected {expected}. The layout: "
            f"{_layout(image_size)}; data_dir may be the directory holding "
            f"pathfinder{image_size}/, that directory itself or the "
            "difficulty directory. `pathfinder.write` writes this layout "
            "from generated data."
        )
    name = os.path.basename(os.path.normpath(candidate))
    if candidate == data_dir and name in DIFFICULTIES and name != difficulty:
        raise ValueError(
            f"data_dir={data_dir!r} is the directory of difficulty {name!r}, "
            f"but difficulty={difficulty!r} was asked for."
        )
    return candidate


def _metadata_files(metadata_dir):
    """The `<k>.npy` names in `metadata_dir`, in the order of `k`."""
    numbered = []
    for name in os.listdir(metadata_dir):
        match = _METADATA_NAME.match(name)
        if match:
            numbered.append((int(match.group(1)), name))
    return [name for _, name in sorted(numbered)]


def has_data(data_dir, difficulty="curv_baseline", image_size=32):
    """Whether `data_dir` holds metadata files of `difficulty`, in one of
    the places `load` looks (see `find_directory`); reads no images."""
    try:
        directory = find_directory(data_dir, difficulty, image_size)
    except DataNotFoundError:
        return False
    return bool(_metadata_files(os.path.join(directory, "metadata")))


def _read_metadata(path):
    """Yields `(line_number, fields)` of a metadata file, 1-based."""
    with open(path, "rb") as f:
        data = f.read()
    if data.startswith(b"\x93NUMPY"):
        raise DataFormatError(
            f"{path}: a binary NumPy file; expected LRA's text metadata, "
            "one example per line (`imgs/<k> sample_<j>.png <n> <label> "
            "...`)."
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise DataFormatError(
            f"{path}: not a text file ({error}); expected one example per "
            "line (`imgs/<k> sample_<j>.png <n> <label> ...`)."
        ) from error
    lines = text.split("\n")
    if lines[-1] == "":
        lines = lines[:-1]
    for number, line in enumerate(lines, start=1):
        line = line.rstrip("\r")
        fields = line.split()
        if len(fields) < 4:
            raise DataFormatError(
                f"{path}:{number}: expected at least 4 space-separated "
                "fields (image directory, file name, image number, label), "
                f"got {len(fields)} in {line!r}."
            )
        if fields[3] not in ("0", "1"):
            raise DataFormatError(
                f"{path}:{number}: expected a label of 0 or 1 in field 4, "
                f"got {fields[3]!r} in {line!r}."
            )
        yield number, fields


def _decode(path, image_size):
    with open(path, "rb") as f:
        data = f.read()
    try:
        image = tf.io.decode_png(data, channels=1).numpy()
    except tf.errors.InvalidArgumentError as error:
        raise DataFormatError(
            f"{path}: not a PNG image ({error.message})."
        ) from error
    if image.shape[:2] != (image_size, image_size):
        height, width = image.shape[:2]
        raise DataFormatError(
            f"{path}: an image of {height} x {width} pixels, expected "
            f"{image_size} x {image_size}."
        )
    return image[:, :, 0]


def load(data_dir, difficulty="curv_baseline", image_size=32):
    """Images and labels of one difficulty, from LRA's released files.

    Examples come in a fixed order: metadata files by their number `<k>`,
    lines in file order.

    Args:
        data_dir: the directory holding `pathfinder<S>/` (e.g.
            `lra_release/`), or `pathfinder<S>/` itself, or the difficulty
            directory.
        difficulty: a name in `DIFFICULTIES`.
        image_size: `S`, the image side (32 for Pathfinder-32).

    Returns:
        `(images, labels)`: uint8 `(N, S, S)` and int64 `(N,)`.
    """
    directory = find_directory(data_dir, difficulty, image_size)
    metadata_dir = os.path.join(directory, "metadata")
    names = _metadata_files(metadata_dir)
    if not names:
        raise DataNotFoundError(
            f"{metadata_dir} holds no metadata files <k>.npy (found "
            f"{sorted(os.listdir(metadata_dir))[:10]}); expected "
            f"{_layout(image_size)}."
        )
    # the metadata first: format errors and missing images show at once
    entries = []
    for name in names:
        path = os.path.join(metadata_dir, name)
        for number, fields in _read_metadata(path):
            image_path = os.path.join(directory, fields[0], fields[1])
            if not os.path.isfile(image_path):
                raise DataNotFoundError(
                    f"{image_path} does not exist; it is listed at "
                    f"{path}:{number}."
                )
            entries.append((image_path, int(fields[3])))
    if not entries:
        raise DataFormatError(
            f"The metadata files in {metadata_dir} list no examples."
        )
    images = np.stack([_decode(path, image_size) for path, _ in entries])
    labels = np.array([label for _, label in entries], np.int64)
    return images, labels
