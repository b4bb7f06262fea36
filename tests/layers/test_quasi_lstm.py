import keras
import numpy as np
import pytest

from kerasseq.layers.quasi_lstm import QuasiLSTM
from kerasseq.ops import reference
from tests.layers.common import assert_modes_give_the_same_gradients
from tests.layers.common import sigmoid
from tests.testing import assert_step_equals_call
from tests.testing import compiled
from tests.testing import in_float64
from tests.testing import layer_weights
from tests.testing import perturb_weights


def reference_quasi_lstm(w, x, mask=None):
    """The quasi-LSTM in float64 (the loop over time by
    `kerasseq.ops.reference.linear_recurrence`): gates from x_t alone,
    c_t = f_t c_{t-1} + i_t z_t, h_t = o_t tanh(c_t); padded steps keep c
    and are read as zeros."""
    if mask is not None:
        x = np.where(mask[..., None], x, 0.0)
    gates = x @ w["gates/kernel"] + w["gates/bias"]
    f, i, z, o = np.split(gates, 4, axis=-1)
    decay, drive = sigmoid(f), sigmoid(i) * np.tanh(z)
    if mask is not None:  # c_t = 1 c_{t-1} + 0
        decay = np.where(mask[..., None], decay, 1.0)
        drive = np.where(mask[..., None], drive, 0.0)
    c, _ = in_float64(reference.linear_recurrence, decay, drive)
    h = sigmoid(o) * np.tanh(c)
    if "projection/kernel" in w:
        h = h @ w["projection/kernel"] + w["projection/bias"]
    return h


def make(x, rng, **kwargs):
    layer = QuasiLSTM(**kwargs)
    layer.build(x.shape)
    return perturb_weights(layer, rng)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"mode": "recurrent"},
        {"mode": "chunk", "chunk_size": 4},
        {"mode": "parallel", "units": 6},
    ],
)
def test_matches_reference_equations(kwargs):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 11, 8)).astype("float32")
    layer = make(x, rng, **kwargs)
    mask = np.ones((2, 11), bool)
    mask[1, 7:] = False
    mask[0, :2] = False
    y = keras.ops.convert_to_numpy(compiled(layer)(x, mask))
    expected = reference_quasi_lstm(
        layer_weights(layer), x.astype(np.float64), mask
    )
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-5)


def test_forget_gate_starts_open():
    layer = QuasiLSTM()
    layer.build((None, None, 8))
    bias = layer.gates.bias.numpy()
    np.testing.assert_array_equal(bias[:8], 1.0)
    np.testing.assert_array_equal(bias[8:], 0.0)


@pytest.mark.parametrize("units", [None, 6])
def test_step_equals_call(units):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 9, 8)).astype("float32")
    layer = make(x, rng, units=units)
    state = assert_step_equals_call(layer, x, jit=units is None)
    assert tuple(state.shape) == (3, units or 8)


def test_modes_give_the_same_gradients():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 10, 8)).astype("float32")
    assert_modes_give_the_same_gradients(QuasiLSTM, x, atol=1e-5, jit=True)


def test_bad_arguments():
    layer = QuasiLSTM(units=6, mode="chunk", chunk_size=8)
    with pytest.raises(ValueError, match="`units`.*got 0"):
        QuasiLSTM(units=0)
    with pytest.raises(ValueError, match="`mode`.*got 'fast'"):
        QuasiLSTM(mode="fast")
    layer.build((None, None, 8))
    with pytest.raises(ValueError, match=r"`inputs`.*8\).*\(2, 5, 6\)"):
        layer(np.zeros((2, 5, 6), "float32"))
    with pytest.raises(ValueError, match=r"`state`.*\(2, 6\).*\(2, 8\)"):
        layer.step(np.zeros((2, 8), "float32"), np.zeros((2, 8), "float32"))
