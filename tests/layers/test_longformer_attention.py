import math

import keras
import numpy as np
import pytest
from keras import ops

from kerasseq.layers.longformer_attention import LongformerAttention
from kerasseq.ops import reference
from tests.testing import assert_step_equals_call
from tests.testing import compiled
from tests.testing import float64
from tests.testing import in_float64
from tests.testing import layer_weights
from tests.testing import perturb_weights
from tests.testing import rel_rms
from tests.testing import value_and_grad

HIDDEN, HEADS, LENGTH = 16, 2, 13
# JAX compiles eager ops one by one: XLA-compile whole calls there
JIT = keras.backend.backend() == "jax"


def global_positions(length, num_global, real, global_mask):
    """Per row, the global positions: the first `num_global` real marked
    ones (the first `num_global` real positions without a mask)."""
    rows = []
    for b in range(real.shape[0]):
        if global_mask is None:
            first = range(min(num_global, length))
            marked = [s for s in first if real[b, s]]
        else:
            marked = np.flatnonzero(global_mask[b] & real[b])[:num_global]
        rows.append({int(s) for s in marked})
    return rows


def attention_masks(layer, real, global_mask):
    """`(is_global, local)`: which tokens are global, `(B, T)`, and what a
    local (non-global) query attends, `(B, T, S)`: the real non-global keys
    of its window and every global key."""
    batch, length = real.shape
    globals_ = global_positions(
        length, layer.num_global_tokens, real, global_mask
    )
    is_global = np.zeros((batch, length), bool)
    for b, positions in enumerate(globals_):
        is_global[b, sorted(positions)] = True
    window = reference.sliding_window_allowed(
        length, layer.window, layer.causal, layer.dilation
    )
    local = window[None] & real[:, None, :] & ~is_global[:, None, :]
    return is_global, local | is_global[:, None, :]


def reference_longformer(layer, x, padding_mask=None, global_mask=None):
    """Longformer self-attention in float64: a local token attends, in one
    softmax, the real non-global tokens of its window and every global token
    (local projections); a global token attends every real token with the
    global projections (`kerasseq.ops.reference.masked_attention`)."""
    w = layer_weights(layer)
    x = x.astype(np.float64)
    batch, length, _ = x.shape
    real = np.ones((batch, length), bool)
    if padding_mask is not None:
        real = padding_mask.astype(bool)
        x = np.where(real[..., None], x, 0.0)  # padded steps read as zeros
    is_global, local = attention_masks(layer, real, global_mask)

    def project(name):
        kernel, bias = w[f"{name}_kernel"], w.get(f"{name}_bias", 0.0)
        return np.einsum("btd,dhk->bthk", x, kernel) + bias

    q, k, v = (project(n) for n in ("query", "key", "value"))
    if layer.num_global_tokens:
        qg, kg, vg = (project(f"{n}_global") for n in ("query", "key", "value"))
    out = in_float64(reference.masked_attention, q, k, v, local[:, None])
    if layer.num_global_tokens:
        everything = real[:, None, None, :]
        out_global = in_float64(
            reference.masked_attention, qg, kg, vg, everything
        )
        out = np.where(is_global[..., None, None], out_global, out)
    y = np.einsum("bthk,hkd->btd", out, w["output_kernel"])
    return y + w.get("output_bias", 0.0)


def dense_reference(weights, x, layer, masks):
    """The same attention as dense masked matrices in keras.ops (for the
    backend's autodiff): non-global rows attend window and global keys in
    one (T, T) mask, global rows all real keys."""
    padding_mask, global_mask = masks
    batch, length, _ = x.shape
    real = np.ones((batch, length), bool)
    if padding_mask is not None:
        real = padding_mask.astype(bool)
        x = ops.where(real[..., None], x, ops.zeros_like(x))  # read as zeros
    is_global, local = attention_masks(layer, real, global_mask)

    def project(name):
        kernel = weights[f"{name}_kernel"]
        y = ops.matmul(x, ops.reshape(kernel, (kernel.shape[0], -1)))
        y = ops.reshape(y, (batch, length, *kernel.shape[1:]))
        return y + weights[f"{name}_bias"]

    def attend(q, k, v, mask):
        scores = ops.einsum("bthk,bshk->bhts", q, k)
        scores = scores / math.sqrt(q.shape[-1])
        scores = ops.where(mask[:, None], scores, -1e30)
        return ops.einsum("bhts,bshv->bthv", ops.softmax(scores, -1), v)

    q, k, v = (project(n) for n in ("query", "key", "value"))
    out = attend(q, k, v, local)
    if layer.num_global_tokens:
        qg, kg, vg = (project(f"{n}_global") for n in ("query", "key", "value"))
        full = np.broadcast_to(real[:, None, :], (batch, length, length))
        out = ops.where(
            is_global[..., None, None], attend(qg, kg, vg, full), out
        )
    kernel = weights["output_kernel"]
    y = ops.matmul(
        ops.reshape(out, (batch, length, -1)),
        ops.reshape(kernel, (-1, kernel.shape[-1])),
    )
    return y + weights["output_bias"]


def apply(layer, x, padding_mask=None, global_mask=None):
    """The layer's outputs as NumPy; compiled on JAX, eager on TensorFlow."""
    fn = compiled(layer) if JIT else layer
    y = fn(x, padding_mask=padding_mask, global_mask=global_mask)
    return ops.convert_to_numpy(y)


def make(rng, shape=(2, LENGTH, HIDDEN), **kwargs):
    kwargs.setdefault("window", 4)
    layer = LongformerAttention(HEADS, **kwargs)
    layer.build(shape)
    return perturb_weights(layer, rng)


def masks_for(kind, batch=2, length=LENGTH):
    """Padding (a tail in the last row) and a global mask; the global mask
    marks a padded position too, which must stay local."""
    padding = np.ones((batch, length), bool)
    padding[-1, length - 4 :] = False
    if kind != "global_mask":
        return padding, None
    marked = np.zeros((batch, length), bool)
    marked[0, [3, 7]] = True
    marked[-1, [0, 5, length - 1]] = True
    return padding, marked


# (layer arguments, masks): local only, the default first-G globals, a
# global mask; dilation 1 and 2; causal and bidirectional
CASES = [
    (dict(window=4), "padding"),
    (dict(window=6, dilation=2), "padding"),
    (dict(window=4, num_global_tokens=2), "padding"),
    (dict(window=4, dilation=2, num_global_tokens=3), "global_mask"),
    (dict(window=2, num_global_tokens=3), "global_mask"),
    (dict(window=3, causal=True), "padding"),
    (dict(window=2, causal=True, dilation=2), "padding"),
]


def case_id(case):
    kwargs, kind = case
    return "-".join(f"{k}{v}" for k, v in kwargs.items()) + f"-{kind}"


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_matches_reference(case):
    kwargs, kind = case
    rng = np.random.default_rng(0)
    layer = make(rng, **kwargs)
    x = rng.normal(size=(2, LENGTH, HIDDEN)).astype("float32")
    padding, marked = masks_for(kind)
    y = apply(layer, x, padding, marked)
    expected = reference_longformer(layer, x, padding, marked)
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-5)
    # and without padding
    y = apply(layer, x, global_mask=marked)
    expected = reference_longformer(layer, x, None, marked)
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-5)


def masked_gradients(layer, x, masks, jit):
    """`layer_gradients` with padding and global masks: gradients of
    `sum(layer(x)^2)` for `x` and every trainable weight."""
    padding, marked = masks
    values = [ops.convert_to_numpy(w.value) for w in layer.trainable_variables]
    fixed = [w.value for w in layer.non_trainable_variables]

    def loss(x, *weights):
        outputs, _ = layer.stateless_call(
            weights, fixed, x, padding_mask=padding, global_mask=marked
        )
        return ops.sum(ops.square(outputs))

    return value_and_grad(loss, x, *values, jit=jit)[1]


@pytest.mark.parametrize("case", CASES[1:5] + CASES[6:], ids=case_id)
def test_gradients_match_dense_reference(case):
    kwargs, kind = case
    rng = np.random.default_rng(1)
    layer = make(rng, **kwargs)
    x = rng.normal(size=(2, LENGTH, HIDDEN)).astype("float32")
    masks = masks_for(kind)
    jit = JIT or (kwargs.get("dilation") == 2 and kind == "global_mask")
    grads = masked_gradients(layer, x, masks, jit=jit)
    names = [w.path.split("/", 1)[1] for w in layer.trainable_variables]

    def loss(x, *weights):
        weights = dict(zip(names, weights, strict=True))
        y = dense_reference(weights, x, layer, masks)
        return ops.sum(ops.square(y))

    values = [layer_weights(layer)[n] for n in names]
    with float64():
        x64 = x.astype(np.float64)
        _, expected = value_and_grad(loss, x64, *values, jit=JIT)
    assert len(grads) == len(expected) == len(names) + 1
    scale = np.sqrt(np.mean(np.square(expected[0])))
    for name, g, g_ref in zip(["inputs"] + names, grads, expected, strict=True):
        if name in ("key_bias", "key_global_bias"):
            # a key bias shifts every score of a query equally: zero
            assert np.abs(g).max() < 1e-5 * scale, name
            continue
        assert np.abs(g_ref).sum() > 0, name
        assert rel_rms(g, g_ref) < 1e-5, name


def test_padding_leaves_real_tokens_alone():
    rng = np.random.default_rng(2)
    layer = make(rng, window=4, dilation=2, num_global_tokens=2)
    x = rng.normal(size=(1, 9, HIDDEN)).astype("float32")
    marked = np.zeros((1, 9), bool)
    marked[0, [1, 6]] = True
    y = apply(layer, x, global_mask=marked)
    padded = np.concatenate([x, 100.0 + rng.normal(size=(1, 5, HIDDEN))], 1)
    padding = np.array([[True] * 9 + [False] * 5])
    marked = np.concatenate([marked, [[True, False, True, False, False]]], 1)
    y_padded = apply(layer, padded.astype("float32"), padding, marked)
    np.testing.assert_allclose(y_padded[:, :9], y, atol=1e-5)


@pytest.mark.parametrize("dilation", [1, 2])
def test_step_equals_call(dilation):
    rng = np.random.default_rng(3)
    layer = make(rng, window=3, causal=True, dilation=dilation)
    # longer than the window: the cache of 3 * dilation + 1 tokens shifts
    x = rng.normal(size=(2, 11, HIDDEN)).astype("float32")
    state = assert_step_equals_call(layer, x, jit=dilation == 1)
    assert tuple(state["key"].shape) == (2, 3 * dilation + 1, HEADS, 8)
    assert int(ops.convert_to_numpy(state["index"])) == 11


def test_compiled_call_and_extra_globals():
    rng = np.random.default_rng(4)
    layer = make(rng, window=4, num_global_tokens=2)
    x = rng.normal(size=(2, LENGTH, HIDDEN)).astype("float32")
    padding, marked = masks_for("global_mask")
    y = compiled(layer)(x, padding, marked)
    expected = reference_longformer(layer, x, padding, marked)
    np.testing.assert_allclose(
        ops.convert_to_numpy(y), expected, rtol=1e-4, atol=1e-5
    )
    # row 0 has two global tokens; eagerly a third is an error, compiled
    # it is a local token
    marked[0, 10] = True
    with pytest.raises(ValueError, match="`global_mask`.*row 0 has 3.*=2"):
        layer(x, padding_mask=padding, global_mask=marked)
    y = compiled(layer)(x, padding, marked)
    expected = reference_longformer(layer, x, padding, marked)
    np.testing.assert_allclose(
        ops.convert_to_numpy(y), expected, rtol=1e-4, atol=1e-5
    )


def test_dropout_on_attention_weights():
    rng = np.random.default_rng(5)
    layer = make(rng, window=4, num_global_tokens=1, dropout=0.5)
    x = rng.normal(size=(2, LENGTH, HIDDEN)).astype("float32")
    expected = reference_longformer(layer, x)
    y = apply(layer, x)
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-5)
    y = ops.convert_to_numpy(layer(x, training=True))
    assert np.all(np.isfinite(y))
    assert rel_rms(y, expected) > 0.05


def test_global_weights():
    layer = LongformerAttention(HEADS, window=4)
    layer.build((None, None, HIDDEN))
    assert len(layer.weights) == 8
    layer = LongformerAttention(
        HEADS, head_dim=4, window=4, num_global_tokens=1
    )
    layer.build((None, None, HIDDEN))
    shapes = {w.path.split("/", 1)[1]: tuple(w.shape) for w in layer.weights}
    for name in ("query", "key", "value"):
        assert shapes[f"{name}_global_kernel"] == (HIDDEN, HEADS, 4)
        assert shapes[f"{name}_global_bias"] == (HEADS, 4)
    assert shapes["output_kernel"] == (HEADS, 4, HIDDEN)
    assert len(shapes) == 14


def test_saved_model_with_global_masks(tmp_path):
    # symbolic batch: the first-G globals without padding
    inputs = keras.Input((LENGTH, HIDDEN))
    outputs = LongformerAttention(HEADS, window=4, num_global_tokens=1)(inputs)
    assert tuple(outputs.shape) == (None, LENGTH, HIDDEN)
    # a saved model with padding and global masks restores the same outputs
    padding = keras.Input((LENGTH,), dtype="bool")
    marked = keras.Input((LENGTH,), dtype="bool")
    outputs = LongformerAttention(HEADS, window=4, num_global_tokens=2)(
        inputs, padding_mask=padding, global_mask=marked
    )
    model = keras.Model([inputs, padding, marked], outputs)
    perturb_weights(model, np.random.default_rng(6))
    path = str(tmp_path / "longformer.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    x = np.random.normal(size=(2, LENGTH, HIDDEN)).astype("float32")
    masks = list(masks_for("global_mask"))
    np.testing.assert_array_equal(
        ops.convert_to_numpy(loaded([x, *masks])),
        ops.convert_to_numpy(model([x, *masks])),
    )


def test_mixed_bfloat16_call():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    layer = LongformerAttention(HEADS, window=4, num_global_tokens=2)
    x = np.random.normal(size=(2, LENGTH, HIDDEN)).astype("float32")
    padding, marked = masks_for("global_mask")
    y = layer(x, padding_mask=padding, global_mask=marked)
    assert keras.backend.standardize_dtype(y.dtype) == "bfloat16"
    assert np.all(np.isfinite(ops.convert_to_numpy(ops.cast(y, "float32"))))
    causal = LongformerAttention(HEADS, window=3, causal=True)
    y = causal(x)
    state = causal.get_initial_state(2)
    y_t, state = causal.step(x[:, 0], state)
    np.testing.assert_allclose(
        ops.convert_to_numpy(ops.cast(y_t, "float32")),
        ops.convert_to_numpy(ops.cast(y[:, 0], "float32")),
        atol=0.05,
    )


def test_bad_arguments():
    with pytest.raises(ValueError, match="`window`.*got 0"):
        LongformerAttention(HEADS, window=0)
    with pytest.raises(ValueError, match="`window`.*even.*causal=False.*got 5"):
        LongformerAttention(HEADS, window=5)
    LongformerAttention(HEADS, window=5, causal=True)
    with pytest.raises(ValueError, match="`dilation`.*got 0"):
        LongformerAttention(HEADS, dilation=0)
    with pytest.raises(ValueError, match="`num_global_tokens`.*got -1"):
        LongformerAttention(HEADS, num_global_tokens=-1)
    with pytest.raises(ValueError, match="`num_global_tokens`.*causal.*got 2"):
        LongformerAttention(HEADS, window=3, causal=True, num_global_tokens=2)
    with pytest.raises(ValueError, match="`num_heads`.*got 0"):
        LongformerAttention(0)
    x = np.zeros((2, 7, HIDDEN), "float32")
    layer = LongformerAttention(HEADS, window=4, num_global_tokens=1)
    with pytest.raises(ValueError, match=r"`padding_mask`.*\(2, 7\).*\(2, 6\)"):
        layer(x, padding_mask=np.ones((2, 6), bool))
    with pytest.raises(ValueError, match=r"`global_mask`.*\(2, 7\).*\(7,\)"):
        layer(x, global_mask=np.ones((7,), bool))
    with pytest.raises(ValueError, match=r"`inputs`.*16\).*\(2, 7, 8\)"):
        layer(np.zeros((2, 7, 8), "float32"))
    with pytest.raises(ValueError, match="causal=False"):
        layer.get_initial_state(2)
    local = LongformerAttention(HEADS, window=4)
    with pytest.raises(ValueError, match="`global_mask`.*num_global_tokens=0"):
        local(x, global_mask=np.ones((2, 7), bool))
    causal = LongformerAttention(HEADS, window=3, causal=True)
    causal.build(x.shape)
    state = causal.get_initial_state(2)
    state["key"] = state["key"][:, 1:]
    with pytest.raises(ValueError, match=r"`state\['key'\]`.*\(2, 4, 2, 8\)"):
        causal.step(x[:, 0], state)
