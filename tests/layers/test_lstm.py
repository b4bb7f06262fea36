import keras
import numpy as np
import pytest

from kerasseq.layers import LSTM
from kerasseq.ops import reference
from tests.testing import assert_step_equals_call
from tests.testing import in_float64
from tests.testing import layer_gradients
from tests.testing import value_and_grad


def reference_lstm(kernel, recurrent, bias, x):
    """The LSTM equations in float64 (`kerasseq.ops.reference`); gates in
    Keras's order i, f, c, o."""
    gates = x @ kernel + bias
    return in_float64(reference.lstm_recurrence, gates, recurrent)[0]


def test_matches_reference_equations():
    layer = LSTM()
    x = np.random.normal(size=(2, 7, 6)).astype("float32")
    y = keras.ops.convert_to_numpy(layer(x))
    kernel, recurrent, bias = (np.asarray(w, np.float64) for w in layer.weights)
    bias = bias + np.random.normal(size=bias.shape)
    layer.weights[2].assign(bias.astype("float32"))
    y = keras.ops.convert_to_numpy(layer(x))
    expected = reference_lstm(kernel, recurrent, bias, x.astype(np.float64))
    np.testing.assert_allclose(y, expected, atol=1e-5)


def test_projection_when_units_differ():
    layer = LSTM(units=10)
    y = layer(np.random.normal(size=(2, 5, 6)).astype("float32"))
    assert y.shape == (2, 5, 6)


@pytest.mark.parametrize("units", [None, 10])
def test_step_equals_call(units):
    layer = LSTM(units=units)
    x = np.random.normal(size=(3, 8, 6)).astype("float32")
    assert_step_equals_call(layer, x)


def test_padding_leaves_real_steps_alone():
    layer = LSTM()
    x = np.random.normal(size=(1, 6, 4)).astype("float32")
    mask = np.array([[True] * 4 + [False] * 2])
    y1 = keras.ops.convert_to_numpy(layer(x, padding_mask=mask))
    y2 = keras.ops.convert_to_numpy(layer(x[:, :4]))
    np.testing.assert_allclose(y1[:, :4], y2, atol=1e-6)


def test_bad_arguments():
    with pytest.raises(ValueError, match="`units`.*got -1"):
        LSTM(units=-1)


def test_matches_keras_lstm_with_padding_and_gradients():
    # keras.layers.LSTM (autodiff through its own loop) is an independent
    # implementation of the same equations and weights
    layer = LSTM()
    x = np.random.normal(size=(3, 9, 6)).astype("float32")
    layer(x)
    layer.lstm.cell.bias.assign(np.random.normal(size=(24,)))
    mask = np.ones((3, 9), bool)
    mask[0, -4:] = False
    mask[2, 2:5] = False
    weights = np.random.normal(size=x.shape).astype("float32")

    def ours(x):
        return keras.ops.sum(layer(x, padding_mask=mask) * weights)

    def keras_lstm(x):
        return keras.ops.sum(layer.lstm(x, mask=mask) * weights)

    value, (grad,) = value_and_grad(ours, x, jit=True)
    expected_value, (expected,) = value_and_grad(keras_lstm, x)
    np.testing.assert_allclose(value, expected_value, rtol=1e-5)
    np.testing.assert_allclose(grad, expected, atol=1e-5)


def test_weight_gradients_match_keras_lstm():
    layer = LSTM()
    x = np.random.normal(size=(2, 7, 5)).astype("float32")
    layer(x)
    assert [w.path for w in layer.trainable_variables] == [
        w.path for w in layer.lstm.trainable_variables
    ]
    ours = layer_gradients(layer, x, jit=True)
    expected = layer_gradients(layer.lstm, x)
    for grad, ref in zip(ours, expected, strict=True):
        np.testing.assert_allclose(grad, ref, atol=1e-5)
