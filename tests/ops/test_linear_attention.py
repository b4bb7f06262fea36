import functools
import math

import keras
import numpy as np
import pytest
from keras import ops

from kerasseq.ops import dispatch
from kerasseq.ops import reference
from kerasseq.ops.linear_attention import elu_plus_one
from kerasseq.ops.linear_attention import favor_plus
from kerasseq.ops.linear_attention import linear_attention
from kerasseq.ops.linear_attention import linear_attention_step
from kerasseq.ops.linear_attention import orthogonal_random_features
from kerasseq.ops.linear_attention import relu
from tests.ops.cases import FORWARD_CASES
from tests.ops.cases import GRAD_CASES
from tests.ops.cases import assert_gradients_close
from tests.ops.cases import case_id
from tests.ops.cases import finite_differences
from tests.ops.cases import loss_weights
from tests.ops.cases import numpy
from tests.ops.cases import predict_per_mode
from tests.ops.cases import reference_gradients
from tests.ops.cases import temp_bytes_per_token
from tests.ops.cases import weighted_sum
from tests.testing import compiled
from tests.testing import in_float64
from tests.testing import rel_rms
from tests.testing import value_and_grad

MODES = ["recurrent", "chunk", "parallel"]


def make_inputs(case, positive=True, seed=42):
    """Positive features (as from elu_plus_one) for normalised attention,
    signed ones otherwise; a positive initial state."""
    batch, length, heads, key_dim, value_dim = case[:5]
    rng = np.random.default_rng(seed)
    if positive:
        q = rng.uniform(0.0, 2.0, size=(batch, length, heads, key_dim))
        k = rng.uniform(0.0, 2.0, size=(batch, length, heads, key_dim))
    else:
        q = rng.normal(size=(batch, length, heads, key_dim))
        k = rng.normal(size=(batch, length, heads, key_dim))
    v = rng.normal(size=(batch, length, heads, value_dim))
    s0 = rng.normal(size=(batch, heads, key_dim, value_dim))
    z0 = rng.uniform(0.0, 2.0, size=(batch, heads, key_dim))
    return [x.astype(np.float32) for x in (q, k, v, s0, z0)]


def _loss(fn, weights):
    """`weighted_sum` of `fn`'s output and final state."""

    def loss(*inputs):
        return weighted_sum(fn(*inputs), weights)

    return loss


@functools.cache
def expected_gradients(case, causal, normalize):
    """Loss and gradients by autodiff through the library's reference loop
    in float64 (compiled: a `dispatch.scan` over its step)."""
    return reference_gradients(
        lambda q, k, v, s0, z0: reference.linear_attention(
            q, k, v, causal, normalize, (s0, z0), scan=dispatch.scan
        ),
        make_inputs(case, positive=normalize),
        loss_weights(case, normalizer=True),
    )


def run(mode, chunk_size=64, causal=True, normalize=True):
    """linear_attention with an initial state, returning the final one."""

    def fn(q, k, v, s0, z0):
        return linear_attention(
            q,
            k,
            v,
            causal=causal,
            normalize=normalize,
            initial_state=(s0, z0),
            return_final_state=True,
            mode=mode,
            chunk_size=chunk_size,
        )

    return fn


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "case", FORWARD_CASES + [(1, 1000, 1, 16, 8, 32)], ids=case_id
)
def test_forward_matches_reference(mode, case):
    q, k, v, s0, z0 = make_inputs(case)
    o_ref, (s_ref, z_ref) = in_float64(
        reference.linear_attention, q, k, v, initial_state=(s0, z0)
    )
    o, (s, z) = compiled(run(mode, case[5]))(q, k, v, s0, z0)
    assert tuple(o.shape) == case[:3] + (case[4],)
    for x in (o, s, z):
        assert keras.backend.standardize_dtype(x.dtype) == "float32"
    assert rel_rms(numpy(o), o_ref) < 2e-6
    assert rel_rms(numpy(s), s_ref) < 2e-6
    assert rel_rms(numpy(z), z_ref) < 2e-6


@pytest.mark.parametrize("mode", MODES + ["auto"])
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("normalize", [True, False])
def test_forward_variants(mode, causal, normalize):
    case = (2, 100, 2, 8, 16)
    q, k, v, s0, z0 = make_inputs(case, positive=normalize)
    o_ref, (s_ref, z_ref) = in_float64(
        reference.linear_attention, q, k, v, causal, normalize, (s0, z0)
    )
    o, (s, z) = compiled(run(mode, 32, causal, normalize))(q, k, v, s0, z0)
    assert rel_rms(numpy(o), o_ref) < 2e-6
    assert rel_rms(numpy(s), s_ref) < 2e-6
    assert rel_rms(numpy(z), z_ref) < 2e-6


@pytest.mark.parametrize("mode", MODES + ["auto"])
def test_eager_call_without_initial_state(mode):
    q, k, v, _, _ = make_inputs((2, 40, 2, 8, 16))
    o_ref, _ = in_float64(reference.linear_attention, q, k, v)
    o = linear_attention(q, k, v, mode=mode, chunk_size=16)
    assert rel_rms(numpy(o), o_ref) < 2e-6


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", GRAD_CASES, ids=case_id)
def test_gradients_match_autodiff_reference(mode, case):
    inputs = make_inputs(case)
    loss = _loss(run(mode, case[5]), loss_weights(case, normalizer=True))
    value, grads = value_and_grad(loss, *inputs, jit=True)
    value_ref, grads_ref = expected_gradients(case, True, True)
    np.testing.assert_allclose(value, value_ref, rtol=1e-5)
    assert_gradients_close(grads, grads_ref, ("q", "k", "v", "S0", "z0"))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("causal, normalize", [(True, False), (False, True)])
def test_gradients_variants(mode, causal, normalize):
    case = (2, 37, 2, 8, 4, 16)
    inputs = make_inputs(case, positive=normalize)
    weights = loss_weights(case, normalizer=True)
    loss = _loss(run(mode, 16, causal, normalize), weights)
    _, grads = value_and_grad(loss, *inputs, jit=True)
    _, grads_ref = expected_gradients(case, causal, normalize)
    for g, g_ref in zip(grads, grads_ref, strict=True):
        assert rel_rms(g, g_ref) < 1e-5


@pytest.mark.parametrize("mode", MODES)
def test_gradients_match_finite_differences(mode):
    # central differences of the float64 numpy loop, every input element
    case = (1, 5, 2, 3, 2)
    inputs = make_inputs(case)
    weights = loss_weights(case, normalizer=True)

    def numpy_loss(q, k, v, s0, z0):
        outputs = in_float64(
            reference.linear_attention, q, k, v, initial_state=(s0, z0)
        )
        return weighted_sum(outputs, weights)

    loss = _loss(run(mode, 2), weights)
    _, grads = value_and_grad(loss, *inputs, jit=True)
    wide = [x.astype(np.float64) for x in inputs]
    for g, fd in zip(grads, finite_differences(numpy_loss, wide), strict=True):
        np.testing.assert_allclose(g, fd, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("mode", MODES)
def test_bfloat16_inputs(mode):
    case = (2, 100, 2, 16, 16)
    q, k, v, s0, z0 = (ops.cast(x, "bfloat16") for x in make_inputs(case))
    o, (s, z) = compiled(run(mode, 32))(q, k, v, s0, z0)
    assert keras.backend.standardize_dtype(o.dtype) == "bfloat16"
    assert keras.backend.standardize_dtype(s.dtype) == "float32"
    assert keras.backend.standardize_dtype(z.dtype) == "float32"
    o_ref, (s_ref, z_ref) = in_float64(
        reference.linear_attention,
        *(numpy(x) for x in (q, k, v)),
        initial_state=(numpy(s0), numpy(z0)),
    )
    assert rel_rms(numpy(o), o_ref) < 5e-3
    assert rel_rms(numpy(s), s_ref) < 5e-3
    assert rel_rms(numpy(z), z_ref) < 5e-3


@pytest.mark.parametrize("mode", MODES)
def test_split_sequence_equals_one_run(mode):
    case = (2, 100, 2, 8, 4)
    q, k, v, s0, z0 = make_inputs(case)
    fn = compiled(run(mode, 16))

    def part(start, stop, s, z):
        return fn(*(x[:, start:stop] for x in (q, k, v)), s, z)

    o, (s, z) = part(0, 100, s0, z0)
    o1, (s1, z1) = part(0, 37, s0, z0)
    o2, (s2, z2) = part(37, 100, s1, z1)
    np.testing.assert_allclose(
        numpy(ops.concatenate([o1, o2], axis=1)), numpy(o), atol=1e-5
    )
    np.testing.assert_allclose(numpy(s2), numpy(s), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(numpy(z2), numpy(z), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("normalize", [True, False])
def test_step_equals_call(normalize):
    case = (2, 20, 3, 8, 4)
    q, k, v, s0, z0 = make_inputs(case)
    o, (s, z) = run("recurrent", normalize=normalize)(q, k, v, s0, z0)
    step = compiled(
        lambda *x: linear_attention_step(*x[:3], x[3:], normalize=normalize)
    )
    state = (s0, z0)
    for t in range(20):
        o_t, state = step(q[:, t], k[:, t], v[:, t], *state)
        np.testing.assert_allclose(numpy(o_t), numpy(o[:, t]), atol=1e-5)
    np.testing.assert_allclose(numpy(state[0]), numpy(s), atol=1e-5)
    np.testing.assert_allclose(numpy(state[1]), numpy(z), atol=1e-5)
    # no state means zeros; bfloat16 in, bfloat16 out, float32 state
    o_t, (s_t, z_t) = linear_attention_step(
        *(ops.cast(x[:, 0], "bfloat16") for x in (q, k, v)), None
    )
    assert keras.backend.standardize_dtype(o_t.dtype) == "bfloat16"
    assert keras.backend.standardize_dtype(s_t.dtype) == "float32"
    o_ref, _ = in_float64(
        reference.linear_attention,
        *(numpy(ops.cast(x[:, :1], "bfloat16")) for x in (q, k, v)),
    )
    assert rel_rms(numpy(o_t), o_ref[:, 0]) < 5e-3


@pytest.mark.parametrize("mode", ["recurrent", "chunk"])
def test_long_sequence_stays_finite(mode):
    # the parallel form would need T^2 memory here
    case = (1, 16384, 2, 8, 8)
    q, k, v, _, _ = make_inputs(case)
    o, (s, z) = compiled(
        lambda q, k, v: linear_attention(
            q, k, v, return_final_state=True, mode=mode
        )
    )(q, k, v)
    o, s, z = numpy(o), numpy(s), numpy(z)
    assert all(np.all(np.isfinite(x)) for x in (o, s, z))
    o_ref, (s_ref, z_ref) = in_float64(reference.linear_attention, q, k, v)
    assert rel_rms(o, o_ref) < 1e-5
    assert rel_rms(s, s_ref) < 1e-5
    assert rel_rms(z, z_ref) < 1e-5


def test_relu_features_with_zero_denominator_stay_finite():
    # queries sharing no active feature with any key: o = 0 / EPS = 0
    x = np.zeros((1, 4, 1, 4), np.float32)
    q, k = x.copy(), x.copy()
    q[..., :2] = [1.0, -1.0]
    k[..., 2:] = [-2.0, 3.0]
    v = np.ones((1, 4, 1, 3), np.float32)
    for mode in MODES:
        o = numpy(linear_attention(relu(q), relu(k), v, mode=mode))
        np.testing.assert_array_equal(o, 0.0)


def test_recurrent_forward_keeps_no_state_per_token():
    heads, key_dim = 2, 32
    state_bytes = heads * key_dim * key_dim * 4
    growth = temp_bytes_per_token(
        lambda *x: linear_attention(*x, mode="recurrent"),
        lambda length: make_inputs((1, length, heads, key_dim, key_dim))[:3],
    )
    assert growth < state_bytes / 4


def test_functional_model_with_unknown_batch_size():
    q, k, v, _, _ = make_inputs((3, 20, 2, 8, 4))
    o_ref, _ = in_float64(reference.linear_attention, q, k, v)
    for o in predict_per_mode(linear_attention, (q, k, v), MODES):
        assert rel_rms(o, o_ref) < 2e-6


def _bad(**changes):
    q, k, v, s0, z0 = make_inputs((2, 5, 3, 4, 6))
    args = dict(q=q, k=k, v=v, initial_state=(s0, z0))
    args.update(changes)
    return args


@pytest.mark.parametrize(
    "args, match",
    [
        (_bad(mode="fast"), r"`mode`.*'fast'"),
        (_bad(chunk_size=-1), r"`chunk_size`.*positive integer, got -1"),
        (_bad(q=np.zeros((2, 5, 4), "float32")), r"`q`.*\(B, T, H, K\)"),
        (_bad(k=np.zeros((2, 5, 3, 5), "float32")), r"`k`.*\(2, 5, 3, 5\)"),
        (_bad(v=np.zeros((2, 4, 3, 6), "float32")), r"`v`.*\(2, 4, 3, 6\)"),
        (_bad(v=np.zeros((2, 5, 2, 6), "float32")), r"`v`.*\(2, 5, 2, 6\)"),
        (_bad(k=np.zeros((2, 5, 3, 4), "int32")), r"`k`.*floating.*int32"),
        (_bad(initial_state=np.zeros((2, 3, 4, 6))), r"`initial_state`.*tuple"),
        (
            _bad(initial_state=(np.zeros((2, 3, 4, 6)), np.zeros((2, 3, 6)))),
            r"`initial_state\[1\]`.*\(B, H, K\).*\(2, 3, 6\)",
        ),
    ],
)
def test_invalid_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        linear_attention(**args)


def test_elu_plus_one_and_relu():
    x = np.array([-2.0, -0.5, 0.0, 0.5, 2.0], np.float32)
    np.testing.assert_allclose(
        numpy(elu_plus_one(x)), np.where(x > 0, x + 1, np.exp(x)), rtol=1e-6
    )
    np.testing.assert_array_equal(numpy(relu(x)), np.maximum(x, 0))


@pytest.mark.parametrize("scaling", [0, 1])
def test_orthogonal_random_features_blocks(scaling):
    dim, num_features = 8, 19  # two full blocks and three rows of a third
    w = numpy(orthogonal_random_features(num_features, dim, 42, scaling))
    assert w.shape == (num_features, dim)
    norms = np.linalg.norm(w, axis=-1)
    if scaling == 1:
        np.testing.assert_allclose(norms, np.sqrt(dim), rtol=1e-5)
    else:
        assert np.std(norms) > 0.1
    unit = w / norms[:, None]
    for start in (0, 8, 16):
        block = unit[start : start + dim]
        np.testing.assert_allclose(
            block @ block.T, np.eye(len(block)), atol=1e-5
        )
    # rows of different blocks are not orthogonal
    assert np.max(np.abs(unit[:8] @ unit[8:16].T)) > 0.1


def test_orthogonal_random_features_norms_follow_chi():
    dim = 16
    w = numpy(orthogonal_random_features(4096, dim, seed=42))
    norms = np.linalg.norm(w, axis=-1)
    # chi(16): mean sqrt(2) Gamma(8.5) / Gamma(8), variance 16 - mean^2
    mean = np.sqrt(2.0) * np.exp(math.lgamma(8.5) - math.lgamma(8.0))
    np.testing.assert_allclose(np.mean(norms), mean, rtol=0.02)
    np.testing.assert_allclose(np.var(norms), dim - mean**2, rtol=0.1)


def test_orthogonal_random_features_seed():
    a = numpy(orthogonal_random_features(12, 4, seed=42))
    b = numpy(orthogonal_random_features(12, 4, seed=42))
    c = numpy(orthogonal_random_features(12, 4, seed=43))
    np.testing.assert_array_equal(a, b)
    assert np.max(np.abs(a - c)) > 0.1
    generator = keras.random.SeedGenerator(42)
    d = numpy(orthogonal_random_features(12, 4, seed=generator))
    e = numpy(orthogonal_random_features(12, 4, seed=generator))
    assert np.max(np.abs(d - e)) > 0.1


def test_favor_plus_estimates_the_softmax_kernel():
    dim, num_features = 16, 16384
    rng = np.random.default_rng(42)
    q = rng.normal(size=(1, 5, 1, dim)) / 3.0
    k = rng.normal(size=(1, 6, 1, dim)) / 3.0
    w = orthogonal_random_features(num_features, dim, seed=42)
    phi_q = numpy(favor_plus(q.astype(np.float32), w, True, eps=0.0))
    phi_k = numpy(favor_plus(k.astype(np.float32), w, False, eps=0.0))
    assert phi_q.shape == (1, 5, 1, num_features)
    assert np.all(phi_q > 0) and np.all(phi_k > 0)
    # undo the stabilisers: per query token, one for all keys
    w = numpy(w).astype(np.float64)
    c_q = np.max(q[0, :, 0] * dim**-0.25 @ w.T, axis=-1)
    c_k = np.max(k[0, :, 0] * dim**-0.25 @ w.T)
    estimate = phi_q[0, :, 0] @ phi_k[0, :, 0].T * np.exp(c_q[:, None] + c_k)
    exact = np.exp(q[0, :, 0] @ k[0, :, 0].T / np.sqrt(dim))
    np.testing.assert_allclose(estimate, exact, rtol=0.03)


def test_favor_plus_attention_approximates_softmax_attention():
    # the stabilisers cancel in normalised attention, for causal and not
    dim, num_features, length = 16, 8192, 12
    rng = np.random.default_rng(42)
    q = rng.normal(size=(2, length, 2, dim)).astype(np.float32) / 2.0
    k = rng.normal(size=(2, length, 2, dim)).astype(np.float32) / 2.0
    v = rng.normal(size=(2, length, 2, 4)).astype(np.float32)
    w = orthogonal_random_features(num_features, dim, seed=42)
    phi_q, phi_k = favor_plus(q, w, True), favor_plus(k, w, False)
    logits = np.einsum("bihd,bjhd->bhij", q, k) / np.sqrt(dim)
    for causal in (False, True):
        if causal:
            logits = np.where(np.tri(length) > 0, logits, -np.inf)
        weights = np.exp(logits - logits.max(-1, keepdims=True))
        weights /= weights.sum(-1, keepdims=True)
        exact = np.einsum("bhij,bjhv->bihv", weights, v)
        o = numpy(linear_attention(phi_q, phi_k, v, causal=causal))
        assert rel_rms(o, exact) < 0.06


def test_favor_plus_dtype_and_errors():
    w = orthogonal_random_features(32, 8, seed=1)
    x = ops.cast(np.ones((1, 3, 2, 8)), "bfloat16")
    phi = favor_plus(x, w, is_query=False)
    assert keras.backend.standardize_dtype(phi.dtype) == "bfloat16"
    assert tuple(phi.shape) == (1, 3, 2, 32)
    with pytest.raises(ValueError, match=r"`projection`.*\(M, D\)"):
        favor_plus(x, orthogonal_random_features(32, 4, seed=1), True)
    with pytest.raises(ValueError, match=r"`x`.*\(B, T, H, D\)"):
        favor_plus(np.ones((3, 8), np.float32), w, True)
    with pytest.raises(ValueError, match=r"`num_features`.*got 0"):
        orthogonal_random_features(0, 8)
    with pytest.raises(ValueError, match=r"`scaling`.*got 2"):
        orthogonal_random_features(8, 8, scaling=2)


def test_favor_plus_projection_stabiliser_is_a_constant_of_the_projection():
    # keys: exp(-c) (exp(w . x' - |x'|^2 / 2) + eps) / sqrt(M), with c fixed
    # by the projection alone, whatever the other tokens
    dim, num_features = 64, 256
    w = orthogonal_random_features(num_features, dim, seed=7)
    w64 = numpy(w).astype(np.float64)
    c = max(0.0, 0.5 * np.max(np.sum(w64**2, axis=-1)) - 30.0)
    assert c > 0  # a head of 64 makes the bound exceed the headroom
    rng = np.random.default_rng(0)
    k = rng.normal(size=(1, 6, 1, dim)).astype(np.float32)
    phi = numpy(favor_plus(k, w, False, key_stabilizer="projection"))
    x = k[0, :, 0].astype(np.float64) * dim**-0.25
    logits = x @ w64.T - 0.5 * np.sum(x**2, -1, keepdims=True)
    expected = np.exp(-c) * (np.exp(logits) + 1e-6) / np.sqrt(num_features)
    np.testing.assert_allclose(phi[0, :, 0], expected, rtol=1e-4)
    # a huge later key changes nothing before it (the sequence stabiliser
    # would rescale every key)
    k[0, 5] *= 20.0
    again = numpy(favor_plus(k, w, False, key_stabilizer="projection"))
    np.testing.assert_array_equal(again[0, :5], phi[0, :5])
    assert np.all(np.isfinite(again)) and np.all(again > 0)
    with pytest.raises(ValueError, match="`key_stabilizer`.*'token'"):
        favor_plus(k, w, False, key_stabilizer="token")
