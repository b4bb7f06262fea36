import math

import keras
from keras import ops

from kerasseq import ops as kops
from kerasseq.layers.attention_base import BaseAttention
from kerasseq.layers.attention_base import recomputed
from kerasseq.layers.linear_attention import sums_shapes
from kerasseq.layers.sequence_layer import real_steps
from kerasseq.ops import checks


def default_num_features(head_dim):
    """`round(D ln D)` random features for heads of size D (at least D),
    the paper's choice of M."""
    return max(head_dim, round(head_dim * math.log(head_dim)))


@keras.saving.register_keras_serializable(package="kerasseq")
class PerformerAttention(BaseAttention):
    """Multi-head Performer attention: softmax attention estimated with
    FAVOR+ random features, in linear time and memory.

    Queries and keys are mapped by `kerasseq.ops.favor_plus` onto `M`
    positive random features of the softmax kernel, drawn with orthogonal
    projections (`kerasseq.ops.orthogonal_random_features`), so that
    `phi(q) . phi(k)` estimates `exp(q . k / sqrt(head_dim))`; attention is
    then linear attention over the features (`kerasseq.ops.linear_attention`):
    prefix sums when causal, one sum over the sequence otherwise. The
    estimate converges to softmax attention as `num_features` grows.

    The projection, shared by the heads, is a non-trainable weight: it is
    saved with the model and fixed at inference. While training it is
    redrawn every `feature_redraw_interval` calls, from the layer's seed
    generator (deterministic under `seed`, or under
    `keras.utils.set_random_seed` when `seed=None`; with an int `seed`
    every layer built from the same config draws the same features).

    Key features use the stabiliser fixed by the projection
    (`key_stabilizer="projection"` of `favor_plus`), so each key's features
    depend on that key alone: no information flows from future or padded
    tokens, and `step` reproduces `call` exactly. Outputs are the ratio of
    two unnormalised sums (values with a column of ones appended), which
    stays exact however small the features are.

    Args:
        num_heads: int. Number of heads.
        causal: bool. Causal (prefix sums, `step` for decoding with a
            constant-size state) or bidirectional.
        num_features: int, M. Defaults to `round(head_dim * ln(head_dim))`.
        feature_redraw_interval: int or `None`. Redraw the projection every
            this many training calls; `None` keeps the first draw.
        seed: int or `None`, the seed of the projection draws.
        mode: the `linear_attention` mode (`"auto"`, `"recurrent"`,
            `"chunk"`, `"parallel"`), for causal attention.
        chunk_size: int, the `linear_attention` chunk size.
        recompute_attention: bool, see `BaseAttention`.
        **kwargs: `head_dim`, `use_bias`, `kernel_initializer` (see
            `BaseAttention`) and `keras.layers.Layer`'s arguments.

    Call arguments:
        As `SequenceLayer`'s. Padded keys add nothing; in training
        the features are redrawn when due.

    Example:

    With `feature_redraw_interval=None` the random features stay those of
    the first draw, so training calls agree:

    >>> layer = PerformerAttention(num_heads=4, feature_redraw_interval=None)
    >>> x = keras.random.normal((2, 10, 64))
    >>> bool(np.allclose(layer(x, training=True), layer(x, training=True)))
    True

    Reference:
        - [Choromanski et al., 2021](https://arxiv.org/abs/2009.14794)
    """

    def __init__(
        self,
        num_heads,
        causal=False,
        num_features=None,
        feature_redraw_interval=1000,
        seed=None,
        mode="auto",
        chunk_size=64,
        recompute_attention=True,
        **kwargs,
    ):
        checks.check_int("num_features", num_features, allow_none=True)
        checks.check_int(
            "feature_redraw_interval", feature_redraw_interval, allow_none=True
        )
        checks.check_int("seed", seed, minimum=None, allow_none=True)
        super().__init__(num_heads, **kwargs)
        self.causal = causal
        self.num_features = num_features
        self.feature_redraw_interval = feature_redraw_interval
        self.seed = seed
        self.set_scan_options(mode, chunk_size)
        self.recompute_attention = recompute_attention
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape):
        super().build(input_shape)
        self._num_features = self.num_features or default_num_features(
            self._head_dim
        )
        self.projection = self.add_weight(
            shape=(self._num_features, self._head_dim),
            name="projection",
            initializer=lambda shape, dtype=None: self._draw(),
            trainable=False,
            autocast=False,
        )
        self.calls_since_draw = self.add_weight(
            shape=(),
            name="calls_since_draw",
            initializer="zeros",
            dtype="int32",
            trainable=False,
        )

    def _draw(self):
        return kops.orthogonal_random_features(
            self._num_features, self._head_dim, seed=self.seed_generator
        )

    def _maybe_redraw(self):
        calls = self.calls_since_draw.value + 1
        due = calls >= self.feature_redraw_interval
        current = self.projection.value
        self.projection.assign(ops.where(due, self._draw(), current))
        self.calls_since_draw.assign(ops.where(due, 0, calls))

    def _projections(self, inputs):
        # in float32 whatever the compute dtype: the features' exp
        # overflows float16 long before float32
        return tuple(
            ops.cast(self.project(inputs, name), "float32")
            for name in ("query", "key", "value")
        )

    def _features(self, q, k, v, padding_mask=None):
        projection = self.projection.value
        q = kops.favor_plus(q, projection, is_query=True)
        k = kops.favor_plus(
            k, projection, is_query=False, key_stabilizer="projection"
        )
        if padding_mask is not None:
            k = k * ops.cast(padding_mask, k.dtype)[:, :, None, None]
        # a column of ones: the last output channel is the denominator
        ones = ops.ones_like(v[..., :1])
        return q, k, ops.concatenate([v, ones], axis=-1)

    def _normalise(self, o):
        num, den = o[..., :-1], o[..., -1:]
        # zero only when every key is padded
        out = num / ops.where(den > 0, den, 1.0)
        return ops.cast(out, self.compute_dtype)

    def call(self, inputs, padding_mask=None, training=None, mask=None):
        self.check_inputs(inputs, 3, padding_mask)
        inputs, padding_mask = self.mask_inputs(inputs, padding_mask, mask)
        if training and self.feature_redraw_interval is not None:
            self._maybe_redraw()

        def attend(q, k, v):
            q, k, v = self._features(q, k, v, padding_mask)
            o = kops.linear_attention(
                q,
                k,
                v,
                causal=self.causal,
                normalize=False,
                mode=self.mode,
                chunk_size=self.chunk_size,
            )
            return self._normalise(o)

        attend = recomputed(attend, self.recompute_attention)
        return self.project_output(attend(*self._projections(inputs)))

    def get_initial_state(self, batch_size, max_length=None):
        """Returns the zero state `(S, z)`: sums over the features of keys
        times `[value, 1]`, `(batch_size, heads, num_features, head_dim +
        1)`, and of keys, `(batch_size, heads, num_features)`.
        `max_length` is unused: the state does not grow."""
        self.check_decodable()
        shapes = self._state_shapes(batch_size)
        return tuple(ops.zeros(shape, "float32") for shape in shapes)

    def _state_shapes(self, batch_size):
        features, values = self._num_features, self._head_dim + 1
        return sums_shapes(batch_size, self.num_heads, features, values)

    def step(self, inputs, state):
        """Advances one token: `inputs` (B, D) -> (outputs (B, D), state)."""
        self.check_inputs(inputs, 2)
        checks.check_state(state, self._state_shapes(inputs.shape[0]))
        q, k, v = self._features(*self._projections(inputs[:, None]))
        o, state = kops.linear_attention_step(
            q[:, 0], k[:, 0], v[:, 0], state, normalize=False
        )
        return self.project_output(self._normalise(o)), state

    def prefill(self, inputs, state=None, length=None, max_length=None):
        """Runs a prompt `(B, T, D)` in one pass: `(outputs (B, T, D),
        state)`, the state the running sums `(S, z)` after it (see
        `SequenceLayer`)."""
        self.check_inputs(inputs, 3)
        initial, _ = self.prefill_state(inputs, state, max_length)
        checks.check_state(initial, self._state_shapes(inputs.shape[0]))
        keep = real_steps(length, inputs.shape[1])
        # padded keys add nothing to the sums
        q, k, v = self._features(
            *self._projections(inputs), None if keep is None else keep[None]
        )
        o, state = kops.linear_attention(
            q,
            k,
            v,
            causal=True,
            normalize=False,
            initial_state=state,
            return_final_state=True,
            mode=self.mode,
            chunk_size=self.chunk_size,
        )
        return self.project_output(self._normalise(o)), state
