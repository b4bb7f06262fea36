import math

import keras
from keras import ops

from kerasseq.layers.causal_conv import causal_conv
from kerasseq.layers.causal_conv import causal_conv_prefill
from kerasseq.layers.causal_conv import causal_conv_step
from kerasseq.layers.sequence_layer import SequenceLayer
from kerasseq.layers.sequence_layer import add_float32_weight
from kerasseq.layers.sequence_layer import fresh_initializer
from kerasseq.layers.sequence_layer import real_steps
from kerasseq.layers.sequence_layer import state_or_initial
from kerasseq.ops import checks
from kerasseq.ops.selective_scan import selective_scan
from kerasseq.ops.selective_scan import selective_scan_step


@keras.saving.register_keras_serializable(package="kerasseq")
class Mamba(SequenceLayer):
    """The Mamba-1 block as a token mixer: a selective state-space model.

    The input is projected to a branch `x` and a gate `z` of width
    `expand * hidden_dim`; `x` runs through a causal depthwise convolution
    and SiLU, then through the selective scan, whose step size `dt`, input
    matrix `B` and output matrix `C` are projections of `x` itself; the
    result, gated by `silu(z)`, is projected back to `hidden_dim`.

    Weights are named and shaped as in the reference implementation
    (`in_proj`, `conv1d`, `x_proj`, `dt_proj`, `A_log`, `D`, `out_proj`),
    so a checkpoint converts one to one: the Dense kernels are the
    transposed Linear weights and the `(K, I)` convolution kernel is the
    `(I, 1, K)` Conv1d weight transposed.

    Dimension letters: H the input width `hidden_dim`, I = `expand * H`
    the inner width, N `state_size`, R `dt_rank`, K `conv_kernel`.

    Args:
        state_size: int, N. State size per inner channel.
        conv_kernel: int, K. Width of the causal convolution.
        expand: int. Inner width as a multiple of the input width.
        dt_rank: int or `"auto"` (`ceil(hidden_dim / 16)`), R. Rank of the
            step-size projection.
        dt_min, dt_max: floats. Range of the initial step sizes, drawn
            log-uniformly; the `dt_proj` bias is their inverse softplus.
        dt_init_floor: float. Lower clamp of the initial step sizes.
        dt_scale: float. Scale of the `dt_proj` kernel initialisation.
        use_bias: bool. Biases on `in_proj` and `out_proj`.
        use_conv_bias: bool. Bias on the convolution.
        mode: the `selective_scan` mode (`"auto"`, `"recurrent"`, `"chunk"`,
            `"parallel"`).
        chunk_size: int, the `selective_scan` chunk size.
        kernel_initializer: initializer of the `in_proj`, `x_proj` and
            `out_proj` kernels.
        **kwargs: other keyword arguments of `keras.layers.Layer`.

    Call arguments:
        As `SequenceLayer`'s. Padded steps feed zeros into the
        convolution and the scan, so left padding leaves the outputs at
        real tokens unchanged (right padding cannot reach them).

    Example:

    Decoding keeps a state of constant size: the convolution's last
    `conv_kernel - 1` inputs and the scan's `(expand * hidden_dim,
    state_size)` state per sequence:

    >>> layer = Mamba(state_size=16)
    >>> y = layer(keras.random.normal((2, 10, 32)))
    >>> state = layer.get_initial_state(2)
    >>> [tuple(s.shape) for s in keras.tree.flatten(state)]
    [(2, 3, 64), (2, 64, 16)]

    Reference:
        - [Gu and Dao, 2023](https://arxiv.org/abs/2312.00752)
    """

    def __init__(
        self,
        state_size=16,
        conv_kernel=4,
        expand=2,
        dt_rank="auto",
        dt_min=0.001,
        dt_max=0.1,
        dt_init_floor=1e-4,
        dt_scale=1.0,
        use_bias=False,
        use_conv_bias=True,
        mode="auto",
        chunk_size=64,
        kernel_initializer="glorot_uniform",
        **kwargs,
    ):
        checks.check_int("state_size", state_size)
        checks.check_int("conv_kernel", conv_kernel)
        checks.check_int("expand", expand)
        if dt_rank != "auto":
            checks.check_int("dt_rank", dt_rank)
        if not 0 < dt_min <= dt_max:
            raise ValueError(
                "Received invalid values for arguments `dt_min` and "
                f"`dt_max`, expected 0 < dt_min <= dt_max, got dt_min="
                f"{dt_min!r} and dt_max={dt_max!r}."
            )
        super().__init__(**kwargs)
        self.state_size = state_size
        self.conv_kernel = conv_kernel
        self.expand = expand
        self.dt_rank = dt_rank
        self.dt_min = dt_min
        self.dt_max = dt_max
        self.dt_init_floor = dt_init_floor
        self.dt_scale = dt_scale
        self.use_bias = use_bias
        self.use_conv_bias = use_conv_bias
        self.set_scan_options(mode, chunk_size)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape):
        hidden_dim = input_shape[-1]
        inner = self.expand * hidden_dim
        rank = self._rank(hidden_dim)
        n = self.state_size
        self.in_proj = keras.layers.Dense(
            2 * inner,
            use_bias=self.use_bias,
            kernel_initializer=fresh_initializer(self.kernel_initializer),
            dtype=self.dtype_policy,
            name="in_proj",
        )
        self.in_proj.build((None, hidden_dim))
        # depthwise causal convolution, torch default init U(-1/sqrt(K), .)
        bound = 1.0 / math.sqrt(self.conv_kernel)
        self.conv1d_kernel = self.add_weight(
            name="conv1d_kernel",
            shape=(self.conv_kernel, inner),
            initializer=keras.initializers.RandomUniform(-bound, bound),
        )
        self.conv1d_bias = None
        if self.use_conv_bias:
            self.conv1d_bias = self.add_weight(
                name="conv1d_bias",
                shape=(inner,),
                initializer=keras.initializers.RandomUniform(-bound, bound),
            )
        self.x_proj = keras.layers.Dense(
            rank + 2 * n,
            use_bias=False,
            kernel_initializer=fresh_initializer(self.kernel_initializer),
            dtype=self.dtype_policy,
            name="x_proj",
        )
        self.x_proj.build((None, inner))
        std = rank**-0.5 * self.dt_scale
        self.dt_proj = keras.layers.Dense(
            inner,
            kernel_initializer=keras.initializers.RandomUniform(-std, std),
            bias_initializer=_InverseSoftplusStepSizes(
                self.dt_min, self.dt_max, self.dt_init_floor
            ),
            dtype=self.dtype_policy,
            name="dt_proj",
        )
        self.dt_proj.build((None, rank))
        # S4D-real: A = -(1, 2, ..., N) for every channel
        self.A_log = add_float32_weight(
            self, "A_log", (inner, n), _S4DRealLog()
        )
        self.D = add_float32_weight(self, "D", (inner,), "ones")
        self.out_proj = keras.layers.Dense(
            hidden_dim,
            use_bias=self.use_bias,
            kernel_initializer=fresh_initializer(self.kernel_initializer),
            dtype=self.dtype_policy,
            name="out_proj",
        )
        self.out_proj.build((None, inner))

    def _rank(self, hidden_dim):
        if self.dt_rank == "auto":
            return math.ceil(hidden_dim / 16)
        return self.dt_rank

    def _check_width(self, name, x, rank, padding_mask=None):
        checks.check_input_width(
            name, x, rank, self.in_proj.kernel.shape[0], padding_mask
        )

    def _ssm_inputs(self, x):
        """Step sizes (before bias and softplus), B and C from `x`."""
        rank = self.dt_proj.kernel.shape[0]
        n = self.state_size
        projected = self.x_proj(x)
        dt = projected[..., :rank]
        B = projected[..., rank : rank + n]
        C = projected[..., rank + n :]
        delta = ops.matmul(dt, self.dt_proj.kernel)
        return delta, B, C

    def _scan_args(self):
        return dict(
            A=-ops.exp(self.A_log),
            D=self.D,
            delta_bias=self.dt_proj.bias,
            delta_softplus=True,
        )

    def call(self, inputs, padding_mask=None, training=None, mask=None):
        self._check_width("inputs", inputs, 3, padding_mask)
        inputs, padding_mask = self.mask_inputs(inputs, padding_mask, mask)
        inner = self.D.shape[0]
        xz = self.in_proj(inputs)
        x, z = xz[..., :inner], xz[..., inner:]
        if padding_mask is not None:
            x = x * ops.cast(padding_mask, x.dtype)[..., None]
        x = causal_conv(x, self.conv1d_kernel)
        if self.conv1d_bias is not None:
            x = x + ops.cast(self.conv1d_bias, x.dtype)
        x = ops.silu(x)
        if padding_mask is not None:
            x = x * ops.cast(padding_mask, x.dtype)[..., None]
        delta, B, C = self._ssm_inputs(x)
        y = selective_scan(
            x,
            delta,
            B=B,
            C=C,
            z=z,
            mode=self.mode,
            chunk_size=self.chunk_size,
            **self._scan_args(),
        )
        return self.out_proj(y)

    def get_initial_state(self, batch_size, max_length=None):
        """Returns the zero state: the last `K - 1` convolution inputs
        `(batch_size, K - 1, I)` and the scan state `(batch_size, I, N)`.
        `max_length` is unused: the state does not grow."""
        shapes = self._state_shapes(batch_size)
        return {
            "conv": ops.zeros(shapes["conv"], self.compute_dtype),
            "ssm": ops.zeros(shapes["ssm"], "float32"),
        }

    def _state_shapes(self, batch_size):
        inner = self.D.shape[0]
        return {
            "conv": (batch_size, self.conv_kernel - 1, inner),
            "ssm": (batch_size, inner, self.state_size),
        }

    def step(self, inputs, state):
        """Advances one token: `inputs` (B, H) -> (outputs (B, H), state)."""
        self._check_width("inputs", inputs, 2)
        inner = self.D.shape[0]
        checks.check_state(state, self._state_shapes(inputs.shape[0]))
        xz = self.in_proj(inputs)
        x, z = xz[..., :inner], xz[..., inner:]
        x, window = causal_conv_step(state["conv"], x, self.conv1d_kernel)
        if self.conv1d_bias is not None:
            x = x + ops.cast(self.conv1d_bias, x.dtype)
        x = ops.silu(x)
        delta, B, C = self._ssm_inputs(x)
        y, ssm = selective_scan_step(
            x,
            delta,
            B_t=B,
            C_t=C,
            z_t=z,
            state=state["ssm"],
            **self._scan_args(),
        )
        new_state = {"conv": window, "ssm": ssm}
        return self.out_proj(y), new_state

    def prefill(self, inputs, state=None, length=None, max_length=None):
        """Runs a prompt `(B, T, H)` in one pass: `(outputs (B, T, H),
        state)`, the state the convolution's last inputs and the scan's
        last state (see `SequenceLayer`)."""
        self._check_width("inputs", inputs, 3)
        initial = state
        state = state_or_initial(self, inputs, state)
        inner = self.D.shape[0]
        checks.check_state(state, self._state_shapes(inputs.shape[0]))
        xz = self.in_proj(inputs)
        x, z = xz[..., :inner], xz[..., inner:]
        x, window = causal_conv_prefill(
            state["conv"], x, self.conv1d_kernel, length
        )
        if self.conv1d_bias is not None:
            x = x + ops.cast(self.conv1d_bias, x.dtype)
        x = ops.silu(x)
        delta, B, C = self._ssm_inputs(x)
        scan_args = self._scan_args()
        keep = real_steps(length, inputs.shape[1])
        if keep is not None:
            # a zero step size at a padded step leaves the state as it is:
            # h = exp(0 * A) h + 0 * B x
            delta = ops.cast(delta, "float32")
            bias = scan_args.pop("delta_bias")
            if bias is not None:
                delta = delta + ops.cast(bias, "float32")
            delta = ops.softplus(delta) * ops.cast(keep, "float32")[:, None]
            scan_args["delta_softplus"] = False
        y, ssm = selective_scan(
            x,
            delta,
            B=B,
            C=C,
            z=z,
            initial_state=None if initial is None else state["ssm"],
            return_final_state=True,
            mode=self.mode,
            chunk_size=self.chunk_size,
            **scan_args,
        )
        return self.out_proj(y), {"conv": window, "ssm": ssm}

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="kerasseq")
class _S4DRealLog(keras.initializers.Initializer):
    """`log(1), ..., log(N)` along the last axis: A = -exp(A_log) = -n."""

    def __call__(self, shape, dtype=None):
        n = ops.arange(1, shape[-1] + 1, dtype="float32")
        return ops.broadcast_to(ops.log(n), shape)


@keras.saving.register_keras_serializable(package="kerasseq")
class _InverseSoftplusStepSizes(keras.initializers.Initializer):
    """Biases whose softplus is a step size drawn log-uniformly in
    `[dt_min, dt_max]` (clamped below at `floor`), as in the paper."""

    def __init__(self, dt_min, dt_max, floor, seed=None):
        self.dt_min = dt_min
        self.dt_max = dt_max
        self.floor = floor
        self.seed = seed

    def __call__(self, shape, dtype=None):
        low, high = math.log(self.dt_min), math.log(self.dt_max)
        u = keras.random.uniform(shape, seed=self.seed, dtype="float32")
        dt = ops.maximum(ops.exp(u * (high - low) + low), self.floor)
        # inverse of softplus: dt + log(1 - exp(-dt))
        return dt + ops.log(-ops.expm1(-dt))

    def get_config(self):
        return {
            "dt_min": self.dt_min,
            "dt_max": self.dt_max,
            "floor": self.floor,
            "seed": self.seed,
        }
