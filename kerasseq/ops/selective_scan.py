"""The selective scan of Mamba-1 (S6), channels-last.

Same semantics as `selective_scan_ref` of the paper's reference code, with
time before channels. For every batch row, channel d and state index n:

    delta_t = softplus(delta_t + delta_bias)     (when asked)
    h_t = exp(delta_t A) * h_{t-1} + delta_t B_t u_t
    y_t = sum_n C_t h_t + D u_t
    y_t = y_t * silu(z_t)                        (when z is given)

Glossary of dimension letters (Gu and Dao, 2023, Algorithm 2):
    B: batch size (also the name of the input matrix B; the context says
        which).
    T: sequence length, L in the paper.
    Dm: model channels the scan runs over, D in the paper (the expanded
        width E * D of a Mamba block).
    N: state size per channel.
    G: groups of channels sharing B and C (1 when B and C are `(B, T, N)`);
        channel d uses group d // (Dm // G).
    P: channels per group, Dm // G.
    L: chunk length, `chunk_size`: the checkpoint interval of the backward
        pass in `mode="recurrent"`, the chunk of `mode="chunk"`.
    K: number of chunks, ceil(T / L).

Inside, the state is laid out `(B, G, N, P)` so that the channels are the
contiguous axis and sums over N add whole rows.

Reference:
    - [Gu and Dao, 2023](https://arxiv.org/abs/2312.00752)
"""

import keras
from keras import ops

from kerasseq.ops import checks
from kerasseq.ops import dispatch
from kerasseq.ops.linear_recurrence import read_step
from kerasseq.ops.linear_recurrence import recurrence
from kerasseq.ops.linear_recurrence import write_step


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
    checks.check_mode(mode, checks.MODES)
    checks.check_chunk_size(chunk_size)
    args = _check_inputs(
        u, delta, A, B, C, D, z, delta_bias, initial_state, sequence=True
    )
    u, delta, A, B, C, D, z, delta_bias, initial_state = args
    if u.shape[1] is None:
        raise ValueError(
            "Received an invalid shape for argument `u`, expected a static "
            f"sequence length T, got shape {tuple(u.shape)}. Pad batches to "
            "a fixed length (the loops need static bounds under XLA)."
        )
    out_dtype = u.dtype
    batch, length, channels = u.shape
    if batch is None:  # symbolic batch (a functional model, tf.data)
        batch = ops.shape(u)[0]
    groups = 1 if len(B.shape) == 3 else B.shape[2]
    size = channels // groups
    state_size = A.shape[1]

    u, delta, A, B, C, D, z, delta_bias, initial_state = (
        None if x is None else ops.cast(x, "float32")
        for x in (u, delta, A, B, C, D, z, delta_bias, initial_state)
    )
    if delta_bias is not None:
        delta = delta + delta_bias
    if delta_softplus:
        delta = ops.softplus(delta)

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

    mode = _resolve_mode(mode)
    if mode == "recurrent":
        y, final_state = _scan(*inputs, initial_state, chunk_size)
    else:
        y, final_state = _expanded_scan(
            *inputs, initial_state, mode, chunk_size
        )

    y = ops.reshape(y, (batch, length, channels))
    if D is not None:
        y = y + u * D
    if z is not None:
        y = y * ops.silu(z)
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
    args = _check_inputs(
        u_t, delta_t, A, B_t, C_t, D, z_t, delta_bias, state, sequence=False
    )
    u_t, delta_t, A, B_t, C_t, D, z_t, delta_bias, state = args
    out_dtype = u_t.dtype
    batch, channels = u_t.shape
    if batch is None:
        batch = ops.shape(u_t)[0]
    state_size = A.shape[1]
    u_t, delta_t, A, B_t, C_t, D, z_t, delta_bias, state = (
        None if x is None else ops.cast(x, "float32")
        for x in (u_t, delta_t, A, B_t, C_t, D, z_t, delta_bias, state)
    )
    if delta_bias is not None:
        delta_t = delta_t + delta_bias
    if delta_softplus:
        delta_t = ops.softplus(delta_t)

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
    if D is not None:
        y_t = y_t + u_t * D
    if z_t is not None:
        y_t = y_t * ops.silu(z_t)
    return ops.cast(y_t, out_dtype), new_state


def _check_inputs(u, delta, A, B, C, D, z, delta_bias, state, sequence):
    if sequence:
        names = ("u", "delta", "B", "C", "z", "initial_state")
        lead = "B, T"
    else:
        names = ("u_t", "delta_t", "B_t", "C_t", "z_t", "state")
        lead = "B"
    n_u, n_delta, n_b, n_c, n_z, n_state = names
    u = ops.convert_to_tensor(u)
    delta = ops.convert_to_tensor(delta)
    A = ops.convert_to_tensor(A)
    B = ops.convert_to_tensor(B)
    C = ops.convert_to_tensor(C)
    rank = 3 if sequence else 2
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
    if len(B.shape) == rank:
        checks.check_shape(n_b, B, (*u.shape[:-1], state_size), f"({lead}, N)")
    else:
        checks.check_shape(
            n_b,
            B,
            (*u.shape[:-1], None, state_size),
            f"({lead}, G, N)",
        )
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
    return (
        u,
        delta,
        A,
        B,
        C,
        optional["D"],
        optional[n_z],
        optional["delta_bias"],
        optional[n_state],
    )


def _check_real(name, x):
    checks.check_float(name, x)
    dtype = keras.backend.standardize_dtype(x.dtype)
    if dtype.startswith("complex"):
        raise ValueError(
            f"Received an invalid dtype for argument `{name}`, expected a "
            f"real floating-point tensor, got {dtype}."
        )


def _resolve_mode(mode):
    if mode != "auto":
        return mode
    # measured on CPU: the compiled loop with its hand-written backward is
    # the fastest form (README_scans.md); the expanded chunked form fills
    # a GPU or TPU
    if dispatch.device_kind() == "cpu":
        return "recurrent"
    return "chunk"


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
    """One step of the state (B, G, N, P) from inputs of one time step."""
    delta_t = ops.expand_dims(delta_t, 2)
    return ops.exp(delta_t * A) * h + delta_t * ops.expand_dims(
        u_t, 2
    ) * ops.expand_dims(b_t, 3)


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


def _rows_per_block(batch, row_bytes, block_bytes):
    """The largest divisor of `batch` whose rows fit in `block_bytes`;
    `None` (one block) for a batch size unknown when tracing (`None` on
    TensorFlow, a symbolic dimension on JAX)."""
    if not isinstance(batch, int):
        return None
    rows = max(1, min(batch, block_bytes // row_bytes))
    while batch % rows:
        rows -= 1
    return rows


def _in_row_blocks(fn, rows, inputs, outputs):
    """Runs `fn` on blocks of `rows` batch rows, one block after the other.

    Args:
        fn: function of the blocks of `inputs`, returning one tensor per
            entry of `outputs`.
        rows: int, a divisor of the batch size, or `None` for one block.
        inputs: list of `(tensor, axis)`: the batch axis of each input,
            `None` for inputs shared by every block.
        outputs: list of `(shape, axis)`: the full shape of each output and
            its batch axis, `None` for outputs summed over blocks.

    Returns:
        The outputs, assembled from the blocks.
    """
    tensor, axis = next(x for x in inputs if x[1] is not None)
    batch = tensor.shape[axis]
    if rows is None or rows == batch:
        return fn(*(x for x, _ in inputs))

    def block(x, start, axis):
        begin = [0] * len(x.shape)
        begin[axis] = start
        shape = list(x.shape)
        shape[axis] = rows
        return ops.slice(x, begin, shape)

    def body(i, results):
        start = i * rows
        block_outputs = fn(
            *(
                x if axis is None else block(x, start, axis)
                for x, axis in inputs
            )
        )
        merged = []
        for result, value, (_, axis) in zip(
            results, block_outputs, outputs, strict=True
        ):
            if axis is None:
                merged.append(result + value)
            else:
                begin = [0] * len(result.shape)
                begin[axis] = start
                merged.append(ops.slice_update(result, begin, value))
        return tuple(merged)

    initial = tuple(ops.zeros(shape, tensor.dtype) for shape, _ in outputs)
    return ops.fori_loop(0, batch // rows, body, initial)


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
    state_shape = (ops.shape(u)[0], *A.shape)
    row_bytes = 4 * A.shape[0] * A.shape[1] * A.shape[2]
    forward_rows = _rows_per_block(batch, row_bytes, _FORWARD_BLOCK_BYTES)
    backward_rows = _rows_per_block(batch, row_bytes, _BACKWARD_BLOCK_BYTES)

    def forward(u, delta, A, B, C, h0):
        def rows_forward(u, delta, A, B, C, h0):
            def step(t, carry):
                h, y = carry
                u_t, delta_t = read_step(u, t), read_step(delta, t)
                h = _update(h, A, u_t, delta_t, read_step(B, t))
                return h, write_step(y, t, _output(h, read_step(C, t)))

            def chunk(c, carry):
                h, y, starts = carry
                starts = write_step(starts, c, h, axis=0)
                begin = c * size
                end = ops.minimum(begin + size, length)
                h, y = ops.fori_loop(begin, end, step, (h, y))
                return h, y, starts

            final_state, y, starts = ops.fori_loop(
                0,
                num_chunks,
                chunk,
                (
                    h0,
                    ops.zeros_like(u),
                    ops.zeros((num_chunks, *ops.shape(h0)), h0.dtype),
                ),
            )
            return y, final_state, starts

        y, final_state, starts = _in_row_blocks(
            rows_forward,
            forward_rows,
            [(u, 0), (delta, 0), (A, None), (B, 0), (C, 0), (h0, 0)],
            [(u.shape, 0), (h0.shape, 0), ((num_chunks, *h0.shape), 1)],
        )
        return (y, final_state), starts

    def backward(u, delta, A, B, C, h0, starts, upstream):
        grad_y, grad_state = _split_upstream(upstream)
        if grad_y is None:
            grad_y = ops.zeros_like(u)
        if grad_state is None:
            grad_state = ops.zeros_like(h0)

        def rows_backward(u, delta, A, B, C, starts, grad_y, grad_state):
            return _scan_backward(
                u, delta, A, B, C, starts, grad_y, grad_state, size
            )

        return _in_row_blocks(
            rows_backward,
            backward_rows,
            [
                (u, 0),
                (delta, 0),
                (A, None),
                (B, 0),
                (C, 0),
                (starts, 1),
                (grad_y, 0),
                (grad_state, 0),
            ],
            [
                (u.shape, 0),
                (u.shape, 0),
                (A.shape, None),
                (B.shape, 0),
                (C.shape, 0),
                (h0.shape, 0),
            ],
        )

    if initial_state is None:

        @ops.custom_gradient
        def run(u, delta, A, B, C):
            h0 = ops.zeros(state_shape, dtype=u.dtype)
            outputs, starts = forward(u, delta, A, B, C, h0)

            def grad(*args, upstream=None):
                upstream = args if upstream is None else upstream
                grads = backward(u, delta, A, B, C, h0, starts, upstream)
                return grads[:5]

            return outputs, grad

        return run(u, delta, A, B, C)

    @ops.custom_gradient
    def run_from(u, delta, A, B, C, h0):
        outputs, starts = forward(u, delta, A, B, C, h0)

        def grad(*args, upstream=None):
            upstream = args if upstream is None else upstream
            return backward(u, delta, A, B, C, h0, starts, upstream)

        return outputs, grad

    return run_from(u, delta, A, B, C, initial_state)


def _split_upstream(upstream):
    # tensorflow passes one gradient per output, jax one tuple of them
    if isinstance(upstream, (tuple, list)) and len(upstream) == 1:
        upstream = upstream[0]
    grad_y, grad_state = upstream
    return grad_y, grad_state


def _scan_backward(u, delta, A, B, C, starts, grad_y, grad_state, size):
    """Gradients of `_scan` by a reverse loop over chunks.

    For each chunk, last first: recompute its L states from the state
    entering it, then run the reverse recurrence of the state's gradient
    through them (README_scans.md). Memory: K + 2L states besides inputs
    and gradients.

    Args:
        u, delta, A, B, C: as in `_scan`.
        starts: `(K, B, G, N, P)`, the state entering each chunk.
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
        delta_t = ops.expand_dims(read_step(delta, t), 2)
        decay = ops.exp(delta_t * A)
        h = decay * h + delta_t * ops.expand_dims(
            read_step(u, t), 2
        ) * ops.expand_dims(read_step(B, t), 3)
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
        _, states, decays, grad_c, _ = ops.fori_loop(
            begin, end, recompute, (h_start, states, decays, grad_c, begin)
        )
        grad_h, grad_a, grads, states, decays, _, _ = ops.fori_loop(
            0,
            end - begin,
            step_back,
            (grad_h, grad_a, grads, states, decays, end, begin),
        )
        return grad_h, grad_a, grads, grad_c, states, decays

    grad_h0, grad_a, grads, grad_c, _, _ = ops.fori_loop(
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
