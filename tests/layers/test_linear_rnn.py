import math

import keras
import numpy as np
import pytest

from kerasseq.layers.linear_rnn import DiagonalRNN
from kerasseq.layers.linear_rnn import LinearRNN
from kerasseq.layers.linear_rnn import transition_std
from kerasseq.ops import reference
from tests.layers.common import assert_modes_give_the_same_gradients
from tests.layers.common import assert_padding_leaves_real_steps_alone
from tests.layers.common import glu_output
from tests.testing import assert_step_equals_call
from tests.testing import compiled
from tests.testing import in_float64
from tests.testing import layer_gradients
from tests.testing import layer_weights
from tests.testing import perturb_weights


def reference_linear_rnn(w, x, diagonal, use_glu, mask=None):
    """The linear RNN in float64 (complex128), the loop over time by
    `kerasseq.ops.reference`:
    h_t = A h_{t-1} + B x_t (A diagonal and complex, or dense and real),
    y_t = Re(C h_t) + D x_t, then glu_out(gelu(y)) * sigmoid(glu_gate(.))."""
    if mask is not None:
        x_in = x * mask[..., None]
    else:
        x_in = x
    if diagonal:
        lam = w["A_re"] + 1j * w["A_im"]
        B = w["B_re"] + 1j * w["B_im"]
        C = w["C_re"] + 1j * w["C_im"]
        drive = x_in @ B
        decay = np.broadcast_to(lam, drive.shape)
        h, _ = in_float64(reference.linear_recurrence, decay, drive)
    else:
        A, B, C = w["A"], w["B"], w["C"]
        h, _ = in_float64(reference.matrix_recurrence, A, x_in @ B)
    y = np.real(h @ C) + w["D"] * x
    return glu_output(w, y) if use_glu else y


def make(cls, x, rng, **kwargs):
    layer = cls(**kwargs)
    layer.build(x.shape)
    return perturb_weights(layer, rng)


CASES = [
    (LinearRNN, {"mode": "recurrent"}),
    (LinearRNN, {"use_glu": False, "state_size": 6}),
    (DiagonalRNN, {"mode": "recurrent"}),
    (DiagonalRNN, {"mode": "chunk", "chunk_size": 4, "state_size": 6}),
    (DiagonalRNN, {"mode": "parallel", "use_glu": False}),
]


@pytest.mark.parametrize("cls,kwargs", CASES)
def test_matches_reference_equations(cls, kwargs):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 11, 8)).astype("float32")
    layer = make(cls, x, rng, A_init="rescaled_glorot", **kwargs)
    mask = np.ones((2, 11), "float32")
    mask[1, :3] = 0.0  # left padding
    y = keras.ops.convert_to_numpy(compiled(layer)(x, mask.astype(bool)))
    # masked steps are read as zeros (SequenceLayer.mask_inputs)
    expected = reference_linear_rnn(
        layer_weights(layer),
        x.astype(np.float64) * mask[..., None],
        cls is DiagonalRNN,
        kwargs.get("use_glu", True),
        mask,
    )
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("cls", [LinearRNN, DiagonalRNN])
def test_step_equals_call(cls):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 9, 8)).astype("float32")
    layer = make(cls, x, rng, A_init="rescaled_glorot")
    state = assert_step_equals_call(layer, x, jit=True)
    assert tuple(state.shape) == (3, 8)


@pytest.mark.parametrize("cls", [LinearRNN, DiagonalRNN])
def test_left_padding_leaves_real_steps_alone(cls):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(1, 5, 8)).astype("float32")
    layer = make(cls, x, rng)
    noise = rng.normal(size=(1, 3, 8))
    assert_padding_leaves_real_steps_alone(layer, x, noise, "left")


@pytest.mark.parametrize("cls", [LinearRNN, DiagonalRNN])
def test_every_weight_gets_a_gradient(cls):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 7, 8)).astype("float32")
    layer = make(cls, x, rng)
    names = [w.path for w in layer.trainable_weights]
    grads = layer_gradients(layer, x, jit=True)
    for name, grad in zip(names, grads[1:], strict=True):
        assert np.all(np.isfinite(grad)) and np.abs(grad).sum() > 0, name


def test_diagonal_modes_give_the_same_gradients():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(2, 10, 8)).astype("float32")
    assert_modes_give_the_same_gradients(DiagonalRNN, x, atol=1e-4)


def spectral_radii(A_init, n, draws):
    radii = []
    for seed in range(draws):
        keras.utils.set_random_seed(seed)
        layer = LinearRNN(A_init=A_init, state_size=n)
        layer.build((None, None, 4))
        radii.append(np.abs(np.linalg.eigvals(layer.A.numpy())).max())
    return np.array(radii)


def test_glorot_spectral_radius_exceeds_one_and_fixed_does_not():
    # the paper's point: at finite n, Glorot's spectral edge is above one
    # for most draws; the dimension-aware rescaling moves it below
    n, draws = 200, 12
    glorot = spectral_radii("glorot", n, draws)
    fixed = spectral_radii("fixed", n, draws)
    halved = spectral_radii("rescaled_glorot", n, draws)
    assert np.mean(glorot > 1) >= 0.75
    assert np.all(fixed < 1) and np.all(fixed > 0.8)
    np.testing.assert_allclose(halved, glorot / math.sqrt(2), rtol=0.1)


def test_diagonal_init_has_the_dense_spectrum():
    keras.utils.set_random_seed(0)
    layer = DiagonalRNN(A_init="glorot", state_size=256)
    layer.build((None, None, 4))
    lam = layer.A_re.numpy() + 1j * layer.A_im.numpy()
    # circular law: moduli fill the unit disk, |lambda|^2 about uniform
    assert 0.45 < np.mean(np.abs(lam) ** 2) < 0.55
    assert np.abs(lam).max() < 1.2
    # eigenvalues of a real matrix come in conjugate pairs
    np.testing.assert_allclose(np.sort(lam.imag), np.sort(-lam.imag), atol=1e-5)


def test_transition_std():
    assert transition_std("glorot", 100) == pytest.approx(0.1)
    assert transition_std("rescaled_glorot", 50) == pytest.approx(0.1)
    assert 0.85 / 16 < transition_std("fixed", 256) < 1 / 16


def test_bad_arguments():
    with pytest.raises(ValueError, match="`A_init`.*got 'orthogonal'"):
        LinearRNN(A_init="orthogonal")
    with pytest.raises(ValueError, match="`A_init`.*got 'he'"):
        DiagonalRNN(A_init="he")
    with pytest.raises(
        ValueError, match="`A_init`.*'fixed'.*got state size 64"
    ):
        LinearRNN(A_init="fixed").build((None, None, 64))
    with pytest.raises(ValueError, match="`mode`.*got 'chunk'"):
        LinearRNN(mode="chunk")
    with pytest.raises(ValueError, match="`state_size`.*got 0"):
        DiagonalRNN(state_size=0)
    layer = LinearRNN()
    layer.build((None, None, 8))
    with pytest.raises(ValueError, match=r"`inputs`.*8\).*\(2, 5, 6\)"):
        layer(np.zeros((2, 5, 6), "float32"))
    with pytest.raises(ValueError, match=r"`state`.*\(2, 8\).*\(2, 7\)"):
        layer.step(np.zeros((2, 8), "float32"), np.zeros((2, 7), "float32"))
