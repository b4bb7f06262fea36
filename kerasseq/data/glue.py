"""GLUE: nine sentence and sentence-pair tasks, read as text with labels.

    cola    is a sentence grammatical?  2 classes, one sentence
    sst2    movie review sentiment  2 classes, one sentence
    mrpc    are two sentences paraphrases?  2 classes
    stsb    how similar are two sentences?  a score 0..5 (regression)
    qqp     are two Quora questions duplicates?  2 classes
    mnli    does a premise entail, contradict or leave open a hypothesis?
            3 classes; evaluated on the matched and the mismatched genres
    qnli    does a sentence answer a question?  2 classes
    rte     does a sentence entail another?  2 classes
    wnli    does a sentence with a pronoun substituted follow?  2 classes

Label ids are those of TensorFlow Datasets' `glue` (mnli: entailment 0,
neutral 1, contradiction 2; qnli and rte: entailment 0, not_entailment 1;
the 0/1 of the files elsewhere), so that results match across sources.
GLUE's test files have no labels: the splits are `train` and the
validation split(s) of `GlueTask.eval_splits`.

Data comes from `data_dir` in the layout of GLUE's release (what the
standard download script writes), or without it from TensorFlow Datasets
(`glue/cola`, ...), which downloads and prepares a task the first time
(`download="auto"`). Without data `load_glue` fails at once naming the
files it expected, and offline that the network was unreachable. Local
layout, in `data_dir/<Directory>/` or in `data_dir` itself (pointing at
one task's folder):

    train.tsv, dev.tsv                   every task but MNLI
    train.tsv, dev_matched.tsv,
    dev_mismatched.tsv                   MNLI

Files are UTF-8, tab-separated, with no quoting. CoLA's have no header
(source, label, original mark, sentence); the others have one, and columns
are found by name:

    SST-2   sentence, label
    MRPC    Quality, #1 ID, #2 ID, #1 String, #2 String
    STS-B   ..., sentence1, sentence2, score
    QQP     id, qid1, qid2, question1, question2, is_duplicate
    MNLI    ..., sentence1, sentence2, ..., gold_label (label names)
    QNLI    index, question, sentence, label (label names)
    RTE     index, sentence1, sentence2, label (label names)
    WNLI    index, sentence1, sentence2, label

A row whose text is empty is skipped and counted (`GlueExamples.skipped`);
any other malformed row is a `DataFormatError` naming file and line.

`pack` turns texts into model inputs: `[first] A [end]` or
`[first] A [end] B [end]` (`first` is the tokenizer's end token, or
WordPiece's `[CLS]`), so that both models that pool the first token and
causal models that pool the last position find a summary token there.
"""

import dataclasses
import os

import numpy as np

from kerasseq import catalogue
from kerasseq.data.errors import DataNotFoundError
from kerasseq.data.glue_sources import GlueExamples  # noqa: F401 (API)
from kerasseq.data.glue_sources import from_prepared
from kerasseq.data.glue_sources import read_glue_tsv
from kerasseq.data.sources import load_tfds
from kerasseq.ops.checks import check_choice

TASKS = catalogue.GLUE_TASKS

SPLIT_FILES = {
    "train": "train.tsv",
    "validation": "dev.tsv",
    "validation_matched": "dev_matched.tsv",
    "validation_mismatched": "dev_mismatched.tsv",
}


@dataclasses.dataclass(frozen=True)
class GlueTask:
    """Where a GLUE task's data is and how to read it.

    Attributes:
        name: the task name, e.g. `"mnli"`.
        directory: the task's folder in GLUE's release, e.g. `"MNLI"`.
        num_classes: the number of classes; 1 for STS-B, a regression.
        label_names: the classes in TFDS's order (label id = position);
            empty for STS-B.
        text_labels: whether the files write labels as names (MNLI, QNLI,
            RTE) rather than ids.
        text_columns: the columns of the text (and of the second text).
        label_column: the column of the label.
        tfds_name: the TFDS name, e.g. `"glue/mnli"`.
        tfds_features: the TFDS features of the text (and second text).
        eval_splits: the splits with labels besides `train`.
        fields: the column names of files without a header row (CoLA);
            `None` when the files have one.
    """

    name: str
    directory: str
    num_classes: int
    label_names: tuple
    text_labels: bool
    text_columns: tuple
    label_column: str
    tfds_name: str
    tfds_features: tuple
    eval_splits: tuple = ("validation",)
    fields: tuple | None = None

    @property
    def is_pair(self):
        return len(self.text_columns) == 2

    @property
    def is_regression(self):
        return self.num_classes == 1

    @property
    def splits(self):
        return ("train",) + self.eval_splits


def _task(name, directory, label_names, text_columns, label_column, **kwargs):
    return GlueTask(
        name=name,
        directory=directory,
        num_classes=max(len(label_names), 1),
        label_names=label_names,
        text_columns=text_columns,
        label_column=label_column,
        tfds_name=f"glue/{name}",
        **kwargs,
    )


SPECS = {
    "cola": _task(
        "cola", "CoLA", ("unacceptable", "acceptable"),
        ("sentence",), "label",
        text_labels=False, tfds_features=("sentence",),
        fields=("source", "label", "original_label", "sentence"),
    ),
    "sst2": _task(
        "sst2", "SST-2", ("negative", "positive"),
        ("sentence",), "label",
        text_labels=False, tfds_features=("sentence",),
    ),
    "mrpc": _task(
        "mrpc", "MRPC", ("not_equivalent", "equivalent"),
        ("#1 String", "#2 String"), "Quality",
        text_labels=False, tfds_features=("sentence1", "sentence2"),
    ),
    "stsb": _task(
        "stsb", "STS-B", (),
        ("sentence1", "sentence2"), "score",
        text_labels=False, tfds_features=("sentence1", "sentence2"),
    ),
    "qqp": _task(
        "qqp", "QQP", ("not_duplicate", "duplicate"),
        ("question1", "question2"), "is_duplicate",
        text_labels=False, tfds_features=("question1", "question2"),
    ),
    "mnli": _task(
        "mnli", "MNLI", ("entailment", "neutral", "contradiction"),
        ("sentence1", "sentence2"), "gold_label",
        text_labels=True, tfds_features=("premise", "hypothesis"),
        eval_splits=("validation_matched", "validation_mismatched"),
    ),
    "qnli": _task(
        "qnli", "QNLI", ("entailment", "not_entailment"),
        ("question", "sentence"), "label",
        text_labels=True, tfds_features=("question", "sentence"),
    ),
    "rte": _task(
        "rte", "RTE", ("entailment", "not_entailment"),
        ("sentence1", "sentence2"), "label",
        text_labels=True, tfds_features=("sentence1", "sentence2"),
    ),
    "wnli": _task(
        "wnli", "WNLI", ("not_entailment", "entailment"),
        ("sentence1", "sentence2"), "label",
        text_labels=False, tfds_features=("sentence1", "sentence2"),
    ),
}  # fmt: skip


def task_spec(name):
    """The `GlueTask` of a task name; `ValueError` for unknown names."""
    check_choice("task", name, TASKS)
    return SPECS[name]


def check_split(spec, split):
    """Raises `ValueError` unless `split` is one of `spec.splits`."""
    if split not in spec.splits:
        allowed = ", ".join(repr(s) for s in spec.splits)
        raise ValueError(
            f"Received an invalid value for argument `split`, expected one "
            f"of {allowed} for GLUE task {spec.name!r} (GLUE's test files "
            f"have no labels), got {split!r}."
        )


def local_paths(spec, split, data_dir):
    """The two places a split's file may be: `data_dir/<Directory>/<file>`
    and `data_dir/<file>`."""
    name = SPLIT_FILES[split]
    return (
        os.path.join(data_dir, spec.directory, name),
        os.path.join(data_dir, name),
    )


# === Loading ===


def load_glue(task, split, data_dir=None, download="auto"):
    """One split of a GLUE task, as text and labels.

    Args:
        task: one of `TASKS`.
        split: `"train"` or one of the task's `eval_splits`
            (`"validation"`; MNLI: `"validation_matched"`,
            `"validation_mismatched"`).
        data_dir: a directory with GLUE's release folders (`CoLA/`,
            `MNLI/`, ...), or one task's folder; only its files are read.
            `None`: TensorFlow Datasets' copy (`glue/<task>`).
        download: without `data_dir`, `"auto"` lets TensorFlow Datasets
            download and prepare the task the first time; `"never"` reads
            a prepared copy only.

    Returns:
        A `GlueExamples`.

    Raises:
        ValueError: an unknown task or split (there is no `"test"`: GLUE's
            test files have no labels).
        DataNotFoundError: no local files, or no TFDS copy and none could
            be downloaded (the message says why).
        DataFormatError: a malformed file, naming file and line.
    """
    spec = task_spec(task)
    check_split(spec, split)
    if data_dir:
        paths = local_paths(spec, split, data_dir)
        for path in paths:
            if os.path.isfile(path):
                return read_glue_tsv(spec, path)
        raise DataNotFoundError(
            f"No GLUE {spec.directory} {split} data in --data_dir="
            f"{data_dir!r}: expected {paths[0]} or {paths[1]} (GLUE's "
            "release layout, as its download script writes it). Without "
            f"--data_dir, TensorFlow Datasets' {spec.tfds_name!r} is used "
            "(downloaded the first time)."
        )
    first, second = local_paths(spec, split, "<data_dir>")
    missing = (
        f"No GLUE {spec.directory} {split} data: no --data_dir (GLUE's "
        f"release layout: {first} or {second}) and no prepared TensorFlow "
        f"Datasets copy of {spec.tfds_name!r} (`tfds build "
        f"{spec.tfds_name}` on a machine with network prepares one)."
    )
    keys = spec.tfds_features + ("label",)
    found = load_tfds(spec.tfds_name, split, keys, download, missing)
    return from_prepared(spec, split, found)


# === Packing texts into model inputs ===


def truncate_longest_first(length_a, length_b, budget):
    """How many tokens of each text to keep so that both fit in `budget`.

    Drops tokens from the end of the longer text, one at a time (from the
    second on ties), until the pair fits: Hugging Face tokenizers'
    `"longest_first"`. Returns `(keep_a, keep_b)`.
    """
    excess = length_a + length_b - budget
    if excess <= 0:
        return length_a, length_b
    # first even out the lengths, then take turns, the second text first
    evening = min(excess, abs(length_a - length_b))
    rest = excess - evening
    if length_a > length_b:
        cut_a, cut_b = evening + rest // 2, rest - rest // 2
    else:
        cut_a, cut_b = rest // 2, evening + rest - rest // 2
    return length_a - cut_a, length_b - cut_b


def pack(tokenizer, texts_a, texts_b, max_length):
    """Tokenizes texts (or pairs of texts) into fixed-length model inputs.

    Each row is `[first] A [end]`, or `[first] A [end] B [end]` for pairs
    (`end` = `tokenizer.end_id`; `first` = `tokenizer.first_id`, the same
    token but for WordPiece's `[CLS]`): the leading one is the classifier
    token
    of models that pool the first position, the final one what causal
    models pool the last position on. Rows longer than `max_length` lose
    tokens from the end of the longer text first
    (`truncate_longest_first`); rows are padded on the right with
    `tokenizer.pad_id`.

    Args:
        tokenizer: a `kerasseq.data.tokenizers.Tokenizer`.
        texts_a: list of str.
        texts_b: list of str of the same length, or `None`.
        max_length: the row length; room for the special tokens (2, or 3
            for pairs) and at least one token of each text.

    Returns:
        `(inputs, num_truncated)`: `inputs` is
        `{"token_ids": int32 (N, max_length), "padding_mask": bool
        (N, max_length)}`; `num_truncated` counts the rows cut.

    Example:

    >>> from kerasseq.data.tokenizers import ByteTokenizer
    >>> inputs, _ = pack(ByteTokenizer(), ["hi"], ["yo"], 8)
    >>> inputs["token_ids"].tolist()
    [[257, 105, 106, 257, 122, 112, 257, 0]]
    """
    texts_a = list(texts_a)
    is_pair = texts_b is not None
    num_texts = 2 if is_pair else 1
    num_special = num_texts + 1
    smallest = num_special + num_texts
    if (
        isinstance(max_length, bool)
        or not isinstance(max_length, (int, np.integer))
        or max_length < smallest
    ):
        kind = "pairs of texts" if is_pair else "single texts"
        raise ValueError(
            f"Received an invalid value for argument `max_length`, expected "
            f"an integer of at least {smallest} for {kind} ({num_special} "
            f"special tokens and one token of each text), got "
            f"{max_length!r}."
        )
    if is_pair:
        texts_b = list(texts_b)
        if len(texts_b) != len(texts_a):
            raise ValueError(
                f"Received texts_a and texts_b of different lengths: "
                f"{len(texts_a)} and {len(texts_b)}."
            )
    num_rows = len(texts_a)
    encoded = tokenizer.encode_batch(texts_a + (texts_b if is_pair else []))
    budget = max_length - num_special
    first, end = tokenizer.first_id, tokenizer.end_id
    token_ids = np.full((num_rows, max_length), tokenizer.pad_id, np.int32)
    lengths = np.zeros((num_rows,), np.int64)
    num_truncated = 0
    for row in range(num_rows):
        a = encoded[row]
        if is_pair:
            b = encoded[num_rows + row]
            keep_a, keep_b = truncate_longest_first(len(a), len(b), budget)
            tokens = [first, *a[:keep_a], end, *b[:keep_b], end]
            cut = keep_a < len(a) or keep_b < len(b)
        else:
            tokens = [first, *a[:budget], end]
            cut = len(a) > budget
        num_truncated += int(cut)
        token_ids[row, : len(tokens)] = tokens
        lengths[row] = len(tokens)
    padding_mask = np.arange(max_length) < lengths[:, None]
    inputs = {"token_ids": token_ids, "padding_mask": padding_mask}
    return inputs, num_truncated
