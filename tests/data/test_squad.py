import json
import math
import re
import string

import numpy as np
import pytest

from kerasseq.data import sources
from kerasseq.data import squad
from kerasseq.data.errors import DataFormatError
from kerasseq.data.errors import DataNotFoundError
from kerasseq.data.squad import SquadExample
from kerasseq.data.squad import load_squad
from kerasseq.data.squad import make_windows
from kerasseq.data.squad import postprocess
from kerasseq.data.tokenizers import ByteTokenizer
from kerasseq.data.tokenizers import GPT2Tokenizer
from tests.data.test_tokenizers import GPT2_DIR
from tests.data.test_tokenizers import needs_gpt2

# "The café in 東京 opened in 1998.": 東京 is at 12, "in" at 9 and 22,
# "1998" at 25
CAFE = "The caf\u00e9 in \u6771\u4eac opened in 1998."
BRIDGE = "A bridge over the river was built by Zhang W\u00e9i."


def v11_articles():
    return [
        {
            "title": "Caf\u00e9",
            "paragraphs": [
                {
                    "context": CAFE,
                    "qas": [
                        {
                            "id": "a1",
                            "question": "Where is the caf\u00e9?",
                            "answers": [
                                {"text": "\u6771\u4eac", "answer_start": 12},
                                {"text": "in \u6771\u4eac", "answer_start": 9},
                            ],
                        },
                        {
                            "id": "a2",
                            "question": "When did it open?",
                            "answers": [{"text": "1998", "answer_start": 25}],
                        },
                    ],
                }
            ],
        },
        {
            "title": "Bridge",
            "paragraphs": [
                {
                    "context": BRIDGE,
                    "qas": [
                        {
                            "id": "b1",
                            "question": "Who built the bridge?",
                            "answers": [
                                {"text": "Zhang W\u00e9i", "answer_start": 37}
                            ],
                        }
                    ],
                }
            ],
        },
    ]


def v20_articles():
    articles = v11_articles()
    for article in articles:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                qa["is_impossible"] = False
    articles[1]["paragraphs"][0]["qas"].append(
        {
            "id": "b2",
            "question": "Who painted the bridge?",
            "answers": [],
            "plausible_answers": [
                {"text": "Zhang W\u00e9i", "answer_start": 37}
            ],
            "is_impossible": True,
        }
    )
    return articles


def write_squad(directory, version, split, articles):
    path = directory / squad.squad_file(version, split)
    tag = version if version == "1.1" else "v" + version
    path.write_text(
        json.dumps({"version": tag, "data": articles}, ensure_ascii=False),
        encoding="utf-8",
    )
    return path


@pytest.fixture
def offline(monkeypatch):
    """No TFDS copy: records what `load_tfds` was asked for."""
    calls = []

    def load_tfds(name, split, keys, download, missing):
        calls.append((name, split, tuple(keys), download))
        raise DataNotFoundError(missing)

    monkeypatch.setattr(sources, "load_tfds", load_tfds)
    return calls


# === Reading ===


def test_official_names():
    assert squad.VERSIONS == ("1.1", "2.0")
    assert [
        squad.squad_file(v, s) for v in squad.VERSIONS for s in squad.SPLITS
    ] == [
        "train-v1.1.json",
        "dev-v1.1.json",
        "train-v2.0.json",
        "dev-v2.0.json",
    ]
    with pytest.raises(ValueError, match=r"`version`.*'1.1'.*got '3.0'"):
        load_squad("3.0", "train")
    with pytest.raises(ValueError, match=r"`split`.*'validation'.*got 'dev'"):
        load_squad("1.1", "dev")


@pytest.mark.parametrize("split", ["train", "validation"])
def test_reads_v11(tmp_path, split, offline):
    write_squad(tmp_path, "1.1", split, v11_articles())
    examples, report = load_squad("1.1", split, str(tmp_path))
    assert report == {
        "examples": 3,
        "skipped_answer_not_in_context": 0,
        "skipped_empty": 0,
        "moved_answer_start": 0,
    }
    assert [e.id for e in examples] == ["a1", "a2", "b1"]
    first = examples[0]
    assert first == SquadExample(
        id="a1",
        title="Caf\u00e9",
        question="Where is the caf\u00e9?",
        context=CAFE,
        answers=["\u6771\u4eac", "in \u6771\u4eac"],
        answer_start=12,
        is_impossible=False,
    )
    for e in examples:
        text = e.answers[0]
        assert e.context[e.answer_start : e.answer_start + len(text)] == text
    assert examples[2].title == "Bridge" and examples[2].answer_start == 37
    assert not offline  # the file was there: no TFDS lookup


def test_reads_v20_with_impossible_questions(tmp_path):
    write_squad(tmp_path, "2.0", "validation", v20_articles())
    examples, report = load_squad("2.0", "validation", str(tmp_path))
    assert report["examples"] == 4
    impossible = examples[-1]
    assert impossible.id == "b2"
    assert impossible.is_impossible
    assert impossible.answers == []
    assert impossible.answer_start == -1
    assert [e.is_impossible for e in examples] == [False] * 3 + [True]
    assert examples[2].answers == ["Zhang W\u00e9i"]


def test_is_impossible_wins_over_given_answers(tmp_path):
    articles = v20_articles()
    qa = articles[1]["paragraphs"][0]["qas"][1]
    qa["answers"] = [{"text": "Osaka", "answer_start": 3}]
    del articles[0]["paragraphs"][0]["qas"][1]["is_impossible"]
    write_squad(tmp_path, "2.0", "train", articles)
    examples, report = load_squad("2.0", "train", str(tmp_path))
    assert report["skipped_answer_not_in_context"] == 0
    assert (examples[-1].answers, examples[-1].answer_start) == ([], -1)
    assert examples[-1].is_impossible
    assert examples[1].answers == ["1998"]  # no is_impossible: answerable
    assert not examples[1].is_impossible


def test_answers_not_in_context_are_skipped_and_counted(tmp_path):
    articles = v11_articles()
    qas = articles[0]["paragraphs"][0]["qas"]
    qas[0]["answers"][0] = {"text": "Osaka", "answer_start": 12}
    qas.append({"id": "a3", "question": "   ", "answers": qas[1]["answers"]})
    articles[1]["paragraphs"][0]["qas"].append(
        {
            "id": "b2",
            "question": "Empty?",
            "answers": [{"text": "", "answer_start": 0}],
        }
    )
    articles.append(
        {
            "title": "Blank",
            "paragraphs": [
                {
                    "context": " \n",
                    "qas": [
                        {
                            "id": "c1",
                            "question": "What?",
                            "answers": [{"text": " ", "answer_start": 0}],
                        }
                    ],
                }
            ],
        }
    )
    write_squad(tmp_path, "1.1", "train", articles)
    examples, report = load_squad("1.1", "train", str(tmp_path))
    assert [e.id for e in examples] == ["a2", "b1"]
    assert report == {
        "examples": 2,
        "skipped_answer_not_in_context": 2,  # "Osaka", and an empty text
        "skipped_empty": 2,  # a blank question, a blank context
        "moved_answer_start": 0,
    }


@pytest.mark.parametrize(
    "text, given, found",
    [
        ("1998", 23, 25),  # two characters off
        ("1998", 0, 25),  # far off, but in the context once
        ("in", 12, 9),  # "in" at 9 and 22: the nearest
        ("in", 20, 22),
        ("in", 999, 22),  # past the end
        ("in", -4, 9),
    ],
)
def test_answer_at_a_wrong_offset_is_recovered(tmp_path, text, given, found):
    articles = v11_articles()
    qa = articles[0]["paragraphs"][0]["qas"][1]
    qa["answers"] = [{"text": text, "answer_start": given}]
    write_squad(tmp_path, "1.1", "train", articles)
    examples, report = load_squad("1.1", "train", str(tmp_path))
    example = examples[1]
    assert example.answer_start == found
    assert example.context[found : found + len(text)] == text
    assert report["moved_answer_start"] == 1
    assert report["skipped_answer_not_in_context"] == 0


def _edit(path, value):
    """Sets the item at `path` (keys and indices) of v11's JSON root;
    `None` deletes it."""

    def edit(root):
        node = root
        for key in path[:-1]:
            node = node[key]
        if value is None:
            del node[path[-1]]
        else:
            node[path[-1]] = value
        return root

    return edit


QA = ("data", 1, "paragraphs", 0, "qas", 0)
AT_QA = r"data\[1\]\.paragraphs\[0\]\.qas\[0\]"


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda root: root["data"], r"\(top level\): expected an object"),
        (_edit(("data",), None), r'\(top level\): no "data"'),
        (_edit(("data",), {}), r"data: expected a list, got an object"),
        (
            _edit(("data", 0, "paragraphs"), "x"),
            r"data\[0\].paragraphs: expected a list, got a string",
        ),
        (
            _edit(("data", 1, "paragraphs", 0, "context"), None),
            r'data\[1\].paragraphs\[0\]: no "context"',
        ),
        (
            _edit((*QA, "question"), None),
            r'data\[1\].paragraphs\[0\].qas\[0\]: no "question"',
        ),
        (
            _edit((*QA, "question"), 7),
            r"data\[1\].paragraphs\[0\].qas\[0\].question: expected a string",
        ),
        (
            _edit((*QA, "answers", 0, "answer_start"), "37"),
            AT_QA + r"\.answers\[0\]\.answer_start: expected an integer",
        ),
        (
            _edit((*QA, "answers", 0, "answer_start"), True),
            AT_QA
            + r"\.answers\[0\]\.answer_start: expected an integer, got bool",
        ),
        (
            _edit((*QA, "answers", 0), "Zhang"),
            AT_QA + r"\.answers\[0\]: expected an object, got a string",
        ),
        (
            _edit((*QA, "answers"), []),
            AT_QA + r"\.answers: empty, and the question is not marked",
        ),
        (
            _edit((*QA, "id"), "a2"),
            AT_QA + r"\.id: 'a2' is also the id of data\[0\]\.paragraphs"
            r"\[0\]\.qas\[1\]",
        ),
    ],
)
def test_malformed_json_names_file_and_path(tmp_path, edit, message):
    root = {"version": "1.1", "data": v11_articles()}
    path = tmp_path / "train-v1.1.json"
    path.write_text(json.dumps(edit(root)))
    with pytest.raises(DataFormatError, match="train-v1.1.json: " + message):
        load_squad("1.1", "train", str(tmp_path))


def test_v20_is_impossible_must_be_a_bool(tmp_path):
    articles = v20_articles()
    articles[0]["paragraphs"][0]["qas"][1]["is_impossible"] = "no"
    write_squad(tmp_path, "2.0", "train", articles)
    with pytest.raises(
        DataFormatError,
        match=r"train-v2.0.json: data\[0\].paragraphs\[0\].qas\[1\]"
        r".is_impossible: expected true or false",
    ):
        load_squad("2.0", "train", str(tmp_path))


def test_not_json(tmp_path):
    (tmp_path / "dev-v2.0.json").write_text('{"data": [')
    with pytest.raises(DataFormatError, match="dev-v2.0.json is not JSON"):
        load_squad("2.0", "validation", str(tmp_path))


def test_missing_files_name_the_expected_paths(tmp_path, offline):
    # the other version's file is no substitute
    write_squad(tmp_path, "1.1", "validation", v11_articles())
    with pytest.raises(DataNotFoundError) as error:
        load_squad("2.0", "validation", str(tmp_path))
    message = str(error.value)
    assert str(tmp_path / "dev-v2.0.json") in message
    assert "Without --data_dir, TensorFlow Datasets' 'squad/v2.0'" in message
    assert offline == []  # a --data_dir is read alone
    with pytest.raises(DataNotFoundError, match=r"train-v1.1.json.*squad/v1.1"):
        load_squad("1.1", "train", download="never")
    assert [(c[0], c[1], c[3]) for c in offline] == [
        ("squad/v1.1", "train", "never")
    ]


def _tfds_batch(with_impossible):
    """What `load_tfds` gives for SQuAD: bytes, answers padded to the
    longest list with b"" and 0."""
    found = (
        np.array([b"x1", b"x2", b"x3"]),
        np.array([b"Caf\xc3\xa9", b"Caf\xc3\xa9", b"Bridge"]),
        np.array([CAFE.encode(), CAFE.encode(), BRIDGE.encode()]),
        np.array([b"Where?", b"When?", b"Who painted it?"]),
        {
            "text": np.array(
                [
                    ["\u6771\u4eac".encode(), b"in " + "\u6771\u4eac".encode()],
                    [b"1998", b""],
                    [b"", b""],
                ]
            ),
            "answer_start": np.array([[12, 9], [24, 0], [0, 0]], np.int32),
        },
    )
    if with_impossible:
        found += (np.array([False, False, True]),)
    return found


@pytest.mark.parametrize("with_impossible", [True, False])
def test_reads_a_prepared_tfds_copy(monkeypatch, with_impossible):
    calls = []

    def load_tfds(name, split, keys, download, missing):
        calls.append((name, split, keys))
        if "is_impossible" in keys and not with_impossible:
            raise KeyError("is_impossible")
        return _tfds_batch("is_impossible" in keys)

    monkeypatch.setattr(sources, "load_tfds", load_tfds)
    examples, report = load_squad("2.0", "train")
    assert calls[0][:2] == ("squad/v2.0", "train")
    assert report["examples"] == 3
    assert report["moved_answer_start"] == 1  # "1998" given at 24
    assert examples[0] == SquadExample(
        "x1",
        "Caf\u00e9",
        "Where?",
        CAFE,
        ["\u6771\u4eac", "in \u6771\u4eac"],
        12,
        False,
    )
    assert examples[1].answers == ["1998"] and examples[1].answer_start == 25
    assert examples[2].is_impossible and examples[2].answers == []
    assert examples[2].answer_start == -1


# === Windowing ===


def _bytes(text):
    return [b + 1 for b in text.encode("utf-8")]


def test_window_layout_by_hand():
    tokenizer = ByteTokenizer()
    example = SquadExample("q", "", "Who?", "Ann met Bob.", ["Bob"], 8)
    # question 4 tokens: chunks of 18 - 4 - 3 = 11, starting at 0 and 4
    windows = make_windows([example], tokenizer, 18, 4, 4)
    end, pad = 257, 0
    question = [end, *_bytes("Who?"), end]
    assert windows.inputs["token_ids"].tolist() == [
        question + _bytes("Ann met Bob") + [end],
        question + _bytes("met Bob.") + [end, pad, pad, pad],
    ]
    assert windows.inputs["token_ids"].dtype == np.int32
    assert windows.inputs["padding_mask"].tolist() == [
        [True] * 18,
        [True] * 15 + [False] * 3,
    ]
    assert windows.labels.tolist() == [[6 + 8, 6 + 10], [6 + 4, 6 + 6]]
    assert windows.labels.dtype == np.int32
    assert windows.example_index.tolist() == [0, 0]
    assert windows.char_starts.tolist() == [
        [-1] * 6 + list(range(0, 11)) + [-1],
        [-1] * 6 + list(range(4, 12)) + [-1] * 4,
    ]
    assert windows.char_ends.tolist() == [
        [-1] * 6 + list(range(1, 12)) + [-1],
        [-1] * 6 + list(range(5, 13)) + [-1] * 4,
    ]
    assert len(windows) == 2 and windows.truncated_questions == 0


def test_window_layout_with_multibyte_characters_and_no_answer():
    # "é" is two bytes: both span character 3
    example = SquadExample("q", "", "Where?", "caf\u00e9 \u6771", ["\u6771"], 5)
    windows = make_windows([example], ByteTokenizer(), 16, 2, 4)
    # question cut to 4 bytes; chunks of 16 - 4 - 3 = 9 tokens: one window
    assert windows.truncated_questions == 1
    row = windows.inputs["token_ids"][0].tolist()
    assert row[:6] == [257, *_bytes("Wher"), 257]
    assert row[6:15] == _bytes("caf\u00e9 \u6771") and row[15] == 257
    assert windows.char_starts[0, 6:15].tolist() == [0, 1, 2, 3, 3, 4, 5, 5, 5]
    assert windows.char_ends[0, 6:15].tolist() == [1, 2, 3, 4, 4, 5, 6, 6, 6]
    assert windows.labels.tolist() == [[12, 14]]
    impossible = SquadExample("i", "", "Who?", "caf\u00e9", [], -1, True)
    windows = make_windows([example, impossible], ByteTokenizer(), 16, 2, 4)
    assert windows.labels.tolist() == [[12, 14], [0, 0]]
    assert windows.example_index.tolist() == [0, 1]


WORDS = [
    "the",
    "caf\u00e9",
    "\u6771\u4eac",
    "river",
    "Na\u00efve",
    "bridge",
    "1848",
    "of",
    "Z\u00fcrich",
    "\U0001f600",
    "north",
    "tower,",
    "a",
    "Stra\u00dfe",
    "(old)",
    "\u00e9t\u00e9",
]


def long_context(seed, num_words):
    rng = np.random.default_rng(seed)
    words = [WORDS[i] for i in rng.integers(len(WORDS), size=num_words)]
    return " ".join(words) + "."


def sweep_examples(contexts, lengths=(1, 3, 11)):
    """An answer at every character of every context, of several lengths;
    so answers start and end at, across and near every window edge."""
    examples = []
    for c, context in enumerate(contexts):
        for start in range(len(context)):
            for length in lengths:
                text = context[start : start + length]
                question = f"Q{c} at {start} of {length}?"
                examples.append(
                    SquadExample(
                        f"{c}-{start}-{length}",
                        "",
                        question,
                        context,
                        [text],
                        start,
                    )
                )
        examples.append(
            SquadExample(f"{c}-none", "", "No?", context, [], -1, True)
        )
    return examples


def word_examples(contexts, max_words=4):
    """Answers of whole words, the way SQuAD's answers are."""
    examples = []
    for c, context in enumerate(contexts):
        spans = [m.span() for m in re.finditer(r"\S+", context)]
        for k in range(len(spans)):
            last = min(k + k % max_words, len(spans) - 1)
            start, end = spans[k][0], spans[last][1]
            examples.append(
                SquadExample(
                    f"{c}-{k}",
                    "",
                    f"What is word {k} of {c}?",
                    context,
                    [context[start:end]],
                    start,
                )
            )
    return examples


def expected_byte_windows(example, max_length, doc_stride, max_query_length):
    """Windows and labels of one example under the byte tokenizer, worked
    out from byte offsets: [(first context byte, label)]."""
    question = min(len(example.question.encode()), max_query_length)
    num_bytes = len(example.context.encode())
    chunk = max_length - question - 3
    count = 1 + max(0, math.ceil((num_bytes - chunk) / doc_stride))
    expected = []
    for j in range(count):
        first = j * doc_stride
        label = [0, 0]
        if example.answers:
            a, text = example.answer_start, example.answers[0]
            start = len(example.context[:a].encode())
            end = len(example.context[: a + len(text)].encode()) - 1
            if first <= start and end < first + chunk:
                label = [
                    start - first + question + 2,
                    end - first + question + 2,
                ]
        expected.append((first, label))
    return expected


@pytest.mark.parametrize(
    "max_length, doc_stride, max_query_length", [(64, 20, 16), (48, 7, 12)]
)
def test_byte_windows_round_trip_every_answer(
    max_length, doc_stride, max_query_length
):
    contexts = [long_context(0, 40), long_context(1, 25)]
    examples = sweep_examples(contexts)
    windows = make_windows(
        examples, ByteTokenizer(), max_length, doc_stride, max_query_length
    )
    assert windows.inputs["token_ids"].shape == (len(windows), max_length)
    assert windows.truncated_questions == sum(
        len(e.question.encode()) > max_query_length for e in examples
    )
    assert windows.answers_in_no_window == 0
    labels = windows.labels
    texts = squad.answer_text_from_labels(examples, windows)
    found = set()
    for w, (start, end) in enumerate(labels.tolist()):
        example = examples[windows.example_index[w]]
        if [start, end] == [0, 0]:
            assert texts[w] == ""
            continue
        span = example.context[
            windows.char_starts[w, start] : windows.char_ends[w, end]
        ]
        assert span == example.answers[0], (example.id, w)
        assert texts[w] == span
        found.add(example.id)
    # every answer lies wholly in at least one window
    assert found == {e.id for e in examples if not e.is_impossible}

    # windows and labels as worked out from byte offsets
    position = 0
    for index, example in enumerate(examples):
        for first, label in expected_byte_windows(
            example, max_length, doc_stride, max_query_length
        ):
            assert windows.example_index[position] == index
            assert windows.labels[position].tolist() == label, example.id
            context_ids = _bytes(example.context)
            q = min(len(example.question.encode()), max_query_length)
            row = windows.inputs["token_ids"][position]
            chunk = context_ids[first : first + max_length - q - 3]
            assert row[q + 2 : q + 2 + len(chunk)].tolist() == chunk
            position += 1
    assert position == len(windows)
    # several windows per context, with answers at the edges of many
    assert len(windows) >= 4 * len(examples)
    last_context = windows.inputs["padding_mask"].sum(axis=1) - 2
    first_context = np.argmax(windows.char_starts >= 0, axis=1)
    assert (labels[:, 1] == last_context).sum() > 10
    assert ((labels[:, 0] == first_context) & (labels[:, 0] > 0)).sum() > 10


def test_every_position_outside_the_context_has_no_span():
    examples = sweep_examples([long_context(2, 30)], lengths=(2,))
    windows = make_windows(examples, ByteTokenizer(), 40, 9, 8)
    ids = windows.inputs["token_ids"]
    is_context = windows.char_starts >= 0
    np.testing.assert_array_equal(is_context, windows.char_ends >= 0)
    for w in range(len(windows)):
        q = int(np.flatnonzero(ids[w] == 257)[1]) - 1  # question length
        context = np.flatnonzero(is_context[w])
        assert context[0] == q + 2
        np.testing.assert_array_equal(
            context, np.arange(q + 2, context[-1] + 1)
        )
        assert ids[w, context[-1] + 1] == 257
        assert not windows.inputs["padding_mask"][w, context[-1] + 2 :].any()
    assert np.all(
        windows.char_ends[is_context] > windows.char_starts[is_context]
    )


def test_answers_longer_than_a_window_are_counted():
    context = "x" * 50
    example = SquadExample("long", "", "Q?", context, ["x" * 30], 10)
    windows = make_windows([example], ByteTokenizer(), 20, 5, 4)
    assert (windows.labels == 0).all()
    assert windows.answers_in_no_window == 1


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            {"max_length": 0},
            r"`max_length`, expected a positive integer, got 0",
        ),
        ({"max_length": 10}, r"`max_length`.*at least 12, got 10"),
        ({"doc_stride": 9}, r"`doc_stride`.*= 9.*got 9"),
        ({"doc_stride": 2.5}, r"`doc_stride`, expected a positive integer"),
        ({"max_query_length": -1}, r"`max_query_length`"),
    ],
)
def test_window_arguments_are_checked(kwargs, message):
    args = {"max_length": 20, "doc_stride": 4, "max_query_length": 8, **kwargs}
    example = SquadExample("q", "", "Q?", "context", ["text"], 0)
    with pytest.raises(ValueError, match=message):
        make_windows([example], ByteTokenizer(), **args)


def test_an_answer_not_at_its_offset_is_refused():
    example = SquadExample("bad", "", "Q?", "Ann met Bob.", ["Bob"], 4)
    with pytest.raises(
        ValueError, match="Example 'bad'.*not at answer_start=4"
    ):
        make_windows([example], ByteTokenizer(), 24, 4, 8)


@pytest.fixture(scope="module")
def gpt2():
    return GPT2Tokenizer.from_directory(GPT2_DIR)


def normalize(text):
    """SQuAD's answer normalisation: lower case, no punctuation, no
    articles, single spaces."""
    text = "".join(c for c in text.lower() if c not in string.punctuation)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


@needs_gpt2
@pytest.mark.parametrize("words", [True, False])
def test_gpt2_windows_contain_every_answer(gpt2, words):
    contexts = [long_context(3, 120), long_context(4, 70)]
    if words:
        examples = word_examples(contexts)
    else:
        examples = sweep_examples([contexts[1]], lengths=(1, 5))
    windows = make_windows(examples, gpt2, 64, 16, 12)
    assert windows.answers_in_no_window == 0
    assert len(windows) >= 3 * len(examples)
    found, aligned = set(), 0
    for w, (start, end) in enumerate(windows.labels.tolist()):
        if [start, end] == [0, 0]:
            continue
        example = examples[windows.example_index[w]]
        text, a = example.answers[0], example.answer_start
        begin = windows.char_starts[w, start]
        stop = windows.char_ends[w, end]
        span = example.context[begin:stop]
        assert text in span
        # the first token holds the answer's first character, the last
        # token its last one: no token more on either side
        assert begin <= a < windows.char_ends[w, start]
        assert windows.char_starts[w, end] < a + len(text) <= stop
        lead = example.context[begin:a]
        if stop == a + len(text) and (not lead or lead.isspace()):
            assert normalize(span) == normalize(text)
            aligned += 1
        found.add(example.id)
    assert found == {e.id for e in examples if not e.is_impossible}
    if words:
        # GPT-2's tokens of whole words start at the word or at its space
        assert aligned > 0.6 * len(examples)
    ids = windows.inputs["token_ids"]
    assert (ids[:, 0] == gpt2.end_id).all()
    assert (ids[~windows.inputs["padding_mask"]] == gpt2.pad_id).all()


@needs_gpt2
def test_gpt2_predictions_from_labels_are_the_answers(gpt2):
    examples = word_examples([long_context(5, 60)])
    windows = make_windows(examples, gpt2, 48, 12, 16)
    predictions = postprocess(examples, windows, *one_hot_labels(windows))
    for example in examples:
        assert example.answers[0] in predictions[example.id]
        assert normalize(predictions[example.id]) == normalize(
            example.answers[0]
        )


# === Post-processing ===


def one_hot_labels(windows, high=10.0):
    """Logits that point at each window's label (no-answer windows at 0)."""
    start = np.full(windows.char_starts.shape, -5.0)
    end = np.full(windows.char_starts.shape, -5.0)
    rows = np.arange(len(windows))
    start[rows, windows.labels[:, 0]] = high
    end[rows, windows.labels[:, 1]] = high
    return start, end


def test_predictions_from_labels_round_trip():
    examples = sweep_examples([long_context(6, 30)], lengths=(1, 4))
    windows = make_windows(examples, ByteTokenizer(), 48, 10, 12)
    predictions = postprocess(
        examples,
        windows,
        *one_hot_labels(windows),
        max_answer_length=64,
        version_2=True,
    )
    assert predictions == {
        e.id: (e.answers[0] if e.answers else "") for e in examples
    }


CONTEXT = "Ann met Bob in Paris."
# byte positions in a window of question "Who?": context starts at 6
ANN, BOB, PARIS = 6 + 0, 6 + 8, 6 + 15


def _one_window(max_length=32):
    example = SquadExample("q", "", "Who?", CONTEXT, ["Bob"], 8)
    windows = make_windows([example], ByteTokenizer(), max_length, 4, 8)
    assert len(windows) == 1
    # low enough that no pair with one of these positions ever wins
    start = np.full((1, max_length), -100.0)
    end = np.full((1, max_length), -100.0)
    start[:, ~windows.inputs["padding_mask"][0]] = -1e9
    end[:, ~windows.inputs["padding_mask"][0]] = -1e9
    return [example], windows, start, end


def test_a_known_span_wins():
    examples, windows, start, end = _one_window()
    start[0, PARIS], end[0, PARIS + 4] = 3.0, 4.0
    assert postprocess(examples, windows, start, end) == {"q": "Paris"}
    start[0, BOB], end[0, BOB + 2] = 4.0, 5.0
    assert postprocess(examples, windows, start, end) == {"q": "Bob"}


@pytest.mark.parametrize(
    "name, start_at, end_at",
    [
        ("start in the question", 2, BOB + 2),
        ("end in the question", BOB, 3),
        ("span across the question", 1, ANN + 2),
        ("start at the no-answer token", 0, ANN + 2),
        ("end before start", PARIS, BOB + 2),
        ("end on the closing token", PARIS, 6 + len(CONTEXT)),
        ("end in the padding", PARIS + 4, 28),
        ("longer than max_answer_length", ANN, PARIS + 4),
    ],
)
def test_invalid_spans_are_never_chosen(name, start_at, end_at):
    examples, windows, start, end = _one_window()
    # the best valid span: "Bob"
    start[0, BOB], end[0, BOB + 2] = 1.0, 1.0
    start[0, start_at], end[0, end_at] = 50.0, 50.0
    predictions = postprocess(
        examples, windows, start, end, max_answer_length=8
    )
    assert predictions == {"q": "Bob"}, name


def test_long_spans_up_to_max_answer_length():
    examples, windows, start, end = _one_window()
    start[0, PARIS], end[0, PARIS + 4] = 1.0, 1.0
    start[0, ANN], end[0, BOB + 2] = 5.0, 5.0  # 11 tokens
    for limit, expected in [
        (10, "Paris"),
        (11, "Ann met Bob"),
    ]:
        predictions = postprocess(
            examples, windows, start, end, max_answer_length=limit
        )
        assert predictions == {"q": expected}


def test_no_valid_span_predicts_nothing():
    examples, windows, start, end = _one_window()
    start[0, :6], end[0, :6] = 9.0, 9.0
    # the 6 best starts and ends are the question's and the specials'
    for version_2 in (False, True):
        predictions = postprocess(
            examples, windows, start, end, n_best=6, version_2=version_2
        )
        assert predictions == {"q": ""}
    assert postprocess(examples, windows, start, end, n_best=7)["q"] == "A"


def test_n_best_limits_the_positions_considered():
    examples, windows, start, end = _one_window()
    start[0, BOB], end[0, BOB + 2] = 5.0, 5.0
    start[0, 1:4] = [30.0, 29.0, 28.0]  # the question's: three better starts
    assert postprocess(examples, windows, start, end, n_best=3) == {"q": ""}
    assert postprocess(examples, windows, start, end, n_best=4) == {"q": "Bob"}
    end[0, ANN : ANN + 4] = 20.0  # four better ends, all before the start
    assert postprocess(examples, windows, start, end, n_best=4) == {"q": ""}
    assert postprocess(examples, windows, start, end, n_best=5) == {"q": "Bob"}


def _two_examples_of_several_windows():
    contexts = [long_context(7, 30), long_context(8, 30)]
    examples = [
        SquadExample("a", "", "Q?", contexts[0], [], -1, True),
        SquadExample("b", "", "Q?", contexts[1], [], -1, True),
    ]
    windows = make_windows(examples, ByteTokenizer(), 40, 10, 4)
    counts = np.bincount(windows.example_index)
    assert (counts >= 3).all()
    shape = windows.char_starts.shape
    return examples, windows, np.full(shape, -10.0), np.full(shape, -10.0)


def _span(examples, windows, w, first, last):
    """Context positions of window `w` from its `first` context token to
    its `last`, and their text."""
    at = np.flatnonzero(windows.char_starts[w] >= 0)[[first, last]]
    context = examples[windows.example_index[w]].context
    text = context[windows.char_starts[w, at[0]] : windows.char_ends[w, at[1]]]
    return at, text


def test_best_span_over_several_windows():
    examples, windows, start, end = _two_examples_of_several_windows()
    rows_a = np.flatnonzero(windows.example_index == 0)
    rows_b = np.flatnonzero(windows.example_index == 1)
    (s1, e1), worse_a = _span(examples, windows, rows_a[0], 0, 2)
    (s2, e2), best_a = _span(examples, windows, rows_a[2], 5, 9)
    (s3, e3), best_b = _span(examples, windows, rows_b[1], 1, 1)
    start[rows_a[0], s1], end[rows_a[0], e1] = 4.0, 4.0
    start[rows_a[2], s2], end[rows_a[2], e2] = 4.0, 4.5
    start[rows_b[1], s3], end[rows_b[1], e3] = 1.0, 1.0
    predictions = postprocess(examples, windows, start, end)
    assert predictions == {"a": best_a, "b": best_b}
    assert best_a and best_b and worse_a != best_a


def test_version_2_null_threshold():
    examples, windows, start, end = _two_examples_of_several_windows()
    rows = np.flatnonzero(windows.example_index == 0)
    (s, e), text = _span(examples, windows, rows[1], 2, 4)
    start[rows[1], s], end[rows[1], e] = 2.0, 2.0  # span score 4
    start[rows, 0] = end[rows, 0] = 3.0  # null score 6 in every window
    start[rows[-1], 0] = end[rows[-1], 0] = 1.0  # but 2 in the last

    def predict(**kwargs):
        return postprocess(examples, windows, start, end, **kwargs)["a"]

    # the null score is the lowest over the windows: 2 - 4 = -2
    assert predict(version_2=True) == text
    assert predict(version_2=True, null_threshold=-1.9) == text
    assert predict(version_2=True, null_threshold=-2.0) == text  # not more
    assert predict(version_2=True, null_threshold=-2.1) == ""
    start[rows[-1], 0] = end[rows[-1], 0] = 2.5  # now 5 - 4 = 1
    assert predict(version_2=True) == ""
    assert predict(version_2=True, null_threshold=1.5) == text
    assert predict(version_2=False) == text
    # with no valid span SQuAD 2.0 predicts no answer, whatever the threshold
    assert predict(version_2=True, null_threshold=100.0) == text
    assert predict(version_2=True, null_threshold=100.0, n_best=1) == ""


def test_postprocess_checks_its_arguments():
    examples, windows, start, end = _one_window()
    with pytest.raises(
        ValueError, match=r"`start_logits`.*\(1, 32\).*\(1, 31\)"
    ):
        postprocess(examples, windows, start[:, 1:], end)
    with pytest.raises(ValueError, match="`n_best`"):
        postprocess(examples, windows, start, end, n_best=0)
    with pytest.raises(ValueError, match="`max_answer_length`"):
        postprocess(examples, windows, start, end, max_answer_length=0)
    with pytest.raises(ValueError, match="1 or more examples, got 0"):
        postprocess([], windows, start, end)
