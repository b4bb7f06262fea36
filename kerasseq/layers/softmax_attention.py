import math

import keras
from keras import ops

from kerasseq.layers.sequence_layer import SequenceLayer
from kerasseq.layers.sequence_layer import real_steps
from kerasseq.layers.validation import check_input_width
from kerasseq.layers.validation import check_positive_int
from kerasseq.layers.validation import check_rate
from kerasseq.layers.validation import check_state
from kerasseq.layers.validation import resolve_head_dim
from kerasseq.ops import checks


def recomputed(fn, enabled):
    """`fn`, or with `enabled` `fn` recomputed in the backward pass
    (`keras.remat`) instead of keeping its intermediates (scores and
    weights of sparse attention, random features) alive until then. Every
    differentiable tensor must be a positional argument of `fn`."""
    return keras.remat(fn) if enabled else fn


@keras.saving.register_keras_serializable(package="kerasseq")
class SoftmaxAttention(SequenceLayer):
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
        head_dim: int. Size of each head. Defaults to
            `hidden_dim // num_heads`.
        causal: bool. If `True`, position t attends to positions <= t only.
        dropout: float. Dropout rate on the attention weights.
        use_bias: bool. Whether the projections have biases.
        kernel_initializer: initializer of the projection kernels.
        rotary_fraction: float in [0, 1]. Share of each head's dimensions
            (the first ones) that queries and keys rotate by position
            (rotary position embedding, RoFormer; GPT-NeoX / Pythia rotate
            a quarter). 0 (the default) rotates none.
        rotary_base: float. Wavelength base of the rotary frequencies.
        **kwargs: other keyword arguments of `keras.layers.Layer`.

    Call arguments:
        inputs: tensor of shape `(batch_size, seq_len, hidden_dim)`.
        padding_mask: optional boolean tensor `(batch_size, seq_len)`,
            `True` at real tokens. Padded keys receive no attention.
        training: bool, whether dropout is active.

    Returns:
        Tensor of the input's shape.

    Example:

    >>> layer = SoftmaxAttention(num_heads=4)
    >>> layer(keras.random.normal((2, 10, 64))).shape
    (2, 10, 64)

    Reference:
        - [Vaswani et al., 2017](https://arxiv.org/abs/1706.03762)
    """

    # subclasses that attend their own way turn this off
    _supports_rotary = True

    def __init__(
        self,
        num_heads,
        head_dim=None,
        causal=True,
        dropout=0.0,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        rotary_fraction=0.0,
        rotary_base=10000.0,
        **kwargs,
    ):
        check_positive_int("num_heads", num_heads)
        check_positive_int("head_dim", head_dim, allow_none=True)
        check_rate("dropout", dropout)
        is_number = isinstance(rotary_fraction, (int, float))
        if (
            isinstance(rotary_fraction, bool)
            or not is_number
            or not (0 <= rotary_fraction <= 1)
        ):
            raise ValueError(
                "Received an invalid value for argument `rotary_fraction`, "
                f"expected a number in [0, 1], got {rotary_fraction!r}."
            )
        if not rotary_base > 0:
            raise ValueError(
                "Received an invalid value for argument `rotary_base`, "
                f"expected a positive number, got {rotary_base!r}."
            )
        if rotary_fraction and not self._supports_rotary:
            raise ValueError(
                f"{type(self).__name__} has no rotary position embedding; "
                f"got rotary_fraction={rotary_fraction!r} (allowed: 0)."
            )
        super().__init__(**kwargs)
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.causal = causal
        self.dropout = dropout
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.rotary_fraction = rotary_fraction
        self.rotary_base = rotary_base
        self.dropout_layer = keras.layers.Dropout(dropout)

    def _matrix_initializer(self, fan_in_axes):
        # initialise each (D, H, K) / (H, K, D) kernel as the 2-D matrix it
        # acts as, so that fan-in and fan-out are D and H * K; and copy the
        # initializer, since an unseeded Keras 3 initializer returns the same
        # values on every call (query, key and value would start identical)
        config = self.kernel_initializer.get_config()
        initializer = self.kernel_initializer.__class__.from_config(config)

        def initialize(shape, dtype=None):
            rows = math.prod(shape[:fan_in_axes])
            matrix = initializer((rows, math.prod(shape) // rows), dtype=dtype)
            return ops.reshape(matrix, shape)

        return initialize

    def build(self, input_shape):
        hidden_dim = input_shape[-1]
        head_dim = resolve_head_dim(hidden_dim, self.num_heads, self.head_dim)
        self._head_dim = head_dim
        # rotated dimensions: an even number, as GPT-NeoX rounds them
        self._rotary_dim = int(head_dim * self.rotary_fraction) // 2 * 2
        heads = (self.num_heads, head_dim)
        for name in ("query", "key", "value"):
            self._add_projection(name, hidden_dim)
        self.output_kernel = self.add_weight(
            shape=(*heads, hidden_dim),
            name="output_kernel",
            initializer=self._matrix_initializer(2),
        )
        self.output_bias = None
        if self.use_bias:
            self.output_bias = self.add_weight(
                shape=(hidden_dim,), name="output_bias", initializer="zeros"
            )

    def _add_projection(self, name, hidden_dim):
        # `{name}_kernel` (D, H, K) and `{name}_bias` (H, K) or None
        heads = (self.num_heads, self._head_dim)
        kernel = self.add_weight(
            shape=(hidden_dim, *heads),
            name=f"{name}_kernel",
            initializer=self._matrix_initializer(1),
        )
        setattr(self, f"{name}_kernel", kernel)
        bias = None
        if self.use_bias:
            bias = self.add_weight(
                shape=heads, name=f"{name}_bias", initializer="zeros"
            )
        setattr(self, f"{name}_bias", bias)

    # projections as plain matmuls: einsum with an ellipsis has a slow
    # gradient on the TensorFlow backend. The weights are cast to the
    # input's dtype as `call` autocasts them: `step` and `prefill` run
    # outside `call`, where a mixed policy leaves them float32.
    def _project(self, x, name):
        kernel = ops.cast(getattr(self, f"{name}_kernel"), x.dtype)
        bias = getattr(self, f"{name}_bias")
        hidden_dim = kernel.shape[0]
        heads = (self.num_heads, self._head_dim)
        y = ops.matmul(x, ops.reshape(kernel, (hidden_dim, -1)))
        y = ops.reshape(y, (*ops.shape(x)[:-1], *heads))
        return y if bias is None else y + ops.cast(bias, y.dtype)

    def _output(self, x):
        kernel = ops.cast(self.output_kernel, x.dtype)
        kernel = ops.reshape(kernel, (-1, kernel.shape[-1]))
        x = ops.reshape(x, (*ops.shape(x)[:-2], kernel.shape[0]))
        y = ops.matmul(x, kernel)
        if self.output_bias is None:
            return y
        return y + ops.cast(self.output_bias, y.dtype)

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

    def _attend(self, q, k, v, mask, training):
        # q (B, T, H, K); k, v (B, S, H, K); mask broadcastable to (B, H, T, S)
        scale = 1.0 / float(self._head_dim) ** 0.5
        scores = ops.einsum("bthk,bshk->bhts", q, k)
        # softmax in at least float32, whatever the compute dtype
        dtype = keras.backend.result_type(scores.dtype, "float32")
        scores = ops.cast(scores, dtype) * scale
        scores = ops.where(mask, scores, -1e9)
        weights = ops.softmax(scores, axis=-1)
        weights = self.dropout_layer(weights, training=training)
        weights = ops.cast(weights, v.dtype)
        return ops.einsum("bhts,bshk->bthk", weights, v)

    def _check_inputs(self, inputs, rank, padding_mask=None):
        width = self.query_kernel.shape[0]
        check_input_width("inputs", inputs, rank, width, padding_mask)

    def call(self, inputs, padding_mask=None, training=None, mask=None):
        self._check_inputs(inputs, 3, padding_mask)
        inputs, padding_mask = self.mask_inputs(inputs, padding_mask, mask)
        seq_len = ops.shape(inputs)[1]
        positions = ops.arange(seq_len)
        q = self._rotate(self._project(inputs, "query"), positions)
        k = self._rotate(self._project(inputs, "key"), positions)
        v = self._project(inputs, "value")
        mask = ops.ones((1, 1, seq_len, seq_len), dtype="bool")
        if self.causal:
            mask = positions[:, None] >= positions[None, :]
            mask = mask[None, None]
        if padding_mask is not None:
            key_mask = ops.cast(padding_mask, "bool")[:, None, None, :]
            mask = ops.logical_and(mask, key_mask)
        return self._output(self._attend(q, k, v, mask, training))

    def get_initial_state(self, batch_size, max_length=None):
        """Returns an empty key/value cache holding `max_length` tokens."""
        if not self.causal:
            raise ValueError(
                "SoftmaxAttention.step needs a causal layer; this one was "
                "built with causal=False, where every position attends to "
                "the future and token-by-token decoding is undefined."
            )
        check_positive_int("max_length", max_length)
        shape = (batch_size, max_length, self.num_heads, self._head_dim)
        return {
            "key": ops.zeros(shape, dtype=self.compute_dtype),
            "value": ops.zeros(shape, dtype=self.compute_dtype),
            "index": ops.zeros((), dtype="int32"),
        }

    def step(self, inputs, state):
        """Advances one token: `inputs` (B, D) -> (outputs (B, D), state)."""
        self._check_inputs(inputs, 2)
        heads = (self.num_heads, self._head_dim)
        for key in ("key", "value"):
            expected = (inputs.shape[0], None, *heads)
            check_state(f"state[{key!r}]", state[key], expected)
        index = state["index"]
        start = (0, index, 0, 0)
        position = ops.reshape(index, (1,))
        q = self._rotate(self._project(inputs, "query")[:, None], position)
        k_new = self._rotate(self._project(inputs, "key")[:, None], position)
        v_new = self._project(inputs, "value")[:, None]
        keys = ops.slice_update(state["key"], start, k_new)
        values = ops.slice_update(state["value"], start, v_new)
        max_length = ops.shape(keys)[1]
        mask = (ops.arange(max_length) <= index)[None, None, None, :]
        outputs = self._attend(q, keys, values, mask, training=False)
        outputs = self._output(outputs[:, 0])
        return outputs, {"key": keys, "value": values, "index": index + 1}

    def _prefill_state(self, inputs, state, max_length):
        """The state to prefill from, checked, and whether it is fresh
        (from `get_initial_state`, so that nothing precedes the prompt)."""
        batch = inputs.shape[0]
        if batch is None:
            batch = ops.shape(inputs)[0]
        if state is None:
            size = inputs.shape[1] if max_length is None else max_length
            return self.get_initial_state(batch, max_length=size), True
        if not self.causal:
            # raises, saying why the layer cannot decode
            self.get_initial_state(batch, max_length=1)
        return state, False

    def prefill(self, inputs, state=None, length=None, max_length=None):
        """Runs a prompt `(B, T, D)` in one pass: `(outputs (B, T, D),
        state)`, the state a cache holding the prompt's keys and values
        (see `SequenceLayer`)."""
        self._check_inputs(inputs, 3)
        checks.check_static_length("inputs", inputs)
        state, fresh = self._prefill_state(inputs, state, max_length)
        heads = (self.num_heads, self._head_dim)
        for key in ("key", "value"):
            expected = (inputs.shape[0], None, *heads)
            check_state(f"state[{key!r}]", state[key], expected)
        steps = inputs.shape[1]
        if fresh and state["key"].shape[1] < steps:
            raise ValueError(
                "Received an invalid value for argument `max_length`, "
                f"expected at least the prompt's {steps} tokens (the cache "
                f"holds them), got {max_length!r}."
            )
        index = state["index"]
        positions = index + ops.arange(steps, dtype="int32")
        q = self._rotate(self._project(inputs, "query"), positions)
        k = self._rotate(self._project(inputs, "key"), positions)
        v = self._project(inputs, "value")
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
            outputs = self._attend(q, k, v, mask, training=False)
        else:
            slots = ops.arange(ops.shape(keys)[1], dtype="int32")
            mask = (slots[None, :] <= positions[:, None])[None, None]
            outputs = self._attend(q, keys, values, mask, training=False)
        count = steps if length is None else ops.cast(length, "int32")
        new_state = {"key": keys, "value": values, "index": index + count}
        return self._output(outputs), new_state

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        base_config = super().get_config()
        config = {
            "num_heads": self.num_heads,
            "head_dim": self.head_dim,
            "causal": self.causal,
            "dropout": self.dropout,
            "use_bias": self.use_bias,
            "kernel_initializer": keras.initializers.serialize(
                self.kernel_initializer
            ),
            "rotary_fraction": self.rotary_fraction,
            "rotary_base": self.rotary_base,
        }
        return {**base_config, **config}
