import keras
from keras import ops

from kerasseq.layers.attention_base import BaseAttention
from kerasseq.layers.sequence_layer import fresh_initializer
from kerasseq.ops import checks

SHARING = ("none", "headwise", "key_value", "layerwise")


@keras.saving.register_keras_serializable(package="kerasseq")
class LinformerAttention(BaseAttention):
    """Multi-head Linformer attention: keys and values projected along the
    sequence axis to `projected_length` rows, in linear time and memory.

    Softmax attention where the `T` keys and values of each head are first
    mixed into `k = projected_length` rows, `K' = E K` and `V' = F V` with
    learned `E`, `F` of shape `(k, max_length)` (their first `T` columns for
    a sequence of `T <= max_length` tokens), so that every query attends
    `k` rows instead of `T`. Padded tokens are zeroed before the
    projection: a padded batch gives the outputs of the unpadded sequences.

    Sharing (the paper's section 4): `"none"`, an `E` and an `F` per head;
    `"headwise"`, one `E` and one `F` for all heads; `"key_value"`, one
    matrix for keys and values of all heads; `"layerwise"`, one matrix for
    keys and values of all heads and of all layers of a
    `kerasseq.models.SequenceBackbone` (standalone, it is `"key_value"`).

    The projection mixes all positions, future ones included, so there is
    no causal Linformer: `causal=True` is refused.

    Args:
        num_heads: int. Number of heads.
        max_length: int. The longest sequence the projections cover.
        projected_length: int, k, at most `max_length`. Defaults to
            `min(256, max_length)`.
        sharing: `"none"`, `"headwise"`, `"key_value"` or `"layerwise"`.
        dropout: float. Dropout rate on the attention weights.
        projection_initializer: initializer of `E` and `F`, applied to each
            `(k, max_length)` matrix (`E` and `F` have no biases).
        causal: must be `False`.
        **kwargs: `head_dim`, `use_bias`, `kernel_initializer` (see
            `BaseAttention`) and `keras.layers.Layer`'s arguments.

    Call arguments:
        As `SequenceLayer`'s, with `seq_len <= max_length`.

    Example:

    >>> layer = LinformerAttention(num_heads=4, max_length=512,
    ...                            projected_length=64)
    >>> layer(keras.random.normal((2, 100, 64))).shape
    (2, 100, 64)

    Reference:
        - [Wang et al., 2020](https://arxiv.org/abs/2006.04768)
    """

    def __init__(
        self,
        num_heads,
        max_length,
        projected_length=None,
        sharing="none",
        dropout=0.0,
        projection_initializer="glorot_uniform",
        causal=False,
        **kwargs,
    ):
        checks.check_int("max_length", max_length)
        checks.check_int("projected_length", projected_length, allow_none=True)
        if projected_length is None:
            projected_length = min(256, max_length)
        if projected_length > max_length:
            raise ValueError(
                "Received an invalid value for argument `projected_length`, "
                f"expected at most max_length={max_length}, got "
                f"{projected_length}."
            )
        checks.check_choice("sharing", sharing, SHARING)
        if causal:
            raise ValueError(
                "Received causal=True, but Linformer cannot be causal: its "
                "projection E mixes the keys of all positions, future ones "
                "included, into every projected row. Use causal=False (an "
                "encoder), or a causal mixer such as PerformerAttention or "
                "LongformerAttention."
            )
        super().__init__(num_heads, **kwargs)
        self.set_dropout(dropout)
        self.max_length = max_length
        self.projected_length = projected_length
        self.sharing = sharing
        self.projection_initializer = keras.initializers.get(
            projection_initializer
        )
        self._owner = None

    def share_weights_with(self, first):
        """With `sharing="layerwise"`, makes this layer use the projection
        of `first` (an unbuilt layer of the same config; the backbone calls
        this on the mixers of its blocks 1..N-1 with the mixer of block 0).
        Otherwise does nothing."""
        if self.sharing != "layerwise" or first is self:
            return
        mine = (self.max_length, self.projected_length, self.sharing)
        theirs = (first.max_length, first.projected_length, first.sharing)
        if mine != theirs:
            raise ValueError(
                "LinformerAttention shares its projection only with a layer "
                "of the same (max_length, projected_length, sharing); got "
                f"{mine} and {theirs}."
            )
        # a plain reference, not tracked: the weight belongs to `first`,
        # which saves and trains it once
        object.__setattr__(self, "_owner", first)

    def _projection_weight(self, name, heads):
        shape = (self.projected_length, self.max_length)
        if heads:
            shape = (self.num_heads, *shape)
        initializer = fresh_initializer(self.projection_initializer)

        def initialize(shape, dtype=None):
            # each (k, max_length) matrix on its own fan-in and fan-out
            matrix_shape = shape[-2:]
            count = shape[0] if len(shape) == 3 else 1
            matrices = [initializer(matrix_shape, dtype) for _ in range(count)]
            return ops.reshape(ops.stack(matrices), shape)

        return self.add_weight(shape=shape, name=name, initializer=initialize)

    def build(self, input_shape):
        super().build(input_shape)
        if self._owner is not None:
            if not self._owner.built:
                self._owner.build(input_shape)
            return
        if self.sharing == "none":
            self.key_projection = self._projection_weight("key_projection", 1)
            self.value_projection = self._projection_weight(
                "value_projection", 1
            )
        elif self.sharing == "headwise":
            self.key_projection = self._projection_weight("key_projection", 0)
            self.value_projection = self._projection_weight(
                "value_projection", 0
            )
        else:
            self.key_projection = self._projection_weight("kv_projection", 0)
            self.value_projection = self.key_projection

    @property
    def position_weights(self):
        """The weights indexed by position that this layer owns (E and F,
        or the one shared matrix; none when it uses another layer's)."""
        if self._owner is not None or not self.built:
            return []
        if self.value_projection is self.key_projection:
            return [self.key_projection]
        return [self.key_projection, self.value_projection]

    def _compress(self, x, projection, length):
        # (B, T, H, K) -> (B, k, H, K) with the first T columns
        projection = ops.cast(projection[..., :length], x.dtype)
        if len(projection.shape) == 3:
            return ops.einsum("hnt,bthk->bnhk", projection, x)
        heads, size = x.shape[2:]
        flat = ops.reshape(x, (-1, length, heads * size))
        y = ops.matmul(projection, flat)
        return ops.reshape(y, (-1, self.projected_length, heads, size))

    def call(self, inputs, padding_mask=None, training=None, mask=None):
        self.check_inputs(inputs, 3, padding_mask)
        inputs, padding_mask = self.mask_inputs(inputs, padding_mask, mask)
        length = inputs.shape[1]
        if length is None or length > self.max_length:
            raise ValueError(
                "Received an invalid shape for argument `inputs`: "
                f"LinformerAttention needs a static sequence length of at "
                f"most max_length={self.max_length}, got shape "
                f"{tuple(inputs.shape)}."
            )
        owner = self._owner or self
        q = self.project(inputs, "query")
        k = self.project(inputs, "key")
        v = self.project(inputs, "value")
        if padding_mask is not None:
            keep = ops.cast(padding_mask, k.dtype)[:, :, None, None]
            k, v = k * keep, v * keep
        k = self._compress(k, owner.key_projection, length)
        v = self._compress(v, owner.value_projection, length)
        mask = ops.ones((1, 1, 1, self.projected_length), "bool")
        return self.project_output(
            self.compute_attention(q, k, v, mask, training)
        )
