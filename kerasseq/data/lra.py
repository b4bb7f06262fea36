"""Long Range Arena: the five classification tasks as token sequences.

    listops     nested list operations (`kerasseq.data.listops`), 10 classes,
                2,000 tokens
    text        IMDB movie reviews as UTF-8 bytes, 2 classes, 4,000 bytes
    retrieval   do two ACL Anthology (AAN) papers cite each other? Two
                documents of 4,000 bytes each, 2 classes
    image       CIFAR-10 in grayscale, 1,024 pixel intensities as tokens,
                10 classes
    pathfinder  are two dots joined by a dashed path? 32 x 32 grayscale,
                1,024 pixel tokens, 2 classes (`kerasseq.data.pathfinder`)

Token id 0 is padding everywhere. Bytes are ids `1 + byte` (vocabulary
257, as the byte encoder of LRA's pipeline); pixel intensities are ids
0..255 with nothing padded. Each loader returns a `TokenData`: fixed-length
arrays (`max_length` columns, padded on the right, longer inputs cut as
LRA's pipeline cuts them) and labels.

Data comes from `--data_dir` in the formats of LRA's release and of the
datasets' official archives, or without it from TensorFlow Datasets (text:
`imdb_reviews`, image: `cifar10`), which downloads and prepares a dataset
the first time (`download="auto"`), or from LRA's release archive
(`release_dir`: ListOps, retrieval, Pathfinder; about 7.7 GB, fetched only
when asked for). Without data a loader fails at once naming the files it
expected and, offline, that the network was unreachable. Local layouts:

    listops:    basic_train.tsv, basic_val.tsv, basic_test.tsv (or in
                listops-1000/)
    text:       aclImdb/{train,test}/{pos,neg}/*.txt (the official IMDB
                archive), in data_dir or data_dir/aclImdb
    retrieval:  new_aan_pairs.{train,eval,test}.tsv (or in tsv_data/): rows
                of label, id1, id2, text1, text2, tab-separated, no header
    image:      CIFAR-10 python batches (see `kerasseq.data.pixels`)
    pathfinder: pathfinder32/<difficulty>/{metadata,imgs}
                (see `kerasseq.data.pathfinder`)
"""

import dataclasses
import glob
import os

import numpy as np

from kerasseq import catalogue
from kerasseq.data import download as download_lib
from kerasseq.data import listops
from kerasseq.data import pathfinder
from kerasseq.data import pixels
from kerasseq.data.errors import DataFormatError
from kerasseq.data.errors import DataNotFoundError
from kerasseq.data.sources import find_file
from kerasseq.data.sources import load_tfds
from kerasseq.ops.checks import check_choice

TASKS = catalogue.LRA_TASKS
BYTE_VOCABULARY_SIZE = 257
PIXEL_VOCABULARY_SIZE = 256


@dataclasses.dataclass(frozen=True)
class LRATask:
    """A task's data shape and LRA's training setup for it.

    `hidden_dim`, `num_layers`, `dropout`, `steps`, `batch_size`,
    `learning_rate`, `warmup_steps` and `weight_decay` follow the LRA
    repository's base config of the task; `learning_rate` is the peak of
    LRA's schedule (`0.05 / sqrt(warmup)` for its rsqrt schedules).
    `preset` supplies what LRA's config leaves to the model (head counts).
    `model_overrides` maps a model name to arguments it takes at these
    sizes only, so that its non-embedding parameters stay within 10% of the
    Transformer's, as LRA's rules ask.
    """

    name: str
    max_length: int
    vocabulary_size: int
    num_classes: int
    head: str
    preset: str
    hidden_dim: int
    num_layers: int
    dropout: float
    steps: int
    batch_size: int
    learning_rate: float
    warmup_steps: int
    weight_decay: float
    model_overrides: dict = dataclasses.field(default_factory=dict)

    def model_args(self):
        """The backbone sizes LRA's config gives."""
        return {
            "hidden_dim": self.hidden_dim,
            "num_layers": self.num_layers,
            "dropout": self.dropout,
        }


def _spec(name, max_length, vocabulary_size, num_classes, **setup):
    head = setup.pop("head", "sequence_classification")
    return LRATask(
        name, max_length, vocabulary_size, num_classes, head, **setup
    )


# at 32 channels Mamba's per-channel state weights (A, and the x projection
# to the 2 x 16 state inputs) weigh as much as the d^2 ones: its registered
# MLP ratio of 2.5 puts it 20% above GPT, a ratio of 1.25 within 1%
_NARROW_MODEL_OVERRIDES = {"mamba": {"mlp_ratio": 1.25}}

SPECS = {
    # base_listops_config: emb 512, 6 layers, 8 heads; 5,000 steps of 32;
    # lr 0.05 * rsqrt decay after 1,000 warm-up steps
    "listops": _spec(
        "listops", 2000, len(listops.VOCABULARY), listops.NUM_CLASSES,
        preset="base", hidden_dim=512, num_layers=6, dropout=0.1,
        steps=5000, batch_size=32, learning_rate=1.6e-3,
        warmup_steps=1000, weight_decay=0.1,
    ),
    # base_tc_config: emb 256, 4 layers, 4 heads; 20,000 steps of 32;
    # 8,000 warm-up steps
    "text": _spec(
        "text", 4000, BYTE_VOCABULARY_SIZE, 2,
        preset="small", hidden_dim=256, num_layers=4, dropout=0.1,
        steps=20000, batch_size=32, learning_rate=5.6e-4,
        warmup_steps=8000, weight_decay=0.1,
    ),
    # base_match_config: emb 128, 4 layers, 4 heads; 5,000 steps of 32
    # (LRA's 8,000 warm-up steps would never reach the peak; 1,000 here)
    "retrieval": _spec(
        "retrieval", 4000, BYTE_VOCABULARY_SIZE, 2,
        head="dual_encoder_classification",
        preset="small", hidden_dim=128, num_layers=4, dropout=0.1,
        steps=5000, batch_size=32, learning_rate=5.6e-4,
        warmup_steps=1000, weight_decay=0.1,
    ),
    # base_cifar10_config: emb 32, 1 layer, 1 head, dropout 0.3; 200
    # epochs of 45,000 images in batches of 256; lr 5e-4, no weight decay
    "image": _spec(
        "image", 1024, PIXEL_VOCABULARY_SIZE, 10,
        preset="tiny", hidden_dim=32, num_layers=1, dropout=0.3,
        steps=35000, batch_size=256, learning_rate=5e-4,
        warmup_steps=175, weight_decay=0.0,
        model_overrides=_NARROW_MODEL_OVERRIDES,
    ),
    # base_pathfinder32_config: emb 32, 1 layer, 2 heads; 200 epochs of
    # 160,000 images in batches of 512; lr 1e-3, no weight decay
    "pathfinder": _spec(
        "pathfinder", 1024, PIXEL_VOCABULARY_SIZE, 2,
        preset="tiny", hidden_dim=32, num_layers=1, dropout=0.1,
        steps=62400, batch_size=512, learning_rate=1e-3,
        warmup_steps=312, weight_decay=0.0,
        model_overrides=_NARROW_MODEL_OVERRIDES,
    ),
}  # fmt: skip

RETRIEVAL_FILES = {
    "train": "new_aan_pairs.train.tsv",
    "val": "new_aan_pairs.eval.tsv",
    "test": "new_aan_pairs.test.tsv",
}
IMDB_LABELS = ("neg", "pos")


@dataclasses.dataclass
class TokenData:
    """One split: `inputs` maps model input names to `(N, max_length)`
    arrays (`token_ids`, `padding_mask`; `*_1`, `*_2` for two documents);
    `labels` is int64 `(N,)`."""

    inputs: dict
    labels: np.ndarray

    def __len__(self):
        return len(self.labels)

    def take(self, index):
        """The examples at `index` (a slice or an index array)."""
        return TokenData(
            {k: v[index] for k, v in self.inputs.items()}, self.labels[index]
        )


def task_spec(task):
    """The `LRATask` of a task name; `ValueError` for unknown names."""
    check_choice("task", task, TASKS)
    return SPECS[task]


def encode_bytes(texts, max_length):
    """Texts (str or bytes) -> `(token_ids, padding_mask)` of shape
    `(N, max_length)`: ids `1 + byte` of the UTF-8 encoding, cut at
    `max_length`, padded with 0."""
    ids = np.zeros((len(texts), max_length), np.int32)
    for row, text in enumerate(texts):
        data = text.encode("utf-8") if isinstance(text, str) else text
        values = np.frombuffer(data[:max_length], np.uint8)
        ids[row, : len(values)] = values.astype(np.int32) + 1
    return ids, ids != 0


# === ListOps ===


def load_listops(data_dir, split, max_length, tokenization="lra"):
    """One split of ListOps; `tokenization` as for `listops.encode`."""
    sources, labels = listops.load(data_dir, split)
    ids, mask = listops.encode(sources, max_length, tokenization)
    return TokenData({"token_ids": ids, "padding_mask": mask}, labels)


# === Text: IMDB reviews as bytes ===


def _imdb_root(data_dir):
    for root in (data_dir, os.path.join(data_dir, "aclImdb")):
        if all(
            os.path.isdir(os.path.join(root, "train", label))
            for label in IMDB_LABELS
        ):
            return root
    return None


def _imdb_from_files(root, split):
    texts, labels = [], []
    for label, name in enumerate(IMDB_LABELS):
        paths = sorted(glob.glob(os.path.join(root, split, name, "*.txt")))
        if not paths:
            raise DataNotFoundError(
                f"No reviews in {os.path.join(root, split, name)}: expected "
                "*.txt files, one review each (the aclImdb archive)."
            )
        for path in paths:
            with open(path, "rb") as f:
                texts.append(f.read())
        labels += [label] * len(paths)
    return texts, np.asarray(labels, np.int64)


def load_text(data_dir, split, max_length, download="auto"):
    """IMDB reviews (`train` or `test`) as bytes: from `data_dir` (only),
    or without it from TensorFlow Datasets' `imdb_reviews` (downloaded the
    first time with `download="auto"`)."""
    layout = (
        "aclImdb/train/pos/*.txt, aclImdb/train/neg/*.txt, "
        "aclImdb/test/pos/*.txt and aclImdb/test/neg/*.txt (the official "
        "archive, in data_dir or data_dir/aclImdb)"
    )
    if data_dir:
        root = _imdb_root(data_dir)
        if root is None:
            raise DataNotFoundError(
                f"No IMDB reviews in --data_dir={data_dir!r}. Expected "
                f"{layout}. Without --data_dir, TensorFlow Datasets' "
                "'imdb_reviews' is used (downloaded the first time)."
            )
        texts, labels = _imdb_from_files(root, split)
    else:
        texts, labels = load_tfds(
            "imdb_reviews",
            split,
            ("text", "label"),
            download,
            f"No IMDB reviews: no --data_dir (holding {layout}) and no "
            "prepared TensorFlow Datasets copy of 'imdb_reviews' (`tfds "
            "build imdb_reviews` on a machine with network prepares one).",
        )
    ids, mask = encode_bytes(list(texts), max_length)
    return TokenData(
        {"token_ids": ids, "padding_mask": mask}, np.asarray(labels, np.int64)
    )


# === Retrieval: AAN document pairs ===


def read_retrieval_tsv(path):
    """Reads one of LRA's AAN pair files.

    Returns:
        `(texts_1, texts_2, labels)`: two lists of bytes and int64 labels.

    Raises:
        DataFormatError: naming the file and line of the first malformed
            row (field count or label).
    """
    texts_1, texts_2, labels = [], [], []
    with open(path, "rb") as f:
        for number, line in enumerate(f, start=1):
            line = line.rstrip(b"\r\n")
            if not line.strip():
                continue
            fields = line.split(b"\t")
            if len(fields) != 5:
                raise DataFormatError(
                    f"{path}:{number}: expected 5 tab-separated fields "
                    f"(label, id1, id2, text1, text2), got {len(fields)}: "
                    f"{line[:80]!r}."
                )
            try:
                label = float(fields[0])
            except ValueError:
                label = None
            if label not in (0.0, 1.0):
                raise DataFormatError(
                    f"{path}:{number}: expected a label 0 or 1, got "
                    f"{fields[0].decode(errors='replace')!r}."
                )
            labels.append(int(label))
            texts_1.append(fields[3])
            texts_2.append(fields[4])
    return texts_1, texts_2, np.asarray(labels, np.int64)


def load_retrieval(data_dir, split, max_length):
    path = None
    if data_dir:
        path = find_file(data_dir, RETRIEVAL_FILES[split], ("tsv_data",))
    if path is None:
        names = ", ".join(RETRIEVAL_FILES.values())
        place = f"in --data_dir={data_dir!r}" if data_dir else "(no --data_dir)"
        raise DataNotFoundError(
            f"No AAN retrieval data {place}: expected {names} in --data_dir "
            "or in tsv_data/ below it (LRA's release, lra_release/tsv_data), "
            "or --download=lra_release to fetch LRA's release (about 7.7 GB) "
            "into kerasseq's cache."
        )
    texts_1, texts_2, labels = read_retrieval_tsv(path)
    ids_1, mask_1 = encode_bytes(texts_1, max_length)
    ids_2, mask_2 = encode_bytes(texts_2, max_length)
    inputs = {
        "token_ids_1": ids_1,
        "padding_mask_1": mask_1,
        "token_ids_2": ids_2,
        "padding_mask_2": mask_2,
    }
    return TokenData(inputs, labels)


# === Image: CIFAR-10 in grayscale ===


def to_grayscale(images):
    """uint8 RGB `(N, H, W, 3)` -> uint8 gray `(N, H, W)` by
    `tf.image.rgb_to_grayscale`, LRA's conversion."""
    import tensorflow as tf

    return tf.image.rgb_to_grayscale(images).numpy()[..., 0]


def pixel_tokens(images, labels, max_length):
    """uint8 images `(N, H, W)` -> `TokenData` of row-major pixel ids
    `(N, H * W)` with an all-true mask; `max_length` must equal `H * W`."""
    tokens = images.reshape(len(images), -1).astype(np.int32)
    if tokens.shape[1] != max_length:
        raise DataFormatError(
            f"Images of the wrong size: {images.shape[1:]} gives "
            f"{tokens.shape[1]} pixels, expected {max_length}."
        )
    return TokenData(
        {"token_ids": tokens, "padding_mask": np.ones(tokens.shape, bool)},
        np.asarray(labels, np.int64),
    )


def load_image(data_dir, split, max_length, download="auto"):
    """CIFAR-10 (`train` or `test`) in grayscale, from `data_dir` (only) or
    TensorFlow Datasets' `cifar10`."""
    images, labels = pixels.load_images("scifar", split, data_dir, download)
    return pixel_tokens(to_grayscale(images), labels, max_length)


# === Pathfinder ===


def load_pathfinder(data_dir, max_length, difficulty="curv_baseline"):
    """All Pathfinder examples of a difficulty (the caller splits them)."""
    images, labels = pathfinder.load(data_dir, difficulty)
    return pixel_tokens(images, labels, max_length)


# === LRA's release archive ===

RELEASE = download_lib.Archive(
    filename="lra_release.gz",
    urls=("https://storage.googleapis.com/long-range-arena/lra_release.gz",),
    description="Long Range Arena's release (lra_release.gz, about 7.7 GB)",
)
RELEASE_TASKS = ("listops", "retrieval", "pathfinder")


def release_folders(task, difficulty="curv_baseline"):
    """The folders of LRA's release that `task` reads."""
    check_choice("task", task, RELEASE_TASKS)
    if task == "listops":
        return ("listops-1000",)
    if task == "retrieval":
        return ("tsv_data",)
    return (f"pathfinder32/{difficulty}",)


def release_dir(task, difficulty="curv_baseline"):
    """A folder holding `task`'s files from LRA's release, in the layout
    the loaders read (`listops-1000/`, `tsv_data/`, `pathfinder32/`).

    The archive is downloaded into kerasseq's cache the first time (about
    7.7 GB: the size is announced first, the progress shown, an
    interrupted download resumed), and the task's folders are extracted
    from it once, beside it, into `lra_release/`. The publishers give no
    checksum: the archive's gzip CRC-32 and length are checked as it is
    read.
    """
    folders = release_folders(task, difficulty)
    destination = os.path.join(download_lib.cache_dir(), "lra_release")
    marker = os.path.join(
        destination, "." + "-".join(f.replace("/", "_") for f in folders)
    )
    if os.path.exists(marker):
        return destination
    path = download_lib.fetch(
        RELEASE,
        announce=(
            f"Downloading {RELEASE.description} to "
            f"{os.path.join(download_lib.cache_dir(), RELEASE.filename)}: "
            "this takes a while; if it is cut off, the same command "
            "continues where it stopped."
        ),
    )
    os.makedirs(destination, exist_ok=True)
    count = download_lib.extract_folders(path, folders, destination)
    if not count:
        raise DataFormatError(
            f"{path} holds no files below {', '.join(folders)}: not LRA's "
            "release. Delete it and run again to download it anew."
        )
    with open(marker, "w") as f:
        f.write(f"{count} files\n")
    return destination
