import keras
from keras import ops

from kerasseq import ops as kops
from kerasseq.layers.sequence_layer import real_steps
from kerasseq.layers.softmax_attention import SoftmaxAttention
from kerasseq.layers.validation import check_choice
from kerasseq.layers.validation import check_positive_int
from kerasseq.layers.validation import check_state
from kerasseq.ops import checks

FEATURE_MAPS = {"elu_plus_one": kops.elu_plus_one, "relu": kops.relu}


@keras.saving.register_keras_serializable(package="kerasseq")
class LinearAttention(SoftmaxAttention):
    """Multi-head linear attention (Katharopoulos et al., 2020).

    Softmax attention with the kernel `exp(q . k)` replaced by
    `phi(q) . phi(k)` for a positive feature map `phi` (`elu(x) + 1` by
    default), so that causal attention becomes a recurrence over a
    `(head_dim, head_dim)` state per head:

        S_t = S_{t-1} + phi(k_t) v_t^T,   z_t = z_{t-1} + phi(k_t)
        o_t = S_t^T phi(q_t) / (phi(q_t) . z_t)

    It runs as `kerasseq.ops.linear_attention` (chunked or recurrent, in
    linear time), and `step` carries `(S, z)`: constant memory per token.
    The projections are those of `SoftmaxAttention`, with the same weight
    names and shapes.

    Args:
        num_heads: int. Number of heads.
        head_dim: int. Size of each head; defaults to
            `hidden_dim // num_heads`.
        causal: bool. Causal (a recurrence) or bidirectional.
        feature_map: `"elu_plus_one"` or `"relu"`.
        use_bias: bool. Whether the projections have biases.
        kernel_initializer: initializer of the projection kernels.
        mode: the `linear_attention` mode (`"auto"`, `"recurrent"`,
            `"chunk"`, `"parallel"`).
        chunk_size: int, the `linear_attention` chunk size.
        **kwargs: other keyword arguments of `keras.layers.Layer`.

    Call arguments:
        inputs: tensor of shape `(batch_size, seq_len, hidden_dim)`.
        padding_mask: optional boolean tensor `(batch_size, seq_len)`,
            `True` at real tokens. Padded keys add nothing to the state.
        training: bool, unused.

    Returns:
        Tensor of the input's shape.

    Example:

    >>> layer = LinearAttention(num_heads=4)
    >>> layer(keras.random.normal((2, 10, 64))).shape
    (2, 10, 64)

    Reference:
        - [Katharopoulos et al., 2020](https://arxiv.org/abs/2006.16236)
    """

    _supports_rotary = False

    def __init__(
        self,
        num_heads,
        head_dim=None,
        causal=True,
        feature_map="elu_plus_one",
        use_bias=True,
        kernel_initializer="glorot_uniform",
        mode="auto",
        chunk_size=64,
        **kwargs,
    ):
        check_choice("feature_map", feature_map, FEATURE_MAPS)
        check_choice("mode", mode, checks.MODES)
        check_positive_int("chunk_size", chunk_size)
        super().__init__(
            num_heads,
            head_dim=head_dim,
            causal=causal,
            use_bias=use_bias,
            kernel_initializer=kernel_initializer,
            **kwargs,
        )
        self.feature_map = feature_map
        self.mode = mode
        self.chunk_size = chunk_size

    def _features(self, inputs, padding_mask=None):
        phi = FEATURE_MAPS[self.feature_map]
        q = phi(self._project(inputs, "query"))
        k = phi(self._project(inputs, "key"))
        v = self._project(inputs, "value")
        if padding_mask is not None:
            keep = ops.cast(padding_mask, k.dtype)[:, :, None, None]
            k = k * keep
        return q, k, v

    def call(self, inputs, padding_mask=None, training=None, mask=None):
        self._check_inputs(inputs, 3, padding_mask)
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
        return self._output(o)

    def get_initial_state(self, batch_size, max_length=None):
        """Returns the zero state `(S, z)`, `(batch_size, heads, head_dim,
        head_dim)` and `(batch_size, heads, head_dim)`. `max_length` is
        unused: the state does not grow."""
        if not self.causal:
            raise ValueError(
                "LinearAttention.step needs a causal layer; this one was "
                "built with causal=False."
            )
        heads, size = self.num_heads, self._head_dim
        return (
            ops.zeros((batch_size, heads, size, size), "float32"),
            ops.zeros((batch_size, heads, size), "float32"),
        )

    def step(self, inputs, state):
        """Advances one token: `inputs` (B, D) -> (outputs (B, D), state)."""
        self._check_inputs(inputs, 2)
        batch, heads, size = inputs.shape[0], self.num_heads, self._head_dim
        check_state("state[0]", state[0], (batch, heads, size, size))
        check_state("state[1]", state[1], (batch, heads, size))
        q, k, v = self._features(inputs[:, None])
        o, state = kops.linear_attention_step(q[:, 0], k[:, 0], v[:, 0], state)
        return self._output(o), state

    def prefill(self, inputs, state=None, length=None, max_length=None):
        """Runs a prompt `(B, T, D)` in one pass: `(outputs (B, T, D),
        state)`, the state the sums `(S, z)` after it (see
        `SequenceLayer`)."""
        self._check_inputs(inputs, 3)
        initial, _ = self._prefill_state(inputs, state, max_length)
        batch, heads, size = inputs.shape[0], self.num_heads, self._head_dim
        check_state("state[0]", initial[0], (batch, heads, size, size))
        check_state("state[1]", initial[1], (batch, heads, size))
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
        return self._output(o), state

    def get_config(self):
        config = super().get_config()
        del config["dropout"]  # no attention weights to drop
        config.update(
            {
                "feature_map": self.feature_map,
                "mode": self.mode,
                "chunk_size": self.chunk_size,
            }
        )
        return config
