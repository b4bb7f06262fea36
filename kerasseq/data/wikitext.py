"""WikiText-2 (raw) for causal language modelling, and sliding-window
perplexity.

The splits are the official raw files, `wiki.{train,valid,test}.raw`, in
`data_dir`, in `data_dir/wikitext-2-raw/` (the folder of the official
archive), or inside the archive itself, `wikitext-2-raw-v1.zip`, in
`data_dir`. Without `data_dir` the official archive (4.5 MiB, SHA-256
checked) is downloaded once into kerasseq's cache (`kerasseq.data.download`)
and read there; offline, or with `download="never"`, a loader fails at
once naming the files.

A split is one token stream: the whole file, tokenized line by line with
the newlines kept, so that the tokens decode to the file's text exactly.
Training cuts the training stream into rows of `seq_len + 1` tokens (inputs
and next-token labels). Evaluation scores every token of a split once, with
windows of the model's length that advance by a stride: each window scores
only the tokens no earlier window scored, and sees up to
`max_length - stride` tokens of context before them (the first window sees
the split's start, behind one end-of-text token). Perplexity per token is
`exp(total NLL / tokens)`; per word it is `exp(total NLL / words)`, with the
words of the text split on whitespace, which makes it comparable across
tokenizers.
"""

import dataclasses
import io
import os
import weakref
import zipfile

import keras
import numpy as np

from kerasseq.data import download as download_lib
from kerasseq.data.errors import DataNotFoundError
from kerasseq.data.sources import check_download
from kerasseq.ops.dispatch import compile_function

SPLIT_FILES = {
    "train": "wiki.train.raw",
    "validation": "wiki.valid.raw",
    "test": "wiki.test.raw",
}
ARCHIVE = "wikitext-2-raw-v1.zip"
ARCHIVE_FOLDER = "wikitext-2-raw"
# the official archive (Merity et al.; the Salesforce S3 address is the
# original, smerity.com's the one kept up), as Hugging Face's `wikitext`
# and llama.cpp's perplexity script fetch it
SOURCE = download_lib.Archive(
    filename=ARCHIVE,
    urls=(
        "https://wikitext.smerity.com/wikitext-2-raw-v1.zip",
        "https://s3.amazonaws.com/research.metamind.io/wikitext/"
        "wikitext-2-raw-v1.zip",
    ),
    description="WikiText-2 (raw)",
    sha256="ef7edb566e3e2b2d31b29c1fdb0c89a4cc683597484c3dc2517919c615435a11",
    size=4_721_645,
)


def _expected(data_dir, split):
    name = SPLIT_FILES[split]
    return (
        f"{os.path.join(data_dir, name)}, "
        f"{os.path.join(data_dir, ARCHIVE_FOLDER, name)} or "
        f"{os.path.join(data_dir, ARCHIVE)} (the official WikiText-2 raw "
        f"archive, holding {ARCHIVE_FOLDER}/{name})"
    )


def read_split(data_dir, split, download="auto"):
    """The text of one WikiText-2 split (`train`, `validation`, `test`).

    Args:
        data_dir: a folder with the split files or the official archive;
            only it is read. `None`: the archive in kerasseq's cache,
            downloaded there first with `download="auto"`.
        split: `"train"`, `"validation"` or `"test"`.
        download: `"auto"` or `"never"`.

    Raises:
        ValueError: an unknown split.
        DataNotFoundError: naming the places the file was looked for (and,
            without `data_dir`, why it could not be downloaded).
    """
    if split not in SPLIT_FILES:
        raise ValueError(
            f"Unknown WikiText split {split!r}. Valid splits: "
            f"{', '.join(SPLIT_FILES)}."
        )
    check_download(download)
    if not data_dir:
        data_dir = _cached_archive_dir(download)
    name = SPLIT_FILES[split]
    for path in (
        os.path.join(data_dir, name),
        os.path.join(data_dir, ARCHIVE_FOLDER, name),
    ):
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                return f.read()
    archive = os.path.join(data_dir, ARCHIVE)
    if os.path.exists(archive):
        with zipfile.ZipFile(archive) as z:
            member = f"{ARCHIVE_FOLDER}/{name}"
            if member in z.namelist():
                with z.open(member) as f:
                    return io.TextIOWrapper(f, encoding="utf-8").read()
    raise DataNotFoundError(
        f"No WikiText-2 {split} split: expected {_expected(data_dir, split)}."
    )


def _cached_archive_dir(download):
    """The cache folder, once it holds the verified official archive."""
    names = ", ".join(SPLIT_FILES.values())
    expected = (
        f"No WikiText-2 data: no --data_dir (a folder with {names}, or "
        f"{ARCHIVE})"
    )
    if download == "never":
        cached = os.path.join(download_lib.cache_dir(), ARCHIVE)
        if os.path.exists(cached):
            download_lib.verify(SOURCE, cached)
            return os.path.dirname(cached)
        raise DataNotFoundError(
            f"{expected}, and {ARCHIVE} is not in {download_lib.cache_dir()}; "
            "nothing was downloaded (--download=never)."
        )
    try:
        return os.path.dirname(download_lib.fetch(SOURCE))
    except DataNotFoundError as error:
        raise type(error)(f"{expected}. {error}") from error


def tokenize_stream(tokenizer, text):
    """The tokens of `text` as one int32 array, line by line (newlines
    kept, so that the tokens decode to `text`)."""
    lines = text.splitlines(keepends=True)
    ids = [i for row in tokenizer.encode_batch(lines) for i in row]
    return np.asarray(ids, np.int32)


def training_rows(stream, seq_len):
    """Cuts a token stream into `(inputs, labels)` rows of `seq_len` tokens:
    labels are the inputs shifted by one. The tail that fills no row is
    dropped.

    Returns:
        `({"token_ids", "padding_mask"}, labels)`, arrays of
        `(rows, seq_len)`.
    """
    rows = (len(stream) - 1) // seq_len
    if rows < 1:
        raise ValueError(
            f"A stream of {len(stream)} tokens makes no row of "
            f"seq_len={seq_len} (+1 for the labels)."
        )
    used = stream[: rows * seq_len + 1]
    inputs = used[:-1].reshape(rows, seq_len)
    labels = used[1:].reshape(rows, seq_len)
    return (
        {"token_ids": inputs, "padding_mask": np.ones_like(inputs, bool)},
        labels,
    )


@dataclasses.dataclass
class Windows:
    """Sliding windows over a token stream, for perplexity.

    Attributes:
        token_ids: int32 `(num_windows, max_length)`, padded with 0.
        padding_mask: bool, the same shape.
        labels: int32, the next token at each position.
        weights: float32, 1 where a position's label is scored.
    """

    token_ids: np.ndarray
    padding_mask: np.ndarray
    labels: np.ndarray
    weights: np.ndarray


def sliding_windows(stream, max_length, stride, start_id):
    """Windows that together score every token of `stream` once.

    The stream is prefixed with `start_id`, so its first token is scored
    too. Window `k` covers tokens `[k * stride, k * stride + max_length)` of
    the prefixed stream and scores the labels that no earlier window
    scored: all of the first window's, then the last `stride` of each.

    Args:
        stream: int array of token ids.
        max_length: tokens per window (the model's length).
        stride: tokens a window advances; `1 <= stride <= max_length`.
        start_id: the token before the stream (end of text).

    Returns:
        A `Windows`.
    """
    if not 1 <= stride <= max_length:
        raise ValueError(
            f"The stride must be in [1, max_length={max_length}], got {stride}."
        )
    if len(stream) == 0:
        raise ValueError("Cannot score an empty token stream.")
    # positions of the prefixed stream; label of position i is token i+1
    tokens = np.concatenate([[start_id], stream]).astype(np.int32)
    num_labels = len(tokens) - 1
    starts = list(range(0, max(num_labels - max_length, 0) + 1, stride))
    if starts[-1] + max_length < num_labels:
        starts.append(num_labels - max_length)
    count = len(starts)
    token_ids = np.zeros((count, max_length), np.int32)
    labels = np.zeros((count, max_length), np.int32)
    weights = np.zeros((count, max_length), np.float32)
    padding_mask = np.zeros((count, max_length), bool)
    scored_to = 0  # labels [0, scored_to) are scored
    for k, begin in enumerate(starts):
        end = min(begin + max_length, num_labels)
        width = end - begin
        token_ids[k, :width] = tokens[begin:end]
        labels[k, :width] = tokens[begin + 1 : end + 1]
        padding_mask[k, :width] = True
        weights[k, max(scored_to, begin) - begin : width] = 1.0
        scored_to = end
    return Windows(token_ids, padding_mask, labels, weights)


# one compiled scoring function per model, reused across splits
_NLL_FUNCTIONS = weakref.WeakKeyDictionary()


def _nll_function(model):
    if model not in _NLL_FUNCTIONS:
        # a weak reference: the cache must not keep the model alive
        model_ref = weakref.ref(model)

        def window_nll(token_ids, padding_mask, labels, weights):
            logits = model_ref()(
                {"token_ids": token_ids, "padding_mask": padding_mask},
                training=False,
            )
            nll = keras.ops.sparse_categorical_crossentropy(
                labels, logits, from_logits=True
            )
            return keras.ops.sum(nll * weights)

        # on JAX a Keras model's variables go in as arguments (without
        # them, JAX runs the model op by op)
        _NLL_FUNCTIONS[model] = compile_function(
            window_nll, variables=getattr(model, "variables", None)
        )
    return _NLL_FUNCTIONS[model]


def score_windows(model, windows, batch_size=8):
    """Total negative log-likelihood of the scored labels of `windows`.

    Args:
        model: a causal LM returning logits `(batch, seq_len, vocabulary)`.
        windows: a `Windows` (see `sliding_windows`).
        batch_size: windows per forward pass.

    Returns:
        `(total_nll, scored_tokens)`, a float and an int.
    """
    step = _nll_function(model)
    count = len(windows.token_ids)
    total = 0.0
    for begin in range(0, count, batch_size):
        # the last batch is padded with repeats of weight 0, so that every
        # call has one shape (one compiled program)
        index = np.arange(begin, begin + batch_size) % count
        weight = (
            windows.weights[index]
            * (np.arange(begin, begin + batch_size) < count)[:, None]
        )
        total += float(
            step(
                windows.token_ids[index],
                windows.padding_mask[index],
                windows.labels[index],
                weight.astype(np.float32),
            )
        )
    return total, int(windows.weights.sum())
