import math

import keras
import numpy as np
import pytest

from kerasseq.layers.lru import LRU
from kerasseq.ops import reference
from tests.layers.common import glu_output
from tests.testing import assert_step_equals_call
from tests.testing import compiled
from tests.testing import in_float64
from tests.testing import layer_weights
from tests.testing import perturb_weights
from tests.testing import rel_rms
from tests.testing import step_through
from tests.testing import value_and_grad

MODES = ["recurrent", "chunk", "parallel"]


def numpy(x):
    return keras.ops.convert_to_numpy(x)


def reference_lru(w, x, padding_mask=None, use_glu=True):
    """The LRU in float64 / complex128 (the recurrence by
    `kerasseq.ops.reference.linear_recurrence`), from the paper:
    lambda = exp(-exp(nu_log) + i exp(theta_log)); h_t = lambda h_{t-1} +
    gamma B x_t with gamma = exp(gamma_log); y_t = Re(C h_t) + D x_t; then
    glu_out(gelu(y)) * sigmoid(glu_gate(gelu(y))). Kernels in the Keras
    convention: B (H, N) applied as x @ B, C (N, H) as h @ C."""
    x = np.asarray(x, np.float64)
    if padding_mask is not None:
        x = x * np.asarray(padding_mask, np.float64)[..., None]
    lam = np.exp(-np.exp(w["nu_log"]) + 1j * np.exp(w["theta_log"]))
    B = (w["B_re"] + 1j * w["B_im"]) * np.exp(w["gamma_log"])
    C = w["C_re"] + 1j * w["C_im"]
    drive = x @ B
    decay = np.broadcast_to(lam, drive.shape)
    h, _ = in_float64(reference.linear_recurrence, decay, drive)
    y = (h @ C).real + w["D"] * x
    return glu_output(w, y) if use_glu else y


def make_layer(rng, hidden=8, **kwargs):
    kwargs = {"state_size": 6, "r_min": 0.5, "r_max": 0.95, **kwargs}
    layer = LRU(**kwargs)
    layer.build((None, None, hidden))
    return perturb_weights(layer, rng)


def padded_mask(batch, length, pad):
    """All real but the last row, left-padded by `pad` steps."""
    mask = np.ones((batch, length), bool)
    mask[-1, :pad] = False
    return mask


@pytest.mark.parametrize("use_glu", [True, False])
@pytest.mark.parametrize("mode", MODES)
def test_matches_reference_equations(mode, use_glu):
    rng = np.random.default_rng(0)
    layer = make_layer(rng, mode=mode, chunk_size=4, use_glu=use_glu)
    x = rng.normal(size=(3, 11, 8)).astype("float32")
    mask = padded_mask(3, 11, 4)
    y = numpy(compiled(layer)(x, mask))
    expected = reference_lru(layer_weights(layer), x, mask, use_glu)
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-5)


def test_weights_have_the_reference_names_and_shapes():
    layer = LRU(state_size=16)
    layer.build((None, None, 8))
    shapes = {name: w.shape for name, w in layer_weights(layer).items()}
    assert shapes == {
        "nu_log": (16,),
        "theta_log": (16,),
        "gamma_log": (16,),
        "B_re": (8, 16),
        "B_im": (8, 16),
        "C_re": (16, 8),
        "C_im": (16, 8),
        "D": (8,),
        "glu_out/kernel": (8, 8),
        "glu_out/bias": (8,),
        "glu_gate/kernel": (8, 8),
        "glu_gate/bias": (8,),
    }
    for name in ("nu_log", "theta_log", "gamma_log", "B_re", "C_im", "D"):
        assert getattr(layer, name).dtype == "float32"
    # 3N + 2HN + 2NH + H, and two H x H Dense with bias
    assert layer.count_params() == 3 * 16 + 4 * 8 * 16 + 8 + 2 * (64 + 8)
    # N defaults to H
    default = LRU(use_glu=False)
    default.build((None, None, 16))
    assert default.count_params() == 4 * 16**2 + 4 * 16


def eigenvalues(w):
    return np.exp(-np.exp(w["nu_log"]) + 1j * np.exp(w["theta_log"]))


def assert_roughly_uniform(values, low, high, bins=8, tolerance=0.15):
    counts, _ = np.histogram(values, bins=bins, range=(low, high))
    expected = len(values) / bins
    assert np.all(np.abs(counts - expected) < tolerance * expected), counts


def test_initialisation_follows_the_paper():
    keras.utils.set_random_seed(0)
    n, hidden = 4096, 16
    r_min, r_max, max_phase = 0.4, 0.9, math.pi / 10
    layer = LRU(state_size=n, r_min=r_min, r_max=r_max, max_phase=max_phase)
    layer.build((None, None, hidden))
    w = layer_weights(layer)
    lam = eigenvalues(w)
    radius, phase = np.abs(lam), np.exp(w["theta_log"])
    tol = 1e-6
    assert radius.min() >= r_min - tol and radius.max() <= r_max + tol
    # uniform on the ring's area: |lambda|^2 uniform in [r_min^2, r_max^2]
    # (|lambda| uniform would give a mean of |lambda|^2 8.6% lower)
    squared = radius**2
    mean = (r_min**2 + r_max**2) / 2
    assert abs(squared.mean() - mean) < 0.03 * mean
    assert_roughly_uniform(squared, r_min**2, r_max**2)
    assert phase.min() >= 0 and phase.max() <= max_phase * (1 + tol)
    assert abs(phase.mean() - max_phase / 2) < 0.03 * max_phase / 2
    assert_roughly_uniform(phase, 0, max_phase)
    np.testing.assert_allclose(
        np.exp(w["gamma_log"]), np.sqrt(1 - squared), atol=1e-6
    )
    # B: real and imaginary parts N(0, 1 / (2H)); C: N(0, 1 / N)
    for name in ("B_re", "B_im"):
        assert abs(w[name].std() * np.sqrt(2 * hidden) - 1) < 0.03
        assert abs(w[name].mean()) < 0.01
    for name in ("C_re", "C_im"):
        assert abs(w[name].std() * np.sqrt(n) - 1) < 0.03
    assert not np.allclose(w["B_re"], w["B_im"])
    assert not np.allclose(w["C_re"], w["C_im"])
    assert np.all(w["D"] != 0) and len(np.unique(w["D"])) == hidden


def test_default_initialisation_is_finite_and_seeded():
    def weights():
        keras.utils.set_random_seed(3)
        layer = LRU()
        layer.build((None, None, 512))
        return layer_weights(layer)

    w = weights()
    for name, value in w.items():
        assert np.all(np.isfinite(value)), name
    radius = np.abs(eigenvalues(w))
    assert radius.max() < 1 and radius.min() >= 0
    assert_roughly_uniform(radius**2, 0, 1, tolerance=0.3)
    assert_roughly_uniform(np.exp(w["theta_log"]), 0, 2 * math.pi, 4, 0.3)
    again = weights()
    for name, value in w.items():
        np.testing.assert_array_equal(again[name], value)


@pytest.mark.parametrize("jit", [False, True])
def test_step_equals_call(jit):
    rng = np.random.default_rng(1)
    layer = make_layer(rng)
    x = rng.normal(size=(3, 9, 8)).astype("float32")
    state = assert_step_equals_call(layer, x, jit=jit)
    assert state.shape == (3, 6)
    assert keras.backend.standardize_dtype(state.dtype) == "complex64"
    initial = layer.get_initial_state(3, max_length=9)
    assert keras.backend.standardize_dtype(initial.dtype) == "complex64"
    np.testing.assert_array_equal(numpy(initial), 0)


def test_final_state_is_the_reference_state():
    rng = np.random.default_rng(7)
    layer = make_layer(rng, use_glu=False)
    x = rng.normal(size=(2, 6, 8)).astype("float32")
    _, state = step_through(layer, x)
    w = layer_weights(layer)
    lam = eigenvalues(w)
    B = (w["B_re"] + 1j * w["B_im"]) * np.exp(w["gamma_log"])
    # the recurrence h_t = lam h_{t-1} + B x_t solved in closed form:
    # h_T = sum_t lam^(T - t) B x_t
    powers = lam[None, :] ** np.arange(5, -1, -1)[:, None]  # (T, N)
    h = np.einsum("tn,btn->bn", powers, x.astype(np.float64) @ B)
    np.testing.assert_allclose(numpy(state), h, rtol=1e-5, atol=1e-5)


def test_padding_leaves_real_steps_alone():
    rng = np.random.default_rng(2)
    layer = make_layer(rng)
    x = rng.normal(size=(5, 8)).astype("float32")
    noise = rng.normal(size=(2, 3, 8)).astype("float32")
    # one call (causal): x alone, x left-padded by 3 steps, x right-padded
    inputs = np.stack(
        [
            np.concatenate([x, noise[0]]),
            np.concatenate([noise[0], x]),
            np.concatenate([x, noise[1]]),
        ]
    )
    mask = np.ones((3, 8), bool)
    mask[1, :3] = False
    mask[2, 5:] = False
    y = numpy(layer(inputs, mask))
    alone = y[0, :5]
    # left padding: the state stays at zero through the padded steps
    np.testing.assert_allclose(y[1, 3:], alone, atol=1e-5)
    # right padding cannot reach earlier outputs
    np.testing.assert_allclose(y[2, :5], alone, atol=1e-5)
    assert not np.allclose(y[1, :3], y[0, :3], atol=1e-3)


def gradients(layer, x, mask, target):
    """Loss `sum(layer(x) * target)` and its gradients in `x` and in every
    weight (by name), forward and backward compiled together."""
    names = [w.path.split("/", 1)[1] for w in layer.trainable_variables]

    def loss(x, *weights):
        y, _ = layer.stateless_call(list(weights), [], x, padding_mask=mask)
        return keras.ops.sum(y * target)

    values = [w.value for w in layer.trainable_variables]
    value, grads = value_and_grad(loss, x, *values, jit=True)
    return value, dict(zip(["inputs", *names], grads, strict=True))


def test_gradients_chunk_equal_recurrent_and_finite_differences():
    rng = np.random.default_rng(3)
    layers = {
        mode: LRU(state_size=6, r_min=0.5, r_max=0.95, mode=mode, chunk_size=4)
        for mode in ("recurrent", "chunk")
    }
    for layer in layers.values():
        layer.build((None, None, 8))
    perturb_weights(layers["recurrent"], rng)
    layers["chunk"].set_weights(layers["recurrent"].get_weights())
    x = rng.normal(size=(2, 11, 8)).astype("float32")
    mask = padded_mask(2, 11, 3)
    target = rng.normal(size=(2, 11, 8)).astype("float32")
    value, grads = gradients(layers["recurrent"], x, mask, target)
    chunk_value, chunk_grads = gradients(layers["chunk"], x, mask, target)
    np.testing.assert_allclose(chunk_value, value, rtol=1e-5)
    for name, grad in grads.items():
        assert np.any(grad != 0), name
        assert rel_rms(chunk_grads[name], grad) < 1e-4, name

    # every gradient against central differences of the float64 reference,
    # along a random direction per tensor
    w = layer_weights(layers["recurrent"])
    x64 = x.astype(np.float64)

    def numeric_loss(w, x):
        return np.sum(reference_lru(w, x, mask) * target)

    eps = 1e-6
    for name, grad in grads.items():
        direction = rng.normal(size=grad.shape)
        if name == "inputs":
            plus = numeric_loss(w, x64 + eps * direction)
            minus = numeric_loss(w, x64 - eps * direction)
        else:
            plus = numeric_loss({**w, name: w[name] + eps * direction}, x64)
            minus = numeric_loss({**w, name: w[name] - eps * direction}, x64)
        numeric = (plus - minus) / (2 * eps)
        analytic = np.sum(grad.astype(np.float64) * direction)
        np.testing.assert_allclose(analytic, numeric, rtol=2e-4, err_msg=name)


def test_symbolic_batch_size():
    # the batch size of a functional model is unknown while it is traced:
    # trace with a symbolic batch size, then run the traced function
    rng = np.random.default_rng(4)
    x = rng.normal(size=(2, 7, 8)).astype("float32")
    source = make_layer(rng, state_size=4)
    weights = source.get_weights()
    expected = reference_lru(layer_weights(source), x)
    for mode in MODES:
        layer = LRU(state_size=4, mode=mode, chunk_size=3)
        layer.build((None, None, 8))
        layer.set_weights(weights)
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            spec = tf.TensorSpec((None, 7, 8), tf.float32)
            traced = tf.function(layer).get_concrete_function(spec)
            assert tuple(traced.structured_outputs.shape) == (None, 7, 8)
            y = traced(tf.constant(x))
        else:
            import jax

            shape = jax.export.symbolic_shape("b, 7, 8")
            spec = jax.ShapeDtypeStruct(shape, np.float32)
            exported = jax.export.export(jax.jit(layer))(spec)
            assert exported.out_avals[0].shape == shape
            y = exported.call(x)
        np.testing.assert_allclose(numpy(y), expected, rtol=1e-4, atol=1e-5)


def test_bad_arguments():
    layer = LRU(state_size=8, use_glu=False, mode="parallel", chunk_size=16)
    with pytest.raises(ValueError, match="r_min=0.9 and r_max=0.5"):
        LRU(r_min=0.9, r_max=0.5)
    with pytest.raises(ValueError, match="r_min=0.5 and r_max=0.5"):
        LRU(r_min=0.5, r_max=0.5)
    with pytest.raises(ValueError, match="r_min=0.0 and r_max=1.5"):
        LRU(r_max=1.5)
    with pytest.raises(ValueError, match="r_min=-0.1 and r_max=1.0"):
        LRU(r_min=-0.1)
    with pytest.raises(ValueError, match="`max_phase`.*got 0"):
        LRU(max_phase=0)
    with pytest.raises(ValueError, match="`state_size`.*got 0"):
        LRU(state_size=0)
    with pytest.raises(ValueError, match="`mode`.*got 'fast'"):
        LRU(mode="fast")
    with pytest.raises(ValueError, match="`chunk_size`.*got 0"):
        LRU(chunk_size=0)
    layer.build((None, None, 8))
    with pytest.raises(ValueError, match=r"`inputs`.*8\).*\(2, 5, 6\)"):
        layer(np.zeros((2, 5, 6), "float32"))
    with pytest.raises(ValueError, match=r"`inputs`.*8\).*\(2, 6\)"):
        layer.step(np.zeros((2, 6), "float32"), layer.get_initial_state(2))
    state = np.zeros((2, 7), "complex64")
    with pytest.raises(ValueError, match=r"`state`.*\(2, 8\).*\(2, 7\)"):
        layer.step(np.zeros((2, 8), "float32"), state)


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision(policy):
    rng = np.random.default_rng(6)
    compute = policy.split("_")[1]
    mask = padded_mask(2, 16, 3)
    x = rng.normal(size=(2, 16, 8)).astype("float32")
    # inputs that the compute dtype holds exactly
    x = numpy(keras.ops.cast(keras.ops.cast(x, compute), "float32"))
    # slow decays and fast phases: rounding lambda, B or C would show
    reference = make_layer(rng, use_glu=False, r_min=0.99, r_max=0.999)
    expected = numpy(reference(x, mask))
    keras.mixed_precision.set_global_policy(policy)
    bare = LRU(state_size=6, use_glu=False)
    bare.build((None, None, 8))
    bare.set_weights(reference.get_weights())
    y = bare(x, mask)
    assert keras.backend.standardize_dtype(y.dtype) == compute
    # the weights and the recurrence stay in float32: only the output
    # rounds, by about 2^-9 (bfloat16) or 2^-12 (float16) relative
    error = rel_rms(numpy(y).astype(np.float32), expected)
    assert error < {"bfloat16": 4e-3, "float16": 5e-4}[compute]
    layer = LRU(state_size=6)
    y = layer(x, padding_mask=mask)
    assert keras.backend.standardize_dtype(y.dtype) == compute
    assert np.all(np.isfinite(numpy(y)))
    for w in layer.weights:
        assert w.dtype == "float32", w.path
    state = layer.get_initial_state(2)
    y_t, state = layer.step(x[:, 0], state)
    assert keras.backend.standardize_dtype(y_t.dtype) == compute
    assert keras.backend.standardize_dtype(state.dtype) == "complex64"
    assert np.all(np.isfinite(numpy(state)))


def test_training_logs_no_warning(caplog):
    """The real-to-complex gradient is correct (see the gradient tests);
    TensorFlow warned about it at every step when it came from a cast."""
    layer = LRU(state_size=8)
    x = np.random.default_rng(0).normal(size=(2, 5, 4)).astype("float32")
    layer(x)
    weights = layer.trainable_variables
    with caplog.at_level("WARNING"):
        model = keras.Sequential([keras.Input((5, 4)), layer])
        model.compile("sgd", "mse", jit_compile=True)
        model.fit(x, np.zeros_like(x), epochs=1, verbose=0)
    assert weights and not [
        r.getMessage() for r in caplog.records if "imaginary" in r.getMessage()
    ]
