"""The selective scan of Mamba-1 (S6), channels-last.

Same semantics as `selective_scan_ref` of the paper's reference code, with
time before channels. For every batch row, channel d and state index n:

    delta_t = softplus(delta_t + delta_bias)     (when asked)
    h_t = exp(delta_t A) * h_{t-1} + delta_t B_t u_t
    y_t = sum_n C_t h_t + D u_t
    y_t = y_t * silu(z_t)                        (when z is given)

Dimension letters as in the glossary of kerasseq/ops/README.md: B batch
(also the input matrix B; the context says which), T length (L in the
paper), Dm channels (the paper's D, the E * D of a Mamba block), N state
size, G groups sharing B and C (channel d uses group d // P), P = Dm // G,
L chunk length, Nc = ceil(T / L) chunks.

Inside, the state is laid out `(B, G, N, P)` so that the channels are the
contiguous axis and sums over N add whole rows.

Reference:
    - [Gu and Dao, 2023](https://arxiv.org/abs/2312.00752)
"""

import keras
from keras import ops

from kerasseq.ops import checks
from kerasseq.ops import dispatch
from kerasseq.ops import modes
from kerasseq.ops.dispatch import fori_loop
from kerasseq.ops.dispatch import in_row_blocks
from kerasseq.ops.dispatch import read_step
from kerasseq.ops.dispatch import rows_per_block
from kerasseq.ops.dispatch import write_step
from kerasseq.ops.linear_recurrence import recurrence


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
    return_final_state=False,
    mode="auto",
    chunk_size=64,
):
    """Runs the selective state-space scan of Mamba over a sequence.

    Computes in float32 whatever the input dtype and returns `u`'s dtype.
    Differentiable in every tensor argument under `jit_compile=True` and
    `jax.jit`; `mode="recurrent"` has a hand-written backward pass that
    keeps the state only every `chunk_size` steps and recomputes the rest.

    Readable reference: `kerasseq.ops.reference.selective_scan`.

    Args:
        u: inputs `(B, T, Dm)`.
        delta: step sizes `(B, T, Dm)`, before `delta_bias` and softplus.
        A: state matrix `(Dm, N)`, real (negative for a decaying state).
        B: input matrix `(B, T, N)`, or `(B, T, G, N)` grouped.
        C: output matrix, the shape of `B`.
        D: optional skip weights `(Dm,)`.
        z: optional gate `(B, T, Dm)`; the output is multiplied by
            `silu(z)`.
        delta_bias: optional `(Dm,)`, added to `delta`.
        delta_softplus: bool. Apply softplus to `delta` (after the bias).
        initial_state: optional `(B, Dm, N)`, the state before t = 0.
        return_final_state: bool. Also return the last state.
        mode: one of `"auto"`, `"recurrent"`, `"chunk"`, `"parallel"`;
            all give the same numbers. `"chunk"` and `"parallel"` expand
            the inputs to `(B, T, Dm, N)` tensors and run
            `linear_recurrence` on them (the form that fills a GPU).
            `"auto"`: recurrent on a CPU, chunk on a GPU or TPU
            (`kerasseq.ops.modes`).
        chunk_size: positive int. T need not be a multiple of it.

    Returns:
        y `(B, T, Dm)` in the dtype of `u`, and with `return_final_state`
        a tuple `(y, final_state)` with `final_state` `(B, Dm, N)` float32.

    Example:

    >>> u = keras.random.normal((2, 10, 8))
    >>> A = -keras.ops.ones((8, 4))
    >>> B = keras.random.normal((2, 10, 4))
    >>> selective_scan(u, u, A, B, B, delta_softplus=True).shape
    (2, 10, 8)
    """
    modes.check("selective_scan", mode)
    checks.check_chunk_size(chunk_size)
    inputs, out_dtype, batch = _prepare(
        u, delta, A, B, C, D, z, delta_bias, delta_softplus, initial_state, 3
    )
    u, delta, A, B, C, D, z, initial_state = inputs
    if u.shape[1] is None:
        raise ValueError(
            "Received an invalid shape for argument `u`, expected a static "
            f"sequence length T, got shape {tuple(u.shape)}. Pad batches to "
            "a fixed length (the loops need static bounds under XLA)."
        )
    length, channels = u.shape[1:]
    groups = 1 if len(B.shape) == 3 else B.shape[2]
    size = channels // groups
    state_size = A.shape[1]

    # (B, T, Dm) -> (B, T, G, P); (B, T, [G,] N) -> (B, T, G, N)
    inputs = (
        ops.reshape(u, (batch, length, groups, size)),
        ops.reshape(delta, (batch, length, groups, size)),
        ops.transpose(ops.reshape(A, (groups, size, state_size)), (0, 2, 1)),
        ops.reshape(B, (batch, length, groups, state_size)),
        ops.reshape(C, (batch, length, groups, state_size)),
    )
    if initial_state is not None:
        initial_state = ops.reshape(
            initial_state, (batch, groups, size, state_size)
        )
        initial_state = ops.transpose(initial_state, (0, 1, 3, 2))

    mode = modes.resolve("selective_scan", mode, length, chunk_size)
    if mode == "recurrent":
        y, final_state = _scan(*inputs, initial_state, chunk_size)
    else:
        y, final_state = _expanded_scan(
            *inputs, initial_state, mode, chunk_size
        )

    y = _skip_and_gate(ops.reshape(y, (batch, length, channels)), u, D, z)
    y = ops.cast(y, out_dtype)
    if not return_final_state:
        return y
    final_state = ops.transpose(final_state, (0, 1, 3, 2))
    return y, ops.reshape(final_state, (batch, channels, state_size))


def selective_scan_step(
    u_t,
    delta_t,
    A,
    B_t,
    C_t,
    D=None,
    z_t=None,
    delta_bias=None,
    delta_softplus=False,
    state=None,
):
    """Advances the selective scan one token, for decoding.

    Args:
        u_t: inputs `(B, Dm)`.
        delta_t: step sizes `(B, Dm)`.
        A: `(Dm, N)`.
        B_t: `(B, N)` or grouped `(B, G, N)`.
        C_t: the shape of `B_t`.
        D, z_t, delta_bias, delta_softplus: as in `selective_scan`, with
            `z_t` `(B, Dm)`.
        state: `(B, Dm, N)` or `None` for zeros.

    Returns:
        `(y_t, new_state)`: `y_t` `(B, Dm)` in the dtype of `u_t`,
        `new_state` `(B, Dm, N)` float32.
    """
    inputs, out_dtype, batch = _prepare(
        u_t, delta_t, A, B_t, C_t, D, z_t, delta_bias, delta_softplus, state, 2
    )
    u_t, delta_t, A, B_t, C_t, D, z_t, state = inputs
    channels, state_size = A.shape

    # (B, [G,] N) -> (B, Dm, N): channel d reads group d // P
    def per_channel(x):
        if len(x.shape) == 2:
            return ops.expand_dims(x, 1)
        groups = x.shape[1]
        x = ops.expand_dims(x, 2)
        x = ops.broadcast_to(x, (batch, groups, channels // groups, state_size))
        return ops.reshape(x, (batch, channels, state_size))

    delta_3 = ops.expand_dims(delta_t, -1)
    new_state = delta_3 * ops.expand_dims(u_t, -1) * per_channel(B_t)
    if state is not None:
        new_state = ops.exp(delta_3 * A) * state + new_state
    y_t = ops.sum(new_state * per_channel(C_t), axis=-1)
    y_t = _skip_and_gate(y_t, u_t, D, z_t)
    return ops.cast(y_t, out_dtype), new_state


def _prepare(u, delta, A, B, C, D, z, delta_bias, softplus, state, rank):
    """Checks the inputs (`rank` 3: a sequence, 2: one step) and returns
    them in float32, delta with its bias and softplus applied; the output
    dtype; the batch size (a tensor where unknown when tracing)."""
    if rank == 3:
        names, lead = ("u", "delta", "B", "C", "z", "initial_state"), "B, T"
    else:
        names, lead = ("u_t", "delta_t", "B_t", "C_t", "z_t", "state"), "B"
    n_u, n_delta, n_b, n_c, n_z, n_state = names
    u, delta, A, B, C = (ops.convert_to_tensor(x) for x in (u, delta, A, B, C))
    checks.check_rank(n_u, u, rank, f"({lead}, Dm)")
    checks.check_float(n_u, u)
    checks.check_shape(n_delta, delta, u.shape, f"({lead}, Dm)")
    checks.check_float(n_delta, delta)
    channels = u.shape[-1]
    checks.check_rank("A", A, 2, "(Dm, N)")
    checks.check_shape("A", A, (channels, None), "(Dm, N)")
    _check_real("A", A)
    state_size = A.shape[1]
    checks.check_rank(
        n_b, B, (rank, rank + 1), f"({lead}, N) or grouped ({lead}, G, N)"
    )
    _check_real(n_b, B)
    leading = u.shape[:-1]
    if len(B.shape) == rank:
        checks.check_shape(n_b, B, (*leading, state_size), f"({lead}, N)")
    else:
        shape = (*leading, None, state_size)
        checks.check_shape(n_b, B, shape, f"({lead}, G, N)")
        groups = B.shape[-2]
        if groups is None or groups <= 0 or channels % groups:
            raise ValueError(
                f"Received an invalid shape for argument `{n_b}`, expected "
                f"a number of groups G that divides Dm = {channels}, got "
                f"G = {groups} in shape {tuple(B.shape)}."
            )
    checks.check_shape(n_c, C, B.shape, f"the shape of `{n_b}`")
    _check_real(n_c, C)
    optional = {}
    for name, x, shape, expected in (
        ("D", D, (channels,), "(Dm,)"),
        (n_z, z, u.shape, f"({lead}, Dm)"),
        ("delta_bias", delta_bias, (channels,), "(Dm,)"),
        (n_state, state, (u.shape[0], channels, state_size), "(B, Dm, N)"),
    ):
        if x is not None:
            x = ops.convert_to_tensor(x)
            checks.check_shape(name, x, shape, expected)
            _check_real(name, x)
        optional[name] = x
    D, z, delta_bias, state = optional.values()
    batch = u.shape[0]
    if batch is None:  # symbolic batch (a functional model, tf.data)
        batch = ops.shape(u)[0]
    inputs = [
        None if x is None else ops.cast(x, "float32")
        for x in (u, delta, A, B, C, D, z, state)
    ]
    if delta_bias is not None:
        inputs[1] = inputs[1] + ops.cast(delta_bias, "float32")
    if softplus:
        inputs[1] = ops.softplus(inputs[1])
    return inputs, u.dtype, batch


def _skip_and_gate(y, u, D, z):
    # y + D u, times silu(z)
    if D is not None:
        y = y + u * D
    if z is not None:
        y = y * ops.silu(z)
    return y


def _check_real(name, x):
    checks.check_float(name, x)
    dtype = keras.backend.standardize_dtype(x.dtype)
    if dtype.startswith("complex"):
        raise ValueError(
            f"Received an invalid dtype for argument `{name}`, expected a "
            f"real floating-point tensor, got {dtype}."
        )


def _expanded_scan(u, delta, A, B, C, initial_state, mode, chunk_size):
    """The scan as a `linear_recurrence` over `(B, T, G, N, P)` tensors.

    Arguments as in `_scan`; autodiff for the expansion, the hand-written
    backward pass of `linear_recurrence` for the recurrence.
    """
    # (B, T, G, P) -> (B, T, G, 1, P); (B, T, G, N) -> (B, T, G, N, 1)
    delta = ops.expand_dims(delta, 3)
    u = ops.expand_dims(u, 3)
    B = ops.expand_dims(B, 4)
    C = ops.expand_dims(C, 4)
    decay = ops.exp(delta * A)  # (B, T, G, N, P)
    h = recurrence(decay, delta * u * B, initial_state, False, mode, chunk_size)
    y = ops.sum(h * C, axis=3)  # (B, T, G, P)
    return y, h[:, -1]


def _update(h, A, u_t, delta_t, b_t):
    """One step of the state (B, G, N, P) from inputs of one time step,
    and the step's decay exp(delta_t A)."""
    delta_t = ops.expand_dims(delta_t, 2)
    decay = ops.exp(delta_t * A)
    u_t, b_t = ops.expand_dims(u_t, 2), ops.expand_dims(b_t, 3)
    return decay * h + delta_t * u_t * b_t, decay


def _output(h, c_t):
    return ops.sum(h * ops.expand_dims(c_t, 3), axis=2)


# Batch rows per block of the compiled loops, by the bytes of their states.
# The forward step touches the state and a few arrays of its size: blocks
# up to 256 KiB measured fastest (fewer, larger loop steps). The backward
# pass also keeps a chunk's L states and decays per row, so it runs row by
# row (32 KiB) to keep them in cache. Measured on a 2-core CPU at B=8,
# T=1024, Dm=512, N=16 (32 KiB a row), same process: one row a block for
# both, forward 73.5 ms and forward+backward 298 ms; 8 rows for both,
# forward+backward 342 ms (against 303); these budgets, 56.5 and 253 ms.
_FORWARD_BLOCK_BYTES = 256 * 1024
_BACKWARD_BLOCK_BYTES = 32 * 1024


def _scan(u, delta, A, B, C, initial_state, chunk_size):
    """Compiled loop over time with a hand-written backward pass.

    The loop runs over chunks of L steps, reading each step of the
    batch-major inputs in place, and keeps the state entering each chunk
    for the backward pass, which recomputes the states inside a chunk from
    it. Without gradients the kept states are dead code that XLA removes.
    Blocks of batch rows run one after the other, so that the arrays of a
    step stay in cache.

    Args:
        u, delta: `(B, T, G, P)`.
        A: `(G, N, P)`.
        B, C: `(B, T, G, N)`.
        initial_state: `(B, G, N, P)` or `None`.
        chunk_size: checkpoint interval L.

    Returns:
        `(y, final_state)`: `(B, T, G, P)` and `(B, G, N, P)`.
    """
    batch, length = u.shape[:2]
    size = min(chunk_size, length)
    num_chunks = -(-length // size)
    row_bytes = 4 * A.shape[0] * A.shape[1] * A.shape[2]
    forward_rows = rows_per_block(batch, row_bytes, _FORWARD_BLOCK_BYTES)
    backward_rows = rows_per_block(batch, row_bytes, _BACKWARD_BLOCK_BYTES)

    def run(u, delta, A, B, C, h0):
        if h0 is None:
            h0 = ops.zeros((ops.shape(u)[0], *A.shape), dtype=u.dtype)
        y, final_state, starts = in_row_blocks(
            lambda *xs: _scan_forward(*xs, size),
            forward_rows,
            [(u, 0), (delta, 0), (A, None), (B, 0), (C, 0), (h0, 0)],
            [(u.shape, 0), (h0.shape, 0), ((num_chunks, *h0.shape), 1)],
        )

        def backward(upstream):
            grad_y, grad_state = upstream
            blocks = [(u, 0), (delta, 0), (A, None), (B, 0), (C, 0)]
            blocks += [(starts, 1), (grad_y, 0), (grad_state, 0)]
            shapes = [u.shape, u.shape, A.shape, B.shape, C.shape, h0.shape]
            return in_row_blocks(
                lambda *xs: _scan_backward(*xs, size),
                backward_rows,
                blocks,
                [(shape, None if shape is A.shape else 0) for shape in shapes],
            )

        return (y, final_state), backward

    return dispatch.custom_gradient(run, u, delta, A, B, C, initial_state)


def _scan_forward(u, delta, A, B, C, h0, size):
    """The loop of `_scan` on a block of rows: `(y, final_state, starts)`,
    `starts` `(Nc, B, G, N, P)` the state entering each chunk."""
    length = u.shape[1]
    num_chunks = -(-length // size)

    def step(t, carry):
        h, y = carry
        u_t, delta_t, b_t, c_t = (read_step(x, t) for x in (u, delta, B, C))
        h, _ = _update(h, A, u_t, delta_t, b_t)
        return h, write_step(y, t, _output(h, c_t))

    def chunk(c, carry):
        h, y, starts = carry
        starts = write_step(starts, c, h, axis=0)
        begin = c * size
        end = ops.minimum(begin + size, length)
        h, y = fori_loop(begin, end, step, (h, y))
        return h, y, starts

    starts = ops.zeros((num_chunks, *ops.shape(h0)), h0.dtype)
    initial = (h0, ops.zeros_like(u), starts)
    final_state, y, starts = fori_loop(0, num_chunks, chunk, initial)
    return y, final_state, starts


def _scan_backward(u, delta, A, B, C, starts, grad_y, grad_state, size):
    """Gradients of `_scan` by a reverse loop over chunks.

    For each chunk, last first: recompute its L states from the state
    entering it, then run the reverse recurrence of the state's gradient
    through them (README_scans.md). Memory: Nc + 2L states besides inputs
    and gradients.

    Args:
        u, delta, A, B, C: as in `_scan`.
        starts: `(Nc, B, G, N, P)`, the state entering each chunk.
        grad_y: `(B, T, G, P)`.
        grad_state: `(B, G, N, P)`, the gradient of the final state.
        size: L.

    Returns:
        Gradients of u, delta, A, B, C and the initial state.
    """
    length = u.shape[1]
    num_chunks = starts.shape[0]

    def recompute(t, carry):
        h, states, decays, grad_c, begin = carry
        u_t, delta_t = read_step(u, t), read_step(delta, t)
        h, decay = _update(h, A, u_t, delta_t, read_step(B, t))
        # states[i] is the state entering step begin + i, decays[i] the
        # decay of that step (kept, not recomputed: exp is the costly op)
        states = write_step(states, t - begin + 1, h, axis=0)
        decays = write_step(decays, t - begin, decay, axis=0)
        # dL/dC_t = sum_P h_t dL/dy_t, as a matrix-vector product
        grad_y_t = ops.expand_dims(read_step(grad_y, t), 3)
        grad_c = write_step(grad_c, t, ops.matmul(h, grad_y_t)[..., 0])
        return h, states, decays, grad_c, begin

    def step_back(j, carry):
        grad_h, grad_a, grads, states, decays, end, begin = carry
        grad_u, grad_delta, grad_b = grads
        t = end - 1 - j
        u_t, delta_t = read_step(u, t), read_step(delta, t)
        b_t = read_step(B, t)
        h_prev = read_step(states, t - begin, axis=0)
        c_t, grad_y_t = read_step(C, t), read_step(grad_y, t)
        drive = delta_t * u_t
        # dL/dB_t = sum_P dL/dh_t delta_t u_t with dL/dh_t = grad_h + C_t
        # dL/dy_t: a matrix-vector product on the carried grad_h, plus a
        # rank-one term (saves materialising dL/dh_t)
        grad_b_t = ops.matmul(grad_h, ops.expand_dims(drive, 3))[..., 0]
        grad_b_t = grad_b_t + c_t * ops.sum(
            grad_y_t * drive, axis=-1, keepdims=True
        )
        grad_b = write_step(grad_b, t, grad_b_t)
        delta_4 = ops.expand_dims(delta_t, 2)
        grad_h = grad_h + ops.expand_dims(c_t, 3) * ops.expand_dims(grad_y_t, 2)
        decay = read_step(decays, t - begin, axis=0)
        # dL/d(delta_t A) for every (B, G, N, P)
        grad_exponent = grad_h * decay * h_prev
        grad_a = grad_a + ops.sum(grad_exponent * delta_4, axis=0)
        grad_x = ops.sum(grad_h * ops.expand_dims(b_t, 3), axis=2)
        grad_u = write_step(grad_u, t, delta_t * grad_x)
        grad_delta = write_step(
            grad_delta,
            t,
            u_t * grad_x + ops.sum(grad_exponent * A, axis=2),
        )
        grads = (grad_u, grad_delta, grad_b)
        return grad_h * decay, grad_a, grads, states, decays, end, begin

    def chunk_back(i, carry):
        grad_h, grad_a, grads, grad_c, states, decays = carry
        c = num_chunks - 1 - i
        begin = c * size
        end = ops.minimum(begin + size, length)
        h_start = read_step(starts, c, axis=0)
        states = write_step(states, 0, h_start, axis=0)
        _, states, decays, grad_c, _ = fori_loop(
            begin, end, recompute, (h_start, states, decays, grad_c, begin)
        )
        grad_h, grad_a, grads, states, decays, _, _ = fori_loop(
            0,
            end - begin,
            step_back,
            (grad_h, grad_a, grads, states, decays, end, begin),
        )
        return grad_h, grad_a, grads, grad_c, states, decays

    grad_h0, grad_a, grads, grad_c, _, _ = fori_loop(
        0,
        num_chunks,
        chunk_back,
        (
            grad_state,
            ops.zeros_like(A),
            (ops.zeros_like(u), ops.zeros_like(u), ops.zeros_like(B)),
            ops.zeros_like(C),
            ops.zeros((size + 1, *ops.shape(starts)[1:]), starts.dtype),
            ops.zeros((size, *ops.shape(starts)[1:]), starts.dtype),
        ),
    )
    grad_u, grad_delta, grad_b = grads
    return grad_u, grad_delta, grad_a, grad_b, grad_c, grad_h0
