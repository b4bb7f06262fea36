"""The base of kerasseq's multi-head attention layers: the query, key,
value and output projections every attention mixer has, and its
documented override points."""

import functools
import math

import keras
from keras import ops

from kerasseq.layers.sequence_layer import SequenceLayer
from kerasseq.layers.sequence_layer import fresh_initializer
from kerasseq.layers.sequence_layer import init_arguments
from kerasseq.ops import checks


def recomputed(fn, enabled):
    """`fn`, or with `enabled` `fn` recomputed in the backward pass
    (`keras.remat`) instead of keeping its intermediates (scores and
    weights of sparse attention, random features) alive until then. Every
    differentiable tensor must be a positional argument of `fn`."""
    return keras.remat(fn) if enabled else fn


class BaseAttention(SequenceLayer):
    """Multi-head attention: what every kerasseq attention mixer shares.

    Queries, keys and values are projected from the input
    `(batch_size, seq_len, hidden_dim)` into `num_heads` heads of size
    `head_dim`, `(B, T, H, K)`; a subclass decides how queries attend keys;
    the heads are projected back to the input width. The weights are
    `{query,key,value}_kernel` `(D, H, K)`, `{query,key,value}_bias`
    `(H, K)`, `output_kernel` `(H, K, D)` and `output_bias` `(D,)`, created
    in that order (biases only with `use_bias`).

    A subclass overrides what differs:

    - `call(inputs, padding_mask=None, training=None, mask=None)`: the
      default projects, attends with `compute_attention` (every query to
      every real key) and projects back.
    - `compute_attention(q, k, v, mask, training=None)`: scaled
      dot-product softmax attention of `(B, T, H, K)` queries over
      `(B, S, H, K)` keys and values, in float32 whatever the compute
      dtype (the role of Keras `MultiHeadAttention._compute_attention`).
    - `build(input_shape)`: call `super().build` first (the projections),
      then add the subclass's weights; `add_projection(name, hidden_dim)`
      adds one more `(D, H, K)` projection, read with `project(x, name)`.
    - `get_initial_state`, `step`, `prefill` (the decoding contract of
      `SequenceLayer`): a causal subclass that decodes overrides all
      three; here they refuse, since the base attends in both directions.
      `prefill_state`, `check_cache` and `empty_cache` serve their
      overrides.

    `get_config` needs no override: `SequenceLayer`'s saves every
    argument of `__init__`.

    A subclass whose attention weights have dropout calls
    `set_dropout(rate)` in `__init__`; `compute_attention` then drops
    them in training.

    The sparse and random-feature attentions (BigBird, Longformer,
    Performer) take `recompute_attention`: with it, the attention core is
    recomputed in the backward pass (`recomputed`, `keras.remat`) instead
    of keeping its intermediates (scores and weights, random features)
    until then, as memory-efficient attention kernels do, so that training
    holds one layer's at a time. It is off while dropout on the weights is
    active (its mask would be redrawn).

    Args:
        num_heads: int. Number of attention heads.
        head_dim: int. Size of each head. Defaults to
            `hidden_dim // num_heads`.
        use_bias: bool. Whether the projections have biases.
        kernel_initializer: initializer of the projection kernels, each
            applied to the 2-D matrix `(D, H * K)` or `(H * K, D)` the
            kernel acts as.
        **kwargs: other keyword arguments of `keras.layers.Layer`.
    """

    # bidirectional unless a subclass takes a `causal` argument
    causal = False

    def __init__(
        self,
        num_heads,
        head_dim=None,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        **kwargs,
    ):
        checks.check_int("num_heads", num_heads)
        checks.check_int("head_dim", head_dim, allow_none=True)
        super().__init__(**kwargs)
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.dropout_layer = None

    def set_dropout(self, rate):
        """Drops attention weights at `rate` (a float in [0, 1)) in
        training; the subclass saves `dropout` in its config."""
        checks.check_rate("dropout", rate)
        self.dropout = rate
        self.dropout_layer = keras.layers.Dropout(rate, dtype=self.dtype_policy)

    def weights_dropout(self, training):
        """The dropout of `set_dropout` as the callable a sparse kernel's
        `dropout=` argument takes, or `None` where it is inactive (no rate,
        or not training). A kernel given one must not be `recomputed` in
        the backward pass: its mask would be redrawn."""
        if self.dropout_layer is None or not (self.dropout and training):
            return None
        return functools.partial(self.dropout_layer, training=training)

    # === weights ===

    def _matrix_initializer(self, fan_in_axes):
        # initialise each (D, H, K) / (H, K, D) kernel as the 2-D matrix it
        # acts as, so that fan-in and fan-out are D and H * K; a fresh
        # initializer each time, or query, key and value would start equal
        initializer = fresh_initializer(self.kernel_initializer)

        def initialize(shape, dtype=None):
            rows = math.prod(shape[:fan_in_axes])
            matrix = initializer((rows, math.prod(shape) // rows), dtype=dtype)
            return ops.reshape(matrix, shape)

        return initialize

    def build(self, input_shape):
        hidden_dim = input_shape[-1]
        self._head_dim = checks.resolve_head_dim(
            hidden_dim, self.num_heads, self.head_dim
        )
        for name in ("query", "key", "value"):
            self.add_projection(name, hidden_dim)
        self.output_kernel = self.add_weight(
            shape=(self.num_heads, self._head_dim, hidden_dim),
            name="output_kernel",
            initializer=self._matrix_initializer(2),
        )
        self.output_bias = None
        if self.use_bias:
            self.output_bias = self.add_weight(
                shape=(hidden_dim,), name="output_bias", initializer="zeros"
            )

    def add_projection(self, name, hidden_dim):
        """Adds `{name}_kernel` `(D, H, K)` and `{name}_bias` `(H, K)` (or
        `None` without `use_bias`), read by `project(x, name)`."""
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

    # === projections ===

    # plain matmuls: einsum with an ellipsis has a slow gradient on the
    # TensorFlow backend. The weights are cast to the input's dtype as
    # `call` autocasts them: `step` and `prefill` run outside `call`, where
    # a mixed policy leaves them float32.
    def project(self, x, name):
        """`x` `(..., D)` through the `name` projection: `(..., H, K)`."""
        kernel = ops.cast(getattr(self, f"{name}_kernel"), x.dtype)
        bias = getattr(self, f"{name}_bias")
        hidden_dim = kernel.shape[0]
        heads = (self.num_heads, self._head_dim)
        y = ops.matmul(x, ops.reshape(kernel, (hidden_dim, -1)))
        y = ops.reshape(y, (*ops.shape(x)[:-1], *heads))
        return y if bias is None else y + ops.cast(bias, y.dtype)

    def project_output(self, x):
        """Heads `(..., H, K)` back to the input width: `(..., D)`."""
        kernel = ops.cast(self.output_kernel, x.dtype)
        kernel = ops.reshape(kernel, (-1, kernel.shape[-1]))
        x = ops.reshape(x, (*ops.shape(x)[:-2], kernel.shape[0]))
        y = ops.matmul(x, kernel)
        if self.output_bias is None:
            return y
        return y + ops.cast(self.output_bias, y.dtype)

    # === attention ===

    def compute_attention(self, q, k, v, mask, training=None):
        """Scaled dot-product attention, `softmax(q k^T / sqrt(K)) v`.

        Args:
            q: queries `(B, T, H, K)`.
            k, v: keys and values `(B, S, H, K)`.
            mask: boolean, broadcastable to `(B, H, T, S)`: `True` where
                query t may attend key s.
            training: whether dropout (see `set_dropout`) is active.

        Returns:
            `(B, T, H, K)` in the dtype of `v`.
        """
        scale = 1.0 / float(self._head_dim) ** 0.5
        scores = ops.einsum("bthk,bshk->bhts", q, k)
        # softmax in at least float32, whatever the compute dtype
        dtype = keras.backend.result_type(scores.dtype, "float32")
        scores = ops.cast(scores, dtype) * scale
        scores = ops.where(mask, scores, -1e9)
        weights = ops.softmax(scores, axis=-1)
        if self.dropout_layer is not None:
            weights = self.dropout_layer(weights, training=training)
        weights = ops.cast(weights, v.dtype)
        return ops.einsum("bhts,bshk->bthk", weights, v)

    def check_inputs(self, inputs, rank, padding_mask=None):
        """Raises `ValueError` unless `inputs` is a sequence `(B, T, D)`
        (`rank` 3) or one step `(B, D)` (`rank` 2) of the built width,
        and `padding_mask`, when given, is `(B, T)`."""
        width = self.query_kernel.shape[0]
        checks.check_input_width("inputs", inputs, rank, width, padding_mask)

    def call(self, inputs, padding_mask=None, training=None, mask=None):
        self.check_inputs(inputs, 3, padding_mask)
        inputs, padding_mask = self.mask_inputs(inputs, padding_mask, mask)
        q = self.project(inputs, "query")
        k = self.project(inputs, "key")
        v = self.project(inputs, "value")
        key_mask = ops.ones((1, 1, 1, ops.shape(inputs)[1]), "bool")
        if padding_mask is not None:
            key_mask = padding_mask[:, None, None, :]
        return self.project_output(
            self.compute_attention(q, k, v, key_mask, training)
        )

    # === decoding ===

    def check_decodable(self):
        """Raises `ValueError` unless the layer is causal: a bidirectional
        layer has no token-by-token decoding."""
        if not self.causal:
            raise ValueError(
                f"{type(self).__name__} has no step: this layer is "
                "bidirectional (causal=False), every position attends to "
                "the future, so token-by-token decoding is undefined."
            )

    def get_initial_state(self, batch_size, max_length=None):
        """The state before the first token; a causal subclass that
        decodes overrides it. Raises `ValueError` here."""
        self.check_decodable()
        raise NotImplementedError(
            f"{type(self).__name__} does not decode token by token."
        )

    def step(self, inputs, state):
        """Advances one token; a causal subclass that decodes overrides
        it. Raises `ValueError` here."""
        self.get_initial_state(None)

    def prefill(self, inputs, state=None, length=None, max_length=None):
        """Runs a prompt in one pass; a causal subclass that decodes
        overrides it. Raises `ValueError` here."""
        self.get_initial_state(None)

    def prefill_state(self, inputs, state, max_length):
        """The state `prefill` starts from and whether it is fresh (from
        `get_initial_state`, so that nothing precedes the prompt): `state`,
        or the initial state for `inputs` `(B, T, D)` with room for
        `max_length` tokens (default `T`)."""
        self.check_decodable()
        if state is not None:
            return state, False
        batch = inputs.shape[0]
        if batch is None:
            batch = ops.shape(inputs)[0]
        size = inputs.shape[1] if max_length is None else max_length
        return self.get_initial_state(batch, max_length=size), True

    def check_cache(self, state, batch_size, length=None):
        """Raises `ValueError` unless `state["key"]` and `state["value"]`
        are caches `(batch_size, length, H, K)` (`None`: any size)."""
        expected = (batch_size, length, self.num_heads, self._head_dim)
        checks.check_state(state, {"key": expected, "value": expected})

    def empty_cache(self, batch_size, length):
        """A key/value cache of `length` zero tokens, at position 0."""
        shape = (batch_size, length, self.num_heads, self._head_dim)
        return {
            "key": ops.zeros(shape, dtype=self.compute_dtype),
            "value": ops.zeros(shape, dtype=self.compute_dtype),
            "index": ops.zeros((), dtype="int32"),
        }

    def compute_output_shape(self, input_shape):
        return input_shape

    @classmethod
    def from_config(cls, config):
        # files saved before this base existed carry SoftmaxAttention's
        # rotary defaults in every attention's config
        accepted = init_arguments(cls)
        config = dict(config)
        for key, default in (("rotary_fraction", 0.0), ("rotary_base", 1e4)):
            if key not in accepted and config.get(key, default) == default:
                config.pop(key, None)
        return super().from_config(config)
