import keras

from kerasseq.layers.validation import check_positive_int
from kerasseq.layers.validation import check_rate


@keras.saving.register_keras_serializable(package="kerasseq")
class ResidualBlock(keras.layers.Layer):
    """Pre-norm residual block: a token mixer, then an MLP.

    `x + mixer(norm(x))`, then `x + mlp(norm(x))`. The same block wraps every
    mixer, so that models differ only in how they mix tokens.

    Args:
        mixer: a token-mixer layer (or its serialized config), with the
            signature `mixer(x, padding_mask=None, training=None)`; for
            decoding also `get_initial_state(batch_size, max_length)` and
            `step(x_t, state)`.
        mlp_ratio: float. The MLP's hidden width as a multiple of the input
            width; 0 drops the MLP.
        activation: the MLP's activation.
        dropout: float. Dropout rate on both residual branches.
        layer_norm_epsilon: float. Epsilon of the layer norms.
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
        **kwargs,
    ):
        is_number = isinstance(mlp_ratio, (int, float))
        if isinstance(mlp_ratio, bool) or not is_number or mlp_ratio < 0:
            raise ValueError(
                "Received an invalid value for argument `mlp_ratio`, "
                f"expected a non-negative number, got {mlp_ratio!r}."
            )
        check_rate("dropout", dropout)
        super().__init__(**kwargs)
        if isinstance(mixer, dict):
            mixer = keras.saving.deserialize_keras_object(mixer)
        if not isinstance(mixer, keras.layers.Layer):
            raise ValueError(
                "Received an invalid value for argument `mixer`, expected a "
                f"keras.layers.Layer or its config, got {mixer!r}."
            )
        self.mixer = mixer
        self.mlp_ratio = mlp_ratio
        self.activation = activation
        self.dropout = dropout
        self.layer_norm_epsilon = layer_norm_epsilon

    def build(self, input_shape):
        hidden_dim = input_shape[-1]
        check_positive_int("hidden_dim", hidden_dim)
        policy = self.dtype_policy
        self.mixer_norm = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, dtype=policy, name="mixer_norm"
        )
        self.mixer_norm.build(input_shape)
        self.mixer.build(input_shape)
        self.mixer_dropout = keras.layers.Dropout(self.dropout)
        self.mlp_in = None
        mlp_dim = int(round(self.mlp_ratio * hidden_dim))
        if mlp_dim > 0:
            self.mlp_norm = keras.layers.LayerNormalization(
                epsilon=self.layer_norm_epsilon, dtype=policy, name="mlp_norm"
            )
            self.mlp_norm.build(input_shape)
            self.mlp_in = keras.layers.Dense(
                mlp_dim, activation=self.activation, dtype=policy, name="mlp_in"
            )
            self.mlp_in.build(input_shape)
            self.mlp_out = keras.layers.Dense(
                hidden_dim, dtype=policy, name="mlp_out"
            )
            self.mlp_out.build((*input_shape[:-1], mlp_dim))
            self.mlp_dropout = keras.layers.Dropout(self.dropout)

    def _mlp_branch(self, x, training):
        if self.mlp_in is None:
            return x
        h = self.mlp_out(self.mlp_in(self.mlp_norm(x)))
        return x + self.mlp_dropout(h, training=training)

    def call(self, inputs, padding_mask=None, training=None):
        h = self.mixer(
            self.mixer_norm(inputs),
            padding_mask=padding_mask,
            training=training,
        )
        x = inputs + self.mixer_dropout(h, training=training)
        return self._mlp_branch(x, training)

    def get_initial_state(self, batch_size, max_length=None):
        return self.mixer.get_initial_state(batch_size, max_length=max_length)

    def step(self, inputs, state):
        """Advances one token: `inputs` (B, D) -> (outputs (B, D), state)."""
        h, state = self.mixer.step(self.mixer_norm(inputs), state)
        return self._mlp_branch(inputs + h, training=False), state

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        base_config = super().get_config()
        config = {
            "mixer": keras.saving.serialize_keras_object(self.mixer),
            "mlp_ratio": self.mlp_ratio,
            "activation": self.activation,
            "dropout": self.dropout,
            "layer_norm_epsilon": self.layer_norm_epsilon,
        }
        return {**base_config, **config}
