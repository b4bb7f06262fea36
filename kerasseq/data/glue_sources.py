"""GLUE's two sources read into `GlueExamples`: the TSV files of GLUE's
release (each row checked; an error names the file and line) and a
prepared TensorFlow Datasets copy. `kerasseq.data.glue.load_glue` chooses
the source.
"""

import csv
import dataclasses
import math

import numpy as np

from kerasseq.data.errors import DataFormatError

STSB_SCORE_RANGE = (0.0, 5.0)


@dataclasses.dataclass
class GlueExamples:
    """One split as text: `texts_a`, `texts_b` (lists of str; `texts_b` is
    `None` for single-sentence tasks), `labels` (int32 `(N,)`, float32 for
    STS-B) and `skipped`, the number of rows left out for an empty text."""

    texts_a: list
    texts_b: list | None
    labels: np.ndarray
    skipped: int = 0

    def __len__(self):
        return len(self.labels)


def _label_parser(spec, path):
    """A function `(value, line) -> label` that raises `DataFormatError`."""
    if spec.is_regression:
        low, high = STSB_SCORE_RANGE

        def parse(value, line):
            try:
                score = float(value)
            except ValueError:
                score = math.nan
            if not low <= score <= high:
                raise DataFormatError(
                    f"{path}:{line}: expected a score from {low:g} to "
                    f"{high:g}, got {value!r}."
                )
            return score

        return parse

    if spec.text_labels:
        ids = {name: i for i, name in enumerate(spec.label_names)}
    else:
        ids = {str(i): i for i in range(spec.num_classes)}
    allowed = ", ".join(repr(k) for k in ids)

    def parse(value, line):
        label = ids.get(value.strip())
        if label is None:
            raise DataFormatError(
                f"{path}:{line}: expected a label in {allowed} (GLUE "
                f"{spec.directory}), got {value!r}."
            )
        return label

    return parse


def _columns(spec, path, reader):
    """`(names, text_indices, label_index)`, from the header row or from
    `spec.fields`."""
    names = spec.fields
    if names is None:
        header = next(reader, None)
        if header is None:
            raise DataFormatError(
                f"{path}:1: expected a header row, got an empty file."
            )
        names = tuple(name.strip() for name in header)
        wanted = spec.text_columns + (spec.label_column,)
        missing = [name for name in wanted if name not in names]
        if missing:
            raise DataFormatError(
                f"{path}:1: expected a header with the columns "
                f"{list(wanted)} (GLUE {spec.directory}), missing "
                f"{missing}; got {list(names)}."
            )
    texts = [names.index(name) for name in spec.text_columns]
    return names, texts, names.index(spec.label_column)


def read_glue_tsv(spec, path):
    """Reads one of GLUE's TSV files of task `spec` (a `GlueTask`).

    Rows whose text (either text, for pairs) is empty after stripping are
    skipped and counted; blank lines are no rows and are passed over.

    Returns:
        A `GlueExamples`.

    Raises:
        DataFormatError: naming the file and line of the first malformed
            row (header, field count or label).
    """
    parse_label = _label_parser(spec, path)
    columns = [[] for _ in spec.text_columns]
    labels = []
    skipped = 0
    # utf-8-sig: MRPC's files may open with a byte-order mark
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        try:
            names, text_indices, label_index = _columns(spec, path, reader)
            for row in reader:
                if not row:
                    continue
                line = reader.line_num
                if len(row) != len(names):
                    text = "\t".join(row)[:80]
                    raise DataFormatError(
                        f"{path}:{line}: expected {len(names)} fields, got "
                        f"{len(row)}: {text!r}."
                    )
                label = parse_label(row[label_index], line)
                texts = [row[i] for i in text_indices]
                if any(not text.strip() for text in texts):
                    skipped += 1
                    continue
                for column, text in zip(columns, texts, strict=True):
                    column.append(text)
                labels.append(label)
        except (UnicodeDecodeError, csv.Error) as error:
            raise DataFormatError(
                f"{path}:{reader.line_num + 1}: expected UTF-8 "
                f"tab-separated text, got an unreadable row ({error})."
            ) from None
    return _examples(spec, columns, labels, skipped)


def _examples(spec, columns, labels, skipped):
    dtype = np.float32 if spec.is_regression else np.int32
    return GlueExamples(
        texts_a=columns[0],
        texts_b=columns[1] if spec.is_pair else None,
        labels=np.asarray(labels, dtype),
        skipped=skipped,
    )


# === Prepared TFDS copies ===


def _decode(values):
    return [
        v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values
    ]


def from_prepared(spec, split, found):
    """The features of a prepared TFDS copy -> a `GlueExamples`; rows with
    an empty text are skipped and counted."""
    *texts, labels = found
    columns = [_decode(column) for column in texts]
    if spec.is_regression:
        labels = np.asarray(labels, np.float32)
    else:
        labels = np.asarray(labels, np.int64)
        if labels.size and not (
            labels.min() >= 0 and labels.max() < spec.num_classes
        ):
            raise DataFormatError(
                f"TFDS {spec.tfds_name} {split}: expected labels 0 to "
                f"{spec.num_classes - 1}, got {labels.min()} to "
                f"{labels.max()}."
            )
    keep = [
        all(column[i].strip() for column in columns) for i in range(len(labels))
    ]
    kept_columns = [
        [text for text, k in zip(column, keep, strict=True) if k]
        for column in columns
    ]
    return _examples(
        spec,
        kept_columns,
        np.asarray(labels)[np.asarray(keep, bool)],
        skipped=len(keep) - sum(keep),
    )
