import os
import re

import numpy as np
import pytest

from kerasseq.data import glue
from kerasseq.data.errors import DataFormatError
from kerasseq.data.errors import DataNotFoundError
from kerasseq.data.tokenizers import ByteTokenizer

END = ByteTokenizer.end_id

MNLI_TRAIN_HEADER = (
    "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\t"
    "sentence2_binary_parse\tsentence1_parse\tsentence2_parse\tsentence1\t"
    "sentence2\tlabel1\tgold_label"
)
MNLI_DEV_HEADER = (
    "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\t"
    "sentence2_binary_parse\tsentence1_parse\tsentence2_parse\tsentence1\t"
    "sentence2\tlabel1\tlabel2\tlabel3\tlabel4\tlabel5\tgold_label"
)


def mnli_row(index, premise, hypothesis, gold, dev=True):
    parses = [f"( {premise} )", f"( {hypothesis} )"] * 2
    votes = [gold] * (5 if dev else 1)
    fields = [str(index), "31193", f"{index}n", "government", *parses]
    return "\t".join([*fields, premise, hypothesis, *votes, gold])


# each task's validation file in GLUE's format: (header or None, rows,
# expected texts_a, texts_b, labels); labels are TFDS's ids
FIXTURES = {
    "cola": (
        None,
        [
            "gj04\t1\t\tOur friends won't buy this analysis, let alone the "
            "next one we propose.",
            "gj04\t0\t*\tThey drank the pub \"dry\".",
        ],
        [
            "Our friends won't buy this analysis, let alone the next one we "
            "propose.",
            'They drank the pub "dry".',
        ],
        None,
        [1, 0],
    ),
    "sst2": (
        "sentence\tlabel",
        [
            "it 's a charming and often affecting journey . \t1",
            "unflinchingly bleak and desperate \t0",
        ],
        [
            "it 's a charming and often affecting journey . ",
            "unflinchingly bleak and desperate ",
        ],
        None,
        [1, 0],
    ),
    "mrpc": (
        "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String",
        [
            "1\t1355540\t1355592\tHe said the pie business doesn 't fit .\t"
            '" The pie business does not fit our strategy .',
            "0\t2029631\t2029565\tMagnarelli said Racicot hated it .\t"
            'His wife said he was " 100 percent behind " it .',
        ],
        [
            "He said the pie business doesn 't fit .",
            "Magnarelli said Racicot hated it .",
        ],
        [
            '" The pie business does not fit our strategy .',
            'His wife said he was " 100 percent behind " it .',
        ],
        [1, 0],
    ),
    "stsb": (
        "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\t"
        "sentence1\tsentence2\tscore",
        [
            "0\tmain-captions\tMSRvid\t2012test\t0000\tnone\tnone\t"
            "A man with a hard hat is dancing.\t"
            "A man wearing a hard hat is dancing.\t5.000",
            "1\tmain-captions\tMSRvid\t2012test\t0002\tnone\tnone\t"
            "A young child is riding a horse.\tA child is riding a horse.\t"
            "4.750",
        ],
        [
            "A man with a hard hat is dancing.",
            "A young child is riding a horse.",
        ],
        ["A man wearing a hard hat is dancing.", "A child is riding a horse."],
        [5.0, 4.75],
    ),
    "qqp": (
        "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate",
        [
            "133273\t213221\t213222\tHow is the life of a math student?\t"
            "Which level of preparation is enough for the JLPT?\t0",
            "402555\t536040\t536041\tHow do I control my emotions?\t"
            "How do you control your emotions?\t1",
        ],
        ["How is the life of a math student?", "How do I control my emotions?"],
        [
            "Which level of preparation is enough for the JLPT?",
            "How do you control your emotions?",
        ],
        [0, 1],
    ),
    "mnli": (
        MNLI_DEV_HEADER,
        [
            mnli_row(0, "The new rights are nice enough", "Everyone likes the "
                     "new rights", "neutral"),
            mnli_row(1, "This site includes a list", "The site has no list",
                     "contradiction"),
            mnli_row(2, "yes now you know", "You know now", "entailment"),
        ],
        [
            "The new rights are nice enough",
            "This site includes a list",
            "yes now you know",
        ],
        ["Everyone likes the new rights", "The site has no list",
         "You know now"],
        [1, 2, 0],
    ),
    "qnli": (
        "index\tquestion\tsentence\tlabel",
        [
            "0\tWhat came into force after the new constitution?\tThat "
            "constitution was then suspended.\tnot_entailment",
            "1\tWhat is the first major city in the stream?\tThe first major "
            "city in the stream is Basel.\tentailment",
        ],
        [
            "What came into force after the new constitution?",
            "What is the first major city in the stream?",
        ],
        [
            "That constitution was then suspended.",
            "The first major city in the stream is Basel.",
        ],
        [1, 0],
    ),
    "rte": (
        "index\tsentence1\tsentence2\tlabel",
        [
            "0\tDana Reeve died of lung cancer.\tChristopher Reeve had an "
            "accident.\tnot_entailment",
            "1\tYet, we now are discovering it.\tBacteria is winning the war."
            "\tentailment",
        ],
        ["Dana Reeve died of lung cancer.", "Yet, we now are discovering it."],
        ["Christopher Reeve had an accident.", "Bacteria is winning the war."],
        [1, 0],
    ),
    "wnli": (
        "index\tsentence1\tsentence2\tlabel",
        [
            "0\tThe drain is clogged with hair. It has to be cleaned.\tThe "
            "hair has to be cleaned.\t0",
            "1\tJane knocked on the door, and Susan answered it.\tSusan "
            "answered the door.\t1",
        ],
        [
            "The drain is clogged with hair. It has to be cleaned.",
            "Jane knocked on the door, and Susan answered it.",
        ],
        ["The hair has to be cleaned.", "Susan answered the door."],
        [0, 1],
    ),
}  # fmt: skip


def write_tsv(path, header, rows, bom=False):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    lines = ([header] if header is not None else []) + list(rows)
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(("\ufeff" if bom else "") + "\n".join(lines) + "\n")
    return path


def write_task(data_dir, task, split, header, rows, nested=True, bom=False):
    spec = glue.SPECS[task]
    folder = os.path.join(data_dir, spec.directory) if nested else data_dir
    name = glue.SPLIT_FILES[split]
    return write_tsv(os.path.join(folder, name), header, rows, bom=bom)


@pytest.fixture(autouse=True)
def _no_tfds(monkeypatch):
    """No test reaches TensorFlow Datasets (which may retry the network);
    tests that want a TFDS copy patch their own stand-in."""

    def refuse(name, split, keys, download, missing):
        raise AssertionError(f"a test reached TFDS: {name} {split} {keys}")

    monkeypatch.setattr(glue, "load_tfds", refuse)


def test_task_specs():
    assert tuple(glue.SPECS) == glue.TASKS
    assert {t: s.directory for t, s in glue.SPECS.items()} == {
        "cola": "CoLA",
        "sst2": "SST-2",
        "mrpc": "MRPC",
        "stsb": "STS-B",
        "qqp": "QQP",
        "mnli": "MNLI",
        "qnli": "QNLI",
        "rte": "RTE",
        "wnli": "WNLI",
    }
    for name, spec in glue.SPECS.items():
        assert spec.name == name
        assert spec.tfds_name == f"glue/{name}"
        assert spec.is_pair == (name not in ("cola", "sst2"))
        expected = 3 if name == "mnli" else 1 if name == "stsb" else 2
        assert spec.num_classes == expected
    assert glue.SPECS["stsb"].is_regression
    assert glue.SPECS["mnli"].eval_splits == (
        "validation_matched",
        "validation_mismatched",
    )
    assert glue.SPECS["rte"].eval_splits == ("validation",)
    # TFDS glue's label order
    assert glue.SPECS["mnli"].label_names == (
        "entailment",
        "neutral",
        "contradiction",
    )
    assert glue.SPECS["qnli"].label_names == ("entailment", "not_entailment")
    assert glue.SPECS["rte"].label_names == ("entailment", "not_entailment")
    assert glue.SPECS["wnli"].label_names == ("not_entailment", "entailment")
    assert glue.SPECS["cola"].label_names == ("unacceptable", "acceptable")


def test_unknown_task():
    with pytest.raises(ValueError, match="expected one of.*'cola'.*got 'sst'"):
        glue.task_spec("sst")
    with pytest.raises(ValueError, match="expected one of.*'wnli'"):
        glue.load_glue("squad", "train")


def test_test_split_is_refused(tmp_path):
    with pytest.raises(
        ValueError, match=r"'train', 'validation' .*no labels.*got 'test'"
    ):
        glue.load_glue("rte", "test", str(tmp_path))
    with pytest.raises(
        ValueError,
        match=r"'train', 'validation_matched', 'validation_mismatched'.*"
        r"got 'validation'",
    ):
        glue.load_glue("mnli", "validation", str(tmp_path))


@pytest.mark.parametrize("nested", [True, False])
@pytest.mark.parametrize("task", glue.TASKS)
def test_each_task_reads_its_release_format(tmp_path, task, nested):
    header, rows, texts_a, texts_b, labels = FIXTURES[task]
    split = glue.SPECS[task].eval_splits[0]
    write_task(str(tmp_path), task, split, header, rows, nested=nested)
    examples = glue.load_glue(task, split, str(tmp_path))
    assert examples.texts_a == texts_a
    assert examples.texts_b == texts_b
    assert examples.skipped == 0
    assert len(examples) == len(labels)
    if task == "stsb":
        assert examples.labels.dtype == np.float32
        np.testing.assert_allclose(examples.labels, labels)
    else:
        assert examples.labels.dtype == np.int32
        assert examples.labels.tolist() == labels


def test_mrpc_with_a_byte_order_mark(tmp_path):
    header, rows, texts_a, _, labels = FIXTURES["mrpc"]
    write_task(str(tmp_path), "mrpc", "train", header, rows, bom=True)
    examples = glue.load_glue("mrpc", "train", str(tmp_path))
    assert examples.texts_a == texts_a
    assert examples.labels.tolist() == labels


def test_mnli_matched_mismatched_and_train(tmp_path):
    data_dir = str(tmp_path)
    write_task(
        data_dir,
        "mnli",
        "train",
        MNLI_TRAIN_HEADER,
        [mnli_row(0, "train premise", "train hypothesis", "entailment", False)],
    )
    write_task(
        data_dir,
        "mnli",
        "validation_matched",
        MNLI_DEV_HEADER,
        [
            mnli_row(0, "matched premise", "matched one", "contradiction"),
            mnli_row(1, "matched premise", "matched two", "neutral"),
        ],
    )
    write_task(
        data_dir,
        "mnli",
        "validation_mismatched",
        MNLI_DEV_HEADER,
        [mnli_row(0, "mismatched premise", "mismatched", "entailment")],
    )
    train = glue.load_glue("mnli", "train", data_dir)
    assert train.texts_a == ["train premise"]
    assert train.texts_b == ["train hypothesis"]
    assert train.labels.tolist() == [0]
    matched = glue.load_glue("mnli", "validation_matched", data_dir)
    assert matched.texts_b == ["matched one", "matched two"]
    assert matched.labels.tolist() == [2, 1]
    mismatched = glue.load_glue("mnli", "validation_mismatched", data_dir)
    assert mismatched.texts_a == ["mismatched premise"]
    assert mismatched.labels.tolist() == [0]


def test_rows_with_an_empty_text_are_skipped_and_counted(tmp_path):
    rows = ["good film \t1", "  \t0", "bad film \t0", "\t1"]
    write_task(str(tmp_path), "sst2", "train", "sentence\tlabel", rows)
    examples = glue.load_glue("sst2", "train", str(tmp_path))
    assert examples.texts_a == ["good film ", "bad film "]
    assert examples.labels.tolist() == [1, 0]
    assert examples.skipped == 2
    # pairs: an empty second text is enough
    rows = [
        "0\tA premise.\t \tentailment",
        "1\tA premise.\tA hypothesis.\tnot_entailment",
    ]
    header = "index\tsentence1\tsentence2\tlabel"
    write_task(str(tmp_path), "rte", "validation", header, rows)
    examples = glue.load_glue("rte", "validation", str(tmp_path))
    assert examples.texts_b == ["A hypothesis."]
    assert examples.labels.tolist() == [1]
    assert examples.skipped == 1


@pytest.mark.parametrize(
    "task, split, header, rows, message",
    [
        (
            "qqp",
            "validation",
            "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate",
            [
                "1\t2\t3\tWho?\tWhy?\t0",
                "4\t5\t6\tHow?\tWhat?\t1",
                "7\t8\tA?\t0",
            ],
            r"QQP/dev.tsv:4: expected 6 fields, got 4",
        ),
        (
            "cola",
            "train",
            None,
            ["gj04\t1\t\tA sentence.", "gj04\t1\tNo mark column."],
            r"CoLA/train.tsv:2: expected 4 fields, got 3",
        ),
        (
            "mnli",
            "validation_matched",
            MNLI_DEV_HEADER,
            [
                mnli_row(0, "A premise", "A hypothesis", "neutral"),
                mnli_row(1, "A premise", "A hypothesis", "-"),
            ],
            r"MNLI/dev_matched.tsv:3: expected a label in 'entailment', "
            r"'neutral', 'contradiction' .*got '-'",
        ),
        (
            "sst2",
            "validation",
            "sentence\tlabel",
            ["fine \t1", "odd \t2"],
            r"SST-2/dev.tsv:3: expected a label in '0', '1' .*got '2'",
        ),
        (
            "qnli",
            "train",
            "index\tquestion\tsentence\tlabel",
            ["0\tWhy?\tBecause.\t0"],
            r"QNLI/train.tsv:2: expected a label in 'entailment', "
            r"'not_entailment' .*got '0'",
        ),
        (
            "stsb",
            "validation",
            "index\tsentence1\tsentence2\tscore",
            ["0\tA cat.\tA dog.\t2.5", "1\tA cat.\tA cat.\t7"],
            r"STS-B/dev.tsv:3: expected a score from 0 to 5, got '7'",
        ),
        (
            "rte",
            "train",
            "index\tpremise\thypothesis\tlabel",
            ["0\tA.\tB.\tentailment"],
            r"RTE/train.tsv:1: expected a header with the columns "
            r"\['sentence1', 'sentence2', 'label'\].*missing",
        ),
    ],
)
def test_malformed_rows_name_file_and_line(
    tmp_path, task, split, header, rows, message
):
    write_task(str(tmp_path), task, split, header, rows)
    with pytest.raises(DataFormatError, match=message):
        glue.load_glue(task, split, str(tmp_path))


def test_a_file_that_is_not_utf8(tmp_path):
    path = tmp_path / "SST-2" / "dev.tsv"
    path.parent.mkdir()
    path.write_bytes(b"sentence\tlabel\ngood \t1\nbad \xff\t0\n")
    with pytest.raises(DataFormatError, match=r"SST-2/dev.tsv:.*UTF-8"):
        glue.load_glue("sst2", "validation", str(tmp_path))


def test_missing_files_name_both_places_and_never_reach_tfds(tmp_path):
    data_dir = str(tmp_path)
    with pytest.raises(DataNotFoundError) as error:
        glue.load_glue("mnli", "validation_mismatched", data_dir)
    message = str(error.value)
    for path in (
        os.path.join(data_dir, "MNLI", "dev_mismatched.tsv"),
        os.path.join(data_dir, "dev_mismatched.tsv"),
    ):
        assert path in message
    # the fixture fails the test if TFDS were asked: a --data_dir is read
    # alone, and the message says what happens without it
    assert "Without --data_dir, TensorFlow Datasets' 'glue/mnli'" in message


def test_without_data_dir_tfds_is_asked_with_the_download_mode(monkeypatch):
    calls = []

    def not_there(name, split, keys, download, missing):
        calls.append((name, split, keys, download))
        raise DataNotFoundError(missing)

    monkeypatch.setattr(glue, "load_tfds", not_there)
    with pytest.raises(
        DataNotFoundError,
        match=re.escape(os.path.join("<data_dir>", "CoLA", "train.tsv")),
    ):
        glue.load_glue("cola", "train", download="never")
    with pytest.raises(DataNotFoundError, match="'glue/mnli'"):
        glue.load_glue("mnli", "validation_mismatched")
    assert calls == [
        ("glue/cola", "train", ("sentence", "label"), "never"),
        (
            "glue/mnli",
            "validation_mismatched",
            ("premise", "hypothesis", "label"),
            "auto",
        ),
    ]


def test_a_tfds_copy(monkeypatch):
    def prepared(name, split, keys, download, missing):
        assert (name, split, keys) == (
            "glue/qnli",
            "train",
            ("question", "sentence", "label"),
        )
        questions = np.array([b"Why?", b"Caf\xc3\xa9?", b"How?"], object)
        sentences = np.array([b"Because.", b"Yes.", b" "], object)
        return questions, sentences, np.array([1, 0, 1], np.int64)

    monkeypatch.setattr(glue, "load_tfds", prepared)
    examples = glue.load_glue("qnli", "train")
    assert examples.texts_a == ["Why?", "Caf\u00e9?"]
    assert examples.texts_b == ["Because.", "Yes."]
    assert examples.labels.dtype == np.int32
    assert examples.labels.tolist() == [1, 0]
    assert examples.skipped == 1


# === pack ===


def test_pack_a_pair_by_hand():
    inputs, num_truncated = glue.pack(ByteTokenizer(), ["hi"], ["yo"], 9)
    # bytes + 1: h 105, i 106, y 122, o 112; 257 ends a text; 0 pads
    assert inputs["token_ids"].tolist() == [
        [257, 105, 106, 257, 122, 112, 257, 0, 0]
    ]
    assert inputs["padding_mask"].tolist() == [[True] * 7 + [False] * 2]
    assert inputs["token_ids"].dtype == np.int32
    assert inputs["padding_mask"].dtype == bool
    assert num_truncated == 0


def one_at_a_time(length_a, length_b, budget):
    """Hugging Face's loop: drop from the longer text, the second on ties."""
    while length_a + length_b > budget:
        if length_a > length_b:
            length_a -= 1
        else:
            length_b -= 1
    return length_a, length_b


def test_longest_first_truncation_lengths():
    assert glue.truncate_longest_first(6, 2, 5) == (3, 2)
    assert glue.truncate_longest_first(2, 6, 5) == (2, 3)
    assert glue.truncate_longest_first(4, 4, 5) == (3, 2)
    assert glue.truncate_longest_first(5, 4, 6) == (3, 3)
    assert glue.truncate_longest_first(1, 9, 2) == (1, 1)
    assert glue.truncate_longest_first(3, 2, 5) == (3, 2)
    for length_a in range(12):
        for length_b in range(12):
            for budget in range(2, 14):
                assert glue.truncate_longest_first(
                    length_a, length_b, budget
                ) == one_at_a_time(length_a, length_b, budget)


def test_pack_truncates_the_longer_text_first():
    inputs, num_truncated = glue.pack(
        ByteTokenizer(), ["abcdef", "ab", "abcd"], ["xy", "wxyz", "wxyz"], 8
    )
    # budget 8 - 3 = 5: "abcdef" + "xy" -> 3 + 2, "ab" + "wxyz" -> 2 + 3,
    # "abcd" + "wxyz" -> 3 + 2
    a, b, c = 98, 99, 100
    w, x, y = 120, 121, 122
    assert inputs["token_ids"].tolist() == [
        [END, a, b, c, END, x, y, END],
        [END, a, b, END, w, x, y, END],
        [END, a, b, c, END, w, x, END],
    ]
    assert inputs["padding_mask"].all()
    assert num_truncated == 3


def test_pack_single_texts_and_mask():
    inputs, num_truncated = glue.pack(ByteTokenizer(), ["a", "hello"], None, 5)
    assert inputs["token_ids"].tolist() == [
        [END, 98, END, 0, 0],
        [END, 105, 102, 109, END],
    ]
    assert inputs["padding_mask"].tolist() == [
        [True, True, True, False, False],
        [True] * 5,
    ]
    assert num_truncated == 1


class CountingTokenizer(ByteTokenizer):
    """Bytes with the end token as padding (as GPT-2), counting calls."""

    pad_id = ByteTokenizer.end_id

    def __init__(self):
        self.calls = []

    def encode_batch(self, texts):
        self.calls.append(list(texts))
        return super().encode_batch(texts)


def test_pack_tokenizes_once_and_masks_padding_that_looks_like_end():
    tokenizer = CountingTokenizer()
    inputs, _ = glue.pack(tokenizer, ["a", "bb"], ["c", "d"], 7)
    assert tokenizer.calls == [["a", "bb", "c", "d"]]
    assert inputs["token_ids"].tolist() == [
        [END, 98, END, 100, END, END, END],
        [END, 99, 99, END, 101, END, END],
    ]
    assert inputs["padding_mask"].sum(axis=1).tolist() == [5, 6]


def test_pack_rejects_too_small_max_length():
    tokenizer = ByteTokenizer()
    with pytest.raises(ValueError, match="`max_length`.*at least 5.*got 4"):
        glue.pack(tokenizer, ["a"], ["b"], 4)
    with pytest.raises(ValueError, match="`max_length`.*at least 3.*got 2"):
        glue.pack(tokenizer, ["a"], None, 2)
    inputs, num_truncated = glue.pack(tokenizer, ["abc"], ["xyz"], 5)
    assert inputs["token_ids"].tolist() == [[END, 98, END, 121, END]]
    assert num_truncated == 1
    with pytest.raises(ValueError, match="different lengths: 2 and 1"):
        glue.pack(tokenizer, ["a", "b"], ["c"], 8)


def test_load_then_pack(tmp_path):
    header, rows, texts_a, texts_b, labels = FIXTURES["rte"]
    write_task(str(tmp_path), "rte", "validation", header, rows)
    examples = glue.load_glue("rte", "validation", str(tmp_path))
    inputs, num_truncated = glue.pack(
        ByteTokenizer(), examples.texts_a, examples.texts_b, 128
    )
    assert inputs["token_ids"].shape == (2, 128)
    assert num_truncated == 0
    first = [END, *ByteTokenizer().encode(texts_a[0]), END]
    first += [*ByteTokenizer().encode(texts_b[0]), END]
    assert inputs["token_ids"][0, : len(first)].tolist() == first
    assert inputs["padding_mask"][0].sum() == len(first)
