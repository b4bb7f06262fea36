import keras
from keras import ops

from kerasseq.ops import checks

POOLING_MODES = ("mean", "last", "first", "max")


@keras.saving.register_keras_serializable(package="kerasseq")
class SequencePooling(keras.layers.Layer):
    """Pools a padded sequence into one vector per example.

    `mean` and `max` reduce over real tokens only; `last` takes the last real
    token (the summary of a causal model); `first` takes position 0 (a CLS
    token).

    Args:
        mode: one of `"mean"`, `"last"`, `"first"`, `"max"`.
        **kwargs: other keyword arguments of `keras.layers.Layer`.

    Call arguments:
        inputs: tensor `(batch_size, seq_len, hidden_dim)`.
        padding_mask: optional boolean tensor `(batch_size, seq_len)`.

    Returns:
        Tensor `(batch_size, hidden_dim)`.
    """

    def __init__(self, mode="mean", **kwargs):
        checks.check_choice("pooling", mode, POOLING_MODES)
        super().__init__(**kwargs)
        self.mode = mode

    def call(self, inputs, padding_mask=None, mask=None):
        if padding_mask is None:
            padding_mask = mask  # Keras's implicit mask
        if padding_mask is None:
            padding_mask = ops.ones(ops.shape(inputs)[:2], dtype="bool")
        real = ops.cast(padding_mask, "bool")[..., None]
        # padded steps are replaced, not multiplied away: 0 * NaN is NaN
        inputs = ops.where(real, inputs, ops.zeros_like(inputs))
        if self.mode == "first":
            return inputs[:, 0]
        if self.mode == "mean":
            count = ops.sum(ops.cast(real, inputs.dtype), axis=1)
            return ops.sum(inputs, axis=1) / ops.maximum(count, 1.0)
        if self.mode == "max":
            masked = ops.where(real, inputs, ops.min(inputs) - 1.0)
            return ops.max(masked, axis=1)
        lengths = ops.sum(ops.cast(padding_mask, "int32"), axis=1)
        last = ops.maximum(lengths - 1, 0)[:, None, None]
        return ops.take_along_axis(inputs, last, axis=1)[:, 0]

    def compute_mask(self, inputs, mask=None):
        return None  # one vector per example: no time axis to mask

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])

    def get_config(self):
        base_config = super().get_config()
        return {**base_config, "mode": self.mode}
