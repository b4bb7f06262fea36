"""Synthetic sequence tasks for comparing RNNs and Transformers.

Every task is a per-step (token classification) problem. An example is a
sequence of token ids with one label and one sample weight per step.
Examples of one call share a static length `T` (the maximum of the
`seq_len` range); each example draws its own length uniformly from the
range and is padded on the right with token 0, label 0, weight 0 and
`padding_mask=False`. Token id 0 is padding in every task.

The tasks:

- `"bit_parity"`: uniform random bits, token 1 for a 0-bit and token 2 for
  a 1-bit. The label at step `t` is the parity of the number of 1-bits in
  positions `0..t`. Weight 1 at every real step. Recurrent models solve it
  at any length; attention has to count.
- `"controlled_bit_parity"`: bit parity where every training sequence has
  exactly `num_ones` 1-bits at uniformly random positions. Other splits
  have uniform bits (`eval_num_ones=None`, the number of ones is not
  controlled, which measures generalisation beyond the training counts) or
  exactly `eval_num_ones` 1-bits.
- `"dyck"`: strings of `num_bracket_types` (k) bracket types. The opening
  bracket of type `i` is token `1 + i`, the closing one `1 + k + i`. A
  random walk opens a random type at depth 0, closes the innermost bracket
  at depth `max_depth`, and otherwise opens with probability `open_prob`
  or closes. With probability `error_rate` one uniformly chosen position is
  then replaced by a different bracket token. The label at step `t` is 1
  iff the prefix `tokens[0..t]` is a complete balanced Dyck-k string. Once
  a prefix is invalid (a closing bracket of the wrong type or at depth 0)
  every later label is 0. Weight 1 at every real step. The clean walk does
  not depend on `error_rate`: the same seed gives the same walks, and
  `error_rate` only decides which of them are corrupted.
- `"mqar"`: multi-query associative recall as in Zoology. A sequence of
  length `T` holds `num_kv_pairs` (N) key-value pairs `k1 v1 ... kN vN`,
  then `T - 3N` filler tokens, then N queries: the keys of the context in
  a random order. The label at a query is the index of the value most
  recently bound to that key; other steps have label 0 and weight 0.
  Token 1 is the filler, keys are `2 .. 2 + num_keys - 1` and values
  follow. By default `vocab_size - 2` is split in halves between keys and
  values, so `vocabulary_size == vocab_size` for an even `vocab_size` and
  `vocab_size - 1` for an odd one. Keys of one sequence are distinct
  unless `key_reuse=True`, in which case a key may be bound several times
  (the last binding wins) and is queried as often as it occurs.

Generation is deterministic: the numpy generator is seeded from the seed,
a CRC-32 of the split name and a CRC-32 of the task name, so each split is
independent data and equal arguments give bit-identical arrays on every
run and machine. The generators of the tasks are in
`kerasseq.data.synthetic_tasks`.
"""

import dataclasses
import numbers
import zlib

import numpy as np
import tensorflow as tf

from kerasseq import catalogue
from kerasseq.data.synthetic_tasks import PAD
from kerasseq.data.synthetic_tasks import controlled_num_ones
from kerasseq.data.synthetic_tasks import generate_dyck
from kerasseq.data.synthetic_tasks import generate_mqar
from kerasseq.data.synthetic_tasks import generate_parity

TASKS = catalogue.SYNTHETIC_TASKS

# marks a task argument without a default
_REQUIRED = object()

# per task: argument name -> default
_TASK_ARGS = {
    "bit_parity": {},
    "controlled_bit_parity": {
        "num_ones": _REQUIRED,
        "eval_num_ones": None,
    },
    "dyck": {
        "num_bracket_types": 2,
        "max_depth": 4,
        "error_rate": 0.5,
        "open_prob": 0.5,
    },
    "mqar": {
        "num_kv_pairs": 8,
        "vocab_size": 8192,
        "num_keys": None,
        "num_values": None,
        "key_reuse": False,
    },
}


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """The vocabulary and label space of a synthetic task.

    Attributes:
        vocabulary_size: int. Token ids lie in `[0, vocabulary_size)`;
            0 is padding.
        num_classes: int. Labels lie in `[0, num_classes)`.
    """

    vocabulary_size: int
    num_classes: int


def _invalid(name, value, expected):
    return ValueError(
        f"Received an invalid value for argument `{name}`, expected "
        f"{expected}, got {value!r}."
    )


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(
        value, (bool, np.bool_)
    )


def _check_int(name, value, minimum=1):
    """Returns `value` as an int; raises unless it is an int >= minimum."""
    if minimum == 1:
        expected = "a positive integer"
    elif minimum == 0:
        expected = "a non-negative integer"
    else:
        expected = f"an integer >= {minimum}"
    if not _is_int(value) or value < minimum:
        raise _invalid(name, value, expected)
    return int(value)


def _check_float(name, value, low, high, closed):
    """Returns `value` as a float in `[low, high]` or `(low, high)`."""
    if closed:
        expected = f"a float in [{low}, {high}]"
    else:
        expected = f"a float in ({low}, {high})"
    if isinstance(value, (bool, np.bool_)) or not isinstance(
        value, numbers.Real
    ):
        raise _invalid(name, value, expected)
    inside = low <= value <= high if closed else low < value < high
    if not inside:
        raise _invalid(name, value, expected)
    return float(value)


def _check_task(task):
    if not isinstance(task, str) or task not in TASKS:
        raise _invalid("task", task, f"one of {list(TASKS)}")


def parse_length_range(value, name="seq_len"):
    """Parses a sequence length range.

    Args:
        value: one length (`16` or `"16"`), a range as text (`"64,128"`)
            or a `(min, max)` tuple or list of ints.
        name: str, the argument name used in error messages.

    Returns:
        A tuple `(min, max)` of positive ints with `min <= max`.
    """
    expected = (
        "a positive length or a range `min,max` of positive lengths with "
        "min <= max"
    )
    if _is_int(value):
        bounds = [value, value]
    elif isinstance(value, str):
        parts = [part.strip() for part in value.split(",")]
        if len(parts) == 1:
            parts = parts * 2
        if len(parts) != 2:
            raise _invalid(name, value, expected)
        try:
            bounds = [int(part) for part in parts]
        except ValueError:
            raise _invalid(name, value, expected) from None
    elif isinstance(value, (tuple, list)) and len(value) == 2:
        bounds = list(value)
    else:
        raise _invalid(name, value, expected)
    if not all(_is_int(bound) and bound > 0 for bound in bounds):
        raise _invalid(name, value, expected)
    low, high = (int(bound) for bound in bounds)
    if low > high:
        raise _invalid(name, value, expected)
    return low, high


def _resolve_args(task, task_kwargs):
    """Fills in defaults and validates the arguments of `task`.

    Returns:
        A tuple `(args, spec)`: the full argument dict and the `TaskSpec`.
    """
    _check_task(task)
    allowed = _TASK_ARGS[task]
    for name in task_kwargs:
        if name not in allowed:
            raise ValueError(
                f"Received an unknown argument `{name}` for task {task!r}; "
                f"the allowed arguments are {sorted(allowed)}."
            )
    # `None` stands for the default of an argument
    args = {}
    for name, default in allowed.items():
        value = task_kwargs.get(name)
        args[name] = default if value is None else value
        if args[name] is _REQUIRED:
            raise ValueError(
                f"Missing the required argument `{name}` of task {task!r}."
            )
    if task == "bit_parity":
        return args, TaskSpec(vocabulary_size=3, num_classes=2)
    if task == "controlled_bit_parity":
        args["num_ones"] = _check_int("num_ones", args["num_ones"], 0)
        if args["eval_num_ones"] is not None:
            args["eval_num_ones"] = _check_int(
                "eval_num_ones", args["eval_num_ones"], 0
            )
        return args, TaskSpec(vocabulary_size=3, num_classes=2)
    if task == "dyck":
        k = _check_int("num_bracket_types", args["num_bracket_types"])
        args["num_bracket_types"] = k
        args["max_depth"] = _check_int("max_depth", args["max_depth"])
        args["error_rate"] = _check_float(
            "error_rate", args["error_rate"], 0, 1, closed=True
        )
        args["open_prob"] = _check_float(
            "open_prob", args["open_prob"], 0, 1, closed=False
        )
        return args, TaskSpec(vocabulary_size=2 * k + 1, num_classes=2)
    return _resolve_mqar_args(args, explicit=task_kwargs)


def _resolve_mqar_args(args, explicit):
    """Validates the mqar arguments and derives the key/value split."""
    num_kv_pairs = _check_int("num_kv_pairs", args["num_kv_pairs"])
    vocab_size = _check_int("vocab_size", args["vocab_size"], 4)
    key_reuse = args["key_reuse"]
    if not isinstance(key_reuse, (bool, np.bool_)):
        raise _invalid("key_reuse", key_reuse, "a bool")
    num_keys, num_values = args["num_keys"], args["num_values"]
    if num_keys is not None:
        num_keys = _check_int("num_keys", num_keys)
    if num_values is not None:
        num_values = _check_int("num_values", num_values)
    if num_keys is None and num_values is None:
        # zoology's split: keys take the first half, values the second
        num_keys = num_values = (vocab_size - 2) // 2
    elif num_keys is None or num_values is None:
        given_name = "num_keys" if num_values is None else "num_values"
        given = num_keys if num_values is None else num_values
        rest = vocab_size - 2 - given
        if rest < 1:
            raise _invalid(
                given_name,
                given,
                f"at most `vocab_size - 3` = {vocab_size - 3} so that "
                f"`vocab_size` = {vocab_size} leaves room for the other "
                "half of the vocabulary",
            )
        if num_keys is None:
            num_keys = rest
        else:
            num_values = rest
    elif explicit.get("vocab_size") is not None and (
        vocab_size != 2 + num_keys + num_values
    ):
        raise _invalid(
            "vocab_size",
            vocab_size,
            f"`2 + num_keys + num_values` = {2 + num_keys + num_values} "
            "when `num_keys` and `num_values` are both given (or leave "
            "`vocab_size` out)",
        )
    if not key_reuse and num_kv_pairs > num_keys:
        raise _invalid(
            "num_kv_pairs",
            num_kv_pairs,
            f"at most `num_keys` = {num_keys} distinct keys per sequence "
            "(or `key_reuse=True`)",
        )
    args.update(
        num_kv_pairs=num_kv_pairs,
        vocab_size=vocab_size,
        num_keys=num_keys,
        num_values=num_values,
        key_reuse=bool(key_reuse),
    )
    spec = TaskSpec(
        vocabulary_size=2 + num_keys + num_values, num_classes=num_values
    )
    return args, spec


def task_spec(task, **task_kwargs):
    """Returns the vocabulary size and number of classes of a task.

    Args:
        task: str, one of `TASKS`.
        **task_kwargs: the task's own arguments, as for `generate`.

    Returns:
        A `TaskSpec`.
    """
    _, spec = _resolve_args(task, task_kwargs)
    return spec


def _seed_entropy(task, seed, split):
    return [
        seed,
        zlib.crc32(split.encode("utf-8")),
        zlib.crc32(task.encode("utf-8")),
    ]


def _check_common(num_examples, seed, split):
    num_examples = _check_int("num_examples", num_examples)
    seed = _check_int("seed", seed, 0)
    if not isinstance(split, str) or not split:
        raise _invalid("split", split, "a non-empty string")
    return num_examples, seed


def _check_lengths(task, args, split, seq_len, min_len):
    """Raises if the shortest length of `seq_len` is too short for `task`."""
    if task == "controlled_bit_parity":
        name, num_ones = controlled_num_ones(split, args)
        if num_ones is not None and num_ones > min_len:
            raise ValueError(
                f"Received an invalid value for argument `{name}`, expected "
                f"at most the minimum length {min_len} of `seq_len` = "
                f"{seq_len!r} (split {split!r}), got {num_ones!r}."
            )
    if task == "mqar" and min_len < 3 * args["num_kv_pairs"]:
        num_pairs = args["num_kv_pairs"]
        raise ValueError(
            f"Received an invalid value for argument `seq_len`, expected a "
            f"minimum length of at least `3 * num_kv_pairs` = "
            f"{3 * num_pairs} for `num_kv_pairs` = {num_pairs}, got "
            f"{seq_len!r}."
        )


def generate(task, num_examples, seq_len, seed, split="train", **task_kwargs):
    """Generates examples of a synthetic task as numpy arrays.

    Args:
        task: str, one of `TASKS`.
        num_examples: int, the number of sequences.
        seq_len: the length range, anything `parse_length_range` accepts.
            Each example's length is drawn uniformly from `[min, max]`.
        seed: non-negative int.
        split: str, e.g. `"train"`. Each split is independent data;
            `"train"` also selects the training setting of
            `controlled_bit_parity`.
        **task_kwargs: the task's own arguments (see the module
            docstring).

    Returns:
        A dict of arrays of shape `(num_examples, max)`: `"token_ids"`
        (int32), `"padding_mask"` (bool, True at real steps), `"labels"`
        (int32) and `"sample_weight"` (float32).
    """
    args, _ = _resolve_args(task, task_kwargs)
    num_examples, seed = _check_common(num_examples, seed, split)
    low, high = parse_length_range(seq_len)
    _check_lengths(task, args, split, seq_len, low)
    rng = np.random.default_rng(_seed_entropy(task, seed, split))
    lengths = rng.integers(low, high + 1, size=num_examples)
    if task in ("bit_parity", "controlled_bit_parity"):
        controlled = task == "controlled_bit_parity"
        tokens, labels, weights = generate_parity(
            rng, lengths, high, split, args, controlled
        )
    elif task == "dyck":
        tokens, labels, weights = generate_dyck(rng, lengths, high, split, args)
    else:
        tokens, labels, weights = generate_mqar(rng, lengths, high, split, args)
    padding_mask = np.arange(high)[None] < lengths[:, None]
    if weights is None:
        weights = padding_mask.astype(np.float32)
    return {
        "token_ids": np.where(padding_mask, tokens, PAD).astype(np.int32),
        "padding_mask": padding_mask,
        "labels": np.where(padding_mask, labels, 0).astype(np.int32),
        "sample_weight": np.where(padding_mask, weights, 0).astype(np.float32),
    }


def make_dataset(
    task,
    num_examples,
    seq_len,
    batch_size,
    seed,
    split="train",
    shuffle=None,
    repeat=False,
    drop_remainder=None,
    **task_kwargs,
):
    """Generates a synthetic task as a batched `tf.data.Dataset`.

    The data is `generate(task, num_examples, seq_len, seed, split,
    **task_kwargs)`. The shuffle is seeded from the same arguments and
    reshuffles every pass, in the same order on every run with the same
    seed (and the same TensorFlow global seed, which
    `keras.utils.set_random_seed` fixes too).

    Args:
        task: str, one of `TASKS`.
        num_examples: int, the number of distinct sequences.
        seq_len: the length range, anything `parse_length_range` accepts.
        batch_size: int.
        seed: non-negative int.
        split: str, e.g. `"train"` or `"eval"`.
        shuffle: bool. Defaults to `split == "train"`.
        repeat: bool, whether to repeat the data forever.
        drop_remainder: bool, whether to drop a last partial batch, which
            gives batches a static size. Defaults to `split == "train"`.
        **task_kwargs: the task's own arguments.

    Returns:
        A `tf.data.Dataset` of `(x, y, sample_weight)` tuples as
        `model.fit` takes them: `x` is a dict with `"token_ids"` (int32)
        and `"padding_mask"` (bool) of shape `(batch_size, max)`, `y` the
        int32 labels and `sample_weight` float32, both of the same shape.
    """
    batch_size = _check_int("batch_size", batch_size)
    if shuffle is None:
        shuffle = split == "train"
    if drop_remainder is None:
        drop_remainder = split == "train"
    arrays = generate(task, num_examples, seq_len, seed, split, **task_kwargs)
    if drop_remainder and not repeat and batch_size > num_examples:
        raise ValueError(
            f"Received an invalid value for argument `batch_size`, expected "
            f"at most `num_examples` = {num_examples} when "
            f"`drop_remainder=True` (otherwise no batch is left), got "
            f"{batch_size!r}."
        )
    # eager tensors are captured by reference, not embedded in the graph
    tensors = {key: tf.convert_to_tensor(a) for key, a in arrays.items()}

    def gather(indices):
        x = {
            "token_ids": tf.gather(tensors["token_ids"], indices),
            "padding_mask": tf.gather(tensors["padding_mask"], indices),
        }
        y = tf.gather(tensors["labels"], indices)
        sample_weight = tf.gather(tensors["sample_weight"], indices)
        return x, y, sample_weight

    dataset = tf.data.Dataset.range(num_examples)
    if shuffle:
        entropy = _seed_entropy(task, seed, split) + [1]
        shuffle_seed = int(np.random.SeedSequence(entropy).generate_state(1)[0])
        dataset = dataset.shuffle(
            num_examples, seed=shuffle_seed, reshuffle_each_iteration=True
        )
    if repeat:
        dataset = dataset.repeat()
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    dataset = dataset.map(gather, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)
