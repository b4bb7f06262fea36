import math

import keras
from keras import ops

from kerasseq.layers.glu import apply_glu
from kerasseq.layers.glu import build_glu
from kerasseq.layers.glu import complex_readout
from kerasseq.layers.sequence_layer import SequenceLayer
from kerasseq.layers.sequence_layer import add_float32_weight
from kerasseq.layers.sequence_layer import state_after
from kerasseq.ops import checks
from kerasseq.ops.dispatch import make_complex
from kerasseq.ops.linear_recurrence import linear_recurrence
from kerasseq.ops.linear_recurrence import linear_recurrence_step

# keeps the initial |lambda|^2 and phases away from 0 and 1, where the log
# parametrisation would start at +-inf (a draw of exactly 0 or 1)
_TINY = 1e-7


@keras.saving.register_keras_serializable(package="kerasseq")
class LRU(SequenceLayer):
    """The Linear Recurrent Unit as a token mixer: a complex diagonal RNN.

    Each of the N state channels is a complex linear recurrence with a
    learned eigenvalue `lambda` inside the unit disk, fed by a normalised
    complex input projection and read out by a complex output projection:

        lambda = exp(-exp(nu_log) + i exp(theta_log))
        h_t = lambda * h_{t-1} + (exp(gamma_log) * B) x_t
        y_t = Re(C h_t) + D * x_t

    with `B = B_re + i B_im` and `C = C_re + i C_im`. The recurrence runs
    in complex64 through `kerasseq.ops.linear_recurrence`, and `step`
    carries `h`: constant memory per token. With `use_glu` the output goes
    through the paper's GELU and gated linear unit,
    `glu_out(gelu(y)) * sigmoid(glu_gate(gelu(y)))` (GELU in its tanh
    form, as in the JAX reference code); the pre-norm and the residual
    connection of the paper's block come from `ResidualBlock`.

    Initialisation follows the paper: `|lambda|` uniform on the ring
    between `r_min` and `r_max` (uniform in area: `|lambda|^2` uniform in
    `[r_min^2, r_max^2]`), the phase uniform in `[0, max_phase]`,
    `exp(gamma_log) = sqrt(1 - |lambda|^2)` so that every state channel
    starts with the variance of its input, `B` and `C` Gaussian.

    Weights are named and shaped as in the reference implementation
    (`nu_log`, `theta_log`, `gamma_log`, `B_re`, `B_im`, `C_re`, `C_im`,
    `D`), with the kernels in the Keras convention `x @ B`: `B_re` is the
    reference `(N, H)` matrix transposed, `C_re` the `(H, N)` one.

    Dimension letters: H the input width `hidden_dim`, N `state_size`.

    Args:
        state_size: int, N, or `None` for H. Number of complex state
            channels.
        r_min, r_max: floats, `0 <= r_min < r_max <= 1`. The ring of the
            initial eigenvalue magnitudes.
        max_phase: float > 0. Initial phases are drawn in
            `[0, max_phase]`.
        use_glu: bool. Apply the GELU and gated linear unit to the output.
        mode: the `linear_recurrence` mode (`"auto"`, `"recurrent"`,
            `"chunk"`, `"parallel"`).
        chunk_size: int, the `linear_recurrence` chunk size.
        **kwargs: other keyword arguments of `keras.layers.Layer`.

    Call arguments:
        As `SequenceLayer`'s. Padded steps feed zeros into the
        recurrence, so left padding leaves the state at zero and the
        outputs at real tokens unchanged (right padding cannot reach
        them).

    Example:

    The eigenvalues start in the ring `r_min <= |lambda| <= r_max`:

    >>> layer = LRU(state_size=64, r_min=0.9, r_max=0.99)
    >>> layer.build((None, None, 32))
    >>> nu = np.exp(keras.ops.convert_to_numpy(layer.nu_log))
    >>> bool(np.all((0.9 <= np.exp(-nu)) & (np.exp(-nu) <= 0.99)))
    True

    Reference:
        - [Orvieto et al., 2023](https://arxiv.org/abs/2303.06349)
    """

    def __init__(
        self,
        state_size=None,
        r_min=0.0,
        r_max=1.0,
        max_phase=2 * math.pi,
        use_glu=True,
        mode="auto",
        chunk_size=64,
        **kwargs,
    ):
        checks.check_int("state_size", state_size, allow_none=True)
        numbers = checks.is_number(r_min) and checks.is_number(r_max)
        if not numbers or not (0 <= r_min < r_max <= 1):
            raise ValueError(
                "Received invalid values for arguments `r_min` and `r_max`, "
                "expected 0 <= r_min < r_max <= 1, got "
                f"r_min={r_min!r} and r_max={r_max!r}."
            )
        checks.check_number(
            "max_phase", max_phase, "a positive number", lambda v: v > 0
        )
        super().__init__(**kwargs)
        self.state_size = state_size
        self.r_min = r_min
        self.r_max = r_max
        self.max_phase = max_phase
        self.use_glu = use_glu
        self.set_scan_options(mode, chunk_size)

    def build(self, input_shape):
        hidden_dim = input_shape[-1]
        n = self._states(hidden_dim)
        # the recurrence weights are read in float32 under mixed precision
        # too (autocast=False): bfloat16 would round the eigenvalues
        self.nu_log = add_float32_weight(
            self, "nu_log", (n,), _RingNuLog(self.r_min, self.r_max)
        )
        self.theta_log = add_float32_weight(
            self, "theta_log", (n,), _PhaseLog(self.max_phase)
        )
        # read from the nu_log just drawn: exp(gamma) = sqrt(1 - |lambda|^2)
        self.gamma_log = add_float32_weight(
            self, "gamma_log", (n,), _GammaLogOf(self.nu_log)
        )
        # real and imaginary parts each of variance 1 / (2H): the complex
        # input B x_t has the variance of one input channel
        b_std = (2 * hidden_dim) ** -0.5
        self.B_re = self._normal("B_re", (hidden_dim, n), b_std)
        self.B_im = self._normal("B_im", (hidden_dim, n), b_std)
        # 1 / N, as in the paper, rather than 1 / (2N): Re(C h) =
        # C_re h_re - C_im h_im sums 2N real terms, each of variance
        # Var(C) E|h|^2 / 2, so Var(y) = N Var(C) E|h|^2 = E|h|^2, which
        # the gamma normalisation keeps at the input variance
        c_std = n**-0.5
        self.C_re = self._normal("C_re", (n, hidden_dim), c_std)
        self.C_im = self._normal("C_im", (n, hidden_dim), c_std)
        self.D = self._normal("D", (hidden_dim,), 1.0)
        self.glu_out = self.glu_gate = None
        if self.use_glu:
            build_glu(self, hidden_dim)

    def _states(self, hidden_dim):
        return hidden_dim if self.state_size is None else self.state_size

    def _normal(self, name, shape, stddev):
        # a fresh initializer per weight: one unseeded instance reused would
        # give every weight the same values
        return add_float32_weight(
            self, name, shape, keras.initializers.RandomNormal(stddev=stddev)
        )

    def _check_width(self, name, x, rank, padding_mask=None):
        checks.check_input_width(name, x, rank, self.D.shape[0], padding_mask)

    def _eigenvalues(self):
        """lambda `(N,)` in complex64."""
        magnitude = ops.exp(-ops.exp(self.nu_log))
        phase = ops.exp(self.theta_log)
        return make_complex(
            magnitude * ops.cos(phase), magnitude * ops.sin(phase)
        )

    def _inputs(self, x):
        """The recurrence inputs `(exp(gamma) B) x` in complex64 from `x`
        `(..., H)` in float32."""
        scale = ops.exp(self.gamma_log)
        return make_complex(
            ops.matmul(x, self.B_re * scale), ops.matmul(x, self.B_im * scale)
        )

    def _outputs(self, h, x):
        """`Re(C h) + D x`, then the GLU, in the compute dtype."""
        y = complex_readout(h, self.C_re, self.C_im)
        y = ops.cast(y + self.D * x, self.compute_dtype)
        return apply_glu(self, y) if self.use_glu else y

    def call(self, inputs, padding_mask=None, training=None, mask=None):
        self._check_width("inputs", inputs, 3, padding_mask)
        inputs, padding_mask = self.mask_inputs(inputs, padding_mask, mask)
        x = ops.cast(inputs, "float32")
        if padding_mask is not None:
            x = x * ops.cast(padding_mask, x.dtype)[..., None]
        b = self._inputs(x)
        a = self._eigenvalues() * ops.ones_like(b)
        h = linear_recurrence(a, b, mode=self.mode, chunk_size=self.chunk_size)
        return self._outputs(h, x)

    def get_initial_state(self, batch_size, max_length=None):
        """Returns the zero state `h`, complex64 `(batch_size, N)`.
        `max_length` is unused: the state does not grow."""
        return ops.zeros((batch_size, self.nu_log.shape[0]), "complex64")

    def step(self, inputs, state):
        """Advances one token: `inputs` (B, H) -> (outputs (B, H), state)."""
        self._check_width("inputs", inputs, 2)
        checks.check_shape(
            "state", state, (inputs.shape[0], self.nu_log.shape[0])
        )
        x = ops.cast(inputs, "float32")
        b = self._inputs(x)
        a = self._eigenvalues() * ops.ones_like(b)
        h, new_state = linear_recurrence_step(a, b, state)
        return self._outputs(h, x), new_state

    def prefill(self, inputs, state=None, length=None, max_length=None):
        """Runs a prompt `(B, T, H)` in one pass: `(outputs (B, T, H),
        state)`, the state `h` after it (see `SequenceLayer`)."""
        self._check_width("inputs", inputs, 3)
        if state is not None:
            checks.check_shape(
                "state", state, (inputs.shape[0], self.nu_log.shape[0])
            )
        x = ops.cast(inputs, "float32")
        b = self._inputs(x)
        a = self._eigenvalues() * ops.ones_like(b)
        h = linear_recurrence(
            a,
            b,
            initial_state=state,
            mode=self.mode,
            chunk_size=self.chunk_size,
        )
        return self._outputs(h, x), state_after(h, length)

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="kerasseq")
class _RingNuLog(keras.initializers.Initializer):
    """`nu_log` such that `|lambda| = exp(-exp(nu_log))` is uniform on the
    ring `r_min <= |lambda| <= r_max` (in area: `|lambda|^2` uniform)."""

    def __init__(self, r_min, r_max, seed=None):
        self.r_min = r_min
        self.r_max = r_max
        self.seed = seed

    def __call__(self, shape, dtype=None):
        u = keras.random.uniform(shape, seed=self.seed, dtype="float32")
        low, high = self.r_min**2, self.r_max**2
        squared = ops.clip(u * (high - low) + low, _TINY, 1.0 - _TINY)
        # |lambda|^2 = exp(-2 nu)
        return ops.log(-0.5 * ops.log(squared))

    def get_config(self):
        return {"r_min": self.r_min, "r_max": self.r_max, "seed": self.seed}


@keras.saving.register_keras_serializable(package="kerasseq")
class _PhaseLog(keras.initializers.Initializer):
    """`theta_log` such that the phase `exp(theta_log)` is uniform in
    `[0, max_phase]`."""

    def __init__(self, max_phase, seed=None):
        self.max_phase = max_phase
        self.seed = seed

    def __call__(self, shape, dtype=None):
        u = keras.random.uniform(shape, seed=self.seed, dtype="float32")
        return ops.log(self.max_phase * ops.maximum(u, _TINY))

    def get_config(self):
        return {"max_phase": self.max_phase, "seed": self.seed}


class _GammaLogOf(keras.initializers.Initializer):
    """`log(sqrt(1 - |lambda|^2))` for the current value of a `nu_log`
    variable, `|lambda|^2 = exp(-2 exp(nu_log))`. Holds the variable, so it
    is not serializable; it only ever initialises `gamma_log` in `build`."""

    def __init__(self, nu_log):
        self.nu_log = nu_log

    def __call__(self, shape, dtype=None):
        nu = ops.exp(ops.convert_to_tensor(self.nu_log, "float32"))
        # 1 - exp(-2 nu) without the cancellation near |lambda| = 1
        return 0.5 * ops.log(-ops.expm1(-2.0 * nu))
