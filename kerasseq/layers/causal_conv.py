"""Short causal depthwise convolutions over time, whole-sequence and one
step at a time, as Mamba and DeltaNet use them before their recurrences."""

from keras import ops


def causal_conv(x, kernel):
    """Depthwise convolution of `x` `(B, T, C)` with `kernel` `(K, C)` that
    sees only the current and the `K - 1` previous steps (zeros before the
    start).

    Returns:
        `(B, T, C)` in the dtype of `x`.
    """
    width = kernel.shape[0]
    padded = ops.pad(x, ((0, 0), (width - 1, 0), (0, 0)))
    return _valid_conv(padded, kernel)


def _valid_conv(padded, kernel):
    """The convolution of `padded` `(B, K - 1 + T, C)` at its last T steps,
    each reading itself and the K - 1 steps before it."""
    width = kernel.shape[0]
    kernel = ops.cast(kernel, padded.dtype)
    # A sum of K shifted copies, elementwise work that XLA fuses. On a
    # 2-core CPU (TensorFlow, B=4, T=1024, 256 channels) `depthwise_conv`
    # cost ~70 ms per Mamba layer in a training step, this form ~0.
    y = padded[:, width - 1 :] * kernel[width - 1]
    for k in range(width - 1):
        y = y + padded[:, k : k - (width - 1)] * kernel[k]
    return y


def causal_conv_prefill(window, x, kernel, length=None):
    """`causal_conv` of a prompt `x` `(B, T, C)` that follows the inputs
    held in `window`, and the window after it, as `causal_conv_step`
    leaves it.

    Args:
        window: the last `K - 1` inputs before `x`, `(B, K - 1, C)` (zeros
            at the start of a sequence).
        x: the new inputs, `(B, T, C)`.
        kernel: `(K, C)`.
        length: optional int or scalar int tensor: only the first
            `length` steps of `x` are real (the rest right padding), and
            the window is the one after them.

    Returns:
        `(y, new_window)`: the outputs `(B, T, C)` and the last `K - 1`
        real inputs `(B, K - 1, C)`.
    """
    width = kernel.shape[0]
    padded = ops.concatenate([ops.cast(window, x.dtype), x], 1)
    y = _valid_conv(padded, kernel)
    if length is None:
        return y, padded[:, padded.shape[1] - (width - 1) :]
    # rows length .. length + K - 2 of `padded` are the steps length - K + 1
    # .. length - 1 of `x`
    shape = (ops.shape(padded)[0], width - 1, padded.shape[2])
    return y, ops.slice(padded, (0, ops.cast(length, "int32"), 0), shape)


def causal_conv_step(window, x_t, kernel):
    """One step of `causal_conv`.

    Args:
        window: the last `K - 1` inputs, `(B, K - 1, C)`.
        x_t: the new input, `(B, C)`.
        kernel: `(K, C)`.

    Returns:
        `(y_t, new_window)`: the output `(B, C)` and the last `K - 1`
        inputs including `x_t`.
    """
    window = ops.concatenate([ops.cast(window, x_t.dtype), x_t[:, None]], 1)
    y_t = ops.sum(window * ops.cast(kernel, x_t.dtype), axis=1)
    return y_t, window[:, 1:]
