"""Diagonal linear recurrences, h_t = a_t * h_{t-1} + b_t.

The recurrence behind diagonal state-space models and linear RNNs: S4D and
S5 after discretisation, the LRU (complex a_t = lambda), Mamba once its
inputs are expanded (see `selective_scan`), gated linear RNNs. Every channel
is independent, so the op is elementwise over all dimensions but time.

Glossary of dimension letters:
    B: batch size.
    T: sequence length (time steps t = 0 .. T - 1).
    ...: any channel dimensions, e.g. `(Dm,)` model channels or
        `(Dm, N)` channels times state size; the recurrence is elementwise
        over them.
    L: chunk length, `chunk_size`, in `mode="chunk"`.
    K: number of chunks, ceil(T / L).

Modes, one signature:
    "recurrent": a compiled loop over time carrying the state (O(state)
        memory besides inputs and outputs).
    "chunk": chunks of L steps scanned in log-depth inside, one recurrence
        across the K chunk states, then a correction by the cumulative decay.
    "parallel": a log-depth Hillis-Steele associative scan over all T.
All modes share one hand-written backward pass: the cotangent of h obeys
the same recurrence run in the other direction, so it reuses the forward
of the chosen mode (derivation in README_scans.md).

References:
    - [Martin and Cundy, 2018](https://arxiv.org/abs/1709.04057),
      parallelizing linear recurrent neural nets over sequence length.
    - [Orvieto et al., 2023](https://arxiv.org/abs/2303.06349), LRU.
"""

import keras
from keras import ops

from kerasseq.ops import checks
from kerasseq.ops import dispatch


def linear_recurrence(
    a,
    b,
    initial_state=None,
    return_final_state=False,
    reverse=False,
    mode="auto",
    chunk_size=64,
):
    """Runs h_t = a_t * h_{t-1} + b_t elementwise over time.

    Computes in float32 (complex64 when any input is complex) whatever the
    input dtype. Differentiable in every input, with a hand-written
    backward pass (a reverse recurrence), under `jit_compile=True` and
    `jax.jit`.

    Args:
        a: decays, tensor `(B, T, ...)`, real floating or complex.
        b: inputs, tensor of the shape of `a`.
        initial_state: optional tensor `(B, ...)`, h_{-1} (h_T when
            `reverse`). Defaults to zeros.
        return_final_state: bool. Also return the last state.
        reverse: bool. Run from the end: h_t = a_t * h_{t+1} + b_t; the
            final state is then the state after t = 0.
        mode: one of `"auto"`, `"recurrent"`, `"chunk"`, `"parallel"`;
            all give the same numbers.
        chunk_size: positive int, the chunk length in `mode="chunk"`. T
            need not be a multiple of it.

    Returns:
        h `(B, T, ...)` in the dtype of the inputs (complex64 when complex),
        and with `return_final_state` a tuple `(h, final_state)` with
        `final_state` `(B, ...)` in float32 (complex64 when complex).

    Example:

    >>> a = keras.ops.full((2, 5, 3), 0.5)
    >>> b = keras.ops.ones((2, 5, 3))
    >>> h, state = linear_recurrence(a, b, return_final_state=True)
    >>> h.shape, state.shape
    ((2, 5, 3), (2, 3))
    """
    checks.check_mode(mode, checks.MODES)
    checks.check_chunk_size(chunk_size)
    a = ops.convert_to_tensor(a)
    b = ops.convert_to_tensor(b)
    checks.check_float("a", a)
    checks.check_float("b", b)
    checks.check_rank("a", a, tuple(range(2, 9)), "(B, T, ...)")
    checks.check_shape("b", b, a.shape, "the shape of `a`, (B, T, ...)")
    if initial_state is not None:
        initial_state = ops.convert_to_tensor(initial_state)
        checks.check_float("initial_state", initial_state)
        checks.check_shape(
            "initial_state",
            initial_state,
            (a.shape[0], *a.shape[2:]),
            "(B, ...) of `a` without its time axis",
        )
    if a.shape[1] is None:
        raise ValueError(
            "Received an invalid shape for argument `a`, expected a static "
            f"sequence length T, got shape {tuple(a.shape)}."
        )

    tensors = [a, b] + ([] if initial_state is None else [initial_state])
    compute_dtype = _compute_dtype(*tensors)
    if compute_dtype == "complex64":
        out_dtype = "complex64"
    else:
        out_dtype = keras.backend.result_type(a.dtype, b.dtype)
    a = ops.cast(a, compute_dtype)
    b = ops.cast(b, compute_dtype)
    if initial_state is not None:
        initial_state = ops.cast(initial_state, compute_dtype)

    mode = _resolve_mode(mode, a.shape[1])
    h = recurrence(a, b, initial_state, reverse, mode, chunk_size)
    outputs = ops.cast(h, out_dtype)
    if not return_final_state:
        return outputs
    final_state = h[:, 0] if reverse else h[:, -1]
    return outputs, final_state


def linear_recurrence_step(a_t, b_t, state):
    """Advances the recurrence one step: h_t = a_t * state + b_t.

    Args:
        a_t: decays `(B, ...)`.
        b_t: inputs `(B, ...)`, the shape of `a_t`.
        state: h_{t-1} `(B, ...)`, or `None` for zeros.

    Returns:
        `(h_t, new_state)`: `h_t` in the dtype of the inputs, `new_state`
        the same values in float32 (complex64 when complex).
    """
    a_t = ops.convert_to_tensor(a_t)
    b_t = ops.convert_to_tensor(b_t)
    checks.check_float("a_t", a_t)
    checks.check_float("b_t", b_t)
    checks.check_rank("a_t", a_t, tuple(range(1, 8)), "(B, ...)")
    checks.check_shape("b_t", b_t, a_t.shape, "the shape of `a_t`, (B, ...)")
    tensors = [a_t, b_t]
    if state is not None:
        state = ops.convert_to_tensor(state)
        checks.check_float("state", state)
        checks.check_shape("state", state, a_t.shape, "(B, ...) of `a_t`")
        tensors.append(state)
    compute_dtype = _compute_dtype(*tensors)
    if compute_dtype == "complex64":
        out_dtype = "complex64"
    else:
        out_dtype = keras.backend.result_type(a_t.dtype, b_t.dtype)
    h = ops.cast(b_t, compute_dtype)
    if state is not None:
        h = ops.cast(a_t, compute_dtype) * ops.cast(state, compute_dtype) + h
    return ops.cast(h, out_dtype), h


def recurrence(a, b, initial_state, reverse, mode, chunk_size=64):
    """The differentiable kernel behind `linear_recurrence`, without checks.

    Args:
        a, b: `(B, T, ...)` in the compute dtype (float32 or complex64).
        initial_state: `(B, ...)` in the compute dtype, or `None`.
        reverse: bool.
        mode: `"recurrent"`, `"chunk"` or `"parallel"`.
        chunk_size: positive int.

    Returns:
        h `(B, T, ...)` in the compute dtype.
    """
    forward = _FORWARDS[mode]

    def backward(a, h, initial_state, upstream):
        conjugate = dispatch.conjugates_complex_gradients() and (
            "complex" in keras.backend.standardize_dtype(a.dtype)
        )
        if conjugate:
            upstream = ops.conj(upstream)
        # g_t = dL/dh_t + a_{t+1} g_{t+1}: the recurrence in the other
        # direction, with the decays shifted by one step
        zero = ops.zeros_like(a[:, :1])
        if reverse:
            shifted = ops.concatenate([zero, a[:, :-1]], axis=1)
        else:
            shifted = ops.concatenate([a[:, 1:], zero], axis=1)
        g = forward(shifted, upstream, None, not reverse, chunk_size)
        if initial_state is None:
            initial_state = ops.zeros_like(h[:, :1])
        else:
            initial_state = ops.expand_dims(initial_state, 1)
        if reverse:
            previous = ops.concatenate([h[:, 1:], initial_state], axis=1)
            grad_state = a[:, -1] * g[:, -1]
        else:
            previous = ops.concatenate([initial_state, h[:, :-1]], axis=1)
            grad_state = a[:, 0] * g[:, 0]
        grads = [g * previous, g, grad_state]
        if conjugate:
            grads = [ops.conj(x) for x in grads]
        return grads

    if initial_state is None:

        @ops.custom_gradient
        def run(a, b):
            h = forward(a, b, None, reverse, chunk_size)

            def grad(*args, upstream=None):
                upstream = _single_upstream(args, upstream)
                return tuple(backward(a, h, None, upstream)[:2])

            return h, grad

        return run(a, b)

    @ops.custom_gradient
    def run_from(a, b, initial_state):
        h = forward(a, b, initial_state, reverse, chunk_size)

        def grad(*args, upstream=None):
            upstream = _single_upstream(args, upstream)
            return tuple(backward(a, h, initial_state, upstream))

        return h, grad

    return run_from(a, b, initial_state)


def _single_upstream(args, upstream):
    if upstream is None:
        (upstream,) = args
    return upstream


def _compute_dtype(*tensors):
    for x in tensors:
        if "complex" in keras.backend.standardize_dtype(x.dtype):
            return "complex64"
    return "float32"


def _resolve_mode(mode, length):
    if mode != "auto":
        return mode
    # measured on CPU: the compiled loop beats the chunked and log-depth
    # forms at every length (README_scans.md); those fill a GPU or TPU
    del length
    if dispatch.device_kind() == "cpu":
        return "recurrent"
    return "chunk"


def read_step(x, index, axis=1):
    """`x[:, index]` (`axis=1`) or `x[index]` (`axis=0`) by a dynamic slice,
    for a loop index that may be a tensor."""
    start = [0] * len(x.shape)
    start[axis] = index
    # -1: all of a dimension unknown when tracing (a symbolic batch size)
    shape = [-1 if size is None else size for size in x.shape]
    shape[axis] = 1
    return ops.squeeze(ops.slice(x, start, shape), axis)


def write_step(x, index, value, axis=1):
    """`x` with `x[:, index]` (`axis=1`) or `x[index]` (`axis=0`) set to
    `value`; in place inside a compiled loop."""
    start = [0] * len(x.shape)
    start[axis] = index
    return ops.slice_update(x, start, ops.expand_dims(value, axis))


def _recurrent(a, b, initial_state, reverse, chunk_size):
    # a loop that reads and writes the batch-major tensors in place: no
    # transposes to time-major, no stacking of per-step outputs
    del chunk_size
    length = a.shape[1]
    if initial_state is None:
        initial_state = ops.zeros_like(a[:, 0])

    def step(i, carry):
        h, outputs = carry
        t = length - 1 - i if reverse else i
        h = read_step(a, t) * h + read_step(b, t)
        return h, write_step(outputs, t, h)

    _, h = ops.fori_loop(0, length, step, (initial_state, ops.zeros_like(b)))
    return h


def _shift(x, k, axis, reverse, fill):
    """Shifts `x` by `k` steps along `axis` (later in time unless
    `reverse`), filling the `k` vacated steps with `fill`."""
    length = x.shape[axis]
    head = (slice(None),) * axis
    if reverse:
        kept = x[head + (slice(k, length),)]
        pad = ops.full_like(x[head + (slice(0, k),)], fill)
        return ops.concatenate([kept, pad], axis=axis)
    kept = x[head + (slice(0, length - k),)]
    pad = ops.full_like(x[head + (slice(0, k),)], fill)
    return ops.concatenate([pad, kept], axis=axis)


def _hillis_steele(a, b, axis, reverse, need_decay):
    """Inclusive scan of the affine maps h -> a h + b along `axis`.

    Returns `(decay, h)`: the cumulative product of `a` (when `need_decay`,
    else `None`) and the states from a zero start, in log2 depth.
    """
    length = a.shape[axis]
    k = 1
    while k < length:
        b = a * _shift(b, k, axis, reverse, 0) + b
        if need_decay or 2 * k < length:
            a = a * _shift(a, k, axis, reverse, 1)
        k *= 2
    return (a if need_decay else None), b


def _parallel(a, b, initial_state, reverse, chunk_size):
    del chunk_size
    need_decay = initial_state is not None
    decay, h = _hillis_steele(a, b, 1, reverse, need_decay)
    if need_decay:
        h = h + decay * ops.expand_dims(initial_state, 1)
    return h


def _chunk(a, b, initial_state, reverse, chunk_size):
    length = a.shape[1]
    batch = -1  # may be unknown when tracing
    channels = tuple(a.shape[2:])
    size = min(chunk_size, length)
    num_chunks = -(-length // size)
    pad = num_chunks * size - length
    if pad:
        # identity steps at the end leave every state, reverse ones too, as is
        a = ops.concatenate([a, ops.ones_like(a[:, :pad])], axis=1)
        b = ops.concatenate([b, ops.zeros_like(b[:, :pad])], axis=1)
    a = ops.reshape(a, (batch, num_chunks, size) + channels)
    b = ops.reshape(b, (batch, num_chunks, size) + channels)
    decay, local = _hillis_steele(a, b, 2, reverse, True)
    # states entering each chunk: one recurrence over the K chunk ends
    edge = 0 if reverse else size - 1
    ends = _recurrent(
        decay[:, :, edge], local[:, :, edge], initial_state, reverse, None
    )
    if initial_state is None:
        initial_state = ops.zeros_like(ends[:, :1])
    else:
        initial_state = ops.expand_dims(initial_state, 1)
    if reverse:
        entering = ops.concatenate([ends[:, 1:], initial_state], axis=1)
    else:
        entering = ops.concatenate([initial_state, ends[:, :-1]], axis=1)
    h = local + decay * ops.expand_dims(entering, 2)
    h = ops.reshape(h, (batch, num_chunks * size) + channels)
    return h[:, :length]


_FORWARDS = {
    "recurrent": _recurrent,
    "chunk": _chunk,
    "parallel": _parallel,
}
