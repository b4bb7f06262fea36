"""SQuAD: extractive question answering, versions 1.1 and 2.0.

A model reads `[first] question [end] context [end]` (`first`: the end
token, or WordPiece's `[CLS]`) and points at the first and the last token
of the answer in the context; position 0 (the `[first]` token) stands for
"no answer", the target of SQuAD 2.0's impossible questions and of windows
that do not hold the answer. Contexts longer
than a model's input are cut into overlapping windows (`make_windows`),
each token keeping its span of characters in the context, so that a
predicted span of tokens maps back to answer text (`postprocess`).

    load_squad      the official JSON -> `SquadExample`s and a report of
                    what was skipped
    make_windows    examples -> fixed-length windows: `inputs`
                    (`token_ids`, `padding_mask`), `labels` `(W, 2)` of
                    [start, end] token positions (inclusive), and each
                    token's character span
    postprocess     start and end logits of the windows -> the predicted
                    answer text of each example

Data comes from `data_dir` in the official format, or without it from
TensorFlow Datasets (`squad/v1.1`, `squad/v2.0`), which downloads and
prepares SQuAD the first time (`download="auto"`). Without data
`load_squad` fails at once naming the files it expected, and offline that
the network was unreachable. Local layout (the official names):

    train-v1.1.json, dev-v1.1.json    SQuAD 1.1, splits train, validation
    train-v2.0.json, dev-v2.0.json    SQuAD 2.0, splits train, validation

each `{"version": ..., "data": [{"title": ..., "paragraphs": [{"context":
..., "qas": [{"id": ..., "question": ..., "answers": [{"text": ...,
"answer_start": ...}], "is_impossible": ...}]}]}]}`, `is_impossible` in
2.0 only, `answer_start` a character offset into the context.
"""

import dataclasses
import os

import numpy as np

from kerasseq import catalogue
from kerasseq.data import sources
from kerasseq.data.errors import DataNotFoundError
from kerasseq.data.squad_sources import TFDS_NAMES
from kerasseq.data.squad_sources import SquadExample  # noqa: F401 (API)
from kerasseq.data.squad_sources import read_official_json
from kerasseq.data.squad_sources import read_prepared
from kerasseq.data.squad_sources import to_examples
from kerasseq.ops.checks import check_choice
from kerasseq.ops.checks import check_int

VERSIONS = catalogue.SQUAD_VERSIONS
SPLITS = ("train", "validation")
FILES = {
    ("1.1", "train"): "train-v1.1.json",
    ("1.1", "validation"): "dev-v1.1.json",
    ("2.0", "train"): "train-v2.0.json",
    ("2.0", "validation"): "dev-v2.0.json",
}

# the special tokens of a window: one before the question, one between
# question and context, one after the context
NUM_SPECIAL_TOKENS = 3
NO_ANSWER_POSITION = 0


@dataclasses.dataclass
class Windows:
    """Fixed-length windows over examples, `W` of them.

    Attributes:
        inputs: `{"token_ids": int32 (W, max_length), "padding_mask": bool
            (W, max_length)}`.
        labels: int32 `(W, 2)`: the token positions of the first and the
            last token of the answer, `[0, 0]` where the window does not
            hold the whole answer or there is none.
        example_index: int32 `(W,)`: the example each window comes from.
        char_starts, char_ends: int32 `(W, max_length)`: context token
            `t` of window `w` covers `context[char_starts[w, t]:
            char_ends[w, t]]` of its example; -1 at every other position
            (special tokens, question, padding).
        truncated_questions: how many questions were cut to
            `max_query_length` tokens.
        answers_in_no_window: how many answerable examples have no window
            that holds the whole answer (answers longer than a window).
    """

    inputs: dict
    labels: np.ndarray
    example_index: np.ndarray
    char_starts: np.ndarray
    char_ends: np.ndarray
    truncated_questions: int = 0
    answers_in_no_window: int = 0

    def __len__(self):
        return len(self.labels)


# === Reading ===


def squad_file(version, split):
    """The official file name of a version and split."""
    check_choice("version", version, VERSIONS)
    check_choice("split", split, SPLITS)
    return FILES[(version, split)]


def load_squad(version, split, data_dir=None, download="auto"):
    """Reads SQuAD from the official JSON or from TensorFlow Datasets.

    An answerable example whose first answer is not at its `answer_start`
    takes the nearest place in the context where the answer text occurs;
    where it occurs nowhere, the example is skipped. Examples with an
    empty question or context are skipped.

    Args:
        version: `"1.1"` or `"2.0"`.
        split: `"train"` or `"validation"`.
        data_dir: the folder of the official files; only its files are
            read. `None`: TensorFlow Datasets' copy (`squad/v1.1`,
            `squad/v2.0`).
        download: without `data_dir`, `"auto"` lets TensorFlow Datasets
            download and prepare SQuAD the first time; `"never"` reads a
            prepared copy only.

    Returns:
        `(examples, report)`: a list of `SquadExample`s and a dict of
        counts: `examples` (returned), `skipped_answer_not_in_context`,
        `skipped_empty`, `moved_answer_start` (answers found away from
        their `answer_start`).

    Raises:
        DataNotFoundError: no local file, or no TFDS copy and none could be
            downloaded (the message says why).
        DataFormatError: the file is malformed; the message names the file
            and the JSON path of the first fault.
    """
    name = squad_file(version, split)
    tfds_name = TFDS_NAMES[version]
    if data_dir:
        path = sources.find_file(data_dir, name)
        if path is None:
            raise DataNotFoundError(
                f"No SQuAD v{version} {split} data: expected "
                f"{os.path.join(data_dir, name)} (the official file, "
                "https://rajpurkar.github.io/SQuAD-explorer/). Without "
                f"--data_dir, TensorFlow Datasets' {tfds_name!r} is used "
                "(downloaded the first time)."
            )
        return to_examples(read_official_json(path, version))
    missing = (
        f"No SQuAD v{version} {split} data: no --data_dir (holding {name}, "
        "the official file, https://rajpurkar.github.io/SQuAD-explorer/) "
        f"and no prepared TensorFlow Datasets copy of {tfds_name!r} (`tfds "
        f"build {tfds_name}` on a machine with network prepares one)."
    )
    return to_examples(read_prepared(version, split, download, missing))


# === Windowing ===


def chunk_starts(num_tokens, chunk_length, doc_stride):
    """The first context token of each window: every `doc_stride` tokens
    until a chunk of `chunk_length` reaches the end (one window for an
    empty context)."""
    starts = [0]
    while starts[-1] + chunk_length < num_tokens:
        starts.append(starts[-1] + doc_stride)
    return starts


def _answer_tokens(example, char_starts, char_ends):
    """The first and last context token of the example's first answer, or
    `None` for an example without one."""
    if example.is_impossible or not example.answers:
        return None
    text, start = example.answers[0], example.answer_start
    if not text or start < 0:
        return None
    end = start + len(text)  # exclusive
    if example.context[start:end] != text:
        raise ValueError(
            f"Example {example.id!r}: its answer {text!r} is not at "
            f"answer_start={start} of its context (found "
            f"{example.context[start:end]!r}). Examples from `load_squad` "
            "have this checked."
        )
    # the first token whose span holds the first character, the last one
    # whose span holds the last (spans are sorted and cover the context)
    first = int(np.searchsorted(char_ends, start, side="right"))
    last = int(np.searchsorted(char_starts, end - 1, side="right")) - 1
    return first, last


def make_windows(
    examples, tokenizer, max_length, doc_stride=128, max_query_length=64
):
    """Cuts examples into fixed-length windows for a span extractor.

    Each window is `[first] question [end] context-chunk [end]`, then padding
    (`end` is `tokenizer.end_id`, padding `tokenizer.pad_id`). Questions
    are cut to `max_query_length` tokens. A context's tokens are cut into
    chunks of `max_length - question_length - 3` tokens starting every
    `doc_stride` tokens, the last one reaching the context's end, as BERT's
    SQuAD pipeline does. A window's label is the positions of the first
    and the last token of the first answer where the chunk holds the whole
    answer, else `[0, 0]` (position 0, the first `[end]`, means "no
    answer"); impossible questions get `[0, 0]` everywhere.

    Args:
        examples: a list of `SquadExample`s.
        tokenizer: a `kerasseq.data.tokenizers.Tokenizer`.
        max_length: int, the length of a window.
        doc_stride: int, tokens between the starts of consecutive chunks;
            below the shortest chunk, `max_length - max_query_length - 3`,
            so that consecutive chunks overlap and every answer that fits
            in a chunk lies wholly in one.
        max_query_length: int, the most question tokens kept.

    Returns:
        A `Windows`.

    Example:

    >>> from kerasseq.data.tokenizers import ByteTokenizer
    >>> example = SquadExample("q1", "", "Who?", "Ann met Bob.", ["Bob"], 8)
    >>> windows = make_windows([example], ByteTokenizer(), 24, 4, 8)
    >>> windows.labels.tolist()
    [[14, 16]]
    """
    check_int("max_length", max_length)
    check_int("doc_stride", doc_stride)
    check_int("max_query_length", max_query_length)
    shortest_chunk = max_length - max_query_length - NUM_SPECIAL_TOKENS
    if shortest_chunk < 1:
        raise ValueError(
            "Received an invalid value for argument `max_length`, expected "
            f"room for max_query_length={max_query_length} question tokens, "
            f"{NUM_SPECIAL_TOKENS} special tokens and a context token, i.e. "
            f"at least {max_query_length + NUM_SPECIAL_TOKENS + 1}, got "
            f"{max_length}."
        )
    if doc_stride >= shortest_chunk:
        raise ValueError(
            "Received an invalid value for argument `doc_stride`, expected "
            "less than the shortest context chunk, max_length - "
            f"max_query_length - {NUM_SPECIAL_TOKENS} = {shortest_chunk}, "
            f"so that chunks overlap; got {doc_stride}."
        )
    if tokenizer.end_id is None or tokenizer.pad_id is None:
        raise ValueError(
            f"The tokenizer {tokenizer!r} has no `end_id` or `pad_id`."
        )

    questions = tokenizer.encode_batch([e.question for e in examples])
    contexts = {}
    truncated = unreachable = 0
    # one plan per window: (example, question ids, context tokens, chunk
    # start, chunk end, label)
    plans = []
    for index, example in enumerate(examples):
        question = questions[index]
        if len(question) > max_query_length:
            question = question[:max_query_length]
            truncated += 1
        if example.context not in contexts:
            contexts[example.context] = tokenizer.encode_with_offsets(
                example.context
            )
        ids, starts, ends = contexts[example.context]
        answer = _answer_tokens(example, starts, ends)
        chunk_length = max_length - len(question) - NUM_SPECIAL_TOKENS
        offset = len(question) + 2  # the position of the first context token
        reached = False
        for first in chunk_starts(len(ids), chunk_length, doc_stride):
            stop = min(first + chunk_length, len(ids))
            label = (NO_ANSWER_POSITION, NO_ANSWER_POSITION)
            if answer is not None and first <= answer[0] <= answer[1] < stop:
                label = (answer[0] - first + offset, answer[1] - first + offset)
                reached = True
            plans.append((index, question, first, stop, label))
        if answer is not None and not reached:
            unreachable += 1

    count = len(plans)
    token_ids = np.full((count, max_length), tokenizer.pad_id, np.int32)
    padding_mask = np.zeros((count, max_length), bool)
    char_starts = np.full((count, max_length), -1, np.int32)
    char_ends = np.full((count, max_length), -1, np.int32)
    labels = np.zeros((count, 2), np.int32)
    example_index = np.zeros((count,), np.int32)
    end_id = tokenizer.end_id
    for w, (index, question, first, stop, label) in enumerate(plans):
        ids, starts, ends = contexts[examples[index].context]
        q, c = len(question), stop - first
        offset = q + 2
        token_ids[w, 0] = tokenizer.first_id
        token_ids[w, 1 : q + 1] = question
        token_ids[w, q + 1] = end_id
        token_ids[w, offset : offset + c] = ids[first:stop]
        token_ids[w, offset + c] = end_id
        padding_mask[w, : offset + c + 1] = True
        char_starts[w, offset : offset + c] = starts[first:stop]
        char_ends[w, offset : offset + c] = ends[first:stop]
        labels[w] = label
        example_index[w] = index
    return Windows(
        inputs={"token_ids": token_ids, "padding_mask": padding_mask},
        labels=labels,
        example_index=example_index,
        char_starts=char_starts,
        char_ends=char_ends,
        truncated_questions=truncated,
        answers_in_no_window=unreachable,
    )


def answer_text_from_labels(examples, windows):
    """The text each window's label points at: `context[char_starts[start]
    :char_ends[end]]`, `""` for a label `[0, 0]`."""
    texts = []
    for w, (start, end) in enumerate(windows.labels.tolist()):
        if start == end == NO_ANSWER_POSITION:
            texts.append("")
            continue
        context = examples[windows.example_index[w]].context
        begin = windows.char_starts[w, start]
        texts.append(context[begin : windows.char_ends[w, end]])
    return texts


# === Post-processing ===


def _check_logits(name, logits, shape):
    logits = np.asarray(logits)
    if logits.shape != shape:
        raise ValueError(
            f"Received an invalid shape for argument `{name}`, expected "
            f"(num_windows, max_length) = {shape} like the windows, got "
            f"{logits.shape}."
        )
    return logits.astype(np.float64)


def _best_span(start_logits, end_logits, is_context, n_best, max_span):
    """The best `(score, start, end)` of one window among its `n_best`
    start and `n_best` end positions, or `None`."""
    starts = np.argsort(-start_logits, kind="stable")[:n_best]
    ends = np.argsort(-end_logits, kind="stable")[:n_best]
    s, e = np.meshgrid(starts, ends, indexing="ij")  # (n_best, n_best)
    valid = is_context[s] & is_context[e] & (e >= s) & (e - s + 1 <= max_span)
    if not valid.any():
        return None
    scores = np.where(valid, start_logits[s] + end_logits[e], -np.inf)
    best = np.unravel_index(np.argmax(scores), scores.shape)
    return scores[best], int(s[best]), int(e[best])


def postprocess(
    examples,
    windows,
    start_logits,
    end_logits,
    n_best=20,
    max_answer_length=30,
    version_2=False,
    null_threshold=0.0,
):
    """The predicted answer text of each example from its windows' logits.

    In each window, the `n_best` start and the `n_best` end positions with
    the highest logits are paired; a pair counts where both are context
    tokens, the end is not before the start, and the span has at most
    `max_answer_length` tokens. The pair with the highest start + end logit
    over all of an example's windows gives the text
    `context[char_starts[start]:char_ends[end]]`. For SQuAD 2.0 the null
    score is the lowest start + end logit at position 0 over the example's
    windows, and the prediction is `""` where it exceeds the best span's
    score by more than `null_threshold`. Without a valid span the
    prediction is `""`.

    Args:
        examples: the `SquadExample`s the windows were made from.
        windows: their `Windows`.
        start_logits, end_logits: float arrays `(W, max_length)`; a
            `SpanExtractor`'s logits `(W, 2, max_length)` are
            `logits[:, 0]` and `logits[:, 1]`.
        n_best: int, the start and end positions considered per window.
        max_answer_length: int, the most tokens of an answer.
        version_2: bool, whether "no answer" can be predicted.
        null_threshold: float, how much the null score must exceed the best
            span's to predict no answer.

    Returns:
        A dict of example id -> predicted text.
    """
    check_int("n_best", n_best)
    check_int("max_answer_length", max_answer_length)
    shape = windows.char_starts.shape
    start_logits = _check_logits("start_logits", start_logits, shape)
    end_logits = _check_logits("end_logits", end_logits, shape)
    if len(windows) and windows.example_index.max() >= len(examples):
        raise ValueError(
            f"The windows come from {windows.example_index.max() + 1} or "
            f"more examples, got {len(examples)} examples."
        )
    by_example = [[] for _ in examples]
    for w, index in enumerate(windows.example_index.tolist()):
        by_example[index].append(w)
    is_context = windows.char_starts >= 0
    predictions = {}
    for example, rows in zip(examples, by_example, strict=True):
        best = None
        for w in rows:
            found = _best_span(
                start_logits[w],
                end_logits[w],
                is_context[w],
                n_best,
                max_answer_length,
            )
            if found is not None and (best is None or found[0] > best[0]):
                best = (*found, w)
        text = ""
        if best is not None:
            score, start, end, w = best
            text = example.context[
                windows.char_starts[w, start] : windows.char_ends[w, end]
            ]
            if version_2:
                null_score = min(
                    start_logits[r, NO_ANSWER_POSITION]
                    + end_logits[r, NO_ANSWER_POSITION]
                    for r in rows
                )
                if null_score - score > null_threshold:
                    text = ""
        predictions[example.id] = text
    return predictions
