import json
import pathlib

import numpy as np
import pytest

from kerasseq.data import listops
from kerasseq.data.errors import DataFormatError
from kerasseq.data.errors import DataNotFoundError


def evaluate(tokens):
    """An independent ListOps evaluator: a stack machine over the tokens.

    Returns `(value, depth, argument counts)`.
    """
    stack, result, depth, counts = [], None, 0, []
    for token in tokens:
        if token.startswith("["):
            stack.append((token, []))
            depth = max(depth, len(stack))
            continue
        if token == "]":
            operator, args = stack.pop()
            counts.append(len(args))
            ordered = sorted(args)
            middle = len(ordered) // 2
            value = {
                "[MIN": ordered[0],
                "[MAX": ordered[-1],
                "[SM": sum(args) % 10,
                "[MED": ordered[middle]
                if len(ordered) % 2
                else (ordered[middle - 1] + ordered[middle]) // 2,
            }[operator]
        else:
            value = int(token)
        if stack:
            stack[-1][1].append(value)
        else:
            assert result is None, "two expressions at the top level"
            result = value
    assert not stack, "unclosed list"
    return result, max(depth, 0), counts


def test_values_equal_an_independent_evaluator():
    splits = listops.generate(
        {"train": 300, "test": 50},
        seed=3,
        max_depth=6,
        max_args=5,
        min_length=5,
        max_length=200,
    )
    values = []
    for source, value in splits["train"] + splits["test"]:
        tokens = listops.tokens(source)
        expected, depth, counts = evaluate(tokens)
        assert value == expected, source
        assert 5 <= len(tokens) <= 200
        assert 1 <= depth <= 5  # lists at depths 1..max_depth - 1
        assert all(2 <= c <= 5 for c in counts)
        values.append(value)
    # every class occurs; the evaluator would catch a constant label
    assert len(set(values)) == 10


def test_lra_sized_expressions():
    splits = listops.generate({"train": 20}, seed=0)
    for source, value in splits["train"]:
        tokens = listops.tokens(source)
        assert 500 <= len(tokens) <= 2000
        assert evaluate(tokens)[0] == value


def test_parenthesised_form_of_lra():
    tree = ("[MAX", [2, ("[MIN", [4, 7]), 0])
    source = listops._source(tree)
    assert source == ("( ( ( ( [MAX 2 ) ( ( ( [MIN 4 ) 7 ) ] ) ) 0 ) ] )")
    assert listops.tokens(source) == "[MAX 2 [MIN 4 7 ] 0 ]".split()
    assert listops._value(tree) == 4


def test_leaf_probability_and_argument_counts():
    rng = np.random.default_rng(0)
    draws = [listops._random_tree(rng, 1, 2, 5)[0] for _ in range(8000)]
    lists = [t for t in draws if not isinstance(t, int)]
    assert abs(1 - len(lists) / len(draws) - 0.75) < 0.02
    counts = np.bincount([len(children) for _, children in lists])
    assert counts[:2].sum() == 0 and len(counts) == 6
    # randint(2, max_args): 2..5 uniformly; children at max_depth are leaves
    assert np.all(np.abs(counts[2:] / len(lists) - 0.25) < 0.04)
    assert all(isinstance(c, int) for _, ch in lists for c in ch)


def test_generation_is_deterministic_and_splits_are_disjoint():
    args = dict(max_depth=4, max_args=4, min_length=3, max_length=60)
    first = listops.generate({"train": 200, "val": 50}, 7, **args)
    again = listops.generate({"train": 200, "val": 50}, 7, **args)
    other = listops.generate({"train": 200, "val": 50}, 8, **args)
    assert first == again
    assert first != other
    sources = [s for split in first.values() for s, _ in split]
    assert len(set(sources)) == len(sources) == 250


def test_tsv_round_trip_and_encoding(tmp_path):
    examples = listops.generate(
        {"train": 30}, 1, max_depth=4, max_args=4, min_length=3, max_length=40
    )["train"]
    path = str(tmp_path / "basic_train.tsv")
    listops.write_tsv(path, examples)
    with open(path) as f:
        assert f.readline() == "Source\tTarget\n"
    sources, labels = listops.load(str(tmp_path), "train")
    assert labels.tolist() == [v for _, v in examples]
    assert sources == [listops.tokens(s) for s, _ in examples]

    ids, mask = listops.encode(sources, 40, "brackets")
    assert ids.shape == (30, 40) and ids.dtype == np.int32
    lra_ids, lra_mask = listops.encode(sources, 40, "lra")
    for row, source in enumerate(sources):
        assert mask[row].sum() == len(source)
        decoded = [listops.VOCABULARY[i] for i in ids[row, : len(source)]]
        assert decoded == source
        kept = [t for t in source if t != "]"]
        assert lra_mask[row].sum() == len(kept)
        decoded = [listops.VOCABULARY[i] for i in lra_ids[row, : len(kept)]]
        assert decoded == kept
    cut, cut_mask = listops.encode([["[MAX", "1", "2", "]"]], 2, "brackets")
    assert cut.tolist() == [[listops.TOKEN_IDS["[MAX"], 2]]
    assert cut_mask.all()


LRA_GOLDENS = json.loads(
    (pathlib.Path(__file__).parents[1] / "fixtures")
    .joinpath("listops_lra_goldens.json")
    .read_text()
)


def test_lra_tokens_equal_lra_pipeline():
    # written by tests/fixtures/make_listops_goldens.py with TFDS's
    # Tokenizer and TokenTextEncoder, as LRA's pipeline used them
    assert LRA_GOLDENS["vocab_size"] == len(listops.VOCABULARY)
    # LRA's vocabulary: the operators without "[", the digits; no "]"
    ours = [t.lstrip("[") for t in listops.VOCABULARY[1:] if t != "]"]
    assert ours == LRA_GOLDENS["vocabulary"]
    # its out-of-vocabulary id is ours of "]", which "lra" never gives
    assert LRA_GOLDENS["oov_id"] == listops.TOKEN_IDS["]"]
    for case in LRA_GOLDENS["cases"]:
        source, max_length = case["source"], case["max_length"]
        ids, mask = listops.encode([listops.tokens(source)], max_length, "lra")
        assert ids[0].tolist() == case["ids"], source
        assert mask[0].tolist() == [i != 0 for i in case["ids"]], source
        kept = [listops.VOCABULARY[i].lstrip("[") for i in ids[0] if i]
        assert kept == case["tokens"][:max_length], source


def test_lra_tokens_lose_where_lists_close():
    first = listops.tokens("[MAX 2 [MIN 3 4 ] 5 ]")
    second = listops.tokens("[MAX 2 [MIN 3 4 5 ] ]")
    lra = [listops.encode([t], 12, "lra")[0] for t in (first, second)]
    brackets = [listops.encode([t], 12, "brackets")[0] for t in (first, second)]
    np.testing.assert_array_equal(lra[0], lra[1])
    assert not np.array_equal(brackets[0], brackets[1])
    # though their values differ: 5 and 3
    assert evaluate(first)[0] == 5 and evaluate(second)[0] == 3


def test_encode_refuses_an_unknown_tokenization():
    with pytest.raises(ValueError, match="tokenization.*'brackets'.*'words'"):
        listops.encode([["1"]], 4, "words")


def test_lra_release_layout(tmp_path):
    nested = tmp_path / "listops-1000"
    listops.write_tsv(str(nested / "basic_val.tsv"), [("( ( [SM 3 ) ] )", 3)])
    sources, labels = listops.load(str(tmp_path), "val")
    assert sources == [["[SM", "3", "]"]] and labels.tolist() == [3]


@pytest.mark.parametrize(
    "content, message",
    [
        ("Input\tLabel\n", r"basic_test.tsv:1: expected the header"),
        (
            "Source\tTarget\n( [MAX 1 2 ] )\t2\n[MAX 1 ]\t1\textra\n",
            r"basic_test.tsv:3: expected 2 tab-separated fields .* got 3",
        ),
        ("Source\tTarget\n[MAX 1 2 ]\t12\n", r":2: expected a Target digit"),
        (
            "Source\tTarget\n[AVG 1 2 ]\t1\n",
            r":2: unknown token\(s\) \['\[AVG'",
        ),
    ],
)
def test_malformed_rows_name_file_and_line(tmp_path, content, message):
    (tmp_path / "basic_test.tsv").write_text(content)
    with pytest.raises(DataFormatError, match=message):
        listops.load(str(tmp_path), "test")


def test_missing_files_and_bad_settings(tmp_path):
    with pytest.raises(DataNotFoundError, match="basic_train.tsv.*--generate"):
        listops.load(str(tmp_path), "train")
    with pytest.raises(ValueError, match="Unknown ListOps split 'dev'"):
        listops.load(str(tmp_path), "dev")
    with pytest.raises(ValueError, match="max_args.*got 1"):
        listops.generate({"train": 1}, 0, max_args=1)
    with pytest.raises(ValueError, match="min_length=50 is above"):
        listops.generate({"train": 1}, 0, min_length=50, max_length=10)
    with pytest.raises(ValueError, match="Found only 10 of 11 distinct"):
        # only the ten digits have length 1
        listops.generate({"train": 11}, 0, 1, min_length=1, max_length=1)
