"""The LSTM recurrence as a compiled loop with a hand-written backward pass.

An LSTM's input projections `x_t W + b` do not depend on the state, so they
are one matmul over the whole sequence (done by the caller). What is left
is the recurrence

    z_t = gates_t + h_{t-1} U            (B, 4H), gates in the order i, f, g, o
    i, f, o = sigmoid(z_i, z_f, z_o),  g = tanh(z_g)
    c_t = f c_{t-1} + i g
    h_t = o tanh(c_t)

which must run step by step. Differentiating a compiled loop by autodiff
is slow (it stacks every intermediate of every step and replays them; see
README_scans.md), so this op keeps only the gate activations and the cell
states of the forward pass and runs its own reverse loop. With G_h and G_c
the gradients reaching h_t and c_t through every path:

    dc_t = G_c + G_h o tanh'(c_t)
    dz_o = G_h tanh(c_t) o (1 - o)      dz_i = dc_t g i (1 - i)
    dz_f = dc_t c_{t-1} f (1 - f)       dz_g = dc_t i (1 - g^2)
    G_h(t-1) = upstream_{t-1} + dz_t U^T,   G_c(t-1) = dc_t f

and after the loop dL/dU = sum_{b,t} h_{t-1}^T dz_t is one matmul, and
dL/dgates_t = dz_t. The loop holds one small matmul per step in each
direction, as cuDNN's LSTM does.

A state (h_{-1}, c_{-1}) may be given to start from, and the final
(h, c) returned; the gradients then reach the initial state too
(G_h(-1) and G_c(-1) above) and start from those of the final state.

Padding. A step with mask 0 keeps the state, h_t = h_{t-1} and c_t =
c_{t-1}, and outputs h_{t-1} (what `keras.layers.LSTM` does with a mask);
its gradients pass straight through to step t - 1.

Glossary of dimension letters:
    B: batch size.
    T: sequence length.
    H: units (state width).
"""

from keras import ops

from kerasseq.ops import checks
from kerasseq.ops.linear_recurrence import read_step
from kerasseq.ops.linear_recurrence import write_step

MODES = ("auto", "recurrent")


def lstm_recurrence(
    gates,
    recurrent_kernel,
    mask=None,
    initial_state=None,
    return_final_state=False,
    mode="auto",
):
    """Runs the LSTM cell over time from precomputed input projections.

    Computes in float32 whatever the input dtype, under `jit_compile=True`
    and `jax.jit`, differentiable in `gates`, `recurrent_kernel` and
    `initial_state` with a hand-written backward pass. The state starts at
    zeros unless `initial_state` is given.

    Args:
        gates: `x_t W + b` for every step, `(B, T, 4H)`, the four gates in
            Keras's order: input, forget, candidate, output.
        recurrent_kernel: U, `(H, 4H)`, in the same gate order.
        mask: optional `(B, T)`, true (or 1) at real steps; a step with 0
            keeps the state and repeats the previous output.
        initial_state: optional `(h, c)`, each `(B, H)`, the state before
            the first step; zeros when `None`.
        return_final_state: bool. Also return `(h, c)` after the last
            step.
        mode: `"auto"` or `"recurrent"`, the only form: every step's
            gates need the previous state through a nonlinearity, so there
            is no parallel scan.

    Returns:
        h `(B, T, H)` in the dtype of `gates`; with `return_final_state` a
        tuple `(h, (h_T, c_T))`, the final state in float32.

    Example:

    >>> gates = keras.random.normal((2, 5, 12))
    >>> lstm_recurrence(gates, keras.random.normal((3, 12))).shape
    (2, 5, 3)
    """
    checks.check_mode(mode, MODES)
    gates = ops.convert_to_tensor(gates)
    recurrent_kernel = ops.convert_to_tensor(recurrent_kernel)
    checks.check_float("gates", gates)
    checks.check_float("recurrent_kernel", recurrent_kernel)
    checks.check_rank("gates", gates, (3,), "(B, T, 4H)")
    checks.check_rank("recurrent_kernel", recurrent_kernel, (2,), "(H, 4H)")
    units = recurrent_kernel.shape[0]
    checks.check_shape(
        "recurrent_kernel", recurrent_kernel, (units, 4 * units), "(H, 4H)"
    )
    checks.check_shape(
        "gates",
        gates,
        (gates.shape[0], gates.shape[1], 4 * units),
        "(B, T, 4H) with H of `recurrent_kernel`",
    )
    checks.check_static_length("gates", gates)
    if initial_state is not None:
        if not isinstance(initial_state, (tuple, list)) or (
            len(initial_state) != 2
        ):
            raise ValueError(
                "Received an invalid value for argument `initial_state`, "
                "expected a pair (h, c) of shapes (B, H), got "
                f"{type(initial_state).__name__}."
            )
        initial_state = tuple(
            ops.cast(ops.convert_to_tensor(x), "float32") for x in initial_state
        )
        for name, x in zip(("h", "c"), initial_state, strict=True):
            checks.check_shape(
                f"initial_state ({name})",
                x,
                (gates.shape[0], units),
                "(B, H) with H of `recurrent_kernel`",
            )
    out_dtype = gates.dtype
    gates = ops.cast(gates, "float32")
    recurrent_kernel = ops.cast(recurrent_kernel, "float32")
    if mask is not None:
        mask = ops.convert_to_tensor(mask)
        checks.check_shape("mask", mask, gates.shape[:2], "(B, T)")
        mask = ops.cast(mask, "float32")[..., None]
    if initial_state is None and not return_final_state:
        h = _differentiable(gates, recurrent_kernel, mask)
        return ops.cast(h, out_dtype)
    h, c_final = _differentiable_with_state(
        gates, recurrent_kernel, mask, initial_state
    )
    return ops.cast(h, out_dtype), (h[:, -1], c_final)


def _forward(gates, U, mask, h0=None, c0=None):
    """The loop from `(h0, c0)` (zeros when `None`): h and c `(B, T, H)`
    and the activations `(B, T, 4H)`."""
    length = gates.shape[1]
    zeros = ops.zeros_like(gates[:, 0, : U.shape[0]])
    h0 = zeros if h0 is None else h0
    c0 = zeros if c0 is None else c0

    def step(t, carry):
        h, c, hs, cs, acts = carry
        z = read_step(gates, t) + ops.matmul(h, U)
        i, f, g, o = ops.split(z, 4, axis=-1)
        i, f, o = ops.sigmoid(i), ops.sigmoid(f), ops.sigmoid(o)
        g = ops.tanh(g)
        c_new = f * c + i * g
        h_new = o * ops.tanh(c_new)
        if mask is not None:
            m = read_step(mask, t)
            c_new = c + m * (c_new - c)
            h_new = h + m * (h_new - h)
        acts = write_step(acts, t, ops.concatenate([i, f, g, o], axis=-1))
        hs = write_step(hs, t, h_new)
        cs = write_step(cs, t, c_new)
        return h_new, c_new, hs, cs, acts

    hs = ops.zeros_like(gates[..., : U.shape[0]])
    initial = (h0, c0, hs, hs, ops.zeros_like(gates))
    _, _, hs, cs, acts = ops.fori_loop(0, length, step, initial)
    return hs, cs, acts


def _backward(U, hs, cs, acts, mask, upstream, start=None, grad_cell=None):
    """Gradients for `gates` and U by the reverse loop (module docstring),
    and those of the initial state `start` = `(h0, c0)` (zeros when
    `None`), given `grad_cell`, the gradient of the final cell."""
    length = hs.shape[1]
    zeros = ops.zeros_like(hs[:, 0])
    U_t = ops.transpose(U)

    def step(j, carry):
        grad_h, grad_c, grad_z = carry
        t = length - 1 - j
        grad_h = grad_h + read_step(upstream, t)
        i, f, g, o = ops.split(read_step(acts, t), 4, axis=-1)
        previous = ops.maximum(t - 1, 0)
        first = ops.cast(ops.equal(t, 0), "float32")
        c_prev = read_step(cs, previous) * (1.0 - first)
        if start is not None:
            c_prev = c_prev + start[1] * first
        c = f * c_prev + i * g  # the unmasked new cell
        tanh_c = ops.tanh(c)
        if mask is None:
            dh, dc_in = grad_h, grad_c
        else:
            m = read_step(mask, t)
            dh, dc_in = m * grad_h, m * grad_c
        dc = dc_in + dh * o * (1.0 - tanh_c * tanh_c)
        dz = ops.concatenate(
            [
                dc * g * i * (1.0 - i),
                dc * c_prev * f * (1.0 - f),
                dc * i * (1.0 - g * g),
                dh * tanh_c * o * (1.0 - o),
            ],
            axis=-1,
        )
        grad_z = write_step(grad_z, t, dz)
        next_h = ops.matmul(dz, U_t)
        next_c = dc * f
        if mask is not None:
            next_h = next_h + (1.0 - m) * grad_h
            next_c = next_c + (1.0 - m) * grad_c
        return next_h, next_c, grad_z

    grad_cell = zeros if grad_cell is None else grad_cell
    initial = (zeros, grad_cell, ops.zeros_like(acts))
    grad_h0, grad_c0, grad_z = ops.fori_loop(0, length, step, initial)
    h0 = zeros if start is None else start[0]
    previous_h = ops.concatenate([h0[:, None], hs[:, :-1]], axis=1)
    grad_U = ops.einsum("bth,btg->hg", previous_h, grad_z)
    if start is None:
        return grad_z, grad_U
    return grad_z, grad_U, grad_h0, grad_c0


def _differentiable(gates, U, mask):
    if mask is None:

        @ops.custom_gradient
        def run(gates, U):
            hs, cs, acts = _forward(gates, U, None)

            def grad(*args, upstream=None):
                upstream = args[0] if upstream is None else upstream
                return _backward(U, hs, cs, acts, None, upstream)

            return hs, grad

        return run(gates, U)

    @ops.custom_gradient
    def run_masked(gates, U, mask):
        hs, cs, acts = _forward(gates, U, mask)

        def grad(*args, upstream=None):
            upstream = args[0] if upstream is None else upstream
            grad_z, grad_U = _backward(U, hs, cs, acts, mask, upstream)
            return grad_z, grad_U, ops.zeros_like(mask)

        return hs, grad

    return run_masked(gates, U, mask)


def _differentiable_with_state(gates, U, mask, initial_state):
    """`(h, c_T)` from `initial_state` (zeros when `None`), differentiable
    in the initial state and through the final cell too."""
    inputs = [gates, U]
    if initial_state is None:
        zeros = ops.zeros_like(gates[:, 0, : U.shape[0]])
        initial_state = (zeros, zeros)
    inputs.extend(initial_state)
    if mask is not None:
        inputs.append(mask)

    @ops.custom_gradient
    def run(gates, U, h0, c0, *mask):
        mask = mask[0] if mask else None
        hs, cs, acts = _forward(gates, U, mask, h0, c0)

        def grad(*args, upstream=None):
            upstream = args if upstream is None else upstream
            if len(upstream) == 1:
                upstream = upstream[0]
            grad_h, grad_cell = upstream
            if grad_h is None:
                grad_h = ops.zeros_like(hs)
            grads = _backward(
                U, hs, cs, acts, mask, grad_h, (h0, c0), grad_cell
            )
            if mask is None:
                return grads
            return (*grads, ops.zeros_like(mask))

        return (hs, cs[:, -1]), grad

    return run(*inputs)
