import numpy as np
import pytest
from keras import ops

from kerasseq.ops.lstm_recurrence import lstm_recurrence
from tests.testing import compiled
from tests.testing import time_steps
from tests.testing import value_and_grad


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def reference(gates, U, mask=None, initial_state=None, final=False):
    """The LSTM cell in float64, a plain loop from `initial_state` (zeros
    when `None`); a step with mask 0 keeps the state and repeats the
    previous output. With `final`, also the last `(h, c)`."""
    gates, U = gates.astype(np.float64), U.astype(np.float64)
    batch, length, _ = gates.shape
    h = np.zeros((batch, U.shape[0]))
    c = np.zeros_like(h)
    if initial_state is not None:
        h, c = (np.asarray(x, np.float64) for x in initial_state)
    outputs = np.zeros((batch, length, U.shape[0]))
    for t in range(length):
        i, f, g, o = np.split(gates[:, t] + h @ U, 4, axis=-1)
        c_new = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        h_new = sigmoid(o) * np.tanh(c_new)
        m = 1.0 if mask is None else mask[:, t, None].astype(np.float64)
        c = m * c_new + (1 - m) * c
        h = m * h_new + (1 - m) * h
        outputs[:, t] = h
    if final:
        return outputs, (h, c)
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


def naive_loss(gates, U, mask, weights, h=None, c=None, final_weights=None):
    """The loop in keras.ops from `(h, c)` (zeros when `None`) with a
    weighted loss (of the final state too, with `final_weights`), for the
    backend's own autodiff."""
    if h is None:
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
    if final_weights is not None:
        total = total + ops.sum(h * final_weights[0])
        total = total + ops.sum(c * final_weights[1])
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


def _state(rng, gates, U):
    shape = (gates.shape[0], U.shape[0])
    return tuple(rng.normal(size=shape).astype("float32") for _ in range(2))


@pytest.mark.parametrize("masked", [False, True])
def test_initial_and_final_state_match_reference(masked):
    rng = np.random.default_rng(3)
    gates, U, mask = inputs(rng)
    mask = mask if masked else None
    state = _state(rng, gates, U)

    def run(g, u, h0, c0):
        return lstm_recurrence(
            g, u, mask, initial_state=(h0, c0), return_final_state=True
        )

    h, (h_last, c_last) = compiled(run)(gates, U, *state)
    expected, (h_ref, c_ref) = reference(gates, U, mask, state, final=True)
    np.testing.assert_allclose(ops.convert_to_numpy(h), expected, atol=1e-5)
    np.testing.assert_allclose(ops.convert_to_numpy(h_last), h_ref, atol=1e-5)
    np.testing.assert_allclose(ops.convert_to_numpy(c_last), c_ref, atol=1e-5)
    # from zeros, the final state is that of the plain call's loop
    h, (_, c_last) = lstm_recurrence(gates, U, mask, return_final_state=True)
    expected, (_, c_ref) = reference(gates, U, mask, final=True)
    np.testing.assert_allclose(ops.convert_to_numpy(h), expected, atol=1e-5)
    np.testing.assert_allclose(ops.convert_to_numpy(c_last), c_ref, atol=1e-5)


@pytest.mark.parametrize("masked", [False, True])
def test_state_gradients_match_autodiff_under_xla(masked):
    rng = np.random.default_rng(4)
    gates, U, mask = inputs(rng)
    if not masked:
        mask = np.ones_like(mask)
    h0, c0 = _state(rng, gates, U)
    weights = rng.normal(size=(*gates.shape[:2], U.shape[0]))
    weights = weights.astype("float32")
    final_weights = _state(rng, gates, U)

    def loss(gates, U, h0, c0):
        h, (h_last, c_last) = lstm_recurrence(
            gates,
            U,
            mask if masked else None,
            initial_state=(h0, c0),
            return_final_state=True,
        )
        total = ops.sum(h * weights) + ops.sum(h_last * final_weights[0])
        return total + ops.sum(c_last * final_weights[1])

    value, grads = value_and_grad(loss, gates, U, h0, c0, jit=True)
    expected_value, expected = value_and_grad(
        lambda g, u, h, c: naive_loss(g, u, mask, weights, h, c, final_weights),
        gates,
        U,
        h0,
        c0,
    )
    np.testing.assert_allclose(value, expected_value, rtol=1e-5)
    names = ("gates", "U", "h0", "c0")
    for name, grad, ref in zip(names, grads, expected, strict=True):
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
