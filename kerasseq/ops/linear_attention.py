"""Linear attention and its feature maps (incl. FAVOR+).

Dimension letters as in the glossary of kerasseq/ops/README.md: B batch,
T length, H heads, K size of the mapped queries and keys (phi(x) in
Katharopoulos et al. 2020; M, the number of random features, for FAVOR+,
Choromanski et al. 2021), V value size, D head size of the raw queries and
keys before the feature map, L tokens per chunk (chunk mode), Nc =
ceil(T / L) chunks. S is the state sum_i phi(k_i) v_i^T `(B, H, K, V)`, z
the normaliser sum_i phi(k_i) `(B, H, K)`.

Causal linear attention, for each batch element and head:

    S_t = S_{t-1} + k_t v_t^T,   z_t = z_{t-1} + k_t
    o_t = S_t^T q_t / (q_t . z_t + EPS)     (normalize=True)
    o_t = S_t^T q_t                         (normalize=False)

Bidirectional attention uses S and z summed over the whole sequence for
every position.

The recurrent mode has a hand-written backward pass of two loops, with no
stored states: dq_t = S_t dnum_t + z_t dden_t runs forwards like the
attention itself, and with G_t = dS_T + sum_{i >= t} q_i dnum_i^T (and g_t
likewise) dk_t = G_t v_t + g_t, dv_t = G_t^T k_t run backwards. The chunk
and parallel modes have no loop and use autodiff.
"""

import math

import keras
from keras import ops

from kerasseq.ops import checks
from kerasseq.ops import dispatch
from kerasseq.ops import modes

# added to the denominator q_t . z_t of normalised attention
EPS = 1e-6

KEY_STABILIZERS = ("sequence", "projection")

# with key_stabilizer="projection", the largest possible key feature is
# exp(this) / sqrt(M): sums over a million tokens stay far from float32's
# overflow, and typical features (exp(-c) for head sizes up to 128) far
# from its underflow
PROJECTION_STABILIZER_HEADROOM = 30.0


def linear_attention(
    q,
    k,
    v,
    causal=True,
    normalize=True,
    initial_state=None,
    return_final_state=False,
    mode="auto",
    chunk_size=64,
):
    """Linear attention over already feature-mapped queries and keys.

    Causal: `S_t = S_{t-1} + k_t v_t^T`, `z_t = z_{t-1} + k_t`,
    `o_t = S_t^T q_t / (q_t . z_t + EPS)` with `EPS = 1e-6` (without the
    division when `normalize=False`). Bidirectional (`causal=False`): every
    position reads the sums over the whole sequence (plus the initial state):
    `o_t = S^T q_t / (q_t . z + EPS)`.

    With `normalize=True` the features must make the denominator positive:
    non-negative `q` and `k` such as `elu_plus_one`, `relu` or
    `favor_plus` features. Computes in float32 whatever the input dtype;
    returns the output in the dtype of `q` and the state in float32.

    Readable reference: `kerasseq.ops.reference.linear_attention`.

    Args:
        q: mapped queries `(B, T, H, K)`.
        k: mapped keys `(B, T, H, K)`.
        v: values `(B, T, H, V)`.
        causal: bool. Position t attends to positions `<= t` only.
        normalize: bool. Divide by `q_t . z_t + EPS`.
        initial_state: optional tuple `(S, z)` of shapes `(B, H, K, V)` and
            `(B, H, K)`; zeros when `None`.
        return_final_state: bool. Also return `(S, z)` after step `T`.
        mode: `"recurrent"` (a compiled loop over time carrying `(S, z)`;
            memory independent of `T` besides the inputs and outputs),
            `"chunk"` (masked attention inside chunks of `chunk_size` tokens,
            states carried across chunks; `O(T / L * K * V)` memory),
            `"parallel"` (the masked quadratic form, `O(B * H * T^2)` memory)
            or `"auto"`: parallel up to `chunk_size` tokens, chunk beyond,
            on every device (`kerasseq.ops.modes`; measurements in
            README.md). Bidirectional attention has one form, used by
            every mode.
        chunk_size: positive int, tokens per chunk in chunk mode.

    Returns:
        `o` of shape `(B, T, H, V)`, or `(o, (S, z))` when
        `return_final_state`.

    Example:

    >>> x = keras.random.normal((2, 10, 4, 16))
    >>> q = k = elu_plus_one(x)
    >>> v = keras.random.normal((2, 10, 4, 32))
    >>> tuple(linear_attention(q, k, v).shape)
    (2, 10, 4, 32)

    Reference:
        Katharopoulos et al., 2020, "Transformers are RNNs: Fast
        Autoregressive Transformers with Linear Attention",
        https://arxiv.org/abs/2006.16236.
    """
    modes.check("linear_attention", mode)
    checks.check_chunk_size(chunk_size)
    _, length, heads, key_dim, value_dim = _check_inputs(q, k, v, initial_state)
    dtype = q.dtype
    q, k, v = (ops.cast(x, "float32") for x in (q, k, v))
    if initial_state is None:
        batch = ops.shape(q)[0]
        s0 = ops.zeros((batch, heads, key_dim, value_dim), "float32")
        z0 = ops.zeros((batch, heads, key_dim), "float32")
    else:
        s0, z0 = (ops.cast(x, "float32") for x in initial_state)

    mode = modes.resolve("linear_attention", mode, length, chunk_size)
    if not causal:
        o, state = _bidirectional(q, k, v, s0, z0, normalize)
    elif mode == "recurrent":
        o, state = _recurrent(q, k, v, s0, z0, normalize)
    elif mode == "parallel":
        o, state = _parallel(q, k, v, s0, z0, normalize)
    else:
        o, state = _chunked(q, k, v, s0, z0, normalize, chunk_size)
    o = ops.cast(o, dtype)
    if return_final_state:
        return o, state
    return o


def linear_attention_step(q_t, k_t, v_t, state, normalize=True):
    """Advances causal linear attention by one token, for decoding.

    Args:
        q_t: mapped query `(B, H, K)`.
        k_t: mapped key `(B, H, K)`.
        v_t: value `(B, H, V)`.
        state: tuple `(S, z)` of shapes `(B, H, K, V)` and `(B, H, K)`, the
            state after the previous token; `None` for zeros, before the
            first token.
        normalize: bool. Divide by `q_t . z_t + EPS`.

    Returns:
        `(o_t, (S, z))`: `o_t` of shape `(B, H, V)` in the dtype of `q_t` and
        the float32 state after this token.
    """
    for name, x in (("q_t", q_t), ("k_t", k_t), ("v_t", v_t)):
        checks.check_float(name, x)
        checks.check_rank(name, x, 3, "(B, H, dim)")
    batch, heads, key_dim = q_t.shape
    value_dim = v_t.shape[-1]
    checks.check_shape("k_t", k_t, (batch, heads, key_dim), "(B, H, K)")
    checks.check_shape("v_t", v_t, (batch, heads, value_dim), "(B, H, V)")
    if state is None:
        batch_size = ops.shape(q_t)[0]
        state = (
            ops.zeros((batch_size, heads, key_dim, value_dim), "float32"),
            ops.zeros((batch_size, heads, key_dim), "float32"),
        )
    s, z = _check_state(state, batch, heads, key_dim, value_dim)
    dtype = q_t.dtype
    q_t, k_t, v_t = (ops.cast(x, "float32") for x in (q_t, k_t, v_t))
    s = ops.cast(s, "float32") + k_t[..., :, None] * v_t[..., None, :]
    z = ops.cast(z, "float32") + k_t
    o_t = ops.einsum("bhk,bhkv->bhv", q_t, s)
    if normalize:
        o_t = o_t / (ops.sum(q_t * z, axis=-1, keepdims=True) + EPS)
    return ops.cast(o_t, dtype), (s, z)


def elu_plus_one(x):
    """`elu(x) + 1`: the positive feature map of Katharopoulos et al. 2020."""
    return ops.elu(x) + 1.0


def relu(x):
    """`max(x, 0)`: ReLU features.

    With `normalize=True` the denominator `q_t . z_t` is zero when a query
    shares no active feature with any key so far; `EPS` then keeps the
    output finite (it is zero there, as the numerator is), but outputs of
    queries with a tiny overlap are large. Prefer `elu_plus_one` or
    `favor_plus` features for normalised attention.
    """
    return ops.relu(x)


def orthogonal_random_features(num_features, dim, seed=None, scaling=0):
    """The random projection of FAVOR+, `(num_features, dim)`, float32.

    Stacks blocks of `dim` orthonormal rows, each the Q factor of the QR
    decomposition of a Gaussian `(dim, dim)` matrix (with the signs that make
    it Haar-distributed), and keeps the first `num_features` rows. Row norms
    are then drawn from the chi distribution with `dim` degrees of freedom
    (`scaling=0`, so that each row is marginally Gaussian) or all set to
    `sqrt(dim)` (`scaling=1`).

    Args:
        num_features: positive int, M.
        dim: positive int, D, the head dimension of the raw queries and keys.
        seed: int (the same projection for the same int on a backend), a
            `keras.random.SeedGenerator`, or `None` (Keras' global seed
            generator; eager use only under `jax.jit`).
        scaling: 0 or 1, see above.

    Returns:
        A float32 tensor of shape `(num_features, dim)`.

    Reference:
        Choromanski et al., 2021, "Rethinking Attention with Performers",
        https://arxiv.org/abs/2009.14794.
    """
    checks.check_int("num_features", num_features)
    checks.check_int("dim", dim)
    if scaling not in (0, 1):
        raise ValueError(
            "Received an invalid value for argument `scaling`, expected 0 "
            f"(chi-distributed row norms) or 1 (sqrt(dim)), got {scaling!r}."
        )
    blocks = -(-num_features // dim)
    # one draw for the blocks and the norms, so an int seed is enough
    gaussian = keras.random.normal(
        (blocks * dim * dim + num_features * dim,), seed=seed
    )
    square = ops.reshape(gaussian[: blocks * dim * dim], (blocks, dim, dim))
    qr_q, qr_r = ops.qr(square)
    signs = ops.sign(ops.diagonal(qr_r, axis1=-2, axis2=-1))
    signs = ops.where(signs == 0, 1.0, signs)
    # rows of Q^T are orthonormal
    rows = ops.swapaxes(qr_q * signs[:, None, :], -1, -2)
    rows = ops.reshape(rows, (blocks * dim, dim))[:num_features]
    if scaling == 0:
        norms = ops.reshape(gaussian[blocks * dim * dim :], (num_features, dim))
        norms = ops.sqrt(ops.sum(ops.square(norms), axis=-1))
    else:
        norms = ops.full((num_features,), math.sqrt(dim), "float32")
    return norms[:, None] * rows


def favor_plus(x, projection, is_query, eps=1e-6, key_stabilizer="sequence"):
    """Positive random features of the softmax kernel (FAVOR+).

    `phi(x) = (exp(w_m . x' - |x'|^2 / 2 - c) + eps) / sqrt(M)` for the rows
    `w_m` of `projection`, with `x' = x * D ** -0.25`, so that
    `phi(q) . phi(k)` estimates `exp(q . k / sqrt(D))` up to the factor
    `exp(-c_q - c_k)` (and `eps`). The stabiliser `c` is, as in the paper's
    implementation, the max over features of `w . x'`: per token for queries,
    and for keys per batch element and head over all tokens and features. A
    query's factor is common to its numerator and denominator, and the key
    factor is common to all keys, so both cancel in normalised attention
    (`linear_attention(..., normalize=True)`). A per-token key stabiliser
    would not cancel; the shared one makes every key's features depend on
    the largest `w . x'` in the sequence (future and padded tokens
    included).

    `key_stabilizer="projection"` removes that dependence: keys then use
    one constant fixed by the projection alone,
    `c = max(0, max_m |w_m|^2 / 2 - PROJECTION_STABILIZER_HEADROOM)`, and
    `phi(k) = exp(-c) (exp(w_m . x' - |x'|^2 / 2) + eps) / sqrt(M)`: the
    unstabilised features times a constant. Since `w . x' - |x'|^2 / 2 <=
    |w|^2 / 2` for every `x'`, no feature exceeds `exp(30) / sqrt(M)`,
    whatever the input, and each key's features depend on that key alone
    (causal attention, token-by-token decoding, padding). The constant can
    leave key features far below 1 (about `exp(-c)`), so normalise with
    the ratio of two unnormalised sums rather than with `EPS` added to the
    denominator (see `kerasseq.layers.PerformerAttention`).

    Args:
        x: raw queries or keys `(B, T, H, D)`.
        projection: `(M, D)`, e.g. from `orthogonal_random_features`.
        is_query: bool. Selects the stabiliser.
        eps: float added after the exponential.
        key_stabilizer: `"sequence"` (the paper's: the max over the
            sequence) or `"projection"` (a constant of the projection, see
            above). Unused for queries.

    Returns:
        Features `(B, T, H, M)` in the dtype of `x` (computed in float32).

    Reference:
        Choromanski et al., 2021, "Rethinking Attention with Performers",
        https://arxiv.org/abs/2009.14794.
    """
    checks.check_float("x", x)
    checks.check_rank("x", x, 4, "(B, T, H, D)")
    checks.check_float("projection", projection)
    checks.check_choice("key_stabilizer", key_stabilizer, KEY_STABILIZERS)
    dim = x.shape[-1]
    checks.check_shape("projection", projection, (None, dim), "(M, D)")
    num_features = projection.shape[0]
    dtype = x.dtype
    projection = ops.cast(projection, "float32")
    x = ops.cast(x, "float32") * dim**-0.25
    logits = ops.einsum("bthd,md->bthm", x, projection)
    half_norm = 0.5 * ops.sum(ops.square(x), axis=-1, keepdims=True)
    if is_query:
        stabiliser = ops.max(logits, axis=-1, keepdims=True)
    elif key_stabilizer == "sequence":
        stabiliser = ops.max(logits, axis=(1, 3), keepdims=True)
    else:
        bound = 0.5 * ops.max(ops.sum(ops.square(projection), axis=-1))
        stabiliser = ops.maximum(bound - PROJECTION_STABILIZER_HEADROOM, 0.0)
        eps = eps * ops.exp(-stabiliser)
    features = ops.exp(logits - half_norm - stabiliser) + eps
    return ops.cast(features * num_features**-0.5, dtype)


def _check_inputs(q, k, v, initial_state):
    batch, length, heads, key_dim, value_dim = checks.check_qkv(
        q, k, v, "linear attention"
    )
    if initial_state is not None:
        _check_state(
            initial_state, batch, heads, key_dim, value_dim, "initial_state"
        )
    return batch, length, heads, key_dim, value_dim


def _check_state(state, batch, heads, key_dim, value_dim, name="state"):
    if not isinstance(state, (tuple, list)) or len(state) != 2:
        raise ValueError(
            f"Received an invalid value for argument `{name}`, expected a "
            f"tuple (S, z) of shapes (B, H, K, V) and (B, H, K), got "
            f"{type(state).__name__}."
        )
    s, z = state
    checks.check_float(f"{name}[0]", s)
    checks.check_float(f"{name}[1]", z)
    checks.check_shape(
        f"{name}[0]", s, (batch, heads, key_dim, value_dim), "(B, H, K, V)"
    )
    checks.check_shape(f"{name}[1]", z, (batch, heads, key_dim), "(B, H, K)")
    return s, z


def _normalise(num, den, normalize):
    if normalize:
        return num / (den[..., None] + EPS)
    return num


def _final_state(k, v, s0, z0):
    s = s0 + ops.einsum("bthk,bthv->bhkv", k, v)
    return s, z0 + ops.sum(k, axis=1)


def _bidirectional(q, k, v, s0, z0, normalize):
    s, z = _final_state(k, v, s0, z0)
    num = ops.einsum("bthk,bhkv->bthv", q, s)
    den = ops.einsum("bthk,bhk->bth", q, z)
    return _normalise(num, den, normalize), (s, z)


def _parallel(q, k, v, s0, z0, normalize):
    length = q.shape[1]
    mask = ops.tril(ops.ones((length, length), "float32"))
    p = ops.einsum("bihk,bjhk->bhij", q, k) * mask  # (B, H, T, T)
    num = ops.einsum("bhij,bjhv->bihv", p, v) + ops.einsum(
        "bthk,bhkv->bthv", q, s0
    )
    den = ops.transpose(ops.sum(p, axis=-1), (0, 2, 1)) + ops.einsum(
        "bthk,bhk->bth", q, z0
    )
    return _normalise(num, den, normalize), _final_state(k, v, s0, z0)


def _chunked(q, k, v, s0, z0, normalize, chunk_size):
    length = q.shape[1]
    size = min(chunk_size, length)
    chunks = -(-length // size)
    pad = chunks * size - length

    def split(x):
        # (B, T, H, ...) -> (B, H, Nc, L, ...)
        if pad:
            x = ops.pad(x, [[0, 0], [0, pad], [0, 0], [0, 0]])
        x = ops.reshape(x, (-1, chunks, size) + tuple(x.shape[2:]))
        return ops.transpose(x, (0, 3, 1, 2, 4))

    qc, kc, vc = split(q), split(k), split(v)
    # states before each chunk: exclusive sums over the chunks
    kv = ops.einsum("bhnck,bhncv->bhnkv", kc, vc)
    ksum = ops.sum(kc, axis=3)
    s_all = ops.cumsum(kv, axis=2)
    z_all = ops.cumsum(ksum, axis=2)
    starts = s0[:, :, None] + s_all - kv
    z_starts = z0[:, :, None] + z_all - ksum
    p = ops.tril(ops.einsum("bhnik,bhnjk->bhnij", qc, kc))
    num = ops.einsum("bhnck,bhnkv->bhncv", qc, starts) + ops.einsum(
        "bhnij,bhnjv->bhniv", p, vc
    )
    den = ops.einsum("bhnck,bhnk->bhnc", qc, z_starts) + ops.sum(p, axis=-1)
    o = _normalise(num, den, normalize)
    # (B, H, Nc, L, V) -> (B, T, H, V)
    o = ops.transpose(o, (0, 2, 3, 1, 4))
    o = ops.reshape(o, (-1, chunks * size) + tuple(o.shape[3:]))
    final = (s0 + s_all[:, :, -1], z0 + z_all[:, :, -1])
    return o[:, :length], final


def _recurrent(q, k, v, s0, z0, normalize):
    time_major = [ops.moveaxis(x, 1, 0) for x in (q, k, v)]
    core = _recurrent_normalized if normalize else _recurrent_plain
    o, s, z = dispatch.custom_gradient(core, *time_major, s0, z0)
    return ops.moveaxis(o, 0, 1), (s, z)


def _forward_scan(q, k, v, s0, z0):
    # (T, B, H, .) inputs; per step S_t, z_t, then the numerator and q . z
    def step(carry, x):
        s, z = carry
        q, k, v = x
        s = s + k[..., :, None] * v[..., None, :]
        z = z + k
        num = ops.einsum("bhk,bhkv->bhv", q, s)
        return (s, z), (num, ops.sum(q * z, axis=-1))

    return dispatch.scan(step, (s0, z0), (q, k, v))


def _backward_scans(q, k, v, s0, z0, dnum, dden, ds, dz):
    # gradients of num_t = S_t^T q_t and den_t = q_t . z_t given dnum, dden
    # and the gradients ds, dz of the final state

    # dq_t = S_t dnum_t + z_t dden_t: a forward scan
    def forward(carry, x):
        s, z = carry
        k, v, dnum, dden = x
        s = s + k[..., :, None] * v[..., None, :]
        z = z + k
        dq = ops.einsum("bhkv,bhv->bhk", s, dnum) + z * dden[..., None]
        return (s, z), dq

    _, dq = dispatch.scan(forward, (s0, z0), (k, v, dnum, dden))

    # G_t = dS_T + sum_{i >= t} q_i dnum_i^T, g_t likewise: a reverse scan
    def backward(carry, x):
        g_s, g_z = carry
        q, k, v, dnum, dden = x
        g_s = g_s + q[..., :, None] * dnum[..., None, :]
        g_z = g_z + q * dden[..., None]
        dk = ops.einsum("bhkv,bhv->bhk", g_s, v) + g_z
        dv = ops.einsum("bhkv,bhk->bhv", g_s, k)
        return (g_s, g_z), (dk, dv)

    (ds0, dz0), (dk, dv) = dispatch.scan(
        backward, (ds, dz), (q, k, v, dnum, dden), reverse=True
    )
    return dq, dk, dv, ds0, dz0


def _recurrent_normalized(q, k, v, s0, z0):
    (s, z), (num, den) = _forward_scan(q, k, v, s0, z0)
    den = den + EPS
    o = num / den[..., None]

    def backward(upstream):
        do, ds, dz = upstream
        dnum = do / den[..., None]
        dden = -ops.sum(dnum * o, axis=-1)
        return _backward_scans(q, k, v, s0, z0, dnum, dden, ds, dz)

    return (o, s, z), backward


def _recurrent_plain(q, k, v, s0, z0):
    (s, z), (num, _) = _forward_scan(q, k, v, s0, z0)

    def backward(upstream):
        do, ds, dz = upstream
        dden = ops.zeros(ops.shape(do)[:-1], "float32")
        return _backward_scans(q, k, v, s0, z0, do, dden, ds, dz)

    return (num, s, z), backward
