"""Diagonal linear recurrences, h_t = a_t * h_{t-1} + b_t.

The recurrence behind diagonal state-space models and linear RNNs: S4D and
S5 after discretisation, the LRU (complex a_t = lambda), Mamba once its
inputs are expanded (see `selective_scan`), gated linear RNNs. Every channel
is independent, so the op is elementwise over all dimensions but time.

Dimension letters as in the glossary of kerasseq/ops/README.md: B batch,
T length (steps t = 0 .. T - 1), `...` any channel dimensions (e.g. `(Dm,)`
or `(Dm, N)`; the recurrence is elementwise over them), L chunk length
(`chunk_size`, `mode="chunk"`), Nc = ceil(T / L) chunks.

Modes, one signature:
    "recurrent": a compiled loop over time carrying the state (O(state)
        memory besides inputs and outputs).
    "chunk": chunks of L steps scanned in log-depth inside, one recurrence
        across the Nc chunk states, then a correction by the cumulative decay.
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
from kerasseq.ops import modes


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

    Readable reference: `kerasseq.ops.reference.linear_recurrence`.

    Args:
        a: decays, tensor `(B, T, ...)`, real floating or complex.
        b: inputs, tensor of the shape of `a`.
        initial_state: optional tensor `(B, ...)`, h_{-1} (h_T when
            `reverse`). Defaults to zeros.
        return_final_state: bool. Also return the last state.
        reverse: bool. Run from the end: h_t = a_t * h_{t+1} + b_t; the
            final state is then the state after t = 0.
        mode: one of `"auto"`, `"recurrent"`, `"chunk"`, `"parallel"`;
            all give the same numbers. `"auto"`: recurrent on a CPU, chunk
            on a GPU or TPU (`kerasseq.ops.modes`).
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
    modes.check("linear_recurrence", mode)
    checks.check_chunk_size(chunk_size)
    a, b = _check_pair("a", a, "b", b, "(B, T, ...)")
    if initial_state is not None:
        initial_state = checks.float_tensor("initial_state", initial_state)
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

    compute_dtype, out_dtype = _dtypes(a, b, initial_state)
    a = ops.cast(a, compute_dtype)
    b = ops.cast(b, compute_dtype)
    if initial_state is not None:
        initial_state = ops.cast(initial_state, compute_dtype)

    mode = modes.resolve("linear_recurrence", mode, a.shape[1], chunk_size)
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
    a_t, b_t = _check_pair("a_t", a_t, "b_t", b_t, "(B, ...)")
    if state is not None:
        state = checks.float_tensor("state", state)
        checks.check_shape("state", state, a_t.shape, "(B, ...) of `a_t`")
    compute_dtype, out_dtype = _dtypes(a_t, b_t, state)
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

    def run(a, b, initial_state):
        h = forward(a, b, initial_state, reverse, chunk_size)

        def backward(upstream):
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
            previous = dispatch.previous_states(h, initial_state, reverse)
            grad_state = a[:, -1] * g[:, -1] if reverse else a[:, 0] * g[:, 0]
            grads = [g * previous, g, grad_state]
            if conjugate:
                grads = [ops.conj(x) for x in grads]
            return grads

        return h, backward

    return dispatch.custom_gradient(run, a, b, initial_state)


def _check_pair(name_a, a, name_b, b, layout):
    """Converts and checks the decays and inputs: floating, `b` of the
    shape of `a`, `layout` `"(B, T, ...)"` or `"(B, ...)"`."""
    a = checks.float_tensor(name_a, a)
    b = checks.float_tensor(name_b, b)
    lowest = layout.count(",")
    checks.check_rank(name_a, a, tuple(range(lowest, lowest + 7)), layout)
    checks.check_shape(name_b, b, a.shape, f"the shape of `{name_a}`, {layout}")
    return a, b


def _dtypes(a, b, state):
    """`(compute, output)` dtypes: complex64 for both when any input is
    complex, else float32 and the result type of `a` and `b`."""
    for x in (a, b, state):
        if x is not None and "complex" in keras.backend.standardize_dtype(
            x.dtype
        ):
            return "complex64", "complex64"
    return "float32", keras.backend.result_type(a.dtype, b.dtype)


def _recurrent(a, b, initial_state, reverse, chunk_size):
    # a loop that reads and writes the batch-major tensors in place: no
    # transposes to time-major, no stacking of per-step outputs
    del chunk_size
    if initial_state is None:
        initial_state = ops.zeros_like(a[:, 0])

    def update(h, t):
        return dispatch.read_step(a, t) * h + dispatch.read_step(b, t)

    return dispatch.state_loop(
        update, initial_state, ops.zeros_like(b), reverse
    )


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
    # states entering each chunk: one recurrence over the Nc chunk ends
    edge = 0 if reverse else size - 1
    ends = _recurrent(
        decay[:, :, edge], local[:, :, edge], initial_state, reverse, None
    )
    entering = dispatch.previous_states(ends, initial_state, reverse)
    h = local + decay * ops.expand_dims(entering, 2)
    h = ops.reshape(h, (batch, num_chunks * size) + channels)
    return h[:, :length]


_FORWARDS = {
    "recurrent": _recurrent,
    "chunk": _chunk,
    "parallel": _parallel,
}
