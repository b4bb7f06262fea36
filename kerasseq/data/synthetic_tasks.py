"""The generators of the synthetic tasks (`kerasseq.data.synthetic` describes
the tasks and validates their arguments): each draws the tokens, labels and
weights of a batch of examples of given lengths from a numpy generator.

Each `generate_*` takes `(rng, lengths, seq_len, split, args)` and returns
`(tokens, labels, weights)`, arrays `(n, seq_len)`; `weights` is `None`
where every real step counts. Steps past an example's length are masked
by the caller.
"""

import numpy as np

PAD = 0
FILLER = 1
# rows per chunk when mqar compares every key with every other key
MQAR_CHUNK = 1024


def controlled_num_ones(split, args):
    """The argument that sets the number of ones of `split`, and its value."""
    if split == "train":
        return "num_ones", args["num_ones"]
    return "eval_num_ones", args["eval_num_ones"]


def _parity_bits(rng, lengths, seq_len, num_ones):
    """Random bits `(n, seq_len)`, with exactly `num_ones` ones if given."""
    n = len(lengths)
    if num_ones is None:
        return rng.integers(0, 2, size=(n, seq_len), dtype=np.int32)
    # rank random keys within each row; padded steps rank last
    keys = rng.random((n, seq_len))
    keys[np.arange(seq_len)[None] >= lengths[:, None]] = 2.0
    ranks = np.argsort(np.argsort(keys, axis=1), axis=1)
    return (ranks < num_ones).astype(np.int32)


def _parity_labels(bits):
    return np.cumsum(bits, axis=1, dtype=np.int64) % 2


def generate_parity(rng, lengths, seq_len, split, args, controlled):
    """Bit parity; with `controlled`, the split's number of ones."""
    num_ones = None
    if controlled:
        num_ones = controlled_num_ones(split, args)[1]
    bits = _parity_bits(rng, lengths, seq_len, num_ones)
    return bits + 1, _parity_labels(bits), None


def _dyck_walk(rng, num_examples, seq_len, k, max_depth, open_prob):
    """Random Dyck-k walks `(n, seq_len)` that never exceed `max_depth`."""
    coins = rng.random((num_examples, seq_len))
    types = rng.integers(0, k, size=(num_examples, seq_len))
    rows = np.arange(num_examples)
    stack = np.zeros((num_examples, max_depth), dtype=np.int64)
    depth = np.zeros(num_examples, dtype=np.int64)
    tokens = np.zeros((num_examples, seq_len), dtype=np.int64)
    for t in range(seq_len):
        opens = (depth == 0) | ((depth < max_depth) & (coins[:, t] < open_prob))
        innermost = stack[rows, np.maximum(depth - 1, 0)]
        tokens[:, t] = np.where(opens, 1 + types[:, t], 1 + k + innermost)
        stack[rows[opens], depth[opens]] = types[opens, t]
        depth += np.where(opens, 1, -1)
    return tokens


def _dyck_labels(tokens, k):
    """1 where the prefix up to a step is a complete balanced string."""
    num_examples, seq_len = tokens.shape
    rows = np.arange(num_examples)
    # a prefix of length t + 1 is at most t + 1 deep
    stack = np.zeros((num_examples, seq_len), dtype=np.int64)
    depth = np.zeros(num_examples, dtype=np.int64)
    valid = np.ones(num_examples, dtype=bool)
    labels = np.zeros((num_examples, seq_len), dtype=np.int64)
    for t in range(seq_len):
        token = tokens[:, t]
        is_open = (token >= 1) & (token <= k)
        is_close = (token > k) & (token <= 2 * k)
        innermost = stack[rows, np.maximum(depth - 1, 0)]
        matches = (depth > 0) & (innermost == token - 1 - k)
        valid &= ~(is_close & ~matches)
        push = valid & is_open
        pop = valid & is_close
        stack[rows[push], depth[push]] = token[push] - 1
        depth += push.astype(np.int64) - pop.astype(np.int64)
        labels[:, t] = valid & (depth == 0) & (token != PAD)
    return labels


def generate_dyck(rng, lengths, seq_len, split, args):
    """Dyck-k walks, one in `error_rate` corrupted at one position."""
    del split
    k = args["num_bracket_types"]
    n = len(lengths)
    tokens = _dyck_walk(
        rng, n, seq_len, k, args["max_depth"], args["open_prob"]
    )
    # corruption draws come last so that the walks ignore `error_rate`
    corrupt = rng.random(n) < args["error_rate"]
    positions = rng.integers(0, lengths)
    # one of the 2k - 1 bracket tokens other than the current one
    offsets = rng.integers(0, 2 * k - 1, size=n)
    rows = np.flatnonzero(corrupt)
    current = tokens[rows, positions[rows]]
    replacement = 1 + offsets[rows]
    replacement += replacement >= current
    tokens[rows, positions[rows]] = replacement
    # padded steps must not count when labelling
    tokens[np.arange(seq_len)[None] >= lengths[:, None]] = PAD
    return tokens, _dyck_labels(tokens, k), None


def _distinct_keys(rng, num_examples, num_kv_pairs, num_keys):
    keys = np.empty((num_examples, num_kv_pairs), dtype=np.int64)
    for i in range(num_examples):
        keys[i] = rng.choice(num_keys, size=num_kv_pairs, replace=False)
    return keys


def _last_bound_values(keys, values):
    """Per context pair, the value bound last to its key."""
    num_pairs = keys.shape[1]
    out = np.empty_like(values)
    positions = np.arange(num_pairs)
    for start in range(0, len(keys), MQAR_CHUNK):
        chunk = keys[start : start + MQAR_CHUNK]
        same = chunk[:, :, None] == chunk[:, None, :]
        last = np.where(same, positions, -1).max(axis=-1)
        out[start : start + MQAR_CHUNK] = np.take_along_axis(
            values[start : start + MQAR_CHUNK], last, axis=1
        )
    return out


def generate_mqar(rng, lengths, seq_len, split, args):
    """Key-value pairs, filler, then the keys queried in a random order."""
    del split
    num_pairs = args["num_kv_pairs"]
    num_keys = args["num_keys"]
    n = len(lengths)
    if args["key_reuse"]:
        keys = rng.integers(0, num_keys, size=(n, num_pairs))
    else:
        keys = _distinct_keys(rng, n, num_pairs, num_keys)
    values = rng.integers(0, args["num_values"], size=(n, num_pairs))
    order = rng.permuted(np.tile(np.arange(num_pairs), (n, 1)), axis=1)
    answers = values
    if args["key_reuse"]:
        answers = _last_bound_values(keys, values)

    tokens = np.full((n, seq_len), FILLER, dtype=np.int64)
    tokens[:, 0 : 2 * num_pairs : 2] = 2 + keys
    tokens[:, 1 : 2 * num_pairs : 2] = 2 + num_keys + values
    labels = np.zeros((n, seq_len), dtype=np.int64)
    weights = np.zeros((n, seq_len), dtype=np.float32)
    # queries fill the last num_pairs real steps of each example
    rows = np.arange(n)[:, None]
    query_steps = lengths[:, None] - num_pairs + np.arange(num_pairs)
    tokens[rows, query_steps] = 2 + np.take_along_axis(keys, order, axis=1)
    labels[rows, query_steps] = np.take_along_axis(answers, order, axis=1)
    weights[rows, query_steps] = 1.0
    return tokens, labels, weights
