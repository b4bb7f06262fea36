"""SQuAD's two sources read into `SquadExample`s: the official JSON (each
field checked; an error names the file and the JSON path of the fault) and
a prepared TensorFlow Datasets copy. `kerasseq.data.squad.load_squad`
chooses the source and documents what is skipped.
"""

import dataclasses
import json

from kerasseq.data import sources
from kerasseq.data.errors import DataFormatError

TFDS_NAMES = {"1.1": "squad/v1.1", "2.0": "squad/v2.0"}


@dataclasses.dataclass
class SquadExample:
    """One question about one context.

    `answers` holds every answer text given (SQuAD's dev sets give
    several), `[]` for an impossible question; `answer_start` is the
    character offset of the first answer in `context`, or -1.
    """

    id: str
    title: str
    question: str
    context: str
    answers: list
    answer_start: int
    is_impossible: bool = False


def _type_name(value):
    return {dict: "an object", list: "a list", str: "a string"}.get(
        type(value), type(value).__name__
    )


def _get(node, key, kind, where, path, default=None):
    """`node[key]`, checked to be of `kind` (`str`, `int`, `list`, `bool`,
    `dict`); `default` when given and the key is absent."""
    here = where or "(top level)"
    if not isinstance(node, dict):
        raise DataFormatError(
            f"{path}: {here}: expected an object, got {_type_name(node)}."
        )
    if key not in node:
        if default is not None:
            return default
        raise DataFormatError(f'{path}: {here}: no "{key}".')
    value = node[key]
    wrong_bool = isinstance(value, bool) and kind is not bool
    if wrong_bool or not isinstance(value, kind):
        expected = {
            str: "a string",
            int: "an integer",
            list: "a list",
            bool: "true or false",
            dict: "an object",
        }[kind]
        place = f"{where}.{key}" if where else key
        raise DataFormatError(
            f"{path}: {place}: expected {expected}, got {_type_name(value)} "
            f"{str(value)[:40]!r}."
        )
    return value


def read_official_json(path, version):
    """The official JSON -> raw records (title, context, question, id,
    answer texts, answer starts, is_impossible)."""
    try:
        with open(path, encoding="utf-8") as f:
            root = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataFormatError(f"{path} is not JSON: {error}.") from None
    records, seen = [], {}
    articles = _get(root, "data", list, "", path)
    for i, article in enumerate(articles):
        where = f"data[{i}]"
        title = _get(article, "title", str, where, path, default="")
        paragraphs = _get(article, "paragraphs", list, where, path)
        for j, paragraph in enumerate(paragraphs):
            where = f"data[{i}].paragraphs[{j}]"
            context = _get(paragraph, "context", str, where, path)
            for k, qa in enumerate(_get(paragraph, "qas", list, where, path)):
                where = f"data[{i}].paragraphs[{j}].qas[{k}]"
                qid = _get(qa, "id", str, where, path)
                if qid in seen:
                    raise DataFormatError(
                        f"{path}: {where}.id: {qid!r} is also the id of "
                        f"{seen[qid]}."
                    )
                seen[qid] = where
                question = _get(qa, "question", str, where, path)
                answers = _get(qa, "answers", list, where, path)
                texts, starts = [], []
                for m, answer in enumerate(answers):
                    at = f"{where}.answers[{m}]"
                    texts.append(_get(answer, "text", str, at, path))
                    starts.append(_get(answer, "answer_start", int, at, path))
                impossible = False
                if version == "2.0":
                    impossible = _get(
                        qa, "is_impossible", bool, where, path, default=False
                    )
                if impossible:
                    texts, starts = [], []
                elif not texts:
                    raise DataFormatError(
                        f"{path}: {where}.answers: empty, and the question is "
                        "not marked is_impossible."
                    )
                records.append(
                    (title, context, question, qid, texts, starts, impossible)
                )
    return records


def _decode(value):
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _load_prepared_features(version, split, download, missing):
    """The features of the TFDS copy, `is_impossible` last (`None` where
    the copy lacks it)."""
    name = TFDS_NAMES[version]
    keys = ("id", "title", "context", "question", "answers")
    if version == "2.0":
        try:
            return sources.load_tfds(
                name, split, keys + ("is_impossible",), download, missing
            )
        except KeyError:
            pass  # a copy without the feature: impossible = no answers
    return sources.load_tfds(name, split, keys, download, missing) + (None,)


def read_prepared(version, split, download, missing):
    """The TFDS copy -> raw records."""
    found = _load_prepared_features(version, split, download, missing)
    ids, titles, contexts, questions, answers, impossible = found
    records = []
    for n in range(len(ids)):
        # answers come padded to the batch's longest list with b"" and 0
        pairs = [
            (_decode(t), int(s))
            for t, s in zip(
                answers["text"][n], answers["answer_start"][n], strict=True
            )
            if len(t)
        ]
        is_impossible = not pairs if impossible is None else bool(impossible[n])
        if version == "1.1":
            is_impossible = False
        if is_impossible:
            pairs = []
        records.append(
            (
                _decode(titles[n]),
                _decode(contexts[n]),
                _decode(questions[n]),
                _decode(ids[n]),
                [t for t, _ in pairs],
                [s for _, s in pairs],
                is_impossible,
            )
        )
    return records


def _find_answer(context, text, start):
    """Where `text` is in `context`: at `start` if it is there, else its
    occurrence nearest to `start`; `None` where it is nowhere."""
    if not text:
        return None
    if start >= 0 and context[start : start + len(text)] == text:
        return start
    occurrences, at = [], context.find(text)
    while at >= 0:
        occurrences.append(at)
        at = context.find(text, at + 1)
    if not occurrences:
        return None
    return min(occurrences, key=lambda o: (abs(o - start), o))


def to_examples(records):
    """Raw records -> `(examples, report)`, as `load_squad` returns them."""
    examples = []
    report = {
        "examples": 0,
        "skipped_answer_not_in_context": 0,
        "skipped_empty": 0,
        "moved_answer_start": 0,
    }
    for title, context, question, qid, texts, starts, impossible in records:
        if not question.strip() or not context.strip():
            report["skipped_empty"] += 1
            continue
        answer_start = -1
        if not impossible:
            first = (texts[0], starts[0]) if texts else ("", -1)
            answer_start = _find_answer(context, *first)
            if answer_start is None:
                report["skipped_answer_not_in_context"] += 1
                continue
            if answer_start != first[1]:
                report["moved_answer_start"] += 1
        examples.append(
            SquadExample(
                id=qid,
                title=title,
                question=question,
                context=context,
                answers=list(texts),
                answer_start=answer_start,
                is_impossible=bool(impossible),
            )
        )
    report["examples"] = len(examples)
    return examples, report
