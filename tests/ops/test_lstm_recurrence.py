import numpy as np
import pytest
from keras import ops

from kerasseq.ops import reference
from kerasseq.ops.lstm_recurrence import lstm_recurrence
from tests.testing import compiled
from tests.testing import in_float64
from tests.testing import value_and_grad


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
        ops.convert_to_numpy(h),
        in_float64(reference.lstm_recurrence, gates, U, mask)[0],
        atol=1e-5,
    )


def weighted_loss(gates, U, mask, weights, h=None, c=None, final_weights=None):
    """A weighted loss of the library's reference loop from `(h, c)` (zeros
    when `None`), of the final state too with `final_weights`, for the
    backend's own autodiff."""
    state = None if h is None else (h, c)
    out, (h, c) = reference.lstm_recurrence(gates, U, mask, state)
    total = ops.sum(out * weights)
    if final_weights is not None:
        total = total + ops.sum(h * final_weights[0])
        total = total + ops.sum(c * final_weights[1])
    return total


def gradient_inputs(seed, masked):
    """`(rng, gates, U, mask)` of a gradient test, the mask all true where
    not `masked`; the rng draws the loss weights that follow."""
    rng = np.random.default_rng(seed)
    gates, U, mask = inputs(rng)
    if not masked:
        mask = np.ones_like(mask)
    return rng, gates, U, mask


def output_weights(rng, gates, U):
    """Weights of the outputs `(B, T, units)` in a loss."""
    return rng.normal(size=(*gates.shape[:2], U.shape[0])).astype("float32")


def assert_matches_autodiff(value, grads, expected, names):
    """The kernel's loss and gradients equal `expected`, the backend's
    autodiff `(value, grads)` through the reference loop."""
    expected_value, expected_grads = expected
    np.testing.assert_allclose(value, expected_value, rtol=1e-5)
    for name, grad, ref in zip(names, grads, expected_grads, strict=True):
        np.testing.assert_allclose(grad, ref, atol=2e-5, err_msg=name)


@pytest.mark.parametrize("masked", [False, True])
def test_gradients_match_autodiff_under_xla(masked):
    rng, gates, U, mask = gradient_inputs(1, masked)
    weights = output_weights(rng, gates, U)

    def loss(gates, U):
        h = lstm_recurrence(gates, U, mask if masked else None)
        return ops.sum(h * weights)

    value, grads = value_and_grad(loss, gates, U, jit=True)
    expected = value_and_grad(
        lambda g, u: weighted_loss(g, u, mask, weights), gates, U
    )
    assert_matches_autodiff(value, grads, expected, ("gates", "U"))


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
    expected, (h_ref, c_ref) = in_float64(
        reference.lstm_recurrence, gates, U, mask, state
    )
    np.testing.assert_allclose(ops.convert_to_numpy(h), expected, atol=1e-5)
    np.testing.assert_allclose(ops.convert_to_numpy(h_last), h_ref, atol=1e-5)
    np.testing.assert_allclose(ops.convert_to_numpy(c_last), c_ref, atol=1e-5)
    # from zeros, the final state is that of the plain call's loop
    h, (_, c_last) = lstm_recurrence(gates, U, mask, return_final_state=True)
    expected, (_, c_ref) = in_float64(reference.lstm_recurrence, gates, U, mask)
    np.testing.assert_allclose(ops.convert_to_numpy(h), expected, atol=1e-5)
    np.testing.assert_allclose(ops.convert_to_numpy(c_last), c_ref, atol=1e-5)


@pytest.mark.parametrize("masked", [False, True])
def test_state_gradients_match_autodiff_under_xla(masked):
    rng, gates, U, mask = gradient_inputs(4, masked)
    h0, c0 = _state(rng, gates, U)
    weights = output_weights(rng, gates, U)
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
    expected = value_and_grad(
        lambda g, u, h, c: weighted_loss(
            g, u, mask, weights, h, c, final_weights
        ),
        gates,
        U,
        h0,
        c0,
    )
    assert_matches_autodiff(value, grads, expected, ("gates", "U", "h0", "c0"))


def test_low_precision_inputs_compute_in_float32():
    gates, U, _ = inputs(np.random.default_rng(2))
    h = lstm_recurrence(gates.astype("float16"), U)
    assert ops.convert_to_numpy(h).dtype == np.float16
    np.testing.assert_allclose(
        ops.convert_to_numpy(h).astype(np.float64),
        in_float64(reference.lstm_recurrence, gates.astype("float16"), U)[0],
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
