import keras
from keras import ops

from kerasseq import ops as kops
from kerasseq.layers.attention_base import BaseAttention
from kerasseq.layers.sequence_layer import real_steps
from kerasseq.ops import checks

FEATURE_MAPS = {"elu_plus_one": kops.elu_plus_one, "relu": kops.relu}


def sums_shapes(batch_size, heads, key_dim, value_dim):
    """The shapes of causal linear attention's decoding state `(S, z)`:
    `S` `(B, H, K, V)` sums keys' features times values, `z` `(B, H, K)`
    sums keys' features."""
    return [
        (batch_size, heads, key_dim, value_dim),
        (batch_size, heads, key_dim),
    ]


@keras.saving.register_keras_serializable(package="kerasseq")
class LinearAttention(BaseAttention):
    """Multi-head linear attention (Katharopoulos et al., 2020).

    Softmax attention with the kernel `exp(q . k)` replaced by
    `phi(q) . phi(k)` for a positive feature map `phi` (`elu(x) + 1` by
    default), so that causal attention becomes a recurrence over a
    `(head_dim, head_dim)` state per head:

        S_t = S_{t-1} + phi(k_t) v_t^T,   z_t = z_{t-1} + phi(k_t)
        o_t = S_t^T phi(q_t) / (phi(q_t) . z_t)

    It runs as `kerasseq.ops.linear_attention` (chunked or recurrent, in
    linear time), and `step` carries `(S, z)`: constant memory per token.
    The projections are those of `BaseAttention`, as in
    `SoftmaxAttention`.

    Args:
        num_heads: int. Number of heads.
        causal: bool. Causal (a recurrence) or bidirectional.
        feature_map: `"elu_plus_one"` or `"relu"`.
        mode: the `linear_attention` mode (`"auto"`, `"recurrent"`,
            `"chunk"`, `"parallel"`).
        chunk_size: int, the `linear_attention` chunk size.
        **kwargs: `head_dim`, `use_bias`, `kernel_initializer` (see
            `BaseAttention`) and `keras.layers.Layer`'s arguments.

    Call arguments:
        As `SequenceLayer`'s. Padded keys add nothing to the state.

    Example:

    Bidirectional, over sequences of 10 and 7 real tokens:

    >>> layer = LinearAttention(num_heads=4, causal=False)
    >>> x = keras.random.normal((2, 10, 64))
    >>> padding_mask = np.arange(10) < np.array([[10], [7]])
    >>> layer(x, padding_mask=padding_mask).shape
    (2, 10, 64)

    Reference:
        - [Katharopoulos et al., 2020](https://arxiv.org/abs/2006.16236)
    """

    def __init__(
        self,
        num_heads,
        causal=True,
        feature_map="elu_plus_one",
        mode="auto",
        chunk_size=64,
        **kwargs,
    ):
        checks.check_choice("feature_map", feature_map, FEATURE_MAPS)
        super().__init__(num_heads, **kwargs)
        self.causal = causal
        self.feature_map = feature_map
        self.set_scan_options(mode, chunk_size)

    def _features(self, inputs, padding_mask=None):
        phi = FEATURE_MAPS[self.feature_map]
        q = phi(self.project(inputs, "query"))
        k = phi(self.project(inputs, "key"))
        v = self.project(inputs, "value")
        if padding_mask is not None:
            keep = ops.cast(padding_mask, k.dtype)[:, :, None, None]
            k = k * keep
        return q, k, v

    def call(self, inputs, padding_mask=None, training=None, mask=None):
        self.check_inputs(inputs, 3, padding_mask)
        inputs, padding_mask = self.mask_inputs(inputs, padding_mask, mask)
        q, k, v = self._features(inputs, padding_mask)
        o = kops.linear_attention(
            q,
            k,
            v,
            causal=self.causal,
            mode=self.mode,
            chunk_size=self.chunk_size,
        )
        return self.project_output(o)

    def get_initial_state(self, batch_size, max_length=None):
        """Returns the zero state `(S, z)`, `(batch_size, heads, head_dim,
        head_dim)` and `(batch_size, heads, head_dim)`. `max_length` is
        unused: the state does not grow."""
        self.check_decodable()
        shapes = self._state_shapes(batch_size)
        return tuple(ops.zeros(shape, "float32") for shape in shapes)

    def _state_shapes(self, batch_size):
        size = self._head_dim
        return sums_shapes(batch_size, self.num_heads, size, size)

    def step(self, inputs, state):
        """Advances one token: `inputs` (B, D) -> (outputs (B, D), state)."""
        self.check_inputs(inputs, 2)
        checks.check_state(state, self._state_shapes(inputs.shape[0]))
        q, k, v = self._features(inputs[:, None])
        o, state = kops.linear_attention_step(q[:, 0], k[:, 0], v[:, 0], state)
        return self.project_output(o), state

    def prefill(self, inputs, state=None, length=None, max_length=None):
        """Runs a prompt `(B, T, D)` in one pass: `(outputs (B, T, D),
        state)`, the state the sums `(S, z)` after it (see
        `SequenceLayer`)."""
        self.check_inputs(inputs, 3)
        initial, _ = self.prefill_state(inputs, state, max_length)
        checks.check_state(initial, self._state_shapes(inputs.shape[0]))
        keep = real_steps(length, inputs.shape[1])
        # padded keys add nothing to the sums
        q, k, v = self._features(inputs, None if keep is None else keep[None])
        o, state = kops.linear_attention(
            q,
            k,
            v,
            causal=True,
            initial_state=state,
            return_final_state=True,
            mode=self.mode,
            chunk_size=self.chunk_size,
        )
        return self.project_output(o), state
