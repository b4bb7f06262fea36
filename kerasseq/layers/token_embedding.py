import keras
from keras import ops

from kerasseq.ops import checks


@keras.saving.register_keras_serializable(package="kerasseq")
class TokenEmbedding(keras.layers.Embedding):
    """Token embedding that can also map hidden states back to logits.

    `layer(token_ids)` looks tokens up; `layer(hidden, reverse=True)`
    multiplies by the transposed table (tied input and output embeddings,
    as in GPT-2), computing the logits in float32.

    Args:
        input_dim: int. Vocabulary size.
        output_dim: int. Embedding width.
        **kwargs: other keyword arguments of `keras.layers.Embedding`.
    """

    def __init__(self, input_dim, output_dim, **kwargs):
        checks.check_int("vocabulary_size", input_dim)
        checks.check_int("hidden_dim", output_dim)
        super().__init__(input_dim, output_dim, **kwargs)

    def call(self, inputs, reverse=False):
        if not reverse:
            return super().call(inputs)
        table = ops.cast(self.embeddings, "float32")
        return ops.matmul(ops.cast(inputs, "float32"), ops.transpose(table))

    def compute_output_shape(self, input_shape, reverse=False):
        if reverse:
            return (*input_shape[:-1], self.input_dim)
        return super().compute_output_shape(input_shape)

    def compute_output_spec(self, inputs, reverse=False):
        shape = self.compute_output_shape(inputs.shape, reverse=reverse)
        dtype = "float32" if reverse else self.compute_dtype
        return keras.KerasTensor(shape, dtype=dtype)
