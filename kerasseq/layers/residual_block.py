import keras

from kerasseq.layers.sequence_layer import SequenceLayer
from kerasseq.ops import checks

BLOCK_TYPES = ("pre_norm", "parallel", "post_norm")
NORMALIZATIONS = ("layer_norm", "rms_norm")


def mixer_layer(mixer):
    """`mixer` as a Keras layer: the layer itself, or the layer its config
    (as `get_config` saved it) describes."""
    if isinstance(mixer, dict):
        mixer = keras.saving.deserialize_keras_object(mixer)
    if not isinstance(mixer, keras.layers.Layer):
        raise ValueError(
            "Received an invalid value for argument `mixer`, expected a "
            f"keras.layers.Layer or its config, got {mixer!r}."
        )
    return mixer


@keras.saving.register_keras_serializable(package="kerasseq")
def gelu_approximate(x):
    """GELU by its tanh approximation (GPT-2's `gelu_new`)."""
    return keras.activations.gelu(x, approximate=True)


def make_norm(normalization, epsilon, dtype, name):
    """A `"layer_norm"` (with bias) or `"rms_norm"` (scale only) layer."""
    checks.check_choice("normalization", normalization, NORMALIZATIONS)
    if normalization == "rms_norm":
        return keras.layers.RMSNormalization(
            epsilon=epsilon, dtype=dtype, name=name
        )
    return keras.layers.LayerNormalization(
        epsilon=epsilon, dtype=dtype, name=name
    )


def _activation(name):
    return gelu_approximate if name == "gelu_approximate" else name


@keras.saving.register_keras_serializable(package="kerasseq")
class ResidualBlock(SequenceLayer):
    """Residual block: a token mixer, then an MLP.

    The same block wraps every mixer, so that models differ only in how
    they mix tokens. `block_type` places the norms as the Transformers
    kerasseq loads weights of do:

    - `"pre_norm"` (GPT-2, Mamba; the default): `x + mixer(norm(x))`, then
      `x + mlp(norm(x))`.
    - `"parallel"` (GPT-NeoX / Pythia): `x + mixer(norm1(x)) +
      mlp(norm2(x))`.
    - `"post_norm"` (BERT, RoBERTa, BigBird, Longformer):
      `x = norm1(x + mixer(x))`, then `norm2(x + mlp(x))`.

    Args:
        mixer: a token-mixer layer (or its serialized config), with the
            signature `mixer(x, padding_mask=None, training=None)`; for
            decoding also `get_initial_state(batch_size, max_length)`,
            `step(x_t, state)` and `prefill(x, state, length, max_length)`
            (see `SequenceLayer`).
        mlp_ratio: float. The MLP's hidden width as a multiple of the input
            width; 0 drops the MLP.
        activation: the MLP's activation: a Keras activation name, or
            `"gelu_approximate"` (GELU's tanh approximation).
        dropout: float. Dropout rate on both residual branches.
        layer_norm_epsilon: float. Epsilon of the norms.
        block_type: `"pre_norm"`, `"parallel"` or `"post_norm"`.
        normalization: `"layer_norm"` or `"rms_norm"`.
        **kwargs: other keyword arguments of `keras.layers.Layer`.

    Call arguments:
        inputs: tensor of shape `(batch_size, seq_len, hidden_dim)`.
        padding_mask: optional boolean tensor `(batch_size, seq_len)`.
        training: bool.

    Returns:
        Tensor of the input's shape.
    """

    def __init__(
        self,
        mixer,
        mlp_ratio=4,
        activation="gelu",
        dropout=0.0,
        layer_norm_epsilon=1e-5,
        block_type="pre_norm",
        normalization="layer_norm",
        **kwargs,
    ):
        checks.check_number(
            "mlp_ratio", mlp_ratio, "a non-negative number", lambda v: v >= 0
        )
        checks.check_rate("dropout", dropout)
        checks.check_choice("block_type", block_type, BLOCK_TYPES)
        checks.check_choice("normalization", normalization, NORMALIZATIONS)
        if block_type == "parallel" and not mlp_ratio:
            raise ValueError(
                "A `block_type='parallel'` block needs an MLP, got "
                f"mlp_ratio={mlp_ratio!r}."
            )
        super().__init__(**kwargs)
        self.mixer = mixer_layer(mixer)
        self.mlp_ratio = mlp_ratio
        self.activation = activation
        self.dropout = dropout
        self.layer_norm_epsilon = layer_norm_epsilon
        self.block_type = block_type
        self.normalization = normalization

    def build(self, input_shape):
        hidden_dim = input_shape[-1]
        checks.check_int("hidden_dim", hidden_dim)
        policy = self.dtype_policy

        def norm(name):
            layer = make_norm(
                self.normalization, self.layer_norm_epsilon, policy, name
            )
            layer.build(input_shape)
            return layer

        self.mixer_norm = norm("mixer_norm")
        self.mixer.build(input_shape)
        self.mixer_dropout = keras.layers.Dropout(self.dropout)
        self.mlp_in = None
        mlp_dim = int(round(self.mlp_ratio * hidden_dim))
        if mlp_dim > 0:
            self.mlp_norm = norm("mlp_norm")
            self.mlp_in = keras.layers.Dense(
                mlp_dim,
                activation=_activation(self.activation),
                dtype=policy,
                name="mlp_in",
            )
            self.mlp_in.build(input_shape)
            self.mlp_out = keras.layers.Dense(
                hidden_dim, dtype=policy, name="mlp_out"
            )
            self.mlp_out.build((*input_shape[:-1], mlp_dim))
            self.mlp_dropout = keras.layers.Dropout(self.dropout)

    def _mlp(self, x, training):
        h = self.mlp_out(self.mlp_in(x))
        return self.mlp_dropout(h, training=training)

    def _finish(self, inputs, h, training):
        """The block's output from its input and the mixer's output."""
        if self.block_type == "post_norm":
            x = self.mixer_norm(inputs + h)
            if self.mlp_in is None:
                return x
            return self.mlp_norm(x + self._mlp(x, training))
        if self.block_type == "parallel":
            return inputs + h + self._mlp(self.mlp_norm(inputs), training)
        x = inputs + h
        if self.mlp_in is None:
            return x
        return x + self._mlp(self.mlp_norm(x), training)

    def call(self, inputs, padding_mask=None, training=None, mask=None):
        inputs, padding_mask = self.mask_inputs(inputs, padding_mask, mask)
        if self.block_type == "post_norm":
            mixer_inputs = inputs
        else:
            mixer_inputs = self.mixer_norm(inputs)
        h = self.mixer(
            mixer_inputs, padding_mask=padding_mask, training=training
        )
        h = self.mixer_dropout(h, training=training)
        return self._finish(inputs, h, training)

    def get_initial_state(self, batch_size, max_length=None):
        return self.mixer.get_initial_state(batch_size, max_length=max_length)

    def step(self, inputs, state):
        """Advances one token: `inputs` (B, D) -> (outputs (B, D), state)."""
        if self.block_type == "post_norm":
            h, state = self.mixer.step(inputs, state)
        else:
            h, state = self.mixer.step(self.mixer_norm(inputs), state)
        return self._finish(inputs, h, training=False), state

    def prefill(self, inputs, state=None, length=None, max_length=None):
        """Runs a prompt `(B, T, D)` in one pass with the mixer's
        `prefill`: `(outputs (B, T, D), state)` (see `SequenceLayer`)."""
        mixer_inputs = inputs
        if self.block_type != "post_norm":
            mixer_inputs = self.mixer_norm(inputs)
        h, state = self.mixer.prefill(
            mixer_inputs, state, length=length, max_length=max_length
        )
        return self._finish(inputs, h, training=False), state

    def compute_output_shape(self, input_shape):
        return input_shape
