import keras
from keras import ops

from kerasseq.ops import checks


@keras.saving.register_keras_serializable(package="kerasseq")
class PositionEmbedding(keras.layers.Layer):
    """Learned absolute position embedding.

    Returns the embeddings of positions `start, start + 1, ...` for every
    step of the input, to be added to the token embeddings.

    Args:
        max_length: int. Number of positions the table holds.
        **kwargs: other keyword arguments of `keras.layers.Layer`.

    Call arguments:
        inputs: tensor `(batch_size, seq_len, hidden_dim)`.
        start: int or scalar tensor, the position of the first step.
    """

    def __init__(self, max_length, initializer="glorot_uniform", **kwargs):
        checks.check_int("max_sequence_length", max_length)
        super().__init__(**kwargs)
        self.max_length = max_length
        self.initializer = keras.initializers.get(initializer)

    def build(self, input_shape):
        self.embeddings = self.add_weight(
            shape=(self.max_length, input_shape[-1]),
            name="embeddings",
            initializer=self.initializer,
        )

    def call(self, inputs, start=0):
        seq_len = ops.shape(inputs)[1]
        if isinstance(seq_len, int) and isinstance(start, int):
            if start + seq_len > self.max_length:
                raise ValueError(
                    f"The input has {seq_len} steps"
                    + (f" from position {start}" if start else "")
                    + ", but the learned position embedding holds "
                    f"max_sequence_length={self.max_length} positions. Cut "
                    "the input, or build the model with a larger "
                    "max_sequence_length."
                )
        table = ops.convert_to_tensor(self.embeddings)
        # a gather, not a slice: XLA (TensorFlow) takes a slice's start as a
        # compile-time constant, and would compile a decoding step anew for
        # every position
        indices = ops.arange(seq_len, dtype="int32") + ops.cast(start, "int32")
        positions = ops.take(table, indices, axis=0)
        return ops.cast(positions, self.compute_dtype)[None]

    def compute_output_shape(self, input_shape):
        return (1, input_shape[1], input_shape[-1])

    def get_config(self):
        base_config = super().get_config()
        config = {
            "max_length": self.max_length,
            "initializer": keras.initializers.serialize(self.initializer),
        }
        return {**base_config, **config}
