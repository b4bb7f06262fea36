import keras
import numpy as np
import pytest

from kerasseq.layers.deltanet import DeltaNet
from kerasseq.ops import reference
from tests.layers.common import randomized
from tests.layers.common import sigmoid
from tests.testing import assert_step_equals_call
from tests.testing import compiled
from tests.testing import in_float64
from tests.testing import layer_weights
from tests.testing import value_and_grad


def silu(x):
    return x / (1.0 + np.exp(-x))


def reference_deltanet(
    w,
    x,
    mask,
    num_heads,
    conv_kernel=4,
    use_short_conv=True,
    allow_neg_eigval=False,
    use_gate=True,
    eps=1e-5,
):
    """DeltaNet in float64 (conv and recurrence by `kerasseq.ops.reference`),
    from the equations (Yang et
    al. 2024 with flash-linear-attention's layer around the recurrence):
    q, k, v = silu(causal depthwise conv(x W)); q, k / their L2 norms per
    head; beta = sigmoid(x W_b) (times 2 with negative eigenvalues);
    S_t = S_{t-1} + beta_t k_t (v_t - S_{t-1}^T k_t)^T; o_t = S_t^T q_t /
    sqrt(D); rms_norm(o) * scale * silu(x W_g); o_proj. Padded tokens
    enter as zeros and write nothing (beta = 0)."""
    batch, length, _ = x.shape
    keep = np.ones((batch, length)) if mask is None else mask.astype(float)
    x = x * keep[..., None]

    def branch(name):
        y = x @ w[f"{name}_proj/kernel"]
        if use_short_conv:
            kernel = w[f"{name}_conv1d_kernel"]
            y = in_float64(reference.causal_conv, y, kernel)
        return silu(y).reshape(batch, length, num_heads, -1)

    q, k, v = branch("q"), branch("k"), branch("v")
    q = q / np.sqrt(np.sum(q**2, -1, keepdims=True) + 1e-6)
    k = k / np.sqrt(np.sum(k**2, -1, keepdims=True) + 1e-6)
    beta = sigmoid(x @ w["b_proj/kernel"]) * keep[..., None]
    if allow_neg_eigval:
        beta = 2.0 * beta
    o, _ = in_float64(reference.delta_rule, q, k, v, beta)
    o = o / np.sqrt(np.mean(o**2, -1, keepdims=True) + eps)
    o = o * w["o_norm_scale"]
    if use_gate:
        o = o * silu(x @ w["g_proj/kernel"]).reshape(o.shape)
    return o.reshape(batch, length, -1) @ w["o_proj/kernel"]


def numpy(x):
    return keras.ops.convert_to_numpy(x)


@pytest.mark.parametrize(
    "mode, allow_neg_eigval, use_gate, use_short_conv, head_dim",
    [
        ("recurrent", False, True, True, None),
        ("recurrent", True, False, True, 3),
        ("chunk", False, False, True, None),
        ("chunk", True, True, True, 3),
        ("chunk", True, True, False, None),
    ],
)
def test_matches_reference_equations(
    mode, allow_neg_eigval, use_gate, use_short_conv, head_dim
):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 11, 8)).astype("float32")
    # the options that the layer and the reference share
    options = dict(
        conv_kernel=3,
        use_short_conv=use_short_conv,
        allow_neg_eigval=allow_neg_eigval,
        use_gate=use_gate,
    )
    layer = DeltaNet(2, head_dim=head_dim, mode=mode, chunk_size=4, **options)
    layer = randomized(layer, x.shape, rng)
    # the second row is padded on both sides and has a gap, where the
    # convolutions still see real tokens: only beta = 0 stops the writes
    mask = np.ones((2, 11), bool)
    mask[1, :2] = False
    mask[1, 5] = False
    mask[1, 9:] = False
    y = numpy(compiled(layer)(x, mask))
    expected = reference_deltanet(
        layer_weights(layer), x.astype(np.float64), mask, 2, **options
    )
    np.testing.assert_allclose(y[0], expected[0], rtol=1e-4, atol=1e-5)
    real = mask[1]
    np.testing.assert_allclose(
        y[1, real], expected[1, real], rtol=1e-4, atol=1e-5
    )


def test_weights_have_the_reference_names_and_shapes():
    layer = DeltaNet(num_heads=4, conv_kernel=4)
    layer.build((None, None, 32))
    shapes = {name: w.shape for name, w in layer_weights(layer).items()}
    assert shapes == {
        "q_proj/kernel": (32, 32),
        "k_proj/kernel": (32, 32),
        "v_proj/kernel": (32, 32),
        "b_proj/kernel": (32, 4),
        "q_conv1d_kernel": (4, 32),
        "k_conv1d_kernel": (4, 32),
        "v_conv1d_kernel": (4, 32),
        "g_proj/kernel": (32, 32),
        "o_norm_scale": (8,),
        "o_proj/kernel": (32, 32),
    }
    bare = DeltaNet(num_heads=2, use_gate=False, use_short_conv=False)
    bare.build((None, None, 8))
    assert set(layer_weights(bare)) == {
        "q_proj/kernel",
        "k_proj/kernel",
        "v_proj/kernel",
        "b_proj/kernel",
        "o_norm_scale",
        "o_proj/kernel",
    }
    # no two kernels start identical
    w = layer_weights(layer)
    assert not np.allclose(w["q_proj/kernel"], w["k_proj/kernel"])
    assert not np.allclose(w["q_conv1d_kernel"], w["k_conv1d_kernel"])


@pytest.mark.parametrize("use_short_conv", [True, False])
def test_step_equals_call(use_short_conv):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 9, 8)).astype("float32")
    layer = DeltaNet(
        2, conv_kernel=3, use_short_conv=use_short_conv, chunk_size=4
    )
    layer = randomized(layer, x.shape, rng)
    state = assert_step_equals_call(layer, x)
    assert state["delta"].shape == (3, 2, 4, 4)
    if use_short_conv:
        assert state["conv_k"].shape == (3, 2, 8)
    else:
        assert set(state) == {"delta"}


def test_step_equals_call_compiled():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 6, 8)).astype("float32")
    layer = DeltaNet(2, allow_neg_eigval=True, mode="recurrent")
    layer = randomized(layer, x.shape, rng)
    assert_step_equals_call(layer, x, jit=True)


def test_padding_leaves_real_steps_alone():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(1, 5, 8)).astype("float32")
    layer = DeltaNet(2, mode="chunk", chunk_size=2)
    layer = randomized(layer, x.shape, rng)
    noise = rng.normal(size=(1, 3, 8)).astype("float32")
    # one compiled function: two input shapes, always with a mask
    call = compiled(layer)
    alone = numpy(call(x, np.ones((1, 5), bool)))
    left = np.concatenate([noise, x], 1)
    mask = np.array([[False] * 3 + [True] * 5])
    np.testing.assert_allclose(numpy(call(left, mask))[:, 3:], alone, atol=1e-5)
    right = np.concatenate([x, noise], 1)
    mask = np.array([[True] * 5 + [False] * 3])
    np.testing.assert_allclose(
        numpy(call(right, mask))[:, :5], alone, atol=1e-5
    )
    # unmasked, the left noise does reach the real steps
    unmasked = numpy(call(left, np.ones((1, 8), bool)))[:, 3:]
    assert not np.allclose(unmasked, alone, atol=1e-3)


def weight_loss(layer, x, probe):
    """A loss of the layer's outputs as a function of `(x, *weights)`."""

    def loss(x, *weights):
        y, _ = layer.stateless_call(list(weights), [], x)
        return keras.ops.sum(y * probe)

    return loss


def test_chunk_gradients_equal_recurrent_and_reach_every_weight():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(2, 10, 8)).astype("float32")
    probe = rng.normal(size=(2, 10, 8)).astype("float32")
    chunk = DeltaNet(2, allow_neg_eigval=True, mode="chunk", chunk_size=4)
    chunk = randomized(chunk, x.shape, rng)
    recurrent = DeltaNet(
        2, allow_neg_eigval=True, mode="recurrent", chunk_size=4
    )
    recurrent.build(x.shape)
    recurrent.set_weights(chunk.get_weights())
    # compiled on JAX, whose eager scans retrace on every call; eager on
    # TensorFlow, where XLA compilation would dominate the test
    jit = keras.backend.backend() == "jax"
    results = []
    for layer in (chunk, recurrent):
        weights = [numpy(w.value) for w in layer.trainable_variables]
        loss = weight_loss(layer, x, probe)
        results.append(value_and_grad(loss, x, *weights, jit=jit))
    (value, grads), (ref_value, ref_grads) = results
    np.testing.assert_allclose(value, ref_value, rtol=1e-4)
    for grad, ref in zip(grads, ref_grads, strict=True):
        np.testing.assert_allclose(grad, ref, rtol=1e-4, atol=1e-5)
    names = [w.path for w in chunk.trainable_variables]
    assert len(names) == 10
    for name, grad in zip(names, grads[1:], strict=True):
        assert np.all(np.isfinite(grad)), name
        assert np.abs(grad).max() > 1e-6, name


def test_negative_eigenvalues_double_beta():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(3, 16, 8)).astype("float32") * 3.0
    plain = randomized(DeltaNet(2), x.shape, rng)
    negative = DeltaNet(2, allow_neg_eigval=True)
    negative.build(x.shape)
    negative.set_weights(plain.get_weights())
    beta = numpy(plain._beta(x))
    doubled = numpy(negative._beta(x))
    assert beta.shape == (3, 16, 2)
    assert beta.min() >= 0.0 and beta.max() <= 1.0
    np.testing.assert_allclose(doubled, 2.0 * beta, rtol=1e-6)
    assert doubled.min() >= 0.0 and doubled.max() <= 2.0
    # somewhere the transition's eigenvalue 1 - beta is negative: a write
    # flips the sign of what the state stores under that key
    assert doubled.max() > 1.0


def test_bad_arguments():
    layer = DeltaNet(4, head_dim=3, conv_kernel=2, allow_neg_eigval=True)
    layer.build((None, None, 8))

    with pytest.raises(ValueError, match="`num_heads`.*got 0"):
        DeltaNet(0)
    with pytest.raises(ValueError, match="`conv_kernel`.*got 0"):
        DeltaNet(2, conv_kernel=0)
    with pytest.raises(ValueError, match="`mode`.*got 'fast'"):
        DeltaNet(2, mode="fast")
    with pytest.raises(ValueError, match="`mode`.*got 'parallel'"):
        DeltaNet(2, mode="parallel")
    with pytest.raises(ValueError, match="`norm_epsilon`.*got -1"):
        DeltaNet(2, norm_epsilon=-1)
    with pytest.raises(ValueError, match="`num_heads`.*width 8.*num_heads=3"):
        DeltaNet(3).build((None, None, 8))
    with pytest.raises(ValueError, match=r"`inputs`.*8\).*\(2, 5, 6\)"):
        layer(np.zeros((2, 5, 6), "float32"))
    with pytest.raises(ValueError, match=r"`inputs`.*8\).*\(2, 6\)"):
        layer.step(np.zeros((2, 6), "float32"), layer.get_initial_state(2))
    state = layer.get_initial_state(2)
    state["delta"] = np.zeros((2, 4, 3, 4), "float32")
    with pytest.raises(ValueError, match=r"state\['delta'\].*\(2, 4, 3, 4\)"):
        layer.step(np.zeros((2, 8), "float32"), state)
    state = layer.get_initial_state(2)
    state["conv_v"] = np.zeros((2, 3, 12), "float32")
    with pytest.raises(ValueError, match=r"state\['conv_v'\].*\(2, 3, 12\)"):
        layer.step(np.zeros((2, 8), "float32"), state)


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision(policy):
    keras.mixed_precision.set_global_policy(policy)
    rng = np.random.default_rng(8)
    x = rng.normal(size=(2, 9, 8)).astype("float32")
    layer = DeltaNet(2, allow_neg_eigval=True, chunk_size=4)
    layer.build(x.shape)
    y = compiled(layer)(x)
    compute = policy.split("_")[1]
    assert keras.backend.standardize_dtype(y.dtype) == compute
    assert np.all(np.isfinite(numpy(keras.ops.cast(y, "float32"))))
    assert keras.backend.standardize_dtype(layer.o_norm_scale.dtype) == (
        "float32"
    )
    state = layer.get_initial_state(2)
    out, state = compiled(layer.step)(x[:, 0], state)
    assert keras.backend.standardize_dtype(state["delta"].dtype) == "float32"
    assert keras.backend.standardize_dtype(out.dtype) == compute
    assert np.all(np.isfinite(numpy(keras.ops.cast(out, "float32"))))
