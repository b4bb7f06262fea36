import keras
from keras import ops

from kerasseq.layers.sequence_layer import SequenceLayer
from kerasseq.layers.sequence_layer import state_after
from kerasseq.ops import checks
from kerasseq.ops.linear_recurrence import linear_recurrence
from kerasseq.ops.linear_recurrence import linear_recurrence_step


@keras.saving.register_keras_serializable(package="kerasseq")
class QuasiLSTM(SequenceLayer):
    """A quasi-LSTM: LSTM gates computed from the input alone.

        f_t, i_t, o_t = sigmoid(W_{f,i,o} x_t + b_{f,i,o})
        z_t = tanh(W_z x_t + b_z)
        c_t = f_t * c_{t-1} + i_t * z_t
        h_t = o_t * tanh(c_t)

    Without the hidden state in the gates, the cell update is a diagonal
    linear recurrence in `c`, so a whole sequence trains in parallel through
    `kerasseq.ops.linear_recurrence` (the "fo-pooling" of quasi-recurrent
    networks); `step` carries `c`. The forget-gate bias starts at 1, as
    Keras's LSTM does, so that the cell remembers from the start.

    Args:
        units: int. Width of the cell. Defaults to the input width; a
            different width is projected back to the input width.
        mode: the `linear_recurrence` mode (`"auto"`, `"recurrent"`,
            `"chunk"`, `"parallel"`).
        chunk_size: int, the `linear_recurrence` chunk size.
        kernel_initializer: initializer of the gate kernel.
        **kwargs: other keyword arguments of `keras.layers.Layer`.

    Call arguments:
        As `SequenceLayer`'s. Padded steps leave the cell unchanged
        (forget gate 1, input gate 0).

    Example:

    >>> layer = QuasiLSTM()
    >>> layer(keras.random.normal((2, 10, 32))).shape
    (2, 10, 32)

    Reference:
        - [Bradbury et al., 2017](https://arxiv.org/abs/1611.01576),
          quasi-recurrent neural networks.
    """

    def __init__(
        self,
        units=None,
        mode="auto",
        chunk_size=64,
        kernel_initializer="glorot_uniform",
        **kwargs,
    ):
        checks.check_int("units", units, allow_none=True)
        super().__init__(**kwargs)
        self.units = units
        self.set_scan_options(mode, chunk_size)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape):
        hidden_dim = input_shape[-1]
        units = self.units or hidden_dim
        self.gates = keras.layers.Dense(
            4 * units,
            kernel_initializer=self.kernel_initializer,
            bias_initializer=_ForgetBiasOne(),
            dtype=self.dtype_policy,
            name="gates",
        )
        self.gates.build((None, hidden_dim))
        self.projection = None
        if units != hidden_dim:
            self.projection = keras.layers.Dense(
                hidden_dim, dtype=self.dtype_policy, name="projection"
            )
            self.projection.build((None, units))

    def _units(self):
        return self.gates.kernel.shape[1] // 4

    def _gates(self, inputs, keep=None):
        """Decays f, inputs i * z and output gates o, in float32."""
        gates = ops.cast(self.gates(inputs), "float32")
        f, i, z, o = ops.split(gates, 4, axis=-1)
        f, i = ops.sigmoid(f), ops.sigmoid(i)
        if keep is not None:
            keep = ops.cast(keep, "float32")[..., None]
            f = keep * f + (1.0 - keep)
            i = keep * i
        return f, i * ops.tanh(z), ops.sigmoid(o)

    def _output(self, c, o):
        h = ops.cast(o * ops.tanh(c), self.compute_dtype)
        return h if self.projection is None else self.projection(h)

    def call(self, inputs, padding_mask=None, training=None, mask=None):
        width = self.gates.kernel.shape[0]
        checks.check_input_width("inputs", inputs, 3, width, padding_mask)
        inputs, padding_mask = self.mask_inputs(inputs, padding_mask, mask)
        f, iz, o = self._gates(inputs, padding_mask)
        c = linear_recurrence(f, iz, mode=self.mode, chunk_size=self.chunk_size)
        return self._output(c, o)

    def get_initial_state(self, batch_size, max_length=None):
        """Returns the zero cell `(batch_size, units)` in float32.
        `max_length` is unused: the state does not grow."""
        return ops.zeros((batch_size, self._units()), "float32")

    def step(self, inputs, state):
        """Advances one token: `inputs` (B, H) -> (outputs (B, H), state)."""
        checks.check_input_width(
            "inputs", inputs, 2, self.gates.kernel.shape[0]
        )
        checks.check_shape("state", state, (inputs.shape[0], self._units()))
        f, iz, o = self._gates(inputs)
        c, state = linear_recurrence_step(f, iz, state)
        return self._output(c, o), state

    def prefill(self, inputs, state=None, length=None, max_length=None):
        """Runs a prompt `(B, T, H)` in one pass: `(outputs (B, T, H),
        state)`, the cell after it (see `SequenceLayer`)."""
        checks.check_input_width(
            "inputs", inputs, 3, self.gates.kernel.shape[0]
        )
        if state is not None:
            checks.check_shape("state", state, (inputs.shape[0], self._units()))
        f, iz, o = self._gates(inputs)
        c = linear_recurrence(
            f,
            iz,
            initial_state=state,
            mode=self.mode,
            chunk_size=self.chunk_size,
        )
        return self._output(c, o), state_after(c, length)

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="kerasseq")
class _ForgetBiasOne(keras.initializers.Initializer):
    """Zeros, except ones over the first quarter (the forget gate)."""

    def __call__(self, shape, dtype=None):
        units = shape[-1] // 4
        return ops.concatenate(
            [ops.ones((units,), dtype), ops.zeros((shape[-1] - units,), dtype)]
        )
