"""Readable references of every op: the paper's equations, one step at a time.

Each function here has the name and the arguments of the op it defines
(`reference.selective_scan` is what `kerasseq.ops.selective_scan` computes)
and is written to be checked line by line against the paper, not to be
fast: a plain loop over time whose body is the recurrence as printed, or
dense attention under an explicit mask. The ops' tests compare every mode
of every kernel with these functions, in float64, for outputs, final states
and (by the backend's autodiff through the loop) gradients; the autodiff
baseline of `python -m experiments.benchmark` is these loops compiled.

They are written with `keras.ops` so that one function serves all three:

- in float64: call with float64 (complex128) arrays; on JAX inside
  `jax.enable_x64()`. Everything computes in the inputs' dtype.
- differentiable: the backend's autodiff runs through the loop.
- compiled: `scan=kerasseq.ops.dispatch.scan` runs the same step function
  as a compiled loop (for long sequences under XLA); the default `scan` is
  a Python loop over time (eager, one step per token, nothing hidden).

Recurrences return `(outputs, final_state)`; attentions return outputs.

Letters: B batch, T time, D channels, N state size, G groups of B and C,
H heads, K key size, V value size, U LSTM units, W conv width.
"""

import math

import keras
import numpy as np
from keras import ops

from kerasseq.ops.block_sparse_attention import random_block_plan
from kerasseq.ops.linear_attention import EPS


def python_scan(fn, init, xs, reverse=False):
    """`kerasseq.ops.dispatch.scan` as a plain Python loop over time.

    `fn(carry, x_t) -> (carry, y_t)`; `xs` holds time-major tensors
    (nested). Returns the last carry and the `y_t` stacked on axis 0, in time
    order.
    """
    leaves = keras.tree.flatten(xs)
    length = leaves[0].shape[0]
    steps = [_unstack(x, length) for x in leaves]
    carry, ys = init, [None] * length
    for t in reversed(range(length)) if reverse else range(length):
        x_t = keras.tree.pack_sequence_as(xs, [s[t] for s in steps])
        carry, ys[t] = fn(carry, x_t)
    return carry, keras.tree.map_structure(lambda *y: ops.stack(y), *ys)


def _unstack(x, length):
    """`[x[t] for t in range(length)]`. On JAX by gathers, which compile
    once, where eager slices would compile once per index."""
    if keras.backend.backend() == "jax":
        return [ops.take(x, t, axis=0) for t in range(length)]
    return ops.unstack(x, num=length, axis=0)


def _over_time(step, carry, xs, scan, reverse=False):
    """Runs `step` over axis 1 of the batch-major tensors `xs`; returns the
    last carry and the outputs batch-major."""
    scan = scan or python_scan
    xs = keras.tree.map_structure(lambda x: ops.moveaxis(x, 1, 0), xs)
    carry, ys = scan(step, carry, xs, reverse=reverse)
    return carry, keras.tree.map_structure(lambda y: ops.moveaxis(y, 0, 1), ys)


def linear_recurrence(a, b, initial_state=None, reverse=False, scan=None):
    """h_t = a_t * h_{t-1} + b_t, elementwise, real or complex.

    a, b: `(B, T, ...)`; initial_state: `(B, ...)`, zeros when `None`.
    With `reverse`, h_t = a_t * h_{t+1} + b_t from t = T - 1 down.
    Returns `(h, h_last)`.
    """
    a, b = ops.convert_to_tensor(a), ops.convert_to_tensor(b)
    if a.dtype != b.dtype:  # real decays of a complex state
        a = ops.cast(a, b.dtype)
    h0 = ops.zeros_like(b[:, 0]) if initial_state is None else initial_state

    def step(h, x):
        a_t, b_t = x
        h = a_t * h + b_t
        return h, h

    h_last, h = _over_time(step, h0, (a, b), scan, reverse)
    return h, h_last


def matrix_recurrence(A, b, initial_state=None, reverse=False, scan=None):
    """h_t = A h_{t-1} + b_t with one dense `(N, N)` matrix A.

    b: `(B, T, N)`; initial_state: `(B, N)`, zeros when `None`. With
    `reverse`, h_t = A h_{t+1} + b_t. Returns `(h, h_last)`.
    """
    h0 = ops.zeros_like(b[:, 0]) if initial_state is None else initial_state

    def step(h, b_t):
        h = ops.einsum("nm,bm->bn", A, h) + b_t
        return h, h

    h_last, h = _over_time(step, h0, b, scan, reverse)
    return h, h_last


def selective_scan(
    u,
    delta,
    A,
    B,
    C,
    D=None,
    z=None,
    delta_bias=None,
    delta_softplus=False,
    initial_state=None,
    scan=None,
):
    """Mamba's selective scan (Gu & Dao 2023, Algorithm 2), channels-last.

    delta <- softplus(delta + delta_bias) (each part optional),
    h_t = exp(delta_t A) * h_{t-1} + delta_t B_t u_t   (eq. 2a, ZOH/Euler),
    y_t = C_t . h_t + D u_t                            (eq. 2b),
    y_t <- y_t * silu(z_t).

    u, delta, z: `(B, T, D)`; A: `(D, N)`; B, C: `(B, T, N)` or
    `(B, T, G, N)`, channel d reading group d // (D / G); D, delta_bias:
    `(D,)`; initial_state: `(B, D, N)`. Returns `(y, h_last)`.
    """
    batch, _, channels = u.shape
    if delta_bias is not None:
        delta = delta + delta_bias
    if delta_softplus:
        delta = ops.softplus(delta)
    if len(B.shape) == 3:
        B, C = B[:, :, None], C[:, :, None]
    group = np.arange(channels) // (channels // B.shape[2])
    B, C = ops.take(B, group, axis=2), ops.take(C, group, axis=2)  # BTDN
    h0 = initial_state
    if h0 is None:
        h0 = ops.zeros((batch, channels, A.shape[1]), u.dtype)

    def step(h, x):
        u_t, delta_t, B_t, C_t = x
        delta_t = delta_t[..., None]
        h = ops.exp(delta_t * A) * h + delta_t * B_t * u_t[..., None]
        return h, ops.sum(C_t * h, axis=-1)

    h_last, y = _over_time(step, h0, (u, delta, B, C), scan)
    if D is not None:
        y = y + D * u
    if z is not None:
        y = y * ops.silu(z)
    return y, h_last


def lstm_recurrence(
    gates, recurrent_kernel, mask=None, initial_state=None, scan=None
):
    """The LSTM cell (Hochreiter & Schmidhuber 1997, with forget gate),
    given the input projections `gates = x_t W + b`:

    i, f, g, o = split(gates_t + h_{t-1} U), in that order,
    c_t = sigmoid(f) c_{t-1} + sigmoid(i) tanh(g),
    h_t = sigmoid(o) tanh(c_t).

    gates: `(B, T, 4U)`; recurrent_kernel U: `(U, 4U)`; mask: `(B, T)`, a
    step with mask 0 keeps `(h, c)` (and outputs the previous h);
    initial_state: `(h, c)`, each `(B, U)`, zeros when `None`. Returns
    `(h, (h_last, c_last))`.
    """
    if initial_state is None:
        zeros = ops.zeros((gates.shape[0], recurrent_kernel.shape[0]))
        initial_state = (ops.cast(zeros, gates.dtype),) * 2
    xs = gates if mask is None else (gates, ops.cast(mask, gates.dtype))

    def step(state, x):
        (h, c), (gates_t, m) = state, (x, None) if mask is None else x
        i, f, g, o = ops.split(gates_t + ops.matmul(h, recurrent_kernel), 4, -1)
        c_new = ops.sigmoid(f) * c + ops.sigmoid(i) * ops.tanh(g)
        h_new = ops.sigmoid(o) * ops.tanh(c_new)
        if m is None:
            return (h_new, c_new), h_new
        m = m[:, None]  # a padded step keeps the state
        h, c = m * h_new + (1 - m) * h, m * c_new + (1 - m) * c
        return (h, c), h

    final, h = _over_time(step, tuple(initial_state), xs, scan)
    return h, final


def delta_rule(q, k, v, beta, scale=None, initial_state=None, scan=None):
    """DeltaNet's delta rule (Schlag et al. 2021; Yang et al. 2024, eq. 1):

    S_t = S_{t-1} (I - beta_t k_t k_t^T) + beta_t v_t k_t^T,
    o_t = S_t (scale q_t),

    with the state stored transposed, `S: (B, H, K, V)`, so that
    S_t = S_{t-1} + beta_t k_t (v_t - S_{t-1}^T k_t)^T and o_t = S_t^T q_t.

    q, k: `(B, T, H, K)`; v: `(B, T, H, V)`; beta: `(B, T, H)`; scale:
    `K ** -0.5` when `None`; initial_state: `(B, H, K, V)`. Returns
    `(o, S_last)`.
    """
    batch, _, heads, key_dim = q.shape
    scale = key_dim**-0.5 if scale is None else scale
    s0 = initial_state
    if s0 is None:
        s0 = ops.zeros((batch, heads, key_dim, v.shape[-1]), v.dtype)

    def step(s, x):
        q_t, k_t, v_t, beta_t = x
        error = v_t - ops.einsum("bhkv,bhk->bhv", s, k_t)
        s = s + beta_t[..., None, None] * ops.einsum(
            "bhk,bhv->bhkv", k_t, error
        )
        return s, ops.einsum("bhkv,bhk->bhv", s, scale * q_t)

    s_last, o = _over_time(step, s0, (q, k, v, beta), scan)
    return o, s_last


def linear_attention(
    q, k, v, causal=True, normalize=True, initial_state=None, scan=None
):
    """Linear attention (Katharopoulos et al. 2020, eqs. 4-6) on features
    q = phi(Q), k = phi(K):

    S_t = S_{t-1} + k_t v_t^T, z_t = z_{t-1} + k_t,
    o_t = S_t^T q_t / (q_t . z_t + EPS)   (no division without normalize).

    Bidirectional (`causal=False`) every o_t reads S_T and z_T.
    q, k: `(B, T, H, K)`; v: `(B, T, H, V)`; initial_state: `(S, z)` with
    S `(B, H, K, V)` and z `(B, H, K)`, zeros when `None`. Returns
    `(o, (S_T, z_T))`.
    """
    batch, _, heads, key_dim = q.shape
    if initial_state is None:
        initial_state = (
            ops.zeros((batch, heads, key_dim, v.shape[-1]), v.dtype),
            ops.zeros((batch, heads, key_dim), v.dtype),
        )

    def read(s, z, q_t):
        o_t = ops.einsum("bhkv,bhk->bhv", s, q_t)
        if normalize:
            o_t = o_t / (ops.einsum("bhk,bhk->bh", z, q_t)[..., None] + EPS)
        return o_t

    def step(state, x):
        (s, z), (q_t, k_t, v_t) = state, x
        s, z = s + ops.einsum("bhk,bhv->bhkv", k_t, v_t), z + k_t
        return (s, z), read(s, z, q_t)

    if causal:
        final, o = _over_time(step, tuple(initial_state), (q, k, v), scan)
        return o, final
    s, z = initial_state  # every query reads the sums over the sequence
    final = (s + ops.einsum("bthk,bthv->bhkv", k, v), z + ops.sum(k, axis=1))
    o = ops.einsum("bhkv,bthk->bthv", final[0], q)
    if normalize:
        o = o / (ops.einsum("bhk,bthk->bth", final[1], q)[..., None] + EPS)
    return o, final


def masked_attention(q, k, v, allowed):
    """softmax(q k^T / sqrt(K)) v over the keys `allowed` lets each query
    see; a query with no allowed key gives zeros.

    q: `(B, T, H, K)`; k: `(B, S, H, K)`; v: `(B, S, H, V)`; allowed: bool,
    broadcastable to `(B, H, T, S)`. Returns `(B, T, H, V)`.
    """
    scores = ops.einsum("bthk,bshk->bhts", q, k) / math.sqrt(q.shape[-1])
    scores = ops.where(allowed, scores, -1e30)
    top = ops.stop_gradient(ops.max(scores, axis=-1, keepdims=True))
    weights = ops.where(allowed, ops.exp(scores - top), 0.0)
    total = ops.sum(weights, axis=-1, keepdims=True)
    weights = weights / ops.where(total > 0, total, 1.0)
    return ops.einsum("bhts,bshv->bthv", weights, v)


def sliding_window_allowed(length, window, causal=False, dilation=1):
    """`(T, T)` bool: query t sees key s at a multiple of `dilation` away,
    `s <= t <= s + window * dilation` (causal) or
    `|t - s| <= (window // 2) * dilation` (bidirectional)."""
    delta = np.arange(length)[:, None] - np.arange(length)[None, :]
    allowed = delta % dilation == 0
    if causal:
        return allowed & (delta >= 0) & (delta <= window * dilation)
    return allowed & (np.abs(delta) <= (window // 2) * dilation)


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
):
    """Longformer's (dilated) sliding-window attention (Beltagy et al.
    2020, section 3.1) as dense attention under the explicit mask of
    `sliding_window_allowed`; each query also sees the extra global keys.

    q, k: `(B, T, H, K)`; v: `(B, T, H, V)`; key_mask: `(B, T)` bool;
    global_keys / global_values: `(B, M, H, K)` / `(B, M, H, V)` with
    global_key_mask `(B, M)`. Returns `(B, T, H, V)`.
    """
    batch, length, heads, _ = q.shape
    allowed = sliding_window_allowed(length, window, causal, dilation)
    allowed = np.broadcast_to(allowed, (batch, heads, length, length))
    if key_mask is not None:
        allowed = allowed & np.asarray(key_mask)[:, None, None, :]
    if global_keys is not None:
        num = global_keys.shape[1]
        seen = np.ones((batch, num), bool)
        if global_key_mask is not None:
            seen = np.asarray(global_key_mask)
        seen = np.broadcast_to(seen[:, None, None], (batch, heads, length, num))
        allowed = np.concatenate([allowed, seen], axis=-1)
        k = ops.concatenate([k, global_keys], axis=1)
        v = ops.concatenate([v, global_values], axis=1)
    return masked_attention(q, k, v, allowed)


def global_blocks(num_blocks, num_global_blocks):
    """BigBird's global blocks: the first ceil(g / 2) and the last
    floor(g / 2) of the `num_blocks`, sorted."""
    first = set(range(-(-num_global_blocks // 2)))
    last = set(range(num_blocks - num_global_blocks // 2, num_blocks))
    return sorted((first | last) & set(range(num_blocks)))


def block_sparse_allowed(length, heads, block_size, num_global_blocks, plan):
    """`(H, T, T)` bool: BigBird's pattern (Zaheer et al. 2020, ITC) from
    its rules. Global query blocks (`global_blocks`) see every key and
    every query sees them; every other
    query block i sees blocks i - 1, i, i + 1 and its random blocks
    `plan[h, i]`."""
    num_blocks = -(-length // block_size)
    block = np.arange(length) // block_size
    is_global = np.isin(block, global_blocks(num_blocks, num_global_blocks))
    near = np.abs(block[:, None] - block[None, :]) <= 1
    allowed = np.zeros((heads, length, length), bool)
    for h in range(heads):
        random = (plan[h, block][:, :, None] == block[None, None, :]).any(1)
        allowed[h] = is_global[:, None] | is_global[None, :] | near | random
    return allowed


def block_sparse_attention(
    q,
    k,
    v,
    block_size,
    num_global_blocks=2,
    num_random_blocks=3,
    seed=0,
    key_mask=None,
):
    """BigBird's block-sparse attention as dense attention under the
    explicit mask of `block_sparse_allowed`, the random blocks drawn by
    `random_block_plan(..., seed)` as the op draws them (the op's default
    `random_blocks="seeded"`).

    q, k: `(B, T, H, K)`; v: `(B, T, H, V)`; key_mask: `(B, T)` bool.
    Returns `(B, T, H, V)`.
    """
    _, length, heads, _ = q.shape
    num_blocks = -(-length // block_size)
    plan = random_block_plan(
        num_blocks,
        heads,
        num_global_blocks,
        num_random_blocks,
        seed,
    )
    allowed = block_sparse_allowed(
        length, heads, block_size, num_global_blocks, plan
    )[None]
    if key_mask is not None:
        allowed = allowed & np.asarray(key_mask)[:, None, None, :]
    return masked_attention(q, k, v, allowed)


def causal_conv(x, kernel, bias=None):
    """`kerasseq.layers.causal_conv.causal_conv`, depthwise: y_t =
    sum_j x_{t - W + 1 + j} kernel_j (+ bias), zeros before t = 0.

    x: `(B, T, D)`; kernel: `(W, D)`; bias: `(D,)`. Returns `(B, T, D)`.
    """
    width, length = kernel.shape[0], x.shape[1]
    padded = ops.pad(x, [(0, 0), (width - 1, 0), (0, 0)])
    y = sum(padded[:, j : j + length] * kernel[j] for j in range(width))
    return y if bias is None else y + bias


def mamba_block(weights, x, scan=None):
    """The Mamba-1 block (Gu & Dao 2023, Figure 3) from its weights:

    x, z = in_proj(u); x = silu(causal depthwise conv(x));
    (dt, B, C) = x_proj(x); delta = softplus(dt_proj(dt)); A = -exp(A_log);
    y = selective_scan(x, delta, A, B, C, D); out_proj(y * silu(z)).

    weights: the `kerasseq.layers.Mamba` weights by name (`in_proj/kernel`
    `(D, 2I)`, `conv1d_kernel` `(W, I)`, `conv1d_bias`, `x_proj/kernel`
    `(I, R + 2N)`, `dt_proj/kernel` `(R, I)`, `dt_proj/bias`, `A_log`
    `(I, N)`, `D`, `out_proj/kernel` `(I, D)`); x: `(B, T, D)`. Returns
    `(B, T, D)`.
    """
    w = {name: ops.convert_to_tensor(v, x.dtype) for name, v in weights.items()}
    xs, z = ops.split(ops.matmul(x, w["in_proj/kernel"]), 2, axis=-1)
    xs = ops.silu(causal_conv(xs, w["conv1d_kernel"], w["conv1d_bias"]))
    rank, state_size = w["dt_proj/kernel"].shape[0], w["A_log"].shape[1]
    dt, B, C = ops.split(
        ops.matmul(xs, w["x_proj/kernel"]), [rank, rank + state_size], -1
    )
    y, _ = selective_scan(
        xs,
        ops.matmul(dt, w["dt_proj/kernel"]),
        -ops.exp(w["A_log"]),
        B,
        C,
        D=w["D"],
        z=z,
        delta_bias=w["dt_proj/bias"],
        delta_softplus=True,
        scan=scan,
    )
    return ops.matmul(y, w["out_proj/kernel"])
