"""The LSTM recurrence as a compiled loop with a hand-written backward pass.

An LSTM's input projections `x_t W + b` do not depend on the state, so they
are one matmul over the whole sequence (done by the caller). What is left
is the recurrence

    z_t = gates_t + h_{t-1} U            (B, 4Dh), gates in the order i, f, g, o
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

Dimension letters (glossary: kerasseq/ops/README.md): B batch, T length,
Dh units (the state width).
"""

from keras import ops

from kerasseq.ops import checks
from kerasseq.ops import dispatch
from kerasseq.ops import modes


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

    Readable reference: `kerasseq.ops.reference.lstm_recurrence`.

    Args:
        gates: `x_t W + b` for every step, `(B, T, 4Dh)`, the four gates in
            Keras's order: input, forget, candidate, output.
        recurrent_kernel: U, `(Dh, 4Dh)`, in the same gate order.
        mask: optional `(B, T)`, true (or 1) at real steps; a step with 0
            keeps the state and repeats the previous output.
        initial_state: optional `(h, c)`, each `(B, Dh)`, the state before
            the first step; zeros when `None`.
        return_final_state: bool. Also return `(h, c)` after the last
            step.
        mode: `"auto"` or `"recurrent"`, the only form: every step's
            gates need the previous state through a nonlinearity, so there
            is no parallel scan.

    Returns:
        h `(B, T, Dh)` in the dtype of `gates`; with `return_final_state` a
        tuple `(h, (h_T, c_T))`, the final state in float32.

    Example:

    >>> gates = keras.random.normal((2, 5, 12))
    >>> lstm_recurrence(gates, keras.random.normal((3, 12))).shape
    (2, 5, 3)
    """
    modes.check("lstm_recurrence", mode)
    gates = checks.float_tensor("gates", gates)
    recurrent_kernel = checks.float_tensor("recurrent_kernel", recurrent_kernel)
    checks.check_rank("gates", gates, (3,), "(B, T, 4Dh)")
    checks.check_rank("recurrent_kernel", recurrent_kernel, (2,), "(Dh, 4Dh)")
    units = recurrent_kernel.shape[0]
    checks.check_shape(
        "recurrent_kernel", recurrent_kernel, (units, 4 * units), "(Dh, 4Dh)"
    )
    checks.check_shape(
        "gates",
        gates,
        (gates.shape[0], gates.shape[1], 4 * units),
        "(B, T, 4Dh) with Dh of `recurrent_kernel`",
    )
    checks.check_static_length("gates", gates)
    if initial_state is not None:
        if not isinstance(initial_state, (tuple, list)) or (
            len(initial_state) != 2
        ):
            raise ValueError(
                "Received an invalid value for argument `initial_state`, "
                "expected a pair (h, c) of shapes (B, Dh), got "
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
                "(B, Dh) with Dh of `recurrent_kernel`",
            )
    out_dtype = gates.dtype
    gates = ops.cast(gates, "float32")
    recurrent_kernel = ops.cast(recurrent_kernel, "float32")
    if mask is not None:
        mask = ops.convert_to_tensor(mask)
        checks.check_shape("mask", mask, gates.shape[:2], "(B, T)")
        mask = ops.cast(mask, "float32")[..., None]
    h0, c0 = (None, None) if initial_state is None else initial_state
    h, c_final = _differentiable(gates, recurrent_kernel, mask, h0, c0)
    if not return_final_state:
        return ops.cast(h, out_dtype)
    return ops.cast(h, out_dtype), (h[:, -1], c_final)


def _forward(gates, U, mask, h0=None, c0=None):
    """The loop from `(h0, c0)` (zeros when `None`): h and c `(B, T, Dh)`
    and the activations `(B, T, 4Dh)`."""
    length = gates.shape[1]
    zeros = ops.zeros_like(gates[:, 0, : U.shape[0]])
    h0 = zeros if h0 is None else h0
    c0 = zeros if c0 is None else c0

    def step(t, carry):
        h, c, hs, cs, acts = carry
        z = dispatch.read_step(gates, t) + ops.matmul(h, U)
        i, f, g, o = ops.split(z, 4, axis=-1)
        i, f, o = ops.sigmoid(i), ops.sigmoid(f), ops.sigmoid(o)
        g = ops.tanh(g)
        c_new = f * c + i * g
        h_new = o * ops.tanh(c_new)
        if mask is not None:
            m = dispatch.read_step(mask, t)
            c_new = c + m * (c_new - c)
            h_new = h + m * (h_new - h)
        acts = dispatch.write_step(
            acts, t, ops.concatenate([i, f, g, o], axis=-1)
        )
        hs = dispatch.write_step(hs, t, h_new)
        cs = dispatch.write_step(cs, t, c_new)
        return h_new, c_new, hs, cs, acts

    hs = ops.zeros_like(gates[..., : U.shape[0]])
    initial = (h0, c0, hs, hs, ops.zeros_like(gates))
    _, _, hs, cs, acts = dispatch.fori_loop(0, length, step, initial)
    return hs, cs, acts


def _backward(U, hs, cs, acts, mask, upstream, h0, c0, grad_cell):
    """Gradients for `gates`, U and the initial state `(h0, c0)` (zeros
    when `None`) by the reverse loop (module docstring), given `grad_cell`,
    the gradient of the final cell."""
    length = hs.shape[1]
    zeros = ops.zeros_like(hs[:, 0])
    U_t = ops.transpose(U)

    def step(j, carry):
        grad_h, grad_c, grad_z = carry
        t = length - 1 - j
        grad_h = grad_h + dispatch.read_step(upstream, t)
        i, f, g, o = ops.split(dispatch.read_step(acts, t), 4, axis=-1)
        previous = ops.maximum(t - 1, 0)
        first = ops.cast(ops.equal(t, 0), "float32")
        c_prev = dispatch.read_step(cs, previous) * (1.0 - first)
        if c0 is not None:
            c_prev = c_prev + c0 * first
        c = f * c_prev + i * g  # the unmasked new cell
        tanh_c = ops.tanh(c)
        if mask is None:
            dh, dc_in = grad_h, grad_c
        else:
            m = dispatch.read_step(mask, t)
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
        grad_z = dispatch.write_step(grad_z, t, dz)
        next_h = ops.matmul(dz, U_t)
        next_c = dc * f
        if mask is not None:
            next_h = next_h + (1.0 - m) * grad_h
            next_c = next_c + (1.0 - m) * grad_c
        return next_h, next_c, grad_z

    initial = (zeros, grad_cell, ops.zeros_like(acts))
    grad_h0, grad_c0, grad_z = dispatch.fori_loop(0, length, step, initial)
    h0 = zeros if h0 is None else h0
    previous_h = ops.concatenate([h0[:, None], hs[:, :-1]], axis=1)
    grad_U = ops.einsum("bth,btg->hg", previous_h, grad_z)
    return grad_z, grad_U, grad_h0, grad_c0


def _differentiable(gates, U, mask, h0, c0):
    """`(h, c_T)` from `(h0, c0)` (zeros when `None`), differentiable in
    `gates`, U and the initial state, and through the final cell too."""

    def run(gates, U, mask, h0, c0):
        hs, cs, acts = _forward(gates, U, mask, h0, c0)

        def backward(upstream):
            grad_h, grad_cell = upstream
            grads = _backward(U, hs, cs, acts, mask, grad_h, h0, c0, grad_cell)
            grad_z, grad_U, grad_h0, grad_c0 = grads
            grad_mask = None if mask is None else ops.zeros_like(mask)
            return grad_z, grad_U, grad_mask, grad_h0, grad_c0

        return (hs, cs[:, -1]), backward

    return dispatch.custom_gradient(run, gates, U, mask, h0, c0)
