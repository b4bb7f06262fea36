"""BigBird block-sparse attention, with internal global blocks (ITC).

Glossary (Zaheer et al. 2020, "Big Bird: Transformers for Longer
Sequences"):

    B: batch size
    T: sequence length
    H: number of heads
    K: query and key dimension
    V: value dimension
    b: tokens per block (`block_size`); n = ceil(T / b) blocks, the
       sequence padded to n * b tokens inside the op
    g: number of global blocks (`num_global_blocks`): the first
       ceil(g / 2) and the last floor(g / 2) blocks
    r: random key blocks per (head, non-global block row)
       (`num_random_blocks`)
    Nr: number of non-global block rows, n - g (when g <= n)
    Ns: key-block slots of a non-global row: its window and the global
       blocks (padded with masked dummies to the same count in every
       row), then its r random blocks

Which keys a query attends, in each head:

    query in a global block:      every key
    query in another block i:     blocks i - 1, i, i + 1 (those in [0, n)),
                                  every global block, and r random blocks
                                  drawn without replacement from the blocks
                                  outside that window and the global set
                                  (`random_blocks="seeded"`), or r more
                                  copies of block 0
                                  (`random_blocks="first_block"`: what
                                  transformers' BigBird attends in eval mode)

Each key of the window and global set counts once. With "first_block"
the r random slots all gather block 0, so in the softmax of a non-global
row its keys count r more times (1 + r with g >= 1, where block 0 is
global), as transformers' duplicated gathers do. Keys where `key_mask` is
False, and the n * b - T padding keys, are never attended. Scores are
scaled by K ** -0.5 and normalised in float32.

Non-global rows gather their Ns key blocks through a static (H, Nr, Ns) index
table, so their scores are (B, H, Nr, b, Ns * b): memory O(T * Ns * b), never
(T, T). Global rows attend densely: (B, H, g * b, T).
"""

import functools

import numpy as np
from keras import ops

from kerasseq.ops import checks

# the score of a masked key: finite, so that a row with no allowed key
# gets finite (uniform) weights instead of NaN
MASKED_SCORE = -1e9
# how the random key blocks are chosen (see `random_block_plan`)
RANDOM_BLOCKS = ("seeded", "first_block")


def block_sparse_attention(
    q,
    k,
    v,
    block_size,
    num_global_blocks=2,
    num_random_blocks=3,
    seed=0,
    key_mask=None,
    dropout=None,
    random_blocks="seeded",
):
    """BigBird's block-sparse bidirectional attention.

    Splits the sequence into `n = ceil(T / block_size)` blocks. Queries in
    the global blocks (the first `ceil(g / 2)` and the last `floor(g / 2)`
    of them) attend to every key; queries in any other block `i` attend to
    the union of blocks `i - 1, i, i + 1`, the global blocks and
    `num_random_blocks` random blocks drawn for each head and block row by
    `random_block_plan(n, H, g, r, seed)` among the blocks outside that
    window and the global set. The draw is a NumPy computation at trace
    time: the same on every backend and every call. With
    `random_blocks="first_block"` every random block is block 0 instead
    (its keys then count `r` more times in the softmax of those rows),
    which is what transformers' `BigBirdBlockSparseAttention` attends in
    eval mode.

    Computes in float32 whatever the input dtype and returns the dtype of
    `q`. The sequence length must be static; the batch size may be unknown.

    Readable reference: `kerasseq.ops.reference.block_sparse_attention`.

    Args:
        q: queries `(B, T, H, K)`.
        k: keys `(B, T, H, K)`.
        v: values `(B, T, H, V)`.
        block_size: positive int, tokens per block (b).
        num_global_blocks: non-negative int (g). 2 gives BigBird's first and
            last blocks.
        num_random_blocks: non-negative int (r), at most the number of
            blocks outside the window and the global set of every
            non-global row at this length.
        seed: non-negative int, the seed of the random blocks.
        key_mask: optional boolean `(B, T)`, `True` at keys that may be
            attended (real tokens). A query with no allowed key gets
            uniform weights over its candidate keys: finite outputs.
        dropout: optional callable applied to the float32 attention
            weights before they weight the values (e.g. a Keras `Dropout`
            layer in training).
        random_blocks: `"seeded"` (the random blocks drawn from `seed`) or
            `"first_block"` (block 0 in every random slot, as transformers'
            BigBird in eval mode).

    Returns:
        `o` of shape `(B, T, H, V)` in the dtype of `q`.

    Example:

    >>> q = k = v = keras.random.normal((2, 100, 4, 16))
    >>> tuple(block_sparse_attention(q, k, v, block_size=8).shape)
    (2, 100, 4, 16)

    Reference:
        Zaheer et al., 2020, "Big Bird: Transformers for Longer Sequences",
        https://arxiv.org/abs/2007.14062.
    """
    check_block_arguments(
        block_size, num_global_blocks, num_random_blocks, seed
    )
    checks.check_choice("random_blocks", random_blocks, RANDOM_BLOCKS)
    batch, length, heads, key_dim, _ = checks.check_qkv(
        q, k, v, "block_sparse_attention"
    )
    if key_mask is not None:
        checks.check_rank("key_mask", key_mask, 2, "(B, T)")
        checks.check_shape("key_mask", key_mask, (batch, length), "(B, T)")
    num_blocks = -(-length // block_size)
    _check_random_blocks(
        num_blocks,
        num_global_blocks,
        num_random_blocks,
        f"sequence length {length} ({num_blocks} blocks of {block_size})",
    )
    layout = _layout(
        length,
        heads,
        block_size,
        num_global_blocks,
        num_random_blocks,
        seed,
        random_blocks,
    )

    dtype = q.dtype
    q, k, v = (ops.cast(x, "float32") for x in (q, k, v))
    padded = num_blocks * block_size
    keep = None if key_mask is None else ops.cast(key_mask, "int32")
    if padded > length:
        extra = padded - length
        q, k, v = (
            ops.pad(x, [[0, 0], [0, extra], [0, 0], [0, 0]]) for x in (q, k, v)
        )
        if keep is not None:
            keep = ops.pad(keep, [[0, 0], [0, extra]])
    if keep is not None:
        keep = keep > 0  # (B, n * b)
    scale = float(key_dim) ** -0.5

    head = layout.first * block_size
    tail = padded - layout.last * block_size
    global_q = [x for x in (q[:, :head], q[:, tail:]) if x.shape[1]]
    if global_q:
        global_q = ops.concatenate(global_q, axis=1)
        global_o = _global_rows(global_q, k, v, keep, layout, scale, dropout)
    parts = [global_o[:, :head]] if head else []
    if layout.num_rows:
        parts.append(
            _block_rows(q[:, head:tail], k, v, keep, layout, scale, dropout)
        )
    if tail < padded:
        parts.append(global_o[:, head:])
    o = parts[0] if len(parts) == 1 else ops.concatenate(parts, axis=1)
    return ops.cast(o[:, :length], dtype)


def _masked_softmax(scores, allowed, dropout):
    if allowed is not None:
        scores = ops.where(allowed, scores, MASKED_SCORE)
    weights = ops.softmax(scores, axis=-1)
    if dropout is not None:
        weights = ops.cast(dropout(weights), "float32")
    return weights


def _global_rows(q, k, v, keep, layout, scale, dropout):
    # q (B, G, H, K) with G = g * b; k, v (B, n * b, H, .)
    scores = ops.einsum("bqhk,bshk->bhqs", q, k) * scale  # (B, H, G, n * b)
    allowed = None
    if keep is not None:
        allowed = keep[:, None, None, :]  # False at the padding keys too
    elif not layout.positions_valid.all():
        allowed = layout.positions_valid
    weights = _masked_softmax(scores, allowed, dropout)
    return ops.einsum("bhqs,bshv->bqhv", weights, v)


def _block_rows(q, k, v, keep, layout, scale, dropout):
    # q (B, Nr * b, H, K) for the Nr non-global rows; k, v (B, n * b, H, .)
    heads, rows, slots = layout.table.shape
    num_blocks = layout.positions_valid.shape[0] // layout.block_size
    block = layout.block_size

    def by_block(x):
        # (B, m * b, H, X) -> (B, H, m, b, X)
        x = ops.reshape(x, (-1, x.shape[1] // block, block, heads, x.shape[3]))
        return ops.transpose(x, (0, 3, 1, 2, 4))

    def gather(x):
        # (B, n * b, H, X) -> (B, H, Nr, Ns * b, X): the blocks of the table
        size = x.shape[3]
        x = ops.reshape(by_block(x), (-1, heads * num_blocks, block, size))
        x = ops.take(x, layout.head_table.reshape(-1), axis=1)
        return ops.reshape(x, (-1, heads, rows, slots * block, size))

    scores = ops.einsum("bhrqk,bhrsk->bhrqs", by_block(q), gather(k)) * scale
    allowed = layout.slots_valid[None, :, :, None, :]  # (1, H, Nr, 1, Ns * b)
    if keep is not None:
        keep = ops.reshape(keep, (-1, num_blocks, block))
        keep = ops.take(keep, layout.table.reshape(-1), axis=1)
        keep = ops.reshape(keep, (-1, heads, rows, 1, slots * block))
        allowed = ops.logical_and(allowed, keep)
    weights = _masked_softmax(scores, allowed, dropout)  # (B, H, Nr, b, Ns * b)
    o = ops.einsum("bhrqs,bhrsv->bhrqv", weights, gather(v))
    o = ops.transpose(o, (0, 2, 3, 1, 4))  # (B, Nr, b, H, V)
    return ops.reshape(o, (-1, rows * block, heads, o.shape[-1]))


def random_block_plan(
    num_blocks,
    num_heads,
    num_global_blocks,
    num_random_blocks,
    seed,
    random_blocks="seeded",
):
    """The random key blocks of every (head, block row), as used by
    `block_sparse_attention`.

    With `random_blocks="seeded"`, draws, with
    `numpy.random.default_rng(seed)`, head by head and row by row,
    `num_random_blocks` distinct blocks among those outside the row's
    window `{i - 1, i, i + 1}` and the global blocks, sorted. With
    `"first_block"` every random block of every row is block 0 (transformers'
    BigBird in eval mode; `seed` is unused). Global rows, which attend to
    every block, get `-1`.

    Args:
        num_blocks: positive int, n = ceil(T / block_size).
        num_heads: positive int, H.
        num_global_blocks: non-negative int, g.
        num_random_blocks: non-negative int, r.
        seed: non-negative int.
        random_blocks: `"seeded"` or `"first_block"`.

    Returns:
        int32 NumPy array `(num_heads, num_blocks, num_random_blocks)`.
    """
    checks.check_int("num_blocks", num_blocks, 1)
    checks.check_int("num_heads", num_heads, 1)
    checks.check_int("num_global_blocks", num_global_blocks, 0)
    checks.check_int("num_random_blocks", num_random_blocks, 0)
    checks.check_int("seed", seed, 0)
    checks.check_choice("random_blocks", random_blocks, RANDOM_BLOCKS)
    _check_random_blocks(
        num_blocks, num_global_blocks, num_random_blocks, f"{num_blocks} blocks"
    )
    first, last = _global_split(num_blocks, num_global_blocks)
    plan = np.full((num_heads, num_blocks, num_random_blocks), -1, np.int32)
    if random_blocks == "first_block":
        plan[:, first : num_blocks - last] = 0
        return plan
    rng = np.random.default_rng(seed)
    every = np.arange(num_blocks)
    for head in range(num_heads):
        for row in range(first, num_blocks - last):
            fixed = _fixed_blocks(row, num_blocks, first, last)
            candidates = np.setdiff1d(every, fixed)
            drawn = rng.choice(candidates, num_random_blocks, replace=False)
            plan[head, row] = np.sort(drawn)
    return plan


def check_block_arguments(
    block_size, num_global_blocks, num_random_blocks, seed
):
    """Raises `ValueError` unless `block_size` is a positive integer and
    `num_global_blocks`, `num_random_blocks` and `seed` non-negative
    integers."""
    checks.check_int("block_size", block_size, 1)
    checks.check_int("num_global_blocks", num_global_blocks, 0)
    checks.check_int("num_random_blocks", num_random_blocks, 0)
    checks.check_int("seed", seed, 0)


def max_random_blocks(num_blocks, num_global_blocks):
    """The largest `num_random_blocks` that `num_blocks` blocks allow: the
    fewest blocks outside the window and the global set of any non-global
    row (`None` when every block is global)."""
    first, last = _global_split(num_blocks, num_global_blocks)
    counts = [
        num_blocks - len(_fixed_blocks(row, num_blocks, first, last))
        for row in range(first, num_blocks - last)
    ]
    return min(counts) if counts else None


class _Layout:
    """The static index tables and masks of one configuration."""

    def __init__(
        self, length, heads, block_size, num_global, num_random, seed, choice
    ):
        num_blocks = -(-length // block_size)
        first, last = _global_split(num_blocks, num_global)
        rows = range(first, num_blocks - last)
        plan = random_block_plan(
            num_blocks, heads, num_global, num_random, seed, choice
        )
        fixed = [_fixed_blocks(row, num_blocks, first, last) for row in rows]
        width = max((len(f) for f in fixed), default=0)
        slots = width + num_random
        # the window and global blocks, dummies (block 0, masked), random
        # (block 0 repeated, unmasked, with "first_block")
        table = np.zeros((heads, len(rows), slots), np.int32)
        valid = np.zeros((len(rows), slots), bool)
        for j, (row, blocks) in enumerate(zip(rows, fixed, strict=True)):
            table[:, j, : len(blocks)] = blocks
            table[:, j, width:] = plan[:, row]
            valid[j, : len(blocks)] = True
            valid[j, width:] = True
        positions = table[..., None] * block_size + np.arange(block_size)
        slots_valid = valid[None, :, :, None] & (positions < length)
        self.block_size = block_size
        self.first = first
        self.last = last
        self.num_rows = len(rows)
        self.table = table  # (H, Nr, Ns)
        # indices into the (H * n) blocks of all heads
        offsets = np.arange(heads, dtype=np.int32)[:, None, None] * num_blocks
        self.head_table = table + offsets
        self.slots_valid = slots_valid.reshape(
            heads, len(rows), slots * block_size
        )
        self.positions_valid = np.arange(num_blocks * block_size) < length


@functools.lru_cache(maxsize=32)
def _layout(length, heads, block_size, num_global, num_random, seed, choice):
    return _Layout(
        length, heads, block_size, num_global, num_random, seed, choice
    )


def _global_split(num_blocks, num_global_blocks):
    # the number of global blocks at the start and at the end
    first = min(-(-num_global_blocks // 2), num_blocks)
    last = min(num_global_blocks // 2, num_blocks - first)
    return first, last


def _fixed_blocks(row, num_blocks, first, last):
    # the sorted window and global blocks of a non-global row
    window = range(max(row - 1, 0), min(row + 2, num_blocks))
    global_blocks = [*range(first), *range(num_blocks - last, num_blocks)]
    return sorted(set(window) | set(global_blocks))


def _check_random_blocks(num_blocks, num_global, num_random, where):
    largest = max_random_blocks(num_blocks, num_global)
    if largest is not None and num_random > largest:
        raise ValueError(
            "Received an invalid value for argument `num_random_blocks`, "
            f"expected at most {largest} at {where} with "
            f"num_global_blocks={num_global} (some block row has only "
            f"{largest} blocks outside its window and the global blocks), "
            f"got {num_random}."
        )
