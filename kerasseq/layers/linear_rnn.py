"""Linear RNNs with a dense or a complex diagonal transition, and the
Glorot-family initialisations of that transition studied by Bar, Seleznova
et al. (2025), "Revisiting Glorot Initialization for Long-Range Linear
Recurrences" (arXiv:2505.19827).

A Glorot matrix, entries N(0, 1/n), has its bulk of eigenvalues in the unit
disk, but its largest eigenvalue modulus sits above one for most draws at
finite n (the edge of the spectrum fluctuates like a Gumbel variable), so
the state grows like rho^t and a long sequence explodes. The paper shifts
the spectral radius just below one with a scale that depends on n.
"""

import math

import keras
import numpy as np
from keras import ops

from kerasseq.layers.glu import apply_glu
from kerasseq.layers.glu import build_glu
from kerasseq.layers.glu import complex_readout
from kerasseq.layers.sequence_layer import SequenceLayer
from kerasseq.layers.sequence_layer import add_float32_weight
from kerasseq.layers.sequence_layer import state_after
from kerasseq.ops import checks
from kerasseq.ops.linear_recurrence import linear_recurrence
from kerasseq.ops.linear_recurrence import linear_recurrence_step
from kerasseq.ops.matrix_recurrence import MODES as MATRIX_MODES
from kerasseq.ops.matrix_recurrence import matrix_recurrence
from kerasseq.ops.matrix_recurrence import matrix_recurrence_step

A_INITS = ("glorot", "rescaled_glorot", "fixed")


def transition_std(A_init, n):
    """Standard deviation of the entries of a random `(n, n)` transition.

    Args:
        A_init: `"glorot"`: 1/sqrt(n), spectral radius about 1 + O(n^-1/2),
            above one for most draws. `"rescaled_glorot"`: 1/sqrt(2n), the
            halved Glorot baseline (spectral radius about 0.71;
            `halved_glorot` in the paper's code). `"fixed"`: the paper's
            dimension-aware rescaling, 1/sqrt(n) times
            (1 + sqrt(g / 4n) + (euler_gamma + pi / sqrt(6)) / sqrt(4 g n))^-1
            with g = log(n / (2 pi log(n)^2)): the expected spectral edge
            plus one standard deviation of its Gumbel fluctuation moved
            to one (`fixed` in the paper's code).
        n: int, the state size.

    Returns:
        float.
    """
    checks.check_choice("A_init", A_init, A_INITS)
    if A_init == "glorot":
        return 1.0 / math.sqrt(n)
    if A_init == "rescaled_glorot":
        return 1.0 / math.sqrt(2 * n)
    g = math.log(n / (2 * math.pi * math.log(n) ** 2)) if n > 1 else -1.0
    if g <= 0:
        raise ValueError(
            "Received an invalid value for argument `A_init`, 'fixed' needs "
            "a state size n with log(n / (2 pi log(n)^2)) > 0, that is n >= "
            f"{_SMALLEST_FIXED_SIZE}, got state size {n}. Use "
            "A_init='rescaled_glorot' or a larger `state_size`."
        )
    edge = (
        1
        + math.sqrt(g / (4 * n))
        + (np.euler_gamma + math.pi / math.sqrt(6)) / math.sqrt(4 * g * n)
    )
    return 1.0 / (math.sqrt(n) * edge)


# the smallest n for which the Gumbel edge formula of "fixed" is defined
_SMALLEST_FIXED_SIZE = next(
    n for n in range(2, 1000) if n / (2 * math.pi * math.log(n) ** 2) > 1
)


@keras.saving.register_keras_serializable(package="kerasseq")
class GlorotTransition(keras.initializers.Initializer):
    """A dense `(n, n)` transition with N(0, std^2) entries, std from
    `transition_std(A_init, n)`."""

    def __init__(self, A_init="glorot", seed=None):
        checks.check_choice("A_init", A_init, A_INITS)
        self.A_init = A_init
        self.seed = seed

    def __call__(self, shape, dtype=None):
        std = transition_std(self.A_init, shape[-1])
        return keras.random.normal(
            shape, stddev=std, dtype=dtype or "float32", seed=self.seed
        )

    def get_config(self):
        return {"A_init": self.A_init, "seed": self.seed}


class _LinearRNNBase(SequenceLayer):
    """What the dense and diagonal linear RNNs share: input matrix B,
    output matrix C, skip D, the GELU + GLU head of the LRU block, and the
    checks of `step`'s and `prefill`'s arguments. A subclass names its
    recurrence's modes in `_MODES`."""

    _MODES = ()

    def __init__(
        self,
        state_size=None,
        A_init="glorot",
        use_glu=True,
        mode="auto",
        **kwargs,
    ):
        checks.check_choice("mode", mode, self._MODES)
        checks.check_int("state_size", state_size, allow_none=True)
        checks.check_choice("A_init", A_init, A_INITS)
        super().__init__(**kwargs)
        self.state_size = state_size
        self.A_init = A_init
        self.use_glu = use_glu
        self.mode = mode

    def _normal(self, name, shape, std):
        # float32 and read as float32 under mixed precision too
        # (autocast=False): bfloat16 would round the eigenvalues
        return add_float32_weight(
            self, name, shape, keras.initializers.RandomNormal(stddev=std)
        )

    def _build_head(self, hidden_dim):
        self.D = self._normal("D", (hidden_dim,), 1.0)
        self.glu_out = self.glu_gate = None
        if self.use_glu:
            build_glu(self, hidden_dim)

    def _head(self, y, x):
        """`y + D x`, then the GELU and gated linear unit."""
        y = ops.cast(y + self.D * ops.cast(x, "float32"), self.compute_dtype)
        return apply_glu(self, y) if self.use_glu else y

    def _width(self):
        return self.D.shape[0]

    def _check_decoding(self, inputs, rank, state, num_states):
        """Checks `step`'s (`rank` 2) or `prefill`'s (`rank` 3) `inputs`,
        and `state` against `(batch_size, num_states)` (`prefill`'s may be
        `None`: the zero state)."""
        checks.check_input_width("inputs", inputs, rank, self._width())
        if rank == 2 or state is not None:
            checks.check_shape("state", state, (inputs.shape[0], num_states))

    def _masked(self, inputs, padding_mask):
        checks.check_input_width(
            "inputs", inputs, 3, self._width(), padding_mask
        )
        if padding_mask is None:
            return inputs
        return inputs * ops.cast(padding_mask, inputs.dtype)[..., None]

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="kerasseq")
class LinearRNN(_LinearRNNBase):
    """A linear RNN with a dense transition matrix.

        h_t = A h_{t-1} + B x_t,   y_t = C h_t + D * x_t

    followed, as in the LRU block, by GELU and a gated linear unit. `A` is
    a full `(N, N)` matrix drawn by `A_init` (see `transition_std`): plain
    Glorot, halved Glorot or the dimension-aware rescaling of Bar,
    Seleznova et al. (2025). The recurrence runs as
    `kerasseq.ops.matrix_recurrence`, a compiled loop with a hand-written
    backward pass; `step` carries `h`.

    Args:
        state_size: int, N. Defaults to the input width.
        A_init: `"glorot"`, `"rescaled_glorot"` or `"fixed"`.
        use_glu: bool. GELU and a gated linear unit after the readout.
        mode: `"auto"` or `"recurrent"` (the only form of a dense
            recurrence).
        **kwargs: other keyword arguments of `keras.layers.Layer`.

    Call arguments:
        As `SequenceLayer`'s. Padded steps feed zeros into the state.

    Example:

    >>> layer = LinearRNN(A_init="rescaled_glorot")
    >>> layer(keras.random.normal((2, 10, 16))).shape
    (2, 10, 16)

    Reference:
        - [Bar, Seleznova et al., 2025](https://arxiv.org/abs/2505.19827)
    """

    _MODES = MATRIX_MODES

    def build(self, input_shape):
        hidden_dim = input_shape[-1]
        n = self.state_size or hidden_dim
        transition_std(self.A_init, n)  # 'fixed' needs a large enough n
        self.A = add_float32_weight(
            self, "A", (n, n), GlorotTransition(self.A_init)
        )
        self.B = self._normal("B", (hidden_dim, n), hidden_dim**-0.5)
        self.C = self._normal("C", (n, hidden_dim), n**-0.5)
        self._build_head(hidden_dim)

    def call(self, inputs, padding_mask=None, training=None, mask=None):
        inputs, padding_mask = self.mask_inputs(inputs, padding_mask, mask)
        x = self._masked(inputs, padding_mask)
        u = ops.matmul(ops.cast(x, "float32"), self.B)
        h = matrix_recurrence(self.A, u, mode=self.mode)
        return self._head(ops.matmul(h, self.C), inputs)

    def get_initial_state(self, batch_size, max_length=None):
        """Returns the zero state `(batch_size, N)` in float32.
        `max_length` is unused: the state does not grow."""
        return ops.zeros((batch_size, self.A.shape[0]), "float32")

    def step(self, inputs, state):
        """Advances one token: `inputs` (B, H) -> (outputs (B, H), state)."""
        self._check_decoding(inputs, 2, state, self.A.shape[0])
        u = ops.matmul(ops.cast(inputs, "float32"), self.B)
        h, state = matrix_recurrence_step(self.A, u, state)
        return self._head(ops.matmul(h, self.C), inputs), state

    def prefill(self, inputs, state=None, length=None, max_length=None):
        """Runs a prompt `(B, T, H)` in one pass: `(outputs (B, T, H),
        state)`, the state `h` after it (see `SequenceLayer`)."""
        self._check_decoding(inputs, 3, state, self.A.shape[0])
        u = ops.matmul(ops.cast(inputs, "float32"), self.B)
        h = matrix_recurrence(self.A, u, initial_state=state, mode=self.mode)
        outputs = self._head(ops.matmul(h, self.C), inputs)
        return outputs, state_after(h, length)


@keras.saving.register_keras_serializable(package="kerasseq")
class DiagonalRNN(_LinearRNNBase):
    """A linear RNN with a complex diagonal transition.

        h_t = lambda * h_{t-1} + B x_t,   y_t = Re(C h_t) + D * x_t

    followed, as in the LRU block, by GELU and a gated linear unit. The
    diagonal `lambda` holds the eigenvalues of a random matrix drawn by
    `A_init` (see `transition_std`), so its moduli follow the same
    spectral statistics as the dense `LinearRNN`, and it is trained
    directly as real and imaginary parts (`A_re`, `A_im`), without the
    LRU's exponential parametrisation or normalisation. `B` and `C` are
    complex. The recurrence runs as `kerasseq.ops.linear_recurrence` (any
    of its modes); `step` carries the complex state.

    Arguments, call arguments and reference as `LinearRNN`'s, but:

    - mode: the `linear_recurrence` mode (`"auto"`, `"recurrent"`,
      `"chunk"`, `"parallel"`);
    - chunk_size: int, the `linear_recurrence` chunk size.

    Example, the recurrence in chunks of 4 steps:

    >>> layer = DiagonalRNN(mode="chunk", chunk_size=4)
    >>> layer(keras.random.normal((2, 10, 16))).shape
    (2, 10, 16)
    """

    _MODES = checks.MODES

    def __init__(self, *args, chunk_size=64, **kwargs):
        # `state_size`, `A_init`, `use_glu`, `mode`: `LinearRNN`'s
        checks.check_int("chunk_size", chunk_size)
        super().__init__(*args, **kwargs)
        self.chunk_size = chunk_size

    def build(self, input_shape):
        hidden_dim = input_shape[-1]
        n = self.state_size or hidden_dim
        transition_std(self.A_init, n)  # 'fixed' needs a large enough n
        self.A_re = self._normal("A_re", (n,), 1.0)
        self.A_im = self._normal("A_im", (n,), 1.0)
        eigenvalues = _transition_eigenvalues(self.A_init, n)
        self.A_re.assign(eigenvalues.real.astype("float32"))
        self.A_im.assign(eigenvalues.imag.astype("float32"))
        # complex normal weights: real and imaginary parts each carry half
        # of the variance 1/fan_in
        for name, shape, fan_in in (
            ("B", (hidden_dim, n), hidden_dim),
            ("C", (n, hidden_dim), n),
        ):
            for part in ("re", "im"):
                name_ = f"{name}_{part}"
                std = (2 * fan_in) ** -0.5
                setattr(self, name_, self._normal(name_, shape, std))
        self._build_head(hidden_dim)

    def _lambda(self):
        return ops.view_as_complex(ops.stack([self.A_re, self.A_im], -1))

    def _drive(self, x):
        """B x as a complex tensor."""
        x = ops.cast(x, "float32")
        return ops.view_as_complex(
            ops.stack([ops.matmul(x, self.B_re), ops.matmul(x, self.B_im)], -1)
        )

    def _readout(self, h):
        return complex_readout(h, self.C_re, self.C_im)

    def call(self, inputs, padding_mask=None, training=None, mask=None):
        inputs, padding_mask = self.mask_inputs(inputs, padding_mask, mask)
        x = self._masked(inputs, padding_mask)
        b = self._drive(x)
        a = ops.broadcast_to(self._lambda(), ops.shape(b))
        h = linear_recurrence(a, b, mode=self.mode, chunk_size=self.chunk_size)
        return self._head(self._readout(h), inputs)

    def get_initial_state(self, batch_size, max_length=None):
        """Returns the zero state `(batch_size, N)` in complex64.
        `max_length` is unused: the state does not grow."""
        return ops.zeros((batch_size, self.A_re.shape[0]), "complex64")

    def step(self, inputs, state):
        """Advances one token: `inputs` (B, H) -> (outputs (B, H), state)."""
        self._check_decoding(inputs, 2, state, self.A_re.shape[0])
        b = self._drive(inputs)
        a = ops.broadcast_to(self._lambda(), ops.shape(b))
        h, state = linear_recurrence_step(a, b, state)
        return self._head(self._readout(h), inputs), state

    def prefill(self, inputs, state=None, length=None, max_length=None):
        """Runs a prompt `(B, T, H)` in one pass: `(outputs (B, T, H),
        state)`, the state `h` after it (see `SequenceLayer`)."""
        self._check_decoding(inputs, 3, state, self.A_re.shape[0])
        b = self._drive(inputs)
        a = ops.broadcast_to(self._lambda(), ops.shape(b))
        h = linear_recurrence(
            a,
            b,
            initial_state=state,
            mode=self.mode,
            chunk_size=self.chunk_size,
        )
        outputs = self._head(self._readout(h), inputs)
        return outputs, state_after(h, length)


def _transition_eigenvalues(A_init, n):
    """Eigenvalues of a random `(n, n)` transition drawn as `LinearRNN`
    draws its `A`, as a complex NumPy vector (conjugate pairs)."""
    matrix = GlorotTransition(A_init)((n, n), "float32")
    return np.linalg.eigvals(
        np.asarray(keras.ops.convert_to_numpy(matrix), np.float64)
    )
