import keras
import numpy as np
import pytest

from kerasseq.layers import SoftmaxAttention
from kerasseq.ops import reference
from tests.layers.common import padded_inputs
from tests.testing import assert_step_equals_call
from tests.testing import in_float64
from tests.testing import value_and_grad


def rotate_half_reference(x, rotary_dim, base=10000.0):
    """Rotary embedding of `x` (..., T, K) as GPT-NeoX writes it: the first
    `rotary_dim` dimensions times cos, plus `rotate_half` times sin."""
    if not rotary_dim:
        return x
    positions = np.arange(x.shape[-2])[:, None]
    inverse = base ** (-np.arange(0, rotary_dim, 2) / rotary_dim)
    angles = np.concatenate([positions * inverse] * 2, axis=-1)
    rot = x[..., :rotary_dim]
    half = rotary_dim // 2
    rotated_half = np.concatenate([-rot[..., half:], rot[..., :half]], axis=-1)
    rot = rot * np.cos(angles) + rotated_half * np.sin(angles)
    return np.concatenate([rot, x[..., rotary_dim:]], axis=-1)


def reference_attention(layer, x, causal, padding_mask=None, rotary_dim=0):
    """Multi-head attention in float64: projections, rotary embedding,
    `kerasseq.ops.reference.masked_attention`, output projection."""
    w = {
        v.path.split("/")[-1]: np.asarray(v, np.float64) for v in layer.weights
    }
    x = x.astype(np.float64)
    batch, seq_len, _ = x.shape

    def project(name):
        y = np.einsum("btd,dhk->bthk", x, w[f"{name}_kernel"])
        return y + w[f"{name}_bias"]

    q, k, v = (project(n) for n in ("query", "key", "value"))
    q, k = (
        rotate_half_reference(y.swapaxes(1, 2), rotary_dim).swapaxes(1, 2)
        for y in (q, k)
    )
    allowed = np.ones((batch, 1, seq_len, seq_len), bool)
    if causal:
        allowed = allowed & np.tri(seq_len, dtype=bool)
    if padding_mask is not None:
        allowed = allowed & padding_mask[:, None, None, :].astype(bool)
    out = in_float64(reference.masked_attention, q, k, v, allowed)
    y = np.einsum("bthk,hkd->btd", out, w["output_kernel"])
    return y + w["output_bias"]


def _layer(causal, hidden_dim=12, num_heads=3, **kwargs):
    layer = SoftmaxAttention(num_heads=num_heads, causal=causal, **kwargs)
    layer.build((None, None, hidden_dim))
    # non-zero biases so that the reference checks them too
    for v in layer.weights:
        if "bias" in v.path:
            v.assign(np.random.normal(size=v.shape).astype("float32"))
    return layer


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("seq_len", [1, 7])
def test_matches_reference(causal, seq_len):
    layer = _layer(causal)
    x, mask = padded_inputs(seq_len, 12)
    y = keras.ops.convert_to_numpy(layer(x, padding_mask=mask))
    expected = reference_attention(layer, x, causal, mask)
    np.testing.assert_allclose(y[0], expected[0], atol=1e-5)
    valid = mask[1]
    np.testing.assert_allclose(y[1][valid], expected[1][valid], atol=1e-5)


@pytest.mark.parametrize("fraction,rotary_dim", [(0.25, 2), (0.5, 4), (1, 8)])
def test_rotary_matches_reference(fraction, rotary_dim):
    # heads of 8; GPT-NeoX rotates int(8 * fraction) dimensions
    layer = _layer(True, hidden_dim=24, rotary_fraction=fraction)
    x = np.random.normal(size=(2, 7, 24)).astype("float32")
    y = keras.ops.convert_to_numpy(layer(x))
    expected = reference_attention(layer, x, True, rotary_dim=rotary_dim)
    np.testing.assert_allclose(y, expected, atol=1e-5)
    assert_step_equals_call(layer, x, jit=True)


def test_rotary_scores_depend_on_relative_position_only():
    # shifting every position by the same offset leaves the output alone:
    # run the same tokens behind a prefix whose keys are masked out
    layer = _layer(False, hidden_dim=24, rotary_fraction=1)
    x = np.random.normal(size=(1, 5, 24)).astype("float32")
    y = keras.ops.convert_to_numpy(layer(x))
    padded = np.concatenate([np.zeros((1, 3, 24), "float32"), x], axis=1)
    mask = np.array([[False] * 3 + [True] * 5])
    shifted = keras.ops.convert_to_numpy(layer(padded, padding_mask=mask))
    np.testing.assert_allclose(shifted[:, 3:], y, atol=1e-4)


def test_padded_keys_do_not_leak():
    layer = _layer(causal=False)
    x = np.random.normal(size=(1, 6, 12)).astype("float32")
    mask = np.array([[True] * 4 + [False] * 2])
    y1 = keras.ops.convert_to_numpy(layer(x, padding_mask=mask))
    x2 = x.copy()
    x2[:, 4:] = 100.0
    y2 = keras.ops.convert_to_numpy(layer(x2, padding_mask=mask))
    np.testing.assert_allclose(y1[:, :4], y2[:, :4], atol=1e-5)


def test_causal_future_does_not_leak():
    layer = _layer(causal=True)
    x = np.random.normal(size=(1, 6, 12)).astype("float32")
    y1 = keras.ops.convert_to_numpy(layer(x))
    x[:, 3:] += 5.0
    y2 = keras.ops.convert_to_numpy(layer(x))
    np.testing.assert_allclose(y1[:, :3], y2[:, :3], atol=1e-5)
    assert not np.allclose(y1[:, 3:], y2[:, 3:])


def test_step_equals_call_under_xla():
    layer = _layer(causal=True)
    x = np.random.normal(size=(2, 9, 12)).astype("float32")
    assert_step_equals_call(layer, x, jit=True)


def test_gradients_respect_causality():
    layer = _layer(causal=True)
    x = np.random.normal(size=(1, 5, 12)).astype("float32")
    _, (grad,) = value_and_grad(lambda x: keras.ops.sum(layer(x)[:, 2]), x)
    assert np.all(grad[:, 3:] == 0)
    assert np.all(np.abs(grad[:, :3]).sum(-1) > 0)


def test_projections_start_different():
    layer = SoftmaxAttention(num_heads=2)
    layer.build((None, None, 8))
    kernels = [
        keras.ops.convert_to_numpy(getattr(layer, f"{n}_kernel"))
        for n in ("query", "key", "value")
    ]
    assert not np.allclose(kernels[0], kernels[1])
    assert not np.allclose(kernels[1], kernels[2])
    # glorot over the (8, 2 * 4) matrix each kernel acts as
    limit = np.sqrt(6 / (8 + 8))
    assert 0.8 * limit < np.abs(kernels[0]).max() <= limit


def test_bad_arguments():
    with pytest.raises(ValueError, match="`num_heads`.*got 0"):
        SoftmaxAttention(num_heads=0)
    with pytest.raises(ValueError, match="`dropout`.*got 1.5"):
        SoftmaxAttention(num_heads=2, dropout=1.5)
    with pytest.raises(ValueError, match="not divisible by num_heads=5"):
        SoftmaxAttention(num_heads=5).build((None, None, 12))
    layer = _layer(causal=False)
    with pytest.raises(ValueError, match="causal=False"):
        layer.get_initial_state(1, max_length=4)
    with pytest.raises(ValueError, match="`rotary_fraction`.*got 1.5"):
        SoftmaxAttention(num_heads=2, rotary_fraction=1.5)
    with pytest.raises(ValueError, match="`rotary_base`.*got 0"):
        SoftmaxAttention(num_heads=2, rotary_base=0)


def test_other_attentions_have_no_rotary_argument():
    from kerasseq.layers import LongformerAttention

    # rotary positions belong to SoftmaxAttention, not to the shared base
    with pytest.raises(
        ValueError, match="LongformerAttention.*rotary_fraction"
    ):
        LongformerAttention(num_heads=2, rotary_fraction=0.5)
