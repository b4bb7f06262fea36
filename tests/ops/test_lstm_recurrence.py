import numpy as np
import pytest
from keras import ops

from kerasseq.ops.lstm_recurrence import lstm_recurrence
from tests.testing import compiled
from tests.testing import time_steps
from tests.testing import value_and_grad


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def reference(gates, U, mask=None):
    """The LSTM cell in float64, a plain loop; a step with mask 0 keeps the
    state and repeats the previous output."""
    gates, U = gates.astype(np.float64), U.astype(np.float64)
    batch, length, _ = gates.shape
    h = np.zeros((batch, U.shape[0]))
    c = np.zeros_like(h)
    outputs = np.zeros((batch, length, U.shape[0]))
    for t in range(length):
        i, f, g, o = np.split(gates[:, t] + h @ U, 4, axis=-1)
        c_new = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        h_new = sigmoid(o) * np.tanh(c_new)
        m = 1.0 if mask is None else mask[:, t, None].astype(np.float64)
        c = m * c_new + (1 - m) * c
        h = m * h_new + (1 - m) * h
        outputs[:, t] = h
    return outputs


def inputs(rng, batch=3, length=11, units=4):
    gates = rng.normal(size=(batch, length, 4 * units))
    U = rng.normal(size=(units, 4 * units)) / np.sqrt(units)
    # padding at the end of one row and in the middle of another
    mask = np.ones((batch, length), bool)
    mask[0, -3:] = False
    mask[1, 4:6] = False
    return gates.astype("float32"), U.astype("float32"), mask


@pytest.mark.parametrize("masked", [False, True])
def test_matches_reference(masked):
    gates, U, mask = inputs(np.random.default_rng(0))
    mask = mask if masked else None
    h = compiled(lambda g, u: lstm_recurrence(g, u, mask))(gates, U)
    np.testing.assert_allclose(
        ops.convert_to_numpy(h), reference(gates, U, mask), atol=1e-5
    )


def naive_loss(gates, U, mask, weights):
    """The loop in keras.ops with a weighted loss, for the backend's own
    autodiff."""
    h = ops.zeros((gates.shape[0], U.shape[0]))
    c = h
    total = 0.0
    for t, step in enumerate(time_steps(gates)):
        i, f, g, o = ops.split(step + ops.matmul(h, U), 4, axis=-1)
        c_new = ops.sigmoid(f) * c + ops.sigmoid(i) * ops.tanh(g)
        h_new = ops.sigmoid(o) * ops.tanh(c_new)
        m = ops.cast(mask[:, t, None], "float32")
        c = m * c_new + (1 - m) * c
        h = m * h_new + (1 - m) * h
        total = total + ops.sum(h * weights[:, t])
    return total


@pytest.mark.parametrize("masked", [False, True])
def test_gradients_match_autodiff_under_xla(masked):
    rng = np.random.default_rng(1)
    gates, U, mask = inputs(rng)
    if not masked:
        mask = np.ones_like(mask)
    weights = rng.normal(size=(*gates.shape[:2], U.shape[0]))
    weights = weights.astype("float32")

    def loss(gates, U):
        h = lstm_recurrence(gates, U, mask if masked else None)
        return ops.sum(h * weights)

    value, grads = value_and_grad(loss, gates, U, jit=True)
    expected_value, expected = value_and_grad(
        lambda g, u: naive_loss(g, u, mask, weights), gates, U
    )
    np.testing.assert_allclose(value, expected_value, rtol=1e-5)
    for name, grad, ref in zip(("gates", "U"), grads, expected, strict=True):
        np.testing.assert_allclose(grad, ref, atol=2e-5, err_msg=name)


def test_low_precision_inputs_compute_in_float32():
    gates, U, _ = inputs(np.random.default_rng(2))
    h = lstm_recurrence(gates.astype("float16"), U)
    assert ops.convert_to_numpy(h).dtype == np.float16
    np.testing.assert_allclose(
        ops.convert_to_numpy(h).astype(np.float64),
        reference(gates.astype("float16"), U),
        atol=2e-3,
    )


@pytest.mark.parametrize(
    "gates_shape, U_shape, match",
    [
        ((2, 5, 12), (3, 8), "recurrent_kernel"),
        ((2, 5, 10), (3, 12), "gates"),
        ((2, 12), (3, 12), "gates"),
    ],
)
def test_bad_shapes_name_the_argument(gates_shape, U_shape, match):
    with pytest.raises(ValueError, match=match):
        lstm_recurrence(np.zeros(gates_shape, "float32"), np.zeros(U_shape))


def test_bad_mask_shape():
    with pytest.raises(ValueError, match="mask"):
        lstm_recurrence(
            np.zeros((2, 5, 12), "float32"),
            np.zeros((3, 12), "float32"),
            mask=np.ones((2, 4), bool),
        )


def test_bad_mode_names_the_allowed_ones():
    with pytest.raises(ValueError, match=r"`mode`.*'recurrent'.*'chunk'"):
        lstm_recurrence(
            np.zeros((2, 5, 12), "float32"),
            np.zeros((3, 12), "float32"),
            mode="chunk",
        )
