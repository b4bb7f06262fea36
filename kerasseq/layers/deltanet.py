import math

import keras
from keras import ops

from kerasseq.layers.causal_conv import causal_conv
from kerasseq.layers.causal_conv import causal_conv_prefill
from kerasseq.layers.causal_conv import causal_conv_step
from kerasseq.layers.sequence_layer import SequenceLayer
from kerasseq.layers.sequence_layer import fresh_initializer
from kerasseq.layers.sequence_layer import real_steps
from kerasseq.layers.sequence_layer import state_or_initial
from kerasseq.ops import checks
from kerasseq.ops.delta_rule import MODES
from kerasseq.ops.delta_rule import delta_rule
from kerasseq.ops.delta_rule import delta_rule_step

# inside the square root of the query / key L2 norm
L2_EPSILON = 1e-6


@keras.saving.register_keras_serializable(package="kerasseq")
class DeltaNet(SequenceLayer):
    """DeltaNet as a token mixer: linear attention with the delta rule.

    A fast-weight memory `S` of shape `(D, D)` per head is edited, not just
    added to: each token reads what the memory holds for its key, and
    writes back a fraction `beta_t` of the error, so that the value stored
    under `k_t` moves towards `v_t`:

        q, k, v = silu(conv(x W_q)), silu(conv(x W_k)), silu(conv(x W_v))
        q_t, k_t <- q_t / |q_t|, k_t / |k_t|         (per head)
        beta_t = sigmoid(x_t W_b)                  (times 2 with negative
                                                    eigenvalues)
        S_t = S_{t-1} + beta_t k_t (v_t - S_{t-1}^T k_t)^T
            = (I - beta_t k_t k_t^T) S_{t-1} + beta_t k_t v_t^T
        o_t = S_t^T q_t / sqrt(D)
        y_t = (rms_norm(o_t) * w_norm * silu(x_t W_g)) W_o

    where `conv` is a short causal depthwise convolution over time. With
    unit keys the transition `I - beta_t k_t k_t^T` has eigenvalues 1 and
    `1 - beta_t`: in `[0, 1]` for `beta_t` in `[0, 1]`, and in `[-1, 1]`
    with `allow_neg_eigval`, where `beta_t` lies in `[0, 2]` and a write
    can flip the sign of what is stored under a key (which helps state
    tracking, Grazzi et al. 2024). Either way the state stays bounded.

    It runs as `kerasseq.ops.delta_rule` (chunked or recurrent, in linear
    time, in float32 whatever the compute dtype), and `step` carries the
    last `K - 1` convolution inputs and the state `S`: constant memory per
    token.

    Weights are named and shaped as in flash-linear-attention's `DeltaNet`
    (`q_proj`, `k_proj`, `v_proj`, `b_proj`, `q_conv1d`, `k_conv1d`,
    `v_conv1d`, `g_proj`, `o_norm`, `o_proj`), so a checkpoint converts one
    to one: the Dense kernels are the transposed Linear weights, each
    `(K, H * D)` convolution kernel is the `(H * D, 1, K)` Conv1d weight
    transposed, and `o_norm_scale` is the norm's weight.

    Dimension letters: H `num_heads`, D `head_dim` (for keys, queries and
    values alike), K `conv_kernel`.

    Args:
        num_heads: int, H. Number of heads.
        head_dim: int, D. Size of each head; defaults to
            `hidden_dim // num_heads`.
        conv_kernel: int, K. Width of the short causal convolutions.
        use_short_conv: bool. Whether queries, keys and values go through
            the short convolutions. Without them they are
            `silu(x W_q)`, `silu(x W_k)` and `silu(x W_v)`: the SiLU stays
            (as in flash-linear-attention) and only the convolution goes.
        allow_neg_eigval: bool. Doubles `beta`, so that the transition
            may have the negative eigenvalue `1 - beta_t` in `[-1, 0)`.
        use_gate: bool. Multiplies the normalised output of each head by
            `silu(x W_g)`.
        norm_epsilon: float. Epsilon of the output RMS norm.
        mode: the `delta_rule` mode (`"auto"`, `"recurrent"`, `"chunk"`).
        chunk_size: int, the `delta_rule` chunk size.
        kernel_initializer: initializer of the projection kernels.
        **kwargs: other keyword arguments of `keras.layers.Layer`.

    Call arguments:
        As `SequenceLayer`'s. Padded steps feed zeros into the
        convolutions and write nothing into the state (`beta = 0`), so
        left padding leaves the outputs at real tokens unchanged (right
        padding cannot reach them).

    Example:

    A prompt in one pass with `prefill`, then token by token with `step`,
    gives the outputs of the whole sequence:

    >>> layer = DeltaNet(num_heads=4)
    >>> x = keras.random.normal((2, 10, 32))
    >>> y = layer(x)
    >>> _, state = layer.prefill(x[:, :9])
    >>> y_9, state = layer.step(x[:, 9], state)
    >>> bool(np.allclose(y_9, y[:, 9], atol=1e-4))
    True

    Reference:
        - [Schlag et al., 2021](https://arxiv.org/abs/2102.11174)
        - [Yang et al., 2024](https://arxiv.org/abs/2406.06484)
        - [Grazzi et al., 2024](https://arxiv.org/abs/2411.12537)
    """

    def __init__(
        self,
        num_heads,
        head_dim=None,
        conv_kernel=4,
        use_short_conv=True,
        allow_neg_eigval=False,
        use_gate=True,
        norm_epsilon=1e-5,
        mode="auto",
        chunk_size=64,
        kernel_initializer="glorot_uniform",
        **kwargs,
    ):
        checks.check_int("num_heads", num_heads)
        checks.check_int("head_dim", head_dim, allow_none=True)
        checks.check_int("conv_kernel", conv_kernel)
        checks.check_number(
            "norm_epsilon", norm_epsilon, "a positive float", lambda v: v > 0
        )
        super().__init__(**kwargs)
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.conv_kernel = conv_kernel
        self.use_short_conv = use_short_conv
        self.allow_neg_eigval = allow_neg_eigval
        self.use_gate = use_gate
        self.norm_epsilon = norm_epsilon
        self.set_scan_options(mode, chunk_size, MODES)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def _dense(self, name, units, input_dim):
        layer = keras.layers.Dense(
            units,
            use_bias=False,
            kernel_initializer=fresh_initializer(self.kernel_initializer),
            dtype=self.dtype_policy,
            name=name,
        )
        layer.build((None, input_dim))
        return layer

    def build(self, input_shape):
        hidden_dim = input_shape[-1]
        head_dim = checks.resolve_head_dim(
            hidden_dim, self.num_heads, self.head_dim
        )
        self._head_dim = head_dim
        inner = self.num_heads * head_dim
        self.q_proj = self._dense("q_proj", inner, hidden_dim)
        self.k_proj = self._dense("k_proj", inner, hidden_dim)
        self.v_proj = self._dense("v_proj", inner, hidden_dim)
        self.b_proj = self._dense("b_proj", self.num_heads, hidden_dim)
        if self.use_short_conv:
            # depthwise causal convolutions, torch default init
            # U(-1/sqrt(K), 1/sqrt(K)), one initializer object per kernel
            bound = 1.0 / math.sqrt(self.conv_kernel)
            for name in ("q", "k", "v"):
                kernel = self.add_weight(
                    name=f"{name}_conv1d_kernel",
                    shape=(self.conv_kernel, inner),
                    initializer=keras.initializers.RandomUniform(-bound, bound),
                )
                setattr(self, f"{name}_conv1d_kernel", kernel)
        self.g_proj = None
        if self.use_gate:
            self.g_proj = self._dense("g_proj", inner, hidden_dim)
        # the norm runs in float32: keep its weight there under mixed
        # precision
        self.o_norm_scale = self.add_weight(
            name="o_norm_scale",
            shape=(head_dim,),
            initializer="ones",
            autocast=False,
        )
        self.o_proj = self._dense("o_proj", hidden_dim, inner)

    def _check_width(self, name, x, rank, padding_mask=None):
        checks.check_input_width(
            name, x, rank, self.q_proj.kernel.shape[0], padding_mask
        )

    def _conv(self, x, name):
        """Causal depthwise convolution of `x` (B, T, H * D) over time."""
        return causal_conv(x, getattr(self, f"{name}_conv1d_kernel"))

    def _split_heads(self, x):
        # (..., H * D) -> (..., H, D), in float32 for the delta rule
        x = ops.cast(x, "float32")
        return ops.reshape(
            x, (*ops.shape(x)[:-1], self.num_heads, self._head_dim)
        )

    def _features(self, q, k, v, x):
        """Heads `(..., H, D)` in float32 from the activated projections:
        unit queries and keys, values, and `beta` `(..., H)` from `x`."""
        q, k, v = (self._split_heads(ops.silu(y)) for y in (q, k, v))
        return _l2_normalize(q), _l2_normalize(k), v, self._beta(x)

    def _beta(self, x):
        """Writing strengths `(..., H)` in float32: `sigmoid(x W_b)`, in
        `[0, 1]`, or twice that, in `[0, 2]`, with `allow_neg_eigval`."""
        beta = ops.sigmoid(ops.cast(self.b_proj(x), "float32"))
        if self.allow_neg_eigval:
            beta = 2.0 * beta
        return beta

    def _output(self, o, x):
        """RMS norm per head, the gate, and the output projection of the
        delta rule's output `o` (..., H, D)."""
        o = ops.cast(o, "float32")
        o = o * ops.rsqrt(
            ops.mean(ops.square(o), axis=-1, keepdims=True) + self.norm_epsilon
        )
        o = o * self.o_norm_scale
        if self.g_proj is not None:
            o = o * ops.silu(self._split_heads(self.g_proj(x)))
        o = ops.reshape(o, (*ops.shape(o)[:-2], self.o_proj.kernel.shape[0]))
        return self.o_proj(ops.cast(o, self.compute_dtype))

    def call(self, inputs, padding_mask=None, training=None, mask=None):
        self._check_width("inputs", inputs, 3, padding_mask)
        inputs, padding_mask = self.mask_inputs(inputs, padding_mask, mask)
        x = inputs
        if padding_mask is not None:
            x = x * ops.cast(padding_mask, x.dtype)[..., None]
        q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        if self.use_short_conv:
            q, k, v = self._conv(q, "q"), self._conv(k, "k"), self._conv(v, "v")
        q, k, v, beta = self._features(q, k, v, x)
        if padding_mask is not None:
            beta = beta * ops.cast(padding_mask, beta.dtype)[..., None]
        o = delta_rule(
            q,
            k,
            v,
            beta,
            scale=self._head_dim**-0.5,
            mode=self.mode,
            chunk_size=self.chunk_size,
        )
        return self._output(o, x)

    def _state_shapes(self, batch_size):
        inner = self.num_heads * self._head_dim
        shapes = {}
        if self.use_short_conv:
            for name in ("q", "k", "v"):
                shapes[f"conv_{name}"] = (
                    batch_size,
                    self.conv_kernel - 1,
                    inner,
                )
        size = self._head_dim
        shapes["delta"] = (batch_size, self.num_heads, size, size)
        return shapes

    def get_initial_state(self, batch_size, max_length=None):
        """Returns the zero state: the last `K - 1` inputs of each
        convolution, `"conv_q"`, `"conv_k"` and `"conv_v"` of shape
        `(batch_size, K - 1, H * D)` (absent without `use_short_conv`), and
        the float32 delta-rule state `"delta"` `(batch_size, H, D, D)`.
        `max_length` is unused: the state does not grow."""
        return {
            key: ops.zeros(
                shape, "float32" if key == "delta" else self.compute_dtype
            )
            for key, shape in self._state_shapes(batch_size).items()
        }

    def step(self, inputs, state):
        """Advances one token: `inputs` (B, hidden_dim) -> (outputs
        (B, hidden_dim), state)."""
        self._check_width("inputs", inputs, 2)
        checks.check_state(state, self._state_shapes(inputs.shape[0]))
        x = inputs
        q, k, v, beta, new_state = self._features_from_state(
            x, state, causal_conv_step
        )
        o, new_state["delta"] = delta_rule_step(
            q, k, v, beta, state["delta"], scale=self._head_dim**-0.5
        )
        return self._output(o, x), new_state

    def _features_from_state(self, x, state, convolve):
        """What `step` and `prefill` share: the projections of `x`, their
        short convolutions continued from `state`'s inputs with
        `convolve(state, y, kernel) -> (y, state)` (`causal_conv_step` or
        `causal_conv_prefill`), and `_features`. Returns `(q, k, v, beta,
        new_state)`, `new_state` holding the convolutions' new states."""
        qkv = [self.q_proj(x), self.k_proj(x), self.v_proj(x)]
        new_state = {}
        if self.use_short_conv:
            for i, name in enumerate(("q", "k", "v")):
                qkv[i], new_state[f"conv_{name}"] = convolve(
                    state[f"conv_{name}"],
                    qkv[i],
                    getattr(self, f"{name}_conv1d_kernel"),
                )
        return (*self._features(*qkv, x), new_state)

    def prefill(self, inputs, state=None, length=None, max_length=None):
        """Runs a prompt `(B, T, hidden_dim)` in one pass: `(outputs (B, T,
        hidden_dim), state)`, the state the convolutions' last inputs and
        the delta rule's last state (see `SequenceLayer`)."""
        self._check_width("inputs", inputs, 3)
        initial = state
        state = state_or_initial(self, inputs, state)
        checks.check_state(state, self._state_shapes(inputs.shape[0]))
        x = inputs
        q, k, v, beta, new_state = self._features_from_state(
            x,
            state,
            lambda s, y, kernel: causal_conv_prefill(s, y, kernel, length),
        )
        keep = real_steps(length, inputs.shape[1])
        if keep is not None:
            # padded steps write nothing: S_t = S_{t-1}
            beta = beta * ops.cast(keep, beta.dtype)[:, None]
        o, new_state["delta"] = delta_rule(
            q,
            k,
            v,
            beta,
            scale=self._head_dim**-0.5,
            initial_state=None if initial is None else state["delta"],
            return_final_state=True,
            mode=self.mode,
            chunk_size=self.chunk_size,
        )
        return self._output(o, x), new_state

    def compute_output_shape(self, input_shape):
        return input_shape


def _l2_normalize(x):
    # x / sqrt(|x|^2 + eps) over the last axis: unit length, and zero (not
    # NaN) for a zero vector such as a padded step's key
    return x * ops.rsqrt(ops.sum(ops.square(x), -1, keepdims=True) + L2_EPSILON)
