import numpy as np
import pytest
from keras import ops

from kerasseq.layers.causal_conv import causal_conv
from kerasseq.layers.causal_conv import causal_conv_step
from kerasseq.ops import reference
from tests.testing import compiled
from tests.testing import in_float64
from tests.testing import value_and_grad


def reference_conv(x, kernel):
    """The library's float64 reference of `causal_conv`, as NumPy."""
    return in_float64(reference.causal_conv, x, kernel)


@pytest.mark.parametrize("width", [1, 2, 4])
def test_matches_loop_compiled(width):
    rng = np.random.default_rng(width)
    x = rng.normal(size=(2, 9, 5)).astype("float32")
    kernel = rng.normal(size=(width, 5)).astype("float32")
    y = compiled(causal_conv)(x, kernel)
    np.testing.assert_allclose(y, reference_conv(x, kernel), atol=1e-5)


def test_gradients_match_finite_differences_of_the_loop():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 7, 3))
    kernel = rng.normal(size=(4, 3))
    w = rng.normal(size=x.shape)
    _, grads = value_and_grad(
        lambda x, k: ops.sum(causal_conv(x, k) * w.astype("float32")),
        x.astype("float32"),
        kernel.astype("float32"),
        jit=True,
    )

    def loss(x, kernel):
        return (reference_conv(x, kernel) * w).sum()

    eps = 1e-4
    for j, grad in enumerate(grads):
        args = [x, kernel]
        numeric = np.zeros_like(args[j])
        for i in np.ndindex(args[j].shape):
            bump = np.zeros_like(args[j])
            bump[i] = eps
            plus, minus = list(args), list(args)
            plus[j], minus[j] = args[j] + bump, args[j] - bump
            numeric[i] = (loss(*plus) - loss(*minus)) / (2 * eps)
        np.testing.assert_allclose(grad, numeric, atol=1e-4)


def test_steps_match_the_whole_sequence():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 6, 3)).astype("float32")
    kernel = rng.normal(size=(4, 3)).astype("float32")
    window = np.zeros((2, 3, 3), "float32")
    outputs = []
    for t in range(x.shape[1]):
        y_t, window = causal_conv_step(window, x[:, t], kernel)
        outputs.append(np.asarray(y_t))
    np.testing.assert_allclose(
        np.stack(outputs, 1), reference_conv(x, kernel), atol=1e-5
    )
