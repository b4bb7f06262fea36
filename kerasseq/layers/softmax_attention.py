import keras
from keras import ops

from kerasseq.layers.attention_base import BaseAttention
from kerasseq.layers.sequence_layer import real_steps
from kerasseq.ops import checks


@keras.saving.register_keras_serializable(package="kerasseq")
class SoftmaxAttention(BaseAttention):
    """Multi-head softmax self-attention, causal or bidirectional.

    The token mixer of GPT and BERT-style Transformers. Queries, keys and
    values are projected from the input into `num_heads` heads of size
    `head_dim`; scores are computed and normalised in float32 whatever the
    compute dtype; the heads are projected back to the input width.

    For decoding, `step` appends one token to a key/value cache of fixed
    length (set by `get_initial_state`) and attends over the filled part, so
    stepping through a sequence gives the same outputs as `call`; `prefill`
    fills the cache with a whole prompt in one pass.

    Args:
        num_heads: int. Number of attention heads.
        causal: bool. If `True`, position t attends to positions <= t only.
        dropout: float. Dropout rate on the attention weights.
        rotary_fraction: float in [0, 1]. Share of each head's dimensions
            (the first ones) that queries and keys rotate by position
            (rotary position embedding, RoFormer; GPT-NeoX / Pythia rotate
            a quarter). 0 (the default) rotates none.
        rotary_base: float. Wavelength base of the rotary frequencies.
        **kwargs: `head_dim`, `use_bias`, `kernel_initializer` (see
            `BaseAttention`) and `keras.layers.Layer`'s arguments.

    Call arguments:
        As `SequenceLayer`'s. Padded keys receive no attention.

    Example:

    Decoding token by token from a key/value cache gives the outputs of
    the whole sequence:

    >>> layer = SoftmaxAttention(num_heads=4, rotary_fraction=0.25)
    >>> x = keras.random.normal((2, 10, 64))
    >>> y = layer(x)
    >>> cache = layer.get_initial_state(2, max_length=16)
    >>> y_0, cache = layer.step(x[:, 0], cache)
    >>> y_1, cache = layer.step(x[:, 1], cache)
    >>> bool(np.allclose(y_1, y[:, 1], atol=1e-5))
    True

    Reference:
        - [Vaswani et al., 2017](https://arxiv.org/abs/1706.03762)
    """

    def __init__(
        self,
        num_heads,
        causal=True,
        dropout=0.0,
        rotary_fraction=0.0,
        rotary_base=10000.0,
        **kwargs,
    ):
        checks.check_number(
            "rotary_fraction",
            rotary_fraction,
            "a number in [0, 1]",
            lambda v: 0 <= v <= 1,
        )
        checks.check_number(
            "rotary_base", rotary_base, "a positive number", lambda v: v > 0
        )
        super().__init__(num_heads, **kwargs)
        self.set_dropout(dropout)
        self.causal = causal
        self.rotary_fraction = rotary_fraction
        self.rotary_base = rotary_base

    def build(self, input_shape):
        super().build(input_shape)
        # rotated dimensions: an even number, as GPT-NeoX rounds them
        self._rotary_dim = int(self._head_dim * self.rotary_fraction) // 2 * 2

    def _rotate(self, x, positions):
        """Rotary position embedding of `x` (B, T, H, K) at `positions`
        (T,): each pair (i, i + R/2) of the first R dimensions turns by
        `position * base ** (-2i / R)` (GPT-NeoX's half-split pairing)."""
        rotary = self._rotary_dim
        if not rotary:
            return x
        half = rotary // 2
        exponents = ops.arange(half, dtype="float32") * (2.0 / rotary)
        inverse = ops.power(float(self.rotary_base), -exponents)
        angles = ops.cast(positions, "float32")[:, None] * inverse[None, :]
        cos = ops.cast(ops.cos(angles), x.dtype)[None, :, None, :]
        sin = ops.cast(ops.sin(angles), x.dtype)[None, :, None, :]
        first, second = x[..., :half], x[..., half:rotary]
        turned = [first * cos - second * sin, second * cos + first * sin]
        if rotary < x.shape[-1]:
            turned.append(x[..., rotary:])
        return ops.concatenate(turned, axis=-1)

    def _qkv(self, inputs, positions):
        # queries and keys rotated at `positions`, values
        q = self._rotate(self.project(inputs, "query"), positions)
        k = self._rotate(self.project(inputs, "key"), positions)
        return q, k, self.project(inputs, "value")

    def call(self, inputs, padding_mask=None, training=None, mask=None):
        self.check_inputs(inputs, 3, padding_mask)
        inputs, padding_mask = self.mask_inputs(inputs, padding_mask, mask)
        seq_len = ops.shape(inputs)[1]
        positions = ops.arange(seq_len)
        q, k, v = self._qkv(inputs, positions)
        mask = ops.ones((1, 1, seq_len, seq_len), dtype="bool")
        if self.causal:
            mask = positions[:, None] >= positions[None, :]
            mask = mask[None, None]
        if padding_mask is not None:
            key_mask = ops.cast(padding_mask, "bool")[:, None, None, :]
            mask = ops.logical_and(mask, key_mask)
        o = self.compute_attention(q, k, v, mask, training)
        return self.project_output(o)

    def get_initial_state(self, batch_size, max_length=None):
        """Returns an empty key/value cache holding `max_length` tokens."""
        self.check_decodable()
        checks.check_int("max_length", max_length)
        return self.empty_cache(batch_size, max_length)

    def step(self, inputs, state):
        """Advances one token: `inputs` (B, D) -> (outputs (B, D), state)."""
        self.check_inputs(inputs, 2)
        self.check_cache(state, inputs.shape[0])
        index = state["index"]
        start = (0, index, 0, 0)
        q, k_new, v_new = self._qkv(inputs[:, None], ops.reshape(index, (1,)))
        keys = ops.slice_update(state["key"], start, k_new)
        values = ops.slice_update(state["value"], start, v_new)
        max_length = ops.shape(keys)[1]
        mask = (ops.arange(max_length) <= index)[None, None, None, :]
        outputs = self.compute_attention(q, keys, values, mask, training=False)
        outputs = self.project_output(outputs[:, 0])
        return outputs, {"key": keys, "value": values, "index": index + 1}

    def prefill(self, inputs, state=None, length=None, max_length=None):
        """Runs a prompt `(B, T, D)` in one pass: `(outputs (B, T, D),
        state)`, the state a cache holding the prompt's keys and values
        (see `SequenceLayer`)."""
        self.check_inputs(inputs, 3)
        checks.check_static_length("inputs", inputs)
        state, fresh = self.prefill_state(inputs, state, max_length)
        self.check_cache(state, inputs.shape[0])
        steps = inputs.shape[1]
        if fresh and state["key"].shape[1] < steps:
            raise ValueError(
                "Received an invalid value for argument `max_length`, "
                f"expected at least the prompt's {steps} tokens (the cache "
                f"holds them), got {max_length!r}."
            )
        index = state["index"]
        positions = index + ops.arange(steps, dtype="int32")
        q, k, v = self._qkv(inputs, positions)
        keep = real_steps(length, steps)
        cached = []
        for name, x in (("key", k), ("value", v)):
            x = ops.cast(x, state[name].dtype)
            if keep is not None:
                x = ops.where(keep[None, :, None, None], x, ops.zeros_like(x))
            cached.append(ops.slice_update(state[name], (0, index, 0, 0), x))
        keys, values = cached
        if fresh:
            # nothing before the prompt: `call`'s attention over it
            mask = (positions[:, None] >= positions[None, :])[None, None]
            outputs = self.compute_attention(q, k, v, mask, training=False)
        else:
            slots = ops.arange(ops.shape(keys)[1], dtype="int32")
            mask = (slots[None, :] <= positions[:, None])[None, None]
            outputs = self.compute_attention(
                q, keys, values, mask, training=False
            )
        count = steps if length is None else ops.cast(length, "int32")
        new_state = {"key": keys, "value": values, "index": index + count}
        return self.project_output(outputs), new_state
