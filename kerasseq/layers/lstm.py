import keras
from keras import ops

from kerasseq.layers.sequence_layer import SequenceLayer
from kerasseq.layers.sequence_layer import real_steps
from kerasseq.ops import checks
from kerasseq.ops.lstm_recurrence import lstm_recurrence


@keras.saving.register_keras_serializable(package="kerasseq")
class LSTM(SequenceLayer):
    """Long short-term memory as a token mixer.

    Holds the weights of a `keras.layers.LSTM` (gates in Keras's order i,
    f, c, o; forget-gate bias initialised to 1) and gives it the
    token-mixer interface of kerasseq: it returns a sequence as wide as its
    input, honours padding masks, and decodes one token at a time with
    `step`. Whole sequences run on `kerasseq.ops.lstm_recurrence`, a
    compiled loop with a hand-written backward pass. The classic recurrent
    baseline of every comparison.

    Args:
        units: int. Width of the hidden state. Defaults to the input width;
            a different width is projected back to the input width.
        **kwargs: other keyword arguments of `keras.layers.Layer`.

    Call arguments:
        As `SequenceLayer`'s. Padded steps leave the state unchanged.

    Example:

    >>> layer = LSTM()
    >>> layer(keras.random.normal((2, 10, 32))).shape
    (2, 10, 32)

    Reference:
        - [Hochreiter and Schmidhuber, 1997](
          https://www.bioinf.jku.at/publications/older/2604.pdf)
    """

    def __init__(self, units=None, **kwargs):
        checks.check_int("units", units, allow_none=True)
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        hidden_dim = input_shape[-1]
        units = self.units or hidden_dim
        self.lstm = keras.layers.LSTM(
            units, return_sequences=True, dtype=self.dtype_policy, name="lstm"
        )
        self.lstm.build(input_shape)
        self.projection = None
        if units != hidden_dim:
            self.projection = keras.layers.Dense(
                hidden_dim, dtype=self.dtype_policy, name="projection"
            )
            self.projection.build((*input_shape[:-1], units))

    def _project(self, x):
        return x if self.projection is None else self.projection(x)

    def _check_inputs(self, inputs, rank, padding_mask=None):
        width = self.lstm.cell.kernel.shape[0]
        checks.check_input_width("inputs", inputs, rank, width, padding_mask)

    def call(self, inputs, padding_mask=None, training=None, mask=None):
        self._check_inputs(inputs, 3, padding_mask)
        inputs, padding_mask = self.mask_inputs(inputs, padding_mask, mask)
        # The weights are keras.layers.LSTM's (checkpoints and `step` use
        # its cell); the sequence runs on `lstm_recurrence`, whose
        # hand-written backward pass trains several times faster under XLA
        # than autodiff through the cell's loop (`experiments.benchmark
        # layers`).
        cell = self.lstm.cell
        gates = ops.matmul(inputs, cell.kernel)
        if cell.use_bias:
            gates = gates + cell.bias
        outputs = lstm_recurrence(gates, cell.recurrent_kernel, padding_mask)
        return self._project(outputs)

    def get_initial_state(self, batch_size, max_length=None):
        """Returns the zero state `[h, c]`, each `(batch_size, units)`."""
        units = self.lstm.units
        zeros = ops.zeros((batch_size, units), dtype=self.compute_dtype)
        return [zeros, zeros]

    def step(self, inputs, state):
        """Advances one token: `inputs` (B, D) -> (outputs (B, D), state)."""
        self._check_inputs(inputs, 2)
        expected = (inputs.shape[0], self.lstm.units)
        checks.check_state(state, [expected, expected])
        outputs, state = self.lstm.cell(inputs, state)
        return self._project(outputs), list(state)

    def prefill(self, inputs, state=None, length=None, max_length=None):
        """Runs a prompt `(B, T, D)` in one pass: `(outputs (B, T, D),
        state)`, the state `[h, c]` after it (see `SequenceLayer`)."""
        self._check_inputs(inputs, 3)
        if state is not None:
            expected = (inputs.shape[0], self.lstm.units)
            checks.check_state(state, [expected, expected])
        # the weights in the compute dtype, as `call` autocasts them
        cell = self.lstm.cell
        gates = ops.matmul(inputs, ops.cast(cell.kernel, inputs.dtype))
        if cell.use_bias:
            gates = gates + ops.cast(cell.bias, gates.dtype)
        recurrent_kernel = ops.cast(cell.recurrent_kernel, gates.dtype)
        keep = real_steps(length, inputs.shape[1])
        if keep is not None:
            # padded steps keep the state
            keep = ops.broadcast_to(keep[None], ops.shape(gates)[:2])
        outputs, final = lstm_recurrence(
            gates,
            recurrent_kernel,
            keep,
            initial_state=state,
            return_final_state=True,
        )
        state = [ops.cast(part, self.compute_dtype) for part in final]
        return self._project(outputs), state

    def compute_output_shape(self, input_shape):
        return input_shape
