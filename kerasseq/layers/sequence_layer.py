import keras
from keras import ops

from kerasseq.layers.validation import check_state


class SequenceLayer(keras.layers.Layer):
    """The base of kerasseq's layers over sequences `(batch, seq_len, dim)`.

    What a Keras user expects of a sequence layer, kept in one place:

    - Keras's implicit mask (from `keras.layers.Embedding(mask_zero=True)`
      or `keras.layers.Masking`) is honoured exactly as an explicit
      `padding_mask`, and passed on to the next layer (the output keeps the
      time axis);
    - masked steps are zeroed on the way in, so that whatever they hold (a
      NaN included) never reaches a real step;
    - inputs that are not one tensor (a dict of token ids, say) are refused
      with a message saying what the layer takes.

    Subclasses call `mask_inputs` first in `call(inputs, padding_mask=None,
    ..., mask=None)`; Keras fills `mask`.
    """

    # whether step t reads steps up to t only; the recurrent layers always
    # do, the attention layers say so with their `causal` argument, and
    # `CausalLM` refuses a mixer that does not
    causal = True

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def __call__(self, inputs, *args, **kwargs):
        if isinstance(inputs, (dict, list, tuple)):
            kind = (
                f"a dict with keys {sorted(inputs)}"
                if isinstance(inputs, dict)
                else f"a {type(inputs).__name__} of {len(inputs)}"
            )
            raise ValueError(
                f"{type(self).__name__} takes one float tensor (batch_size, "
                f"seq_len, features) and an optional `padding_mask`, got "
                f"{kind}. Token ids are embedded first: "
                "kerasseq.models.SequenceBackbone(mixer=...) does it, or "
                "keras.layers.Embedding(..., mask_zero=True) in front of "
                "this layer."
            )
        return super().__call__(inputs, *args, **kwargs)

    def mask_inputs(self, inputs, padding_mask=None, mask=None):
        """The padding mask to use (`padding_mask`, else Keras's implicit
        `mask`, else `None`) and `inputs` with its masked steps zeroed.

        Raises:
            ValueError: a mask that is not `(batch_size, seq_len)`.
        """
        if padding_mask is None:
            padding_mask = mask
        if padding_mask is None:
            return inputs, None
        check_state("padding_mask", padding_mask, tuple(inputs.shape[:2]))
        padding_mask = ops.cast(padding_mask, "bool")
        zeros = ops.zeros_like(inputs)
        return ops.where(padding_mask[..., None], inputs, zeros), padding_mask

    def compute_mask(self, inputs, mask=None):
        return mask
