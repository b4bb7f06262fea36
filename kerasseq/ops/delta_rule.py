"""The delta rule: the fast-weight recurrence of DeltaNet.

Dimension letters as in the glossary of kerasseq/ops/README.md: B batch,
T length, H heads, K key (and query) size (the papers' d_k), V value size
(d_v), L tokens per chunk (chunk mode) or per checkpointed segment
(recurrent mode), Nc = ceil(T / L) chunks. S is the fast-weight state
`(B, H, K, V)`, the transpose of the papers' `(V, K)` S_t; beta the
writing strength `(B, T, H)` (Schlag et al. 2021, "Linear Transformers Are
Secretly Fast Weight Programmers"; Yang et al. 2024, "Parallelizing Linear
Transformers with the Delta Rule over Sequence Length").

The recurrence, for each batch element and head:

    S_t = S_{t-1} + beta_t k_t (v_t - S_{t-1}^T k_t)^T
        = (I - beta_t k_t k_t^T) S_{t-1} + beta_t k_t v_t^T
    o_t = S_t^T (scale * q_t)

Derivations of the chunked (WY / UT) form and of the backward pass are in
README_delta_rule.md beside this file.
"""

from keras import ops

from kerasseq.ops import checks
from kerasseq.ops import dispatch
from kerasseq.ops import modes

# the layers' check of `mode` (DeltaNet); the table is kerasseq.ops.modes
MODES = modes.MODES["delta_rule"]


def delta_rule(
    q,
    k,
    v,
    beta,
    scale=None,
    initial_state=None,
    return_final_state=False,
    mode="auto",
    chunk_size=64,
):
    """The delta rule (DeltaNet) over a whole sequence.

    For each batch element and head, with state `S` of shape `(K, V)`:
    `S_t = S_{t-1} + beta_t k_t (v_t - S_{t-1}^T k_t)^T` and
    `o_t = S_t^T (scale * q_t)`. The op does not normalise `q` or `k`; with
    unit-norm keys, `beta` in `[0, 2]` keeps the state bounded (the
    transition `I - beta k k^T` has eigenvalues in `[-1, 1]`).

    Computes in float32 whatever the input dtype; returns the output in the
    dtype of `q` and the state in float32.

    Readable reference: `kerasseq.ops.reference.delta_rule`.

    Args:
        q: queries, `(B, T, H, K)`.
        k: keys, `(B, T, H, K)`.
        v: values, `(B, T, H, V)`.
        beta: writing strengths, `(B, T, H)`.
        scale: float multiplying `q`; defaults to `K ** -0.5`.
        initial_state: optional state `(B, H, K, V)`; zeros when `None`.
        return_final_state: bool. Also return the state after step `T`.
        mode: `"recurrent"` (a compiled loop over time carrying `S`; the
            forward pass keeps one state whatever `T`, the backward pass
            recomputes from `T / L` stored ones), `"chunk"` (chunkwise
            parallel, the WY / UT form of Yang et al. 2024; keeps the
            `T / L` chunk-start states and `T x L` chunk matrices for the
            backward pass) or `"auto"`: chunk, on every device and length
            (`kerasseq.ops.modes`; measurements in README.md).
        chunk_size: positive int. Tokens per chunk in chunk mode (`T` need
            not be a multiple: the tail is padded with `beta = 0, k = 0`); in
            recurrent mode, about how many steps lie between the states the
            backward pass recomputes from.

    Returns:
        `o` of shape `(B, T, H, V)`, or `(o, final_state)` when
        `return_final_state`.

    Example:

    >>> q = k = keras.random.normal((2, 10, 4, 16))
    >>> v = keras.random.normal((2, 10, 4, 32))
    >>> beta = keras.random.uniform((2, 10, 4))
    >>> o, state = delta_rule(q, k, v, beta, return_final_state=True)
    >>> tuple(o.shape), tuple(state.shape)
    ((2, 10, 4, 32), (2, 4, 16, 32))

    Reference:
        Yang et al., 2024, "Parallelizing Linear Transformers with the Delta
        Rule over Sequence Length", https://arxiv.org/abs/2406.06484.
    """
    modes.check("delta_rule", mode)
    checks.check_chunk_size(chunk_size)
    batch, length, heads, key_dim, value_dim = _check_inputs(
        q, k, v, beta, initial_state
    )
    scale = _check_scale(scale, key_dim)
    mode = modes.resolve("delta_rule", mode, length, chunk_size)

    dtype = q.dtype
    q, k, v, beta = (ops.cast(x, "float32") for x in (q, k, v, beta))
    q = q * scale
    if initial_state is None:
        state = ops.zeros(
            (ops.shape(q)[0], heads, key_dim, value_dim), "float32"
        )
    else:
        state = ops.cast(initial_state, "float32")

    if mode == "recurrent":
        # segments of about chunk_size steps, as little padding as possible
        chunks = -(-length // chunk_size)
        size = -(-length // chunks)
        run = _recurrent_core
    else:
        size = min(chunk_size, length)
        chunks = -(-length // size)
        # same arithmetic; a CPU runs 1.2x faster with a chunk's operands in
        # cache, an accelerator is filled by batching the chunks
        run = _chunk_loop if modes.chunk_layout() == "loop" else _chunk_batched
    xs = [_split(x, chunks, size) for x in (q, k, v, beta)]
    o, state = dispatch.custom_gradient(run, *xs, state)
    o = ops.cast(_merge(o, length), dtype)
    if return_final_state:
        return o, state
    return o


def delta_rule_step(q_t, k_t, v_t, beta_t, state, scale=None):
    """Advances the delta rule by one token, for decoding.

    Args:
        q_t: query `(B, H, K)`.
        k_t: key `(B, H, K)`.
        v_t: value `(B, H, V)`.
        beta_t: writing strength `(B, H)`.
        state: `(B, H, K, V)`, the state after the previous token; `None`
            for zeros, before the first token.
        scale: float multiplying `q_t`; defaults to `K ** -0.5`.

    Returns:
        `(o_t, new_state)`: `o_t` of shape `(B, H, V)` in the dtype of `q_t`
        and the float32 state after this token.
    """
    for name, x in (("q_t", q_t), ("k_t", k_t), ("v_t", v_t)):
        checks.check_float(name, x)
        checks.check_rank(name, x, 3, "(B, H, dim)")
    checks.check_float("beta_t", beta_t)
    batch, heads, key_dim = q_t.shape
    value_dim = v_t.shape[-1]
    checks.check_shape("k_t", k_t, (batch, heads, key_dim), "(B, H, K)")
    checks.check_shape("v_t", v_t, (batch, heads, value_dim), "(B, H, V)")
    checks.check_shape("beta_t", beta_t, (batch, heads), "(B, H)")
    if state is None:
        state = ops.zeros(
            (ops.shape(q_t)[0], heads, key_dim, value_dim), "float32"
        )
    checks.check_float("state", state)
    checks.check_shape(
        "state", state, (batch, heads, key_dim, value_dim), "(B, H, K, V)"
    )
    scale = _check_scale(scale, key_dim)
    dtype = q_t.dtype
    q_t, k_t, v_t, beta_t = (
        ops.cast(x, "float32") for x in (q_t, k_t, v_t, beta_t)
    )
    state, _ = _write(ops.cast(state, "float32"), (k_t, v_t, beta_t))
    o_t = ops.einsum("bhk,bhkv->bhv", q_t * scale, state)
    return ops.cast(o_t, dtype), state


def _check_inputs(q, k, v, beta, initial_state):
    batch, length, heads, key_dim, value_dim = checks.check_qkv(
        q, k, v, "the delta rule"
    )
    checks.check_float("beta", beta)
    checks.check_shape("beta", beta, (batch, length, heads), "(B, T, H)")
    if initial_state is not None:
        checks.check_float("initial_state", initial_state)
        checks.check_shape(
            "initial_state",
            initial_state,
            (batch, heads, key_dim, value_dim),
            "(B, H, K, V)",
        )
    return batch, length, heads, key_dim, value_dim


def _check_scale(scale, key_dim):
    if scale is None:
        return key_dim**-0.5
    if len(getattr(scale, "shape", ())) != 0:
        raise ValueError(
            "Received an invalid value for argument `scale`, expected a float "
            f"(or a scalar tensor), got shape {tuple(scale.shape)}."
        )
    return scale


def _split(x, chunks, size):
    # (B, T, H, ...) -> (Nc, B, H, L, ...), the tail padded with zeros
    pad = chunks * size - x.shape[1]
    if pad:
        x = ops.pad(x, [[0, 0], [0, pad]] + [[0, 0]] * (len(x.shape) - 2))
    x = ops.reshape(x, (-1, chunks, size) + tuple(x.shape[2:]))
    return ops.transpose(x, (1, 0, 3, 2) + tuple(range(4, len(x.shape))))


def _merge(o, length):
    # (Nc, B, H, L, V) -> (B, T, H, V)
    o = ops.transpose(o, (1, 0, 3, 2, 4))
    o = ops.reshape(o, (-1, o.shape[1] * o.shape[2]) + tuple(o.shape[3:]))
    return o[:, :length]


def _time_first(*xs):
    # (B, H, L, ...) -> (L, B, H, ...) for a scan over the tokens
    return tuple(ops.moveaxis(x, 2, 0) for x in xs)


def _time_last(x):
    return ops.moveaxis(x, 0, 2)


def _recurrent_core(q, k, v, beta, state):
    # q, k: (Nc, B, H, L, K); v: (Nc, B, H, L, V); beta: (Nc, B, H, L)

    def segment(s, xs):
        q, k, v, beta = xs
        s_end, r = dispatch.scan(_write, s, _time_first(k, v, beta))
        u = beta[..., None] * _time_last(r)
        return s_end, _readout(q, k, u, s)

    final, o = dispatch.scan(segment, state, (q, k, v, beta))

    def backward(upstream):
        do, dfinal = upstream

        # the states at segment starts, recomputed rather than kept by the
        # forward pass, whose memory then does not grow with T
        def checkpoint(s, xs):
            s_end, _ = dispatch.scan(_write, s, _time_first(*xs))
            return s_end, s

        _, starts = dispatch.scan(checkpoint, state, (k, v, beta))
        ds0, grads = dispatch.scan(
            _segment_backward,
            dfinal,
            (starts, q, k, v, beta, do),
            reverse=True,
        )
        return (*grads, ds0)

    return (o, final), backward


def _write(state, x):
    # one token of the recurrence; r_t = v_t - S_{t-1}^T k_t, u_t = beta_t r_t
    k, v, beta = x
    r = v - ops.einsum("bhk,bhkv->bhv", k, state)
    state = state + k[..., :, None] * (beta[..., None] * r)[..., None, :]
    return state, r


def _causal_mask(size):
    return ops.tril(ops.ones((size, size), "float32"))


def _readout(q, k, u, start):
    # o_t = S_t^T q_t with S_t = S_0 + sum_{i <= t} k_i u_i^T; (B, H, L, .)
    p = _causal_mask(q.shape[2]) * ops.einsum("bhik,bhjk->bhij", q, k)
    return ops.einsum("bhck,bhkv->bhcv", q, start) + ops.einsum(
        "bhij,bhjv->bhiv", p, u
    )


def _segment_backward(ds_end, xs):
    # ds_end: gradient of the loss with respect to the state after the
    # segment; see README_delta_rule.md for the derivation
    start, q, k, v, beta, do = xs
    _, r = dispatch.scan(_write, start, _time_first(k, v, beta))
    r = _time_last(r)
    beta = beta[..., None]
    u = beta * r

    # the readout o = Q S_0 + tril(Q K^T) U
    mask = _causal_mask(q.shape[2])
    p = mask * ops.einsum("bhik,bhjk->bhij", q, k)
    g = mask * ops.einsum("bhiv,bhjv->bhij", do, u)
    dq = ops.einsum("bhcv,bhkv->bhck", do, start) + ops.einsum(
        "bhij,bhjk->bhik", g, k
    )
    dk = ops.einsum("bhij,bhik->bhjk", g, q)
    du = ops.einsum("bhij,bhiv->bhjv", p, do)
    ds_start = ops.einsum("bhck,bhcv->bhkv", q, do)

    # the recurrence backwards: du_t += dS_t^T k_t, dS_{t-1} = dS_t - k_t dv_t^T
    def backward(ds, x):
        k, beta, du = x
        du = du + ops.einsum("bhk,bhkv->bhv", k, ds)
        ds = ds - k[..., :, None] * (beta * du)[..., None, :]
        return ds, du

    ds, du = dispatch.scan(
        backward, ds_end, _time_first(k, beta, du), reverse=True
    )
    du = _time_last(du)
    dv = beta * du
    dbeta = ops.sum(du * r, axis=-1)
    # dk_t += dS_t u_t - S_{t-1} dv_t, both expanded over the segment
    a = ops.einsum("bhiv,bhjv->bhij", u, dv)
    a = ops.triu(a, 1) + ops.tril(ops.swapaxes(a, -1, -2), -1)
    dk = (
        dk
        + ops.einsum("bhkv,bhcv->bhck", ds_end, u)
        - ops.einsum("bhkv,bhcv->bhck", start, dv)
        - ops.einsum("bhij,bhjk->bhik", a, k)
    )
    return ds + ds_start, (dq, dk, dv, dbeta)


# The chunk form, for chunks (..., L, .) with any leading dims: (B, H) for
# one chunk inside a loop, (Nc, B, H) for all chunks at once.


def _chunk_transform(k, beta):
    # diag(beta) K and T = (I + tril(diag(beta) K K^T, -1))^{-1}
    kb = k * beta[..., None]
    a = ops.tril(ops.einsum("...ik,...jk->...ij", kb, k), -1)
    return kb, _tril_inverse(a)


def _chunk_write(t, kb, v, beta, start):
    # U_n = T (diag(beta) V - diag(beta) K S_n): what the tokens write
    r = v * beta[..., None] - ops.einsum("...ck,...kv->...cv", kb, start)
    return ops.einsum("...ij,...jv->...iv", t, r)


def _chunk_output(q, k, start, un):
    # O_n = Q S_n + tril(Q K^T) U_n
    p = ops.tril(ops.einsum("...ik,...jk->...ij", q, k))
    return ops.einsum("...ck,...kv->...cv", q, start) + ops.einsum(
        "...ij,...jv->...iv", p, un
    )


def _chunk_grads(q, k, v, beta, do, start, t, un, lam):
    # gradients of one chunk given lam = dL/dS_{n+1}; returns dL/dS_n too
    # (README_delta_rule.md)
    kb = k * beta[..., None]
    p = ops.tril(ops.einsum("...ik,...jk->...ij", q, k))
    dp = ops.tril(ops.einsum("...iv,...jv->...ij", do, un))
    dun = ops.einsum("...ij,...iv->...jv", p, do) + ops.einsum(
        "...ck,...kv->...cv", k, lam
    )
    y = ops.einsum("...ij,...iv->...jv", t, dun)
    dstart = (
        lam
        + ops.einsum("...ck,...cv->...kv", q, do)
        - ops.einsum("...ck,...cv->...kv", kb, y)
    )
    dq = ops.einsum("...cv,...kv->...ck", do, start) + ops.einsum(
        "...ij,...jk->...ik", dp, k
    )
    da = -ops.tril(ops.einsum("...iv,...jv->...ij", y, un), -1)
    dkb = ops.einsum("...ij,...jk->...ik", da, k) - ops.einsum(
        "...cv,...kv->...ck", y, start
    )
    dk = (
        ops.einsum("...ij,...ik->...jk", dp, q)
        + ops.einsum("...cv,...kv->...ck", un, lam)
        + ops.einsum("...ij,...ik->...jk", da, kb)
        + dkb * beta[..., None]
    )
    dbeta = ops.sum(dkb * k, axis=-1) + ops.sum(y * v, axis=-1)
    return dstart, (dq, dk, y * beta[..., None], dbeta)


def _chunk_loop(q, k, v, beta, state):
    # q, k: (Nc, B, H, L, K); v: (Nc, B, H, L, V); beta: (Nc, B, H, L).
    # All the work of a chunk inside one loop step: its operands stay in
    # cache.
    def step(s, x):
        q, k, v, beta = x
        kb, t = _chunk_transform(k, beta)
        un = _chunk_write(t, kb, v, beta, s)
        o = _chunk_output(q, k, s, un)
        return s + ops.einsum("bhck,bhcv->bhkv", k, un), (o, s, t, un)

    final, (o, starts, t, un) = dispatch.scan(step, state, (q, k, v, beta))

    def backward(upstream):
        do, dfinal = upstream

        def back(lam, x):
            return _chunk_grads(*x, lam)

        xs = (q, k, v, beta, do, starts, t, un)
        dstate, grads = dispatch.scan(back, dfinal, xs, reverse=True)
        return (*grads, dstate)

    return (o, final), backward


def _chunk_batched(q, k, v, beta, state):
    # the same with the state-free work batched over all chunks and only the
    # state recurrence in a loop: the layout for a GPU or TPU
    kb, t = _chunk_transform(k, beta)

    def step(s, x):
        t, kb, v, beta, k = x
        un = _chunk_write(t, kb, v, beta, s)
        return s + ops.einsum("bhck,bhcv->bhkv", k, un), (s, un)

    final, (starts, un) = dispatch.scan(step, state, (t, kb, v, beta, k))
    o = _chunk_output(q, k, starts, un)

    def backward(upstream):
        do, dfinal = upstream
        p = ops.tril(ops.einsum("nbhik,nbhjk->nbhij", q, k))
        dun = ops.einsum("nbhij,nbhiv->nbhjv", p, do)
        dstarts = ops.einsum("nbhck,nbhcv->nbhkv", q, do)

        # lam = dL/dS_{n+1} for every chunk, backwards
        def back(lam, x):
            t, k, kb, dun, dstart = x
            dun = dun + ops.einsum("bhck,bhkv->bhcv", k, lam)
            y = ops.einsum("bhij,bhiv->bhjv", t, dun)
            new = lam + dstart - ops.einsum("bhck,bhcv->bhkv", kb, y)
            return new, lam

        dstate, lam = dispatch.scan(
            back, dfinal, (t, k, kb, dun, dstarts), reverse=True
        )
        _, grads = _chunk_grads(q, k, v, beta, do, starts, t, un, lam)
        return (*grads, dstate)

    return (o, final), backward


_BASE = 16


def _tril_inverse(a):
    # (I + a)^{-1} for strictly lower-triangular a (..., L, L): triangular
    # solves on diagonal blocks of _BASE, then block doubling
    shape = ops.shape(a)
    size = a.shape[-1]
    a = ops.reshape(a, (-1, size, size))
    if size <= _BASE:
        eye = ops.eye(size, dtype="float32")
        t = ops.solve_triangular(
            eye + a, ops.broadcast_to(eye, ops.shape(a)), lower=True
        )
        return ops.reshape(t, shape)
    levels = 0
    while _BASE * 2**levels < size:
        levels += 1
    padded = _BASE * 2**levels
    if padded != size:
        a = ops.pad(a, [[0, 0], [0, padded - size], [0, padded - size]])
    # diagonal blocks (M, P, s, s) and, per level, the lower-left blocks
    blocks = a[:, None]
    lower = []
    half = padded // 2
    while half >= _BASE:
        lower.append(blocks[..., half:, :half])
        blocks = ops.stack(
            [blocks[..., :half, :half], blocks[..., half:, half:]], axis=2
        )
        blocks = ops.reshape(blocks, (-1, blocks.shape[1] * 2, half, half))
        half //= 2
    eye = ops.eye(_BASE, dtype="float32")
    t = ops.solve_triangular(
        eye + blocks, ops.broadcast_to(eye, ops.shape(blocks)), lower=True
    )
    # [[A, 0], [C, D]]^{-1} = [[A^-1, 0], [-D^-1 C A^-1, D^-1]]
    for a21 in reversed(lower):
        half = t.shape[-1]
        t = ops.reshape(t, (-1, t.shape[1] // 2, 2, half, half))
        t11, t22 = t[:, :, 0], t[:, :, 1]
        t21 = -ops.matmul(ops.matmul(t22, a21), t11)
        t = ops.concatenate(
            [
                ops.concatenate([t11, ops.zeros_like(t11)], axis=-1),
                ops.concatenate([t21, t22], axis=-1),
            ],
            axis=-2,
        )
    return ops.reshape(t[:, 0, :size, :size], shape)
