import numpy as np
import pytest
from keras import ops

from kerasseq.ops import reference
from kerasseq.ops.matrix_recurrence import matrix_recurrence
from kerasseq.ops.matrix_recurrence import matrix_recurrence_step
from tests.testing import compiled
from tests.testing import in_float64
from tests.testing import value_and_grad


def inputs(rng, batch=3, length=13, size=5):
    # spectral radius about 0.9: long sequences neither explode nor vanish
    A = rng.normal(size=(size, size)) / np.sqrt(size) * 0.9
    b = rng.normal(size=(batch, length, size))
    h0 = rng.normal(size=(batch, size))
    return [x.astype("float32") for x in (A, b, h0)]


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("with_state", [False, True])
def test_matches_reference(reverse, with_state):
    rng = np.random.default_rng(0)
    A, b, h0 = inputs(rng)
    h0 = h0 if with_state else None

    def run(A, b, h0):
        return matrix_recurrence(
            A, b, h0, return_final_state=True, reverse=reverse
        )

    h, final = compiled(run)(A, b, h0)
    expected, expected_final = in_float64(
        reference.matrix_recurrence, A, b, h0, reverse
    )
    np.testing.assert_allclose(ops.convert_to_numpy(h), expected, atol=1e-5)
    np.testing.assert_allclose(
        ops.convert_to_numpy(final), expected_final, atol=1e-5
    )


def weighted_reference_loss(A, b, h0, reverse, weights):
    """A weighted loss of the library's reference loop, for the backend's
    own autodiff."""
    h, _ = reference.matrix_recurrence(A, b, h0, reverse)
    return ops.sum(h * weights)


@pytest.mark.parametrize("reverse", [False, True])
def test_gradients_match_autodiff_under_xla(reverse):
    rng = np.random.default_rng(1)
    A, b, h0 = inputs(rng, length=9)
    weights = rng.normal(size=b.shape).astype("float32")

    def loss(A, b, h0):
        h = matrix_recurrence(A, b, h0, reverse=reverse)
        return ops.sum(h * weights)

    value, grads = value_and_grad(loss, A, b, h0, jit=True)
    expected_value, expected = value_and_grad(
        lambda A, b, h0: weighted_reference_loss(A, b, h0, reverse, weights),
        A,
        b,
        h0,
    )
    np.testing.assert_allclose(value, expected_value, rtol=1e-5)
    for got, want in zip(grads, expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_gradients_without_initial_state():
    rng = np.random.default_rng(2)
    A, b, _ = inputs(rng, length=6)
    weights = rng.normal(size=b.shape).astype("float32")

    def loss(A, b):
        return ops.sum(matrix_recurrence(A, b) * weights)

    _, grads = value_and_grad(loss, A, b, jit=True)
    zeros = np.zeros_like(b[:, 0])
    _, expected = value_and_grad(
        lambda A, b: weighted_reference_loss(A, b, zeros, False, weights), A, b
    )
    for got, want in zip(grads, expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_step_equals_sequence():
    rng = np.random.default_rng(3)
    A, b, h0 = inputs(rng, length=7)
    full, final = matrix_recurrence(A, b, h0, return_final_state=True)
    state = h0
    for t in range(7):
        h_t, state = matrix_recurrence_step(A, b[:, t], state)
        np.testing.assert_allclose(
            ops.convert_to_numpy(h_t),
            ops.convert_to_numpy(full[:, t]),
            atol=1e-5,
        )
    np.testing.assert_allclose(
        ops.convert_to_numpy(state), ops.convert_to_numpy(final), atol=1e-5
    )


def test_bad_input():
    A = np.eye(4, dtype="float32")
    with pytest.raises(ValueError, match=r"`A`.*\(4, 4\).*\(3, 3\)"):
        matrix_recurrence(np.eye(3, dtype="float32"), np.ones((2, 5, 4)))
    with pytest.raises(ValueError, match="`b`.*got"):
        matrix_recurrence(A, np.ones((2, 4), "float32"))
    with pytest.raises(ValueError, match="`mode`.*'chunk'"):
        matrix_recurrence(A, np.ones((2, 5, 4), "float32"), mode="chunk")
    with pytest.raises(ValueError, match="`initial_state`"):
        matrix_recurrence(
            A, np.ones((2, 5, 4), "float32"), np.ones((2, 3), "float32")
        )
