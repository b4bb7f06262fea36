"""Cases and checks shared by the tests of the chunked ops: shape tables,
weighted losses of an op's outputs and final state, finite differences,
and the compiled-model and memory checks."""

import keras
import numpy as np
import pytest
from keras import ops

from tests.testing import float64
from tests.testing import rel_rms
from tests.testing import value_and_grad

# (B, T, H, K, V, chunk_size) of the delta rule and linear attention:
# odd lengths, every chunk size, K != V
FORWARD_CASES = [
    (2, 1, 2, 8, 8, 16),
    (2, 7, 3, 8, 4, 16),
    (1, 63, 2, 16, 8, 32),
    (2, 100, 2, 8, 16, 64),
    (1, 100, 1, 32, 32, 16),
    (1, 1000, 2, 8, 4, 64),
]
# smaller heads for the gradients
GRAD_CASES = [
    (1, 1, 1, 4, 4, 16),
    (2, 7, 2, 8, 4, 16),
    (1, 63, 2, 8, 8, 32),
    (2, 100, 1, 8, 16, 64),
    (1, 1000, 1, 8, 8, 64),
]


def case_id(value):
    """A readable test id for a `(B, T, H, K, V, chunk_size)` case."""
    if isinstance(value, tuple):
        return "B{}-T{}-H{}-K{}-V{}-C{}".format(*value)
    return str(value)


def numpy(x):
    """A tensor as float32 NumPy (bfloat16 results included)."""
    return np.asarray(ops.convert_to_numpy(ops.cast(x, "float32")))


def loss_weights(case, normalizer=False, seed=7):
    """Gaussian float64 weights of the output `(B, T, H, V)` and the final
    state `(B, H, K, V)`, and with `normalizer` of linear attention's
    normaliser state `(B, H, K)`, for `weighted_sum`."""
    batch, length, heads, key_dim, value_dim = case[:5]
    rng = np.random.default_rng(seed)
    shapes = [
        (batch, length, heads, value_dim),
        (batch, heads, key_dim, value_dim),
    ]
    if normalizer:
        shapes.append((batch, heads, key_dim))
    return tuple(rng.normal(size=shape) for shape in shapes)


def weighted_sum(outputs, weights):
    """`sum(part * weight)` over the parts of an op's `(output, final
    state)`, flattened: a scalar loss whose gradients reach every output.
    NumPy on NumPy outputs (the float64 references), keras.ops otherwise."""
    total = 0.0
    parts = keras.tree.flatten(outputs)
    for part, weight in zip(parts, weights, strict=True):
        if isinstance(part, np.ndarray):
            total = total + np.sum(part * weight)
        else:
            total = total + ops.sum(part * weight)
    return total


def reference_gradients(fn, inputs, weights):
    """`weighted_sum(fn(*inputs), weights)` and its gradients by autodiff
    through `fn`, a reference of `kerasseq.ops.reference`, in float64 and
    compiled (pass it `scan=dispatch.scan` to compile its loop)."""

    def loss(*inputs):
        return weighted_sum(fn(*inputs), weights)

    with float64():
        wide = [x.astype(np.float64) for x in inputs]
        return value_and_grad(loss, *wide, jit=True)


def assert_gradients_close(grads, expected, names, tolerance=1e-5):
    """Each gradient has the expected shape and a relative RMS error under
    `tolerance`."""
    for name, g, g_ref in zip(names, grads, expected, strict=True):
        assert g.shape == g_ref.shape, name
        assert rel_rms(g, g_ref) < tolerance, name


def finite_differences(loss, inputs, eps=1e-6, directions=(1.0,)):
    """Central differences of the NumPy `loss(*inputs)` in every element of
    every (float64 or complex128) input, as a list like `inputs`. With
    `directions=(1.0, 1j)`, the gradient of a real loss of complex inputs
    z = x + iy as dL/dx + i dL/dy (TensorFlow's convention)."""
    grads = []
    for position, x in enumerate(inputs):
        grad = np.zeros_like(x)
        for index in np.ndindex(x.shape):
            for direction in directions:
                plus = [y.copy() for y in inputs]
                minus = [y.copy() for y in inputs]
                plus[position][index] += eps * direction
                minus[position][index] -= eps * direction
                slope = (loss(*plus) - loss(*minus)) / (2 * eps)
                grad[index] += slope * direction
        grads.append(grad)
    return grads


def temp_bytes_per_token(fn, make_inputs):
    """XLA's temporary bytes per token that `jax.jit(fn)` adds from 1,024
    to 4,096 tokens, `make_inputs(length)` giving its arguments: what the
    compiled function keeps per token. Skips the test off JAX, the only
    backend that exposes buffer sizes."""
    if keras.backend.backend() != "jax":
        pytest.skip("XLA buffer sizes are only exposed by jax")
    import jax

    def temp_bytes(length):
        compiled = jax.jit(fn).lower(*make_inputs(length)).compile()
        return compiled.memory_analysis().temp_size_in_bytes

    return (temp_bytes(4096) - temp_bytes(1024)) / 3072


def predict_per_mode(op, arrays, modes):
    """`op(*arrays, mode=mode)` for each mode inside a functional model
    whose inputs have no batch size, run by `predict` in batches of 2."""
    inputs = [keras.Input(x.shape[1:]) for x in arrays]
    outputs = [
        keras.layers.Lambda(lambda x, m=mode: op(*x, mode=m))(inputs)
        for mode in modes
    ]
    model = keras.Model(inputs, outputs)
    return model.predict(list(arrays), batch_size=2, verbose=0)
