import collections
import re

import numpy as np
import pytest
import tensorflow as tf

from kerasseq.data import synthetic

# the settings every generic test runs over
TASK_CASES = [
    ("bit_parity", {}),
    ("controlled_bit_parity", {"num_ones": 2}),
    ("dyck", {}),
    ("dyck", {"num_bracket_types": 3, "max_depth": 2, "error_rate": 1.0}),
    ("mqar", {"num_kv_pairs": 3, "vocab_size": 40}),
    ("mqar", {"num_kv_pairs": 3, "num_keys": 4, "num_values": 5}),
]
LENGTHS = ["9", "9,15", (11, 12), 13]

OPENING = "([{<"
CLOSING = ")]}>"


def case_id(case):
    task, kwargs = case
    return task + "".join(f"-{k}={v}" for k, v in kwargs.items())


def real_length(mask_row):
    return int(np.asarray(mask_row).sum())


# independent reference computations, deliberately not vectorised


def brute_parity(bits):
    labels = []
    for t in range(len(bits)):
        labels.append(sum(int(b) for b in bits[: t + 1]) % 2)
    return labels


def dyck_string(tokens, k):
    chars = []
    for token in tokens:
        token = int(token)
        if 1 <= token <= k:
            chars.append(OPENING[token - 1])
        else:
            chars.append(CLOSING[token - 1 - k])
    return "".join(chars)


def brute_balanced(text):
    pairs = ["()", "[]", "{}", "<>"]
    while True:
        shorter = text
        for pair in pairs:
            shorter = shorter.replace(pair, "")
        if shorter == text:
            return text == ""
        text = shorter


def brute_dyck_labels(tokens, k):
    text = dyck_string(tokens, k)
    return [int(brute_balanced(text[: t + 1])) for t in range(len(text))]


def dyck_prefix_depths(tokens, k):
    """Depth after each step, or None once a close does not match."""
    stack = []
    depths = []
    for token in tokens:
        token = int(token)
        if token <= k:
            stack.append(token)
        elif stack and stack[-1] == token - k:
            stack.pop()
        else:
            return None
        depths.append(len(stack))
    return depths


def brute_mqar(tokens, num_pairs, num_keys):
    """The expected `{step: label}` of the queries of one example."""
    memory = {}
    for i in range(num_pairs):
        key = int(tokens[2 * i])
        value = int(tokens[2 * i + 1])
        memory[key] = value - 2 - num_keys
    length = len(tokens)
    return {
        step: memory[int(tokens[step])]
        for step in range(length - num_pairs, length)
    }


# labels against the references


@pytest.mark.parametrize("seq_len", ["1,9", "17", "8,31"])
@pytest.mark.parametrize(
    "task, kwargs",
    [
        ("bit_parity", {}),
        ("controlled_bit_parity", {"num_ones": 1}),
        ("controlled_bit_parity", {"num_ones": 0}),
    ],
)
def test_parity_labels_match_brute_force(task, kwargs, seq_len):
    data = synthetic.generate(task, 200, seq_len, seed=3, **kwargs)
    for tokens, mask, labels in zip(
        data["token_ids"], data["padding_mask"], data["labels"], strict=True
    ):
        length = real_length(mask)
        bits = tokens[:length] - 1
        assert set(bits.tolist()) <= {0, 1}
        assert labels[:length].tolist() == brute_parity(bits)


@pytest.mark.parametrize("seq_len", ["5,17", "24", "1,3"])
@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"num_bracket_types": 1, "error_rate": 0.3},
        {"num_bracket_types": 4, "max_depth": 7, "open_prob": 0.7},
        {"error_rate": 0.0, "max_depth": 1},
        {"error_rate": 1.0},
    ],
)
def test_dyck_labels_match_brute_force(kwargs, seq_len):
    k = kwargs.get("num_bracket_types", 2)
    data = synthetic.generate("dyck", 200, seq_len, seed=5, **kwargs)
    for tokens, mask, labels in zip(
        data["token_ids"], data["padding_mask"], data["labels"], strict=True
    ):
        length = real_length(mask)
        assert labels[:length].tolist() == brute_dyck_labels(tokens[:length], k)


@pytest.mark.parametrize("seq_len", ["9", "9,20", "13,13"])
@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_kv_pairs": 3},
        {"num_kv_pairs": 3, "num_keys": 3, "num_values": 2},
        {"num_kv_pairs": 3, "num_keys": 2, "num_values": 7, "key_reuse": True},
        {"num_kv_pairs": 2, "vocab_size": 11, "key_reuse": True},
    ],
)
def test_mqar_labels_match_brute_force(kwargs, seq_len):
    spec = synthetic.task_spec("mqar", **kwargs)
    num_pairs = kwargs["num_kv_pairs"]
    num_keys = spec.vocabulary_size - 2 - spec.num_classes
    data = synthetic.generate("mqar", 200, seq_len, seed=7, **kwargs)
    for tokens, mask, labels, weights in zip(
        data["token_ids"],
        data["padding_mask"],
        data["labels"],
        data["sample_weight"],
        strict=True,
    ):
        length = real_length(mask)
        expected = brute_mqar(tokens[:length], num_pairs, num_keys)
        assert sorted(np.flatnonzero(weights).tolist()) == sorted(expected)
        for step, label in expected.items():
            assert labels[step] == label
        assert not labels[weights == 0].any()
        # filler between the context and the queries
        assert (tokens[2 * num_pairs : length - num_pairs] == 1).all()
        # the queries are the context keys, each as often as it occurs
        context_keys = collections.Counter(
            tokens[0 : 2 * num_pairs : 2].tolist()
        )
        queries = collections.Counter(
            tokens[length - num_pairs : length].tolist()
        )
        assert queries == context_keys


# layout shared by all tasks


@pytest.mark.parametrize("seq_len", LENGTHS)
@pytest.mark.parametrize("case", TASK_CASES, ids=case_id)
def test_shapes_dtypes_and_padding(case, seq_len):
    task, kwargs = case
    low, high = synthetic.parse_length_range(seq_len)
    spec = synthetic.task_spec(task, **kwargs)
    data = synthetic.generate(task, 64, seq_len, seed=0, **kwargs)
    assert set(data) == {
        "token_ids",
        "padding_mask",
        "labels",
        "sample_weight",
    }
    dtypes = {
        "token_ids": np.int32,
        "padding_mask": np.bool_,
        "labels": np.int32,
        "sample_weight": np.float32,
    }
    for key, array in data.items():
        assert array.shape == (64, high)
        assert array.dtype == dtypes[key]
    mask = data["padding_mask"]
    lengths = mask.sum(axis=1)
    assert lengths.min() >= low and lengths.max() <= high
    # the mask is a prefix: no real step after a padded one
    assert (np.diff(mask.astype(np.int8), axis=1) <= 0).all()
    assert ((data["token_ids"] == 0) == ~mask).all()
    assert (data["labels"][~mask] == 0).all()
    assert (data["sample_weight"][~mask] == 0).all()
    assert set(np.unique(data["sample_weight"]).tolist()) <= {0.0, 1.0}
    assert data["token_ids"].max() < spec.vocabulary_size
    assert data["labels"].min() >= 0
    assert data["labels"].max() < spec.num_classes
    if task != "mqar":
        assert (data["sample_weight"][mask] == 1).all()


def test_lengths_cover_the_range():
    data = synthetic.generate("bit_parity", 400, "3,6", seed=1)
    lengths = data["padding_mask"].sum(axis=1)
    assert set(lengths.tolist()) == {3, 4, 5, 6}


# determinism


@pytest.mark.parametrize("case", TASK_CASES, ids=case_id)
def test_same_arguments_give_identical_arrays(case):
    task, kwargs = case
    first = synthetic.generate(task, 50, "9,14", 11, "eval", **kwargs)
    second = synthetic.generate(task, 50, "9,14", 11, "eval", **kwargs)
    for key in first:
        np.testing.assert_array_equal(first[key], second[key])


@pytest.mark.parametrize("case", TASK_CASES, ids=case_id)
def test_seed_and_split_change_the_data(case):
    task, kwargs = case
    base = synthetic.generate(task, 50, "9,14", 11, "train", **kwargs)
    other_seed = synthetic.generate(task, 50, "9,14", 12, "train", **kwargs)
    other_split = synthetic.generate(task, 50, "9,14", 11, "eval", **kwargs)
    for other in (other_seed, other_split):
        assert not np.array_equal(base["token_ids"], other["token_ids"])


def test_split_names_are_hashed_stably():
    # crc32 of the split, not python's salted hash: a fixed array
    data = synthetic.generate("bit_parity", 2, 6, seed=0, split="eval")
    again = synthetic.generate("bit_parity", 2, 6, seed=0, split="eval")
    np.testing.assert_array_equal(data["token_ids"], again["token_ids"])
    rng_tokens = [
        synthetic.generate("bit_parity", 2, 6, 0, split)["token_ids"]
        for split in ("a", "b", "c")
    ]
    assert not np.array_equal(rng_tokens[0], rng_tokens[1])
    assert not np.array_equal(rng_tokens[1], rng_tokens[2])


# controlled bit parity


def test_controlled_parity_train_has_exact_count():
    data = synthetic.generate(
        "controlled_bit_parity", 300, "5,20", seed=2, num_ones=5
    )
    ones = (data["token_ids"] == 2).sum(axis=1)
    assert (ones == 5).all()
    # the ones are spread over all positions, not packed at the start
    positions = np.flatnonzero((data["token_ids"] == 2).any(axis=0))
    assert positions.max() >= 15


def test_controlled_parity_eval_counts_vary():
    data = synthetic.generate(
        "controlled_bit_parity", 300, 20, seed=2, split="eval", num_ones=5
    )
    ones = (data["token_ids"] == 2).sum(axis=1)
    assert len(set(ones.tolist())) > 5


def test_controlled_parity_eval_num_ones():
    data = synthetic.generate(
        "controlled_bit_parity",
        100,
        "30,40",
        seed=2,
        split="eval",
        num_ones=5,
        eval_num_ones=12,
    )
    assert ((data["token_ids"] == 2).sum(axis=1) == 12).all()


def test_controlled_parity_rejects_too_many_ones():
    with pytest.raises(ValueError, match=r"`num_ones`.*got 8"):
        synthetic.generate(
            "controlled_bit_parity", 4, "7,20", seed=0, num_ones=8
        )
    with pytest.raises(ValueError, match=r"`eval_num_ones`.*got 9"):
        synthetic.generate(
            "controlled_bit_parity",
            4,
            8,
            seed=0,
            split="eval",
            num_ones=1,
            eval_num_ones=9,
        )
    # num_ones only constrains the train split
    synthetic.generate(
        "controlled_bit_parity", 4, 4, seed=0, split="eval", num_ones=8
    )


def test_controlled_parity_requires_num_ones():
    with pytest.raises(ValueError, match="`num_ones`"):
        synthetic.task_spec("controlled_bit_parity")
    with pytest.raises(ValueError, match=r"`num_ones`.*got -1"):
        synthetic.generate("controlled_bit_parity", 4, 8, 0, num_ones=-1)


# dyck


@pytest.mark.parametrize("max_depth", [1, 3, 6])
def test_dyck_clean_walks_are_valid_and_bounded(max_depth):
    data = synthetic.generate(
        "dyck", 300, "10,31", seed=4, max_depth=max_depth, error_rate=0.0
    )
    lengths = data["padding_mask"].sum(axis=1)
    deepest = 0
    for tokens, length in zip(data["token_ids"], lengths, strict=True):
        depths = dyck_prefix_depths(tokens[:length], 2)
        assert depths is not None
        assert max(depths) <= max_depth
        deepest = max(deepest, max(depths))
    assert deepest == max_depth


def test_dyck_both_labels_occur():
    data = synthetic.generate("dyck", 100, 24, seed=4)
    real = data["labels"][data["padding_mask"]]
    assert 0 < real.mean() < 1


def test_dyck_error_rate_corrupts_exactly_one_position():
    clean = synthetic.generate("dyck", 300, "6,25", seed=8, error_rate=0.0)
    noisy = synthetic.generate("dyck", 300, "6,25", seed=8, error_rate=1.0)
    np.testing.assert_array_equal(clean["padding_mask"], noisy["padding_mask"])
    changed = clean["token_ids"] != noisy["token_ids"]
    assert (changed.sum(axis=1) == 1).all()
    # the replacement is another bracket token
    assert set(noisy["token_ids"][changed].tolist()) <= {1, 2, 3, 4}
    # a corruption usually breaks the prefix somewhere
    broken = [
        dyck_prefix_depths(t[: real_length(m)], 2) is None
        for t, m in zip(noisy["token_ids"], noisy["padding_mask"], strict=True)
    ]
    assert np.mean(broken) > 0.5


def test_dyck_error_rate_is_a_probability_per_sequence():
    clean = synthetic.generate("dyck", 1000, 16, seed=9, error_rate=0.0)
    noisy = synthetic.generate("dyck", 1000, 16, seed=9, error_rate=0.3)
    corrupted = (clean["token_ids"] != noisy["token_ids"]).any(axis=1)
    assert 0.25 < corrupted.mean() < 0.35


def test_dyck_vocabulary():
    spec = synthetic.task_spec("dyck", num_bracket_types=3)
    assert spec == synthetic.TaskSpec(vocabulary_size=7, num_classes=2)
    data = synthetic.generate("dyck", 200, 30, seed=0, num_bracket_types=3)
    assert set(np.unique(data["token_ids"]).tolist()) == set(range(1, 7))


# mqar


def test_mqar_distinct_keys_without_reuse():
    data = synthetic.generate(
        "mqar", 300, 12, seed=1, num_kv_pairs=4, num_keys=5, num_values=3
    )
    keys = data["token_ids"][:, 0:8:2]
    assert all(len(set(row.tolist())) == 4 for row in keys)
    assert (data["sample_weight"].sum(axis=1) == 4).all()


def test_mqar_key_reuse_repeats_keys():
    data = synthetic.generate(
        "mqar",
        300,
        12,
        seed=1,
        num_kv_pairs=4,
        num_keys=3,
        num_values=3,
        key_reuse=True,
    )
    keys = data["token_ids"][:, 0:8:2]
    assert all(len(set(row.tolist())) < 4 for row in keys)
    assert (data["sample_weight"].sum(axis=1) == 4).all()


def test_mqar_zoology_settings():
    kwargs = {"vocab_size": 8192, "num_kv_pairs": 64}
    spec = synthetic.task_spec("mqar", **kwargs)
    assert spec == synthetic.TaskSpec(vocabulary_size=8192, num_classes=4095)
    data = synthetic.generate("mqar", 16, 256, seed=0, **kwargs)
    assert data["token_ids"].shape == (16, 256)
    assert data["token_ids"].max() < 8192
    assert (data["sample_weight"].sum(axis=1) == 64).all()
    for tokens, labels in zip(data["token_ids"], data["labels"], strict=True):
        for step, label in brute_mqar(tokens, 64, 4095).items():
            assert labels[step] == label


def test_mqar_vocabulary_split():
    assert synthetic.task_spec("mqar") == synthetic.TaskSpec(8192, 4095)
    # an odd vocabulary loses one id
    assert synthetic.task_spec("mqar", vocab_size=101) == (
        synthetic.TaskSpec(100, 49)
    )
    assert synthetic.task_spec("mqar", num_keys=10, num_values=6) == (
        synthetic.TaskSpec(18, 6)
    )
    assert synthetic.task_spec("mqar", vocab_size=30, num_keys=10) == (
        synthetic.TaskSpec(30, 18)
    )
    assert synthetic.task_spec("mqar", vocab_size=30, num_values=4) == (
        synthetic.TaskSpec(30, 4)
    )


def test_mqar_rejects_bad_settings():
    with pytest.raises(ValueError, match=r"`seq_len`.*`num_kv_pairs` = 8"):
        synthetic.generate("mqar", 4, "23,40", seed=0, num_kv_pairs=8)
    with pytest.raises(ValueError, match=r"`num_kv_pairs`.*got 9"):
        synthetic.task_spec("mqar", num_kv_pairs=9, num_keys=8, num_values=8)
    # key reuse lifts the limit
    synthetic.task_spec(
        "mqar", num_kv_pairs=9, num_keys=8, num_values=8, key_reuse=True
    )
    with pytest.raises(ValueError, match=r"`vocab_size`.*got 100"):
        synthetic.task_spec("mqar", vocab_size=100, num_keys=10, num_values=10)
    with pytest.raises(ValueError, match=r"`num_keys`.*got 28"):
        synthetic.task_spec("mqar", vocab_size=30, num_keys=28)
    with pytest.raises(ValueError, match=r"`key_reuse`.*got 'yes'"):
        synthetic.task_spec("mqar", key_reuse="yes")
    with pytest.raises(ValueError, match=r"`num_kv_pairs`.*got 0"):
        synthetic.task_spec("mqar", num_kv_pairs=0)


# tf.data


def as_numpy(dataset):
    return [
        tf.nest.map_structure(lambda t: t.numpy(), batch) for batch in dataset
    ]


def test_dataset_element_spec_and_batches():
    dataset = synthetic.make_dataset(
        "mqar", 50, "12,16", batch_size=8, seed=0, num_kv_pairs=2
    )
    x_spec, y_spec, w_spec = dataset.element_spec
    assert x_spec["token_ids"].shape == (8, 16)
    assert x_spec["token_ids"].dtype == tf.int32
    assert x_spec["padding_mask"].shape == (8, 16)
    assert x_spec["padding_mask"].dtype == tf.bool
    assert y_spec.shape == (8, 16) and y_spec.dtype == tf.int32
    assert w_spec.shape == (8, 16) and w_spec.dtype == tf.float32
    # train drops the remainder: 50 // 8 full batches
    batches = as_numpy(dataset)
    assert len(batches) == 6
    assert all(batch[1].shape == (8, 16) for batch in batches)


def test_eval_dataset_keeps_order_and_remainder():
    data = synthetic.generate("dyck", 21, 10, seed=3, split="eval")
    dataset = synthetic.make_dataset(
        "dyck", 21, 10, batch_size=8, seed=3, split="eval"
    )
    assert dataset.element_spec[1].shape.as_list() == [None, 10]
    batches = as_numpy(dataset)
    assert [len(batch[1]) for batch in batches] == [8, 8, 5]
    x = np.concatenate([batch[0]["token_ids"] for batch in batches])
    mask = np.concatenate([batch[0]["padding_mask"] for batch in batches])
    y = np.concatenate([batch[1] for batch in batches])
    w = np.concatenate([batch[2] for batch in batches])
    np.testing.assert_array_equal(x, data["token_ids"])
    np.testing.assert_array_equal(mask, data["padding_mask"])
    np.testing.assert_array_equal(y, data["labels"])
    np.testing.assert_array_equal(w, data["sample_weight"])


def test_dataset_shuffle_is_seeded():
    def first_tokens(seed, epochs=2):
        dataset = synthetic.make_dataset(
            "bit_parity", 64, 12, batch_size=64, seed=seed
        )
        return [as_numpy(dataset)[0][0]["token_ids"] for _ in range(epochs)]

    first = first_tokens(0)
    second = first_tokens(0)
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)
    # a full-size batch holds every example: same rows in a new order
    assert not np.array_equal(first[0], first[1])
    assert sorted(map(tuple, first[0].tolist())) == sorted(
        map(tuple, first[1].tolist())
    )
    data = synthetic.generate("bit_parity", 64, 12, seed=0)
    assert not np.array_equal(first[0], data["token_ids"])


def test_dataset_repeat_and_overrides():
    dataset = synthetic.make_dataset(
        "bit_parity", 10, 6, batch_size=4, seed=0, repeat=True
    )
    batches = as_numpy(dataset.take(7))
    assert len(batches) == 7
    assert all(batch[1].shape == (4, 6) for batch in batches)
    dataset = synthetic.make_dataset(
        "bit_parity",
        10,
        6,
        batch_size=4,
        seed=0,
        shuffle=False,
        drop_remainder=False,
    )
    batches = as_numpy(dataset)
    assert [len(batch[1]) for batch in batches] == [4, 4, 2]
    data = synthetic.generate("bit_parity", 10, 6, seed=0)
    np.testing.assert_array_equal(
        np.concatenate([batch[1] for batch in batches]), data["labels"]
    )


def test_dataset_rejects_bad_batch_size():
    with pytest.raises(ValueError, match=r"`batch_size`.*got 0"):
        synthetic.make_dataset("bit_parity", 10, 6, batch_size=0, seed=0)
    with pytest.raises(ValueError, match=r"`batch_size`.*got 11"):
        synthetic.make_dataset("bit_parity", 10, 6, batch_size=11, seed=0)


# argument checks


@pytest.mark.parametrize(
    "value, expected",
    [
        ("16", (16, 16)),
        ("16,16", (16, 16)),
        ("64,128", (64, 128)),
        (" 3 , 5 ", (3, 5)),
        (7, (7, 7)),
        (np.int64(7), (7, 7)),
        ((2, 9), (2, 9)),
        ([4, 4], (4, 4)),
    ],
)
def test_parse_length_range(value, expected):
    assert synthetic.parse_length_range(value) == expected


@pytest.mark.parametrize(
    "value",
    ["", "a,b", "8,4", "0,3", "1,2,3", "-2", 0, -1, (5, 2), [1], True, 2.5],
)
def test_parse_length_range_rejects(value):
    pattern = r"`train_seq_len`.*got " + re.escape(repr(value))
    with pytest.raises(ValueError, match=pattern):
        synthetic.parse_length_range(value, "train_seq_len")


def test_generate_rejects_bad_lengths():
    with pytest.raises(ValueError, match=r"`seq_len`.*got '8,4'"):
        synthetic.generate("bit_parity", 4, "8,4", seed=0)


def test_unknown_task():
    with pytest.raises(ValueError, match=r"`task`.*'mqar'.*got 'copy'"):
        synthetic.generate("copy", 4, 8, seed=0)
    with pytest.raises(ValueError, match=r"`task`.*got 'copy'"):
        synthetic.task_spec("copy")
    with pytest.raises(ValueError, match=r"`task`.*got 'copy'"):
        synthetic.make_dataset("copy", 4, 8, batch_size=2, seed=0)


@pytest.mark.parametrize(
    "task, kwargs, pattern",
    [
        ("bit_parity", {"num_ones": 2}, r"`num_ones`.*task 'bit_parity'"),
        ("dyck", {"depth": 2}, r"`depth`.*'max_depth'"),
        ("mqar", {"num_pairs": 2}, r"`num_pairs`.*'num_kv_pairs'"),
        (
            "controlled_bit_parity",
            {"num_ones": 1, "ones": 1},
            r"`ones`.*'eval_num_ones', 'num_ones'",
        ),
    ],
)
def test_unknown_task_arguments(task, kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        synthetic.task_spec(task, **kwargs)
    with pytest.raises(ValueError, match=pattern):
        synthetic.generate(task, 4, 30, seed=0, **kwargs)


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"num_bracket_types": 0}, r"`num_bracket_types`.*got 0"),
        ({"max_depth": 0}, r"`max_depth`.*got 0"),
        ({"error_rate": 1.5}, r"`error_rate`.*\[0, 1\].*got 1.5"),
        ({"open_prob": 1.0}, r"`open_prob`.*\(0, 1\).*got 1.0"),
        ({"open_prob": "high"}, r"`open_prob`.*got 'high'"),
    ],
)
def test_dyck_rejects_bad_arguments(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        synthetic.generate("dyck", 4, 8, seed=0, **kwargs)


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"num_examples": 0}, r"`num_examples`.*positive integer.*got 0"),
        ({"num_examples": 2.0}, r"`num_examples`.*got 2.0"),
        ({"seed": -1}, r"`seed`.*non-negative integer.*got -1"),
        ({"split": ""}, r"`split`.*got ''"),
        ({"split": 3}, r"`split`.*got 3"),
    ],
)
def test_generate_rejects_bad_common_arguments(kwargs, pattern):
    args = {"num_examples": 4, "seq_len": 8, "seed": 0, **kwargs}
    with pytest.raises(ValueError, match=pattern):
        synthetic.generate("bit_parity", **args)
