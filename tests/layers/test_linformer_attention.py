import functools
import os

import keras
import numpy as np
import pytest
from keras import ops

from kerasseq.layers.linformer_attention import LinformerAttention
from kerasseq.models import build_model
from kerasseq.models import count_parameters
from tests.layers.common import assert_compiled_call_equals_eager
from tests.layers.common import assert_gradients_match_reference
from tests.layers.common import assert_padding_leaves_real_steps_alone
from tests.layers.common import attention_projections
from tests.layers.common import output_projection
from tests.layers.common import padded_inputs
from tests.testing import compiled
from tests.testing import float64
from tests.testing import layer_weights
from tests.testing import perturb_weights

HIDDEN, HEADS, MAX_LENGTH, PROJECTED = 12, 2, 120, 10
SHARING = ["none", "headwise", "key_value", "layerwise"]


def per_head_projections(w, sharing):
    """E and F as (H, k, max_length) arrays, whatever the sharing."""
    if sharing == "none":
        return w["key_projection"], w["value_projection"]
    if sharing == "headwise":
        e, f = w["key_projection"], w["value_projection"]
    else:
        e = f = w["kv_projection"]
    return (ops.stack([e] * HEADS), ops.stack([f] * HEADS))


def reference(x, w, sharing, mask=None):
    """Linformer attention in float64 from the paper: per head,
    softmax(q (E_h K_h)^T / sqrt(d)) (F_h V_h), with E_h, F_h cut to the
    first T columns and padded tokens' keys and values zeroed. keras.ops on
    float64 arrays, so that it also gives gradients."""
    x = ops.convert_to_tensor(x, "float64")
    w = {k: ops.convert_to_tensor(v, "float64") for k, v in w.items()}
    q, k, v = attention_projections(x, w)
    length, size = x.shape[1], q.shape[-1]
    if mask is not None:
        keep = ops.convert_to_tensor(mask[:, :, None, None], "float64")
        k, v = k * keep, v * keep
    e, f = per_head_projections(w, sharing)
    k = ops.einsum("hnt,bthk->bnhk", e[..., :length], k)
    v = ops.einsum("hnt,bthk->bnhk", f[..., :length], v)
    scores = ops.einsum("bthk,bnhk->bhtn", q, k) / np.sqrt(size)
    o = ops.einsum("bhtn,bnhk->bthk", ops.softmax(scores, axis=-1), v)
    return output_projection(o, w)


def _layer(sharing="none", **kwargs):
    layer = LinformerAttention(
        num_heads=HEADS,
        max_length=MAX_LENGTH,
        projected_length=PROJECTED,
        sharing=sharing,
        **kwargs,
    )
    layer.build((None, None, HIDDEN))
    perturb_weights(layer, np.random.default_rng(0))
    return layer


@pytest.mark.parametrize("sharing", SHARING)
@pytest.mark.parametrize("seq_len", [1, 63, 100])
def test_matches_reference(sharing, seq_len):
    layer = _layer(sharing)
    x, mask = padded_inputs(seq_len, HIDDEN)
    y = ops.convert_to_numpy(layer(x, padding_mask=mask))
    with float64():
        # masked steps are read as zeros (SequenceLayer.mask_inputs)
        zeroed = np.where(mask[..., None], x, 0.0)
        expected = reference(zeroed, layer_weights(layer), sharing, mask)
        expected = ops.convert_to_numpy(expected)
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("sharing", ["none", "key_value"])
def test_gradients_match_reference(sharing):
    layer = _layer(sharing)
    x = np.random.default_rng(3).normal(size=(2, 37, HIDDEN))
    check = functools.partial(reference, sharing=sharing)
    assert_gradients_match_reference(layer, x, check, rtol=1e-4)


def test_padding_equals_the_unpadded_sequence():
    layer = _layer("headwise")
    rng = np.random.default_rng(5)
    x = rng.normal(size=(1, 40, HIDDEN)).astype("float32")
    noise = 50.0 * rng.normal(size=(1, 30, HIDDEN))
    assert_padding_leaves_real_steps_alone(
        layer, x, noise, "right", rtol=1e-5, atol=1e-5
    )


def test_memory_is_linear_in_length():
    # the scores are (B, H, T, k): a (T, T) tensor at T = 2^16 would take
    # 2^32 floats per head and not fit
    layer = LinformerAttention(
        num_heads=1, max_length=2**16, projected_length=8
    )
    x = np.ones((1, 2**16, 4), "float32")
    assert ops.convert_to_numpy(compiled(layer)(x)).shape == (1, 2**16, 4)


def _backbone_model(sharing):
    return build_model(
        "linformer",
        "sequence_classification",
        "tiny",
        vocabulary_size=7,
        num_classes=2,
        max_sequence_length=32,
        projected_length=8,
        sharing=sharing,
    )


def test_layerwise_sharing_ties_one_projection_across_layers(tmp_path):
    keras.utils.set_random_seed(0)
    model = _backbone_model("layerwise")
    per_layer = _backbone_model("key_value")
    paths = [w.path for w in model.weights if "projection" in w.path]
    assert paths == ["block_0/mixer_0/kv_projection"]
    layers = model.backbone.num_layers
    assert (
        count_parameters(per_layer)["total"] - count_parameters(model)["total"]
        == (layers - 1) * 8 * 32
    )
    # a projection counts with the position tables, not the blocks
    assert (
        count_parameters(per_layer)["non_embedding"]
        == count_parameters(model)["non_embedding"]
    )
    ids = np.random.default_rng(0).integers(1, 7, (4, 20)).astype("int32")
    inputs = {"token_ids": ids, "padding_mask": ids > 0}
    # every layer reads the shared weight: changing it changes the
    # output of the last block too
    shared = model.weights[[w.path for w in model.weights].index(paths[0])]
    last = model.backbone.blocks[-1].mixer
    x = np.random.default_rng(1).normal(size=(4, 20, 64)).astype("float32")
    before = ops.convert_to_numpy(last(x))
    shared.assign(ops.zeros(shared.shape))
    after = ops.convert_to_numpy(last(x))
    assert not np.allclose(before, after)
    shared.assign(np.random.default_rng(2).normal(size=shared.shape) * 0.1)
    # it trains, and saves and loads as one weight
    model.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    start = ops.convert_to_numpy(shared).copy()
    model.fit(inputs, np.array([0, 1, 0, 1]), epochs=1, verbose=0)
    assert not np.allclose(ops.convert_to_numpy(shared), start)
    path = os.path.join(tmp_path, "linformer.keras")
    model.save(path)
    restored = keras.models.load_model(path)
    np.testing.assert_allclose(
        ops.convert_to_numpy(restored(inputs)),
        ops.convert_to_numpy(model(inputs)),
        atol=1e-5,
    )
    tied = restored.backbone.blocks[-1].mixer._owner
    assert tied is restored.backbone.blocks[0].mixer


def test_compiled_call():
    layer = _layer("headwise", dropout=0.1)
    x = np.random.default_rng(0).normal(size=(2, 9, HIDDEN)).astype("float32")
    assert_compiled_call_equals_eager(layer, x)


def test_bad_arguments_and_inputs():
    with pytest.raises(ValueError, match="`max_length`.*got 0"):
        LinformerAttention(num_heads=2, max_length=0)
    with pytest.raises(ValueError, match="`projected_length`.*64.*got 65"):
        LinformerAttention(num_heads=2, max_length=64, projected_length=65)
    with pytest.raises(ValueError, match="`sharing`.*'all'"):
        LinformerAttention(num_heads=2, max_length=64, sharing="all")
    with pytest.raises(ValueError, match="causal=True.*future"):
        LinformerAttention(num_heads=2, max_length=64, causal=True)
    layer = _layer()
    too_long = np.zeros((1, MAX_LENGTH + 1, HIDDEN), "float32")
    with pytest.raises(ValueError, match=f"max_length={MAX_LENGTH}.*121"):
        layer(too_long)
    with pytest.raises(ValueError, match="no step"):
        layer.get_initial_state(1)
