"""Dense linear recurrences, h_t = A h_{t-1} + b_t with one matrix A.

The recurrence of a linear RNN whose transition is a full `(N, N)` matrix
shared over time (Bar, Seleznova et al. 2025 study its initialisation).
Unlike the diagonal case (`linear_recurrence`) there is no cheap parallel
form: an associative scan would multiply `N x N` matrices, O(N^3 log T)
work against O(N^2 T) for the loop, so the op is a compiled loop over time
with a hand-written backward pass, which is what makes it trainable under
XLA (autodiff through a compiled loop is slow; see README_scans.md).

Dimension letters (glossary: kerasseq/ops/README.md): B batch, T length,
N state size.

Backward pass: with upstream gradients u_t = dL/dh_t, the gradient of the
state obeys the same recurrence run backwards with the transposed matrix,

    g_t = u_t + A^T g_{t+1},   g_T = 0,

and then dL/db_t = g_t, dL/dA = sum_t g_t h_{t-1}^T (one matmul over batch
and time) and dL/dh_{-1} = A^T g_0.
"""

from keras import ops

from kerasseq.ops import checks
from kerasseq.ops import dispatch
from kerasseq.ops import modes

# the layers' check of `mode` (LinearRNN); the table is kerasseq.ops.modes
MODES = modes.MODES["matrix_recurrence"]


def matrix_recurrence(
    A,
    b,
    initial_state=None,
    return_final_state=False,
    reverse=False,
    mode="auto",
):
    """Runs h_t = A h_{t-1} + b_t over time for a dense matrix `A`.

    Computes in float32 whatever the input dtype, under `jit_compile=True`
    and `jax.jit`, differentiable in every input with a hand-written
    backward pass.

    Readable reference: `kerasseq.ops.reference.matrix_recurrence`.

    Args:
        A: the transition, `(N, N)`, real.
        b: inputs, `(B, T, N)`, real.
        initial_state: optional h_{-1} `(B, N)` (h_T when `reverse`);
            zeros when `None`.
        return_final_state: bool. Also return the last state.
        reverse: bool. Run from the end: h_t = A h_{t+1} + b_t.
        mode: `"auto"` or `"recurrent"`, the only form (see the module
            docstring for why there is no parallel one).

    Returns:
        h `(B, T, N)` in the dtype of `b`; with `return_final_state` a
        tuple `(h, final_state)`, `final_state` `(B, N)` in float32.

    Example:

    >>> A = 0.5 * keras.ops.eye(3)
    >>> h = matrix_recurrence(A, keras.ops.ones((2, 4, 3)))
    >>> h.shape
    (2, 4, 3)
    """
    modes.check("matrix_recurrence", mode)
    A = checks.float_tensor("A", A)
    b = checks.float_tensor("b", b)
    checks.check_rank("b", b, (3,), "(B, T, N)")
    size = b.shape[-1]
    checks.check_shape("A", A, (size, size), "(N, N) with N of `b`")
    checks.check_static_length("b", b)
    out_dtype = b.dtype
    if initial_state is not None:
        initial_state = checks.float_tensor("initial_state", initial_state)
        checks.check_shape(
            "initial_state", initial_state, (b.shape[0], size), "(B, N)"
        )
        initial_state = ops.cast(initial_state, "float32")
    h = _differentiable(
        ops.cast(A, "float32"), ops.cast(b, "float32"), initial_state, reverse
    )
    outputs = ops.cast(h, out_dtype)
    if not return_final_state:
        return outputs
    return outputs, h[:, 0] if reverse else h[:, -1]


def matrix_recurrence_step(A, b_t, state):
    """Advances one step: h_t = A state + b_t.

    Args:
        A: `(N, N)`.
        b_t: `(B, N)`.
        state: h_{t-1} `(B, N)`, or `None` for zeros.

    Returns:
        `(h_t, new_state)`: `h_t` in the dtype of `b_t`, `new_state` the
        same values in float32.
    """
    b_t = ops.convert_to_tensor(b_t)
    checks.check_rank("b_t", b_t, (2,), "(B, N)")
    size = b_t.shape[-1]
    checks.check_shape("A", A, (size, size), "(N, N) with N of `b_t`")
    h = ops.cast(b_t, "float32")
    if state is not None:
        checks.check_shape("state", state, b_t.shape, "(B, N) of `b_t`")
        h = h + ops.matmul(ops.cast(state, "float32"), ops.transpose(A))
    return ops.cast(h, b_t.dtype), h


def _loop(M, b, initial_state, reverse):
    """h_t = h_{t-1} @ M + b_t over the rows of `b` (B, T, N), batch-major,
    reading and writing in place as `linear_recurrence` does."""
    if initial_state is None:
        initial_state = ops.zeros_like(b[:, 0])

    def update(h, t):
        return ops.matmul(h, M) + dispatch.read_step(b, t)

    return dispatch.state_loop(
        update, initial_state, ops.zeros_like(b), reverse
    )


def _differentiable(A, b, initial_state, reverse):
    def run(A, b, initial_state):
        h = _loop(ops.transpose(A), b, initial_state, reverse)

        def backward(upstream):
            # row vectors: h_t = h_{t-1} @ A^T + b_t, so g_t = u_t +
            # g_{t+1} @ A (module docstring)
            g = _loop(A, upstream, None, not reverse)
            previous = dispatch.previous_states(h, initial_state, reverse)
            grad_A = ops.einsum("btn,btm->nm", g, previous)
            g_edge = g[:, -1] if reverse else g[:, 0]
            return grad_A, g, ops.matmul(g_edge, A)

        return h, backward

    return dispatch.custom_gradient(run, A, b, initial_state)
