import functools

import keras
import numpy as np
import pytest
from keras import ops

from kerasseq.layers.performer_attention import PerformerAttention
from kerasseq.layers.softmax_attention import SoftmaxAttention
from tests.layers.common import assert_compiled_call_equals_eager
from tests.layers.common import assert_gradients_match_reference
from tests.layers.common import assert_padding_leaves_real_steps_alone
from tests.layers.common import attention_projections
from tests.layers.common import output_projection
from tests.layers.common import padded_inputs
from tests.testing import assert_step_equals_call
from tests.testing import float64
from tests.testing import layer_weights
from tests.testing import perturb_weights

HIDDEN, HEADS = 12, 2


def reference(x, w, causal, mask=None, eps=1e-6):
    """Performer attention in float64, written densely from the paper:
    phi(x) = (exp(w_m . x' - |x'|^2 / 2) + eps) / sqrt(M) with
    x' = x D^-1/4, queries scaled by exp(-max_m w_m . q'), keys by the
    constant exp(-c), c = max(0, max_m |w_m|^2 / 2 - 30);
    o_i = sum_j phi(q_i).phi(k_j) v_j / sum_j phi(q_i).phi(k_j) over the
    allowed j. keras.ops on float64 arrays, so that it also gives
    gradients."""
    x = ops.convert_to_tensor(x, "float64")
    w = {k: ops.convert_to_tensor(v, "float64") for k, v in w.items()}
    q, k, v = attention_projections(x, w)
    projection = w["projection"]
    num_features, dim = projection.shape

    def logits(z):
        z = z * dim**-0.25
        half_norm = 0.5 * ops.sum(z * z, axis=-1, keepdims=True)
        return ops.einsum("bthd,md->bthm", z, projection), half_norm

    lq, half_q = logits(q)
    # the query's constant max_m w_m . q' cancels; subtract it as the layer
    # does, since it weighs eps
    stabiliser = ops.max(lq, axis=-1, keepdims=True)
    phi_q = ops.exp(lq - half_q - stabiliser) + eps
    bound = 0.5 * ops.max(ops.sum(projection * projection, axis=-1))
    c = ops.maximum(bound - 30.0, 0.0)
    lk, half_k = logits(k)
    phi_k = ops.exp(-c) * (ops.exp(lk - half_k) + eps)
    scores = ops.einsum("bihm,bjhm->bhij", phi_q, phi_k) / num_features
    length = x.shape[1]
    allowed = np.ones((1, 1, length, length))
    if causal:
        allowed = np.tril(allowed)
    if mask is not None:
        allowed = allowed * mask[:, None, None, :]
    scores = scores * ops.convert_to_tensor(allowed, "float64")
    o = ops.einsum("bhij,bjhv->bihv", scores, v)
    o = o / ops.transpose(ops.sum(scores, axis=-1), (0, 2, 1))[..., None]
    return output_projection(o, w)


def _layer(causal, **kwargs):
    layer = PerformerAttention(
        num_heads=HEADS, causal=causal, num_features=16, seed=1, **kwargs
    )
    layer.build((None, None, HIDDEN))
    perturb_weights(layer, np.random.default_rng(0))
    return layer


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("seq_len", [1, 7, 63, 100])
def test_matches_reference(causal, seq_len):
    layer = _layer(causal)
    x, mask = padded_inputs(seq_len, HIDDEN)
    y = ops.convert_to_numpy(layer(x, padding_mask=mask))
    with float64():
        expected = ops.convert_to_numpy(
            reference(x, layer_weights(layer), causal, mask)
        )
    np.testing.assert_allclose(y[0], expected[0], rtol=1e-4, atol=1e-5)
    valid = mask[1]
    np.testing.assert_allclose(
        y[1][valid], expected[1][valid], rtol=1e-4, atol=1e-5
    )


@pytest.mark.parametrize("causal", [True, False])
def test_gradients_match_reference(causal):
    layer = _layer(causal, mode="chunk", chunk_size=16)
    x = np.random.default_rng(3).normal(size=(2, 37, HIDDEN))
    check = functools.partial(reference, causal=causal)
    assert_gradients_match_reference(layer, x, check, rtol=2e-4)


def test_estimate_converges_to_softmax_attention():
    # the same query/key/value/output weights in both layers
    keras.utils.set_random_seed(42)
    x = np.random.default_rng(1).normal(size=(2, 20, 16)).astype("float32")
    exact_layer = SoftmaxAttention(num_heads=2, causal=False)
    exact_layer.build((None, None, 16))
    exact = ops.convert_to_numpy(exact_layer(x * 0.5))
    errors = []
    for num_features in (8, 128, 4096):
        layer = PerformerAttention(
            num_heads=2, num_features=num_features, seed=0
        )
        layer.build((None, None, 16))
        for name in ("query", "key", "value", "output"):
            for part in ("kernel", "bias"):
                source = getattr(exact_layer, f"{name}_{part}")
                getattr(layer, f"{name}_{part}").assign(source)
        y = ops.convert_to_numpy(layer(x * 0.5))
        errors.append(np.sqrt(np.mean((y - exact) ** 2) / np.mean(exact**2)))
    assert errors[2] < 0.5 * errors[1] < 0.5 * errors[0], errors
    assert errors[2] < 0.08, errors


def test_step_equals_call_under_xla():
    layer = _layer(causal=True)
    x = np.random.default_rng(2).normal(size=(2, 11, HIDDEN))
    assert_step_equals_call(layer, x.astype("float32"), atol=2e-5, jit=True)


def test_causal_future_does_not_leak():
    layer = _layer(causal=True)
    x = np.random.default_rng(4).normal(size=(1, 9, HIDDEN)).astype("float32")
    y1 = ops.convert_to_numpy(layer(x))
    x[:, 5:] *= 30.0  # large keys: the paper's sequence stabiliser would move
    y2 = ops.convert_to_numpy(layer(x))
    np.testing.assert_allclose(y1[:, :5], y2[:, :5], rtol=1e-6, atol=1e-7)


def test_padding_equals_the_unpadded_sequence():
    layer = _layer(causal=False)
    rng = np.random.default_rng(5)
    x = rng.normal(size=(1, 6, HIDDEN)).astype("float32")
    noise = 50.0 * rng.normal(size=(1, 4, HIDDEN))
    assert_padding_leaves_real_steps_alone(
        layer, x, noise, "right", rtol=1e-5, atol=1e-6
    )


def _projection(layer):
    return ops.convert_to_numpy(layer.projection).copy()


def test_features_redraw_every_interval_in_training_only():
    layer = _layer(causal=False, feature_redraw_interval=2)
    twin = _layer(causal=False, feature_redraw_interval=2)
    x = np.zeros((1, 4, HIDDEN), "float32")
    first = _projection(layer)
    np.testing.assert_array_equal(first, _projection(twin))
    history = []
    for i in range(5):
        layer(x, training=True)
        twin(x, training=True)
        if i % 2:
            layer(x, training=False)  # inference never redraws
        history.append(_projection(layer))
        # deterministic under the seed
        np.testing.assert_array_equal(history[-1], _projection(twin))
    changed = [
        not np.array_equal(a, b)
        for a, b in zip([first, *history], history, strict=False)
    ]
    assert changed == [False, True, False, True, False]
    # each draw is a fresh orthogonal projection of the same shape
    gram = history[1][:6] @ history[1][:6].T  # one block of D = 6 rows
    assert np.allclose(gram - np.diag(np.diag(gram)), 0, atol=1e-4)


def test_redraw_under_fit():
    inputs = keras.Input((5, HIDDEN))
    layer = PerformerAttention(
        num_heads=HEADS, num_features=8, feature_redraw_interval=2, seed=3
    )
    model = keras.Model(inputs, layer(inputs))
    model.compile(optimizer="sgd", loss="mse", jit_compile=True)
    before = _projection(layer)
    x = np.random.default_rng(0).normal(size=(4, 5, HIDDEN))
    model.fit(x, x, batch_size=4, epochs=1, verbose=0)
    np.testing.assert_array_equal(_projection(layer), before)
    model.fit(x, x, batch_size=4, epochs=1, verbose=0)
    assert not np.allclose(_projection(layer), before)
    # inference uses the current draw, unchanged
    after = _projection(layer)
    model.predict(x, verbose=0)
    np.testing.assert_array_equal(_projection(layer), after)


def test_compiled_call():
    layer = _layer(causal=True, feature_redraw_interval=None, chunk_size=4)
    x = np.random.default_rng(0).normal(size=(2, 9, HIDDEN)).astype("float32")
    assert_compiled_call_equals_eager(layer, x)


def test_mixed_precision_call():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        layer = PerformerAttention(num_heads=HEADS, causal=True)
        # large inputs: float16 features would overflow
        x = 30.0 * np.random.default_rng(0).normal(size=(2, 9, HIDDEN))
        y = layer(x.astype("float32"))
        assert keras.backend.standardize_dtype(y.dtype) == "float16"
        assert np.all(np.isfinite(ops.convert_to_numpy(y)))
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_default_number_of_features():
    layer = PerformerAttention(num_heads=2)
    layer.build((None, None, 64))
    assert tuple(layer.projection.shape) == (111, 32)  # round(32 ln 32)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_features": 0}, "`num_features`.*got 0"),
        ({"feature_redraw_interval": -1}, "`feature_redraw_interval`.*-1"),
        ({"seed": "a"}, "`seed`.*'a'"),
        ({"mode": "fast"}, "`mode`.*'fast'"),
        ({"chunk_size": 0}, "`chunk_size`.*got 0"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PerformerAttention(num_heads=2, **kwargs)


def test_step_needs_causal_and_right_state():
    layer = _layer(causal=False)
    with pytest.raises(ValueError, match="causal=False"):
        layer.get_initial_state(1)
    layer = _layer(causal=True)
    state = layer.get_initial_state(2)
    bad = (np.zeros((2, HEADS, 16, 8), "float32"), state[1])
    with pytest.raises(ValueError, match=r"`state\[0\]`"):
        layer.step(np.zeros((2, HIDDEN), "float32"), bad)
