"""Sliding-window (Longformer) attention, banded and dilated.

Glossary (Beltagy et al. 2020, "Longformer: The Long-Document
Transformer"):

    B: batch size
    T: sequence length
    H: number of heads
    K: query and key dimension
    V: value dimension
    w: the window `window`, counted in attended positions (steps of the
       dilation), not in tokens
    d: dilation, the gap between attended positions
    R: the reach of one side of the window in positions: `w // 2`
       (bidirectional) or `w` (causal)
    Td: positions per residue class mod d, `ceil(T / d)`
    L: positions per chunk, `min(R, Td)`; Nc = ceil(Td / L) chunks
    W: keys per query chunk, 3L (previous, own, next chunk), 2L when causal
       (previous, own), L when there is one chunk
    G: number of global keys

Query t attends key s when `(t - s) % d == 0` and

    bidirectional:  |t - s| <= (w // 2) * d
    causal:         0 <= t - s <= w * d

so with `d = 1` a bidirectional query sees `w // 2` tokens on each side
(Hugging Face's `attention_window` is this two-sided `w`) and a causal one
itself and the `w` tokens before it. With `d > 1` the same number of
positions spans `d` times as many tokens (the paper's dilated window, whose
receptive field grows with `d`).

Banded form: positions of equal residue mod d form `d` interleaved
subsequences of length Td; reshaping `(T, H)` into `(Td, d, H)` turns them
into `d * H` undilated heads. Each is cut into Nc chunks of L positions;
chunk n attends the keys of chunks n - 1, n and n + 1 (n - 1 and n when
causal) under an exact static band mask, so the scores are `(B, d, H, Nc, L,
W)`: `O(T * w)` memory, never `(T, T)`. Global keys are scored against every
query, `(B, d, H, Nc, L, G)`, and normalised with the local scores in one
softmax.
"""

import numpy as np
from keras import ops

from kerasseq.ops import checks

# the score of a disallowed key; finite, so that rows without any allowed
# key stay finite (they output zeros)
NEG = -1e9


def sliding_window_attention(
    q,
    k,
    v,
    window,
    causal=False,
    dilation=1,
    key_mask=None,
    global_keys=None,
    global_values=None,
    global_key_mask=None,
    dropout=None,
):
    """Softmax attention over a (dilated) sliding window plus global keys.

    Query `t` attends key `s` when `(t - s) % dilation == 0` and
    `|t - s| <= (window // 2) * dilation` (bidirectional: `window // 2`
    positions on each side, Hugging Face Longformer's two-sided
    `attention_window`) or `0 <= t - s <= window * dilation` (causal: itself
    and `window` positions before), and `key_mask[b, s]` is `True`. Every
    query also attends the valid `global_keys`, in the same softmax. Scores
    are `q . k / sqrt(K)` (queries are not pre-scaled). Rows with no allowed
    key output zeros.

    Computes in float32 whatever the input dtype, in chunks of
    `min(R, ceil(T / dilation))` positions (R = `window // 2`, or `window`
    when causal): `O(T * window)` memory, never `(T, T)`.

    Readable reference: `kerasseq.ops.reference.sliding_window_attention`.

    Args:
        q: queries `(B, T, H, K)`.
        k: keys `(B, T, H, K)`.
        v: values `(B, T, H, V)`.
        window: positive int, the number of positions in the window: two
            sides of `window // 2` (so even) when bidirectional, `window`
            before the query when causal.
        causal: bool. Attend only to the query and positions before it.
        dilation: positive int, the gap between attended positions.
        key_mask: optional bool `(B, T)`, `False` at keys that no query may
            attend locally: padding, and global tokens whose keys are passed
            as `global_keys` (so that they are not counted twice).
        global_keys: optional `(B, G, H, K)`, keys every query attends.
        global_values: `(B, G, H, V)`, required with `global_keys`.
        global_key_mask: optional bool `(B, G)`, `False` at unused global
            slots; all valid when `None`.
        dropout: optional callable applied to the attention probabilities
            (local and global), e.g. a `keras.layers.Dropout` in training.

    Returns:
        `o` of shape `(B, T, H, V)`, in the dtype of `q`.

    Example:

    >>> q = k = keras.random.normal((2, 100, 4, 16))
    >>> v = keras.random.normal((2, 100, 4, 8))
    >>> tuple(sliding_window_attention(q, k, v, window=16).shape)
    (2, 100, 4, 8)

    Reference:
        Beltagy et al., 2020, "Longformer: The Long-Document Transformer",
        https://arxiv.org/abs/2004.05150.
    """
    batch, length, heads, key_dim, value_dim = checks.check_qkv(
        q, k, v, "sliding_window_attention"
    )
    _check_window(window, causal)
    checks.check_int("dilation", dilation)
    if key_mask is not None:
        checks.check_shape("key_mask", key_mask, (batch, length), "(B, T)")
        key_mask = ops.cast(key_mask, "bool")
    if global_keys is not None or global_values is not None:
        global_keys, global_values, global_key_mask = _check_globals(
            global_keys,
            global_values,
            global_key_mask,
            (batch, heads, key_dim, value_dim),
        )
        if global_keys.shape[1] == 0:
            global_keys = None
    dtype = q.dtype
    q = ops.cast(q, "float32") * key_dim**-0.5
    k, v = ops.cast(k, "float32"), ops.cast(v, "float32")

    reach = window if causal else window // 2
    span = -(-length // dilation)
    size = max(1, min(reach, span))
    chunks = -(-span // size)
    if chunks == 1:
        offsets = (0,)
    else:
        offsets = (-1, 0) if causal else (-1, 0, 1)
    padded = chunks * size * dilation

    def split(x):
        # (B, T, H, E) -> (B, d, H, Nc, L, E); (B, T) -> (B, d, Nc, L)
        pad = [[0, 0], [0, padded - length]] + [[0, 0]] * (len(x.shape) - 2)
        x = ops.pad(x, pad)
        x = ops.reshape(x, (-1, chunks, size, dilation, *x.shape[2:]))
        if len(x.shape) == 4:
            return ops.transpose(x, (0, 3, 1, 2))
        return ops.transpose(x, (0, 3, 4, 1, 2, 5))

    def windows(x, axis):
        # the chunks n + offsets side by side: (..., Nc, L, ...) with Nc at
        # `axis` -> (..., Nc, W, ...)
        if offsets == (0,):
            return x
        pad = [[0, 0]] * len(x.shape)
        pad[axis] = [1, 0 if causal else 1]
        x = ops.pad(x, pad)
        lead = (slice(None),) * axis
        parts = [x[lead + (slice(o + 1, o + 1 + chunks),)] for o in offsets]
        return ops.concatenate(parts, axis=axis + 1)

    qs = split(q)  # (B, d, H, Nc, L, K)
    ks = windows(split(k), 3)  # (B, d, H, Nc, W, K)
    vs = windows(split(v), 3)  # (B, d, H, Nc, W, V)
    if key_mask is None:
        valid = np.arange(padded).reshape(chunks, size, dilation) < length
        valid = _numpy_windows(valid.transpose(2, 0, 1), offsets, causal)
        keys_ok = ops.convert_to_tensor(valid)[None, :, None, :, None, :]
    else:
        keys_ok = windows(split(key_mask), 2)  # (B, d, Nc, W)
        keys_ok = keys_ok[:, :, None, :, None, :]
    band = ops.convert_to_tensor(_band(size, offsets, reach, causal))
    allowed = ops.logical_and(band, keys_ok)  # (B, d, 1, Nc, L, W)

    scores = ops.einsum("bdhnck,bdhnwk->bdhncw", qs, ks)
    scores = ops.where(allowed, scores, NEG)
    top = ops.max(scores, axis=-1, keepdims=True)
    if global_keys is not None:
        gk = ops.cast(global_keys, "float32")
        gv = ops.cast(global_values, "float32")
        global_scores = ops.einsum("bdhnck,bghk->bdhncg", qs, gk)
        global_ok = True
        if global_key_mask is not None:
            global_ok = ops.cast(global_key_mask, "bool")
            global_ok = global_ok[:, None, None, None, None, :]
            global_scores = ops.where(global_ok, global_scores, NEG)
        top = ops.maximum(top, ops.max(global_scores, axis=-1, keepdims=True))
    top = ops.stop_gradient(top)
    weights = ops.where(allowed, ops.exp(scores - top), 0.0)
    total = ops.sum(weights, axis=-1, keepdims=True)
    if global_keys is not None:
        global_weights = ops.exp(global_scores - top)
        if global_key_mask is not None:
            global_weights = ops.where(global_ok, global_weights, 0.0)
        total = total + ops.sum(global_weights, axis=-1, keepdims=True)
    # rows with no allowed key: zero weights, zero output, zero gradient
    inverse = 1.0 / ops.where(total > 0, total, 1.0)
    weights = weights * inverse
    if dropout is not None:
        weights = dropout(weights)
    o = ops.einsum("bdhncw,bdhnwv->bdhncv", weights, vs)
    if global_keys is not None:
        global_weights = global_weights * inverse
        if dropout is not None:
            global_weights = dropout(global_weights)
        o = o + ops.einsum("bdhncg,bghv->bdhncv", global_weights, gv)
    # (B, d, H, Nc, L, V) -> (B, Nc, L, d, H, V) -> (B, T, H, V)
    o = ops.transpose(o, (0, 3, 4, 1, 2, 5))
    o = ops.reshape(o, (-1, padded, heads, value_dim))
    return ops.cast(o[:, :length], dtype)


def _band(size, offsets, reach, causal):
    # (L, W): query i of chunk n may attend key j of the chunk n + offset;
    # their distance in positions is i - j' - offset * L
    i = np.arange(size)[:, None]
    j = np.arange(size * len(offsets))[None, :]
    offset = np.asarray(offsets)[j // size]
    delta = i - j % size - offset * size
    if causal:
        return (delta >= 0) & (delta <= reach)
    return np.abs(delta) <= reach


def _numpy_windows(x, offsets, causal):
    # (d, Nc, L) -> (d, Nc, W), as `windows` does for tensors
    if offsets == (0,):
        return x
    chunks = x.shape[1]
    x = np.pad(x, [[0, 0], [1, 0 if causal else 1], [0, 0]])
    return np.concatenate(
        [x[:, o + 1 : o + 1 + chunks] for o in offsets], axis=-1
    )


def _check_window(window, causal):
    checks.check_int("window", window)
    if not causal and window % 2:
        raise ValueError(
            "Received an invalid value for argument `window`, expected an "
            "even integer when causal=False (the two-sided window: "
            f"window // 2 positions on each side), got {window!r}."
        )


def _check_globals(keys, values, mask, dims):
    batch, heads, key_dim, value_dim = dims
    if keys is None or values is None:
        raise ValueError(
            "Received only one of `global_keys` and `global_values`; pass "
            "both or neither."
        )
    checks.check_float("global_keys", keys)
    checks.check_float("global_values", values)
    checks.check_rank("global_keys", keys, 4, "(B, G, H, K)")
    checks.check_rank("global_values", values, 4, "(B, G, H, V)")
    num = keys.shape[1]
    if num is None:
        raise ValueError(
            "Received an invalid shape for argument `global_keys`, expected "
            f"a static number of global keys G, got shape {tuple(keys.shape)}."
        )
    checks.check_shape(
        "global_keys", keys, (batch, num, heads, key_dim), "(B, G, H, K)"
    )
    checks.check_shape(
        "global_values", values, (batch, num, heads, value_dim), "(B, G, H, V)"
    )
    if mask is not None:
        checks.check_shape("global_key_mask", mask, (batch, num), "(B, G)")
    return keys, values, mask
