import functools

import keras
import numpy as np
import pytest
from keras import ops

from kerasseq.ops import dispatch
from kerasseq.ops import reference
from kerasseq.ops.delta_rule import delta_rule
from kerasseq.ops.delta_rule import delta_rule_step
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

MODES = ["recurrent", "chunk"]
# chunk mode runs each chunk inside its loop on a CPU and batches the
# state-free work of all chunks on a GPU or TPU; test both organisations
FORMS = ["recurrent", "chunk", "chunk-batched"]


@pytest.fixture
def use_form(monkeypatch):
    """Returns the mode for a form, making chunk mode batch its chunks as it
    does on a GPU for "chunk-batched"."""

    def use(form):
        if form == "chunk-batched":
            monkeypatch.setattr(dispatch, "device_kind", lambda: "gpu")
            return "chunk"
        return form

    return use


def make_inputs(case, beta_range=(0.0, 2.0), seed=42):
    """Unit-norm keys (the layer normalises them), beta in beta_range."""
    batch, length, heads, key_dim, value_dim = case[:5]
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(batch, length, heads, key_dim))
    k = rng.normal(size=(batch, length, heads, key_dim))
    k /= np.linalg.norm(k, axis=-1, keepdims=True)
    v = rng.normal(size=(batch, length, heads, value_dim))
    beta = rng.uniform(*beta_range, size=(batch, length, heads))
    s0 = 0.5 * rng.normal(size=(batch, heads, key_dim, value_dim))
    return [x.astype(np.float32) for x in (q, k, v, beta, s0)]


def run(mode, chunk_size):
    """delta_rule with an initial state, returning the final one."""

    def fn(q, k, v, beta, s0):
        return delta_rule(
            q,
            k,
            v,
            beta,
            initial_state=s0,
            return_final_state=True,
            mode=mode,
            chunk_size=chunk_size,
        )

    return fn


@functools.cache
def expected_gradients(case, singular=False):
    """Loss and gradients by autodiff through the library's reference loop
    in float64 (compiled: a `dispatch.scan` over its step)."""
    return reference_gradients(
        lambda q, k, v, beta, s0: reference.delta_rule(
            q, k, v, beta, initial_state=s0, scan=dispatch.scan
        ),
        _grad_inputs(case, singular),
        loss_weights(case),
    )


def _grad_inputs(case, singular):
    inputs = make_inputs(case)
    if singular:
        # beta = 1 on a repeated unit key: I - beta k k^T is singular, so the
        # state cannot be recovered backwards from S_t
        q, k, v, beta, s0 = inputs
        k[:] = k[:, :1]
        beta[:] = 1.0
    return inputs


def test_reference_matches_step_by_step_definition():
    # the loop above against the textbook form S_t = (I - b k k^T) S + b k v^T
    q, k, v, beta, s0 = (
        x.astype(np.float64) for x in make_inputs((1, 5, 1, 3, 2))
    )
    o, s = in_float64(reference.delta_rule, q, k, v, beta, initial_state=s0)
    state = s0[0, 0]
    for t in range(5):
        k_t, b_t = k[0, t, 0], beta[0, t, 0]
        state = (np.eye(3) - b_t * np.outer(k_t, k_t)) @ state + b_t * np.outer(
            k_t, v[0, t, 0]
        )
        np.testing.assert_allclose(
            o[0, t, 0], state.T @ (q[0, t, 0] / np.sqrt(3)), atol=1e-12
        )
    np.testing.assert_allclose(s[0, 0], state, atol=1e-12)


@pytest.mark.parametrize(
    "form, case",
    [(form, case) for form in MODES for case in FORWARD_CASES]
    + [("chunk-batched", case) for case in FORWARD_CASES[::2]],
    ids=case_id,
)
def test_forward_matches_reference(form, case, use_form):
    mode = use_form(form)
    q, k, v, beta, s0 = make_inputs(case)
    o_ref, s_ref = in_float64(
        reference.delta_rule, q, k, v, beta, initial_state=s0
    )
    o, s = compiled(run(mode, case[5]))(q, k, v, beta, s0)
    assert tuple(o.shape) == case[:3] + (case[4],)
    assert keras.backend.standardize_dtype(o.dtype) == "float32"
    assert keras.backend.standardize_dtype(s.dtype) == "float32"
    assert rel_rms(numpy(o), o_ref) < 2e-6
    assert rel_rms(numpy(s), s_ref) < 2e-6


@pytest.mark.parametrize("mode", MODES + ["auto"])
def test_defaults_without_initial_state(mode):
    case = (2, 70, 2, 8, 8)
    q, k, v, beta, _ = make_inputs(case)
    o_ref, _ = in_float64(reference.delta_rule, q, k, v, beta)
    o = delta_rule(q, k, v, beta, mode=mode)
    assert rel_rms(numpy(o), o_ref) < 2e-6
    # a given scale replaces K ** -0.5
    o_ref, _ = in_float64(reference.delta_rule, q, k, v, beta, scale=0.3)
    o = delta_rule(q, k, v, beta, scale=0.3, mode=mode, chunk_size=16)
    assert rel_rms(numpy(o), o_ref) < 2e-6


@pytest.mark.parametrize(
    "form, case",
    [(form, case) for form in MODES for case in GRAD_CASES]
    + [("chunk-batched", case) for case in GRAD_CASES[1::2]],
    ids=case_id,
)
def test_gradients_match_autodiff_reference(form, case, use_form):
    mode = use_form(form)
    inputs = make_inputs(case)
    weights = loss_weights(case)

    def loss(*inputs):
        return weighted_sum(run(mode, case[5])(*inputs), weights)

    value, grads = value_and_grad(loss, *inputs, jit=True)
    value_ref, grads_ref = expected_gradients(case)
    np.testing.assert_allclose(value, value_ref, rtol=1e-5)
    names = ("q", "k", "v", "beta", "initial_state")
    assert_gradients_close(grads, grads_ref, names)


@pytest.mark.parametrize("form", FORMS)
def test_gradients_with_singular_transitions(form, use_form):
    mode = use_form(form)
    # beta = 1 and one repeated key: every step projects the state
    case = (1, 40, 2, 4, 3, 16)
    inputs = _grad_inputs(case, singular=True)
    weights = loss_weights(case)

    def loss(*inputs):
        return weighted_sum(run(mode, 16)(*inputs), weights)

    _, grads = value_and_grad(loss, *inputs, jit=True)
    _, grads_ref = expected_gradients(case, singular=True)
    for g, g_ref in zip(grads, grads_ref, strict=True):
        assert np.all(np.isfinite(g))
        assert rel_rms(g, g_ref) < 1e-5


@pytest.mark.parametrize("form", FORMS)
def test_gradients_match_finite_differences(form, use_form):
    mode = use_form(form)
    # central differences of the float64 numpy loop, every input element
    case = (1, 5, 2, 3, 2)
    inputs = make_inputs(case)
    weights = loss_weights(case)

    def numpy_loss(q, k, v, beta, s0):
        outputs = in_float64(
            reference.delta_rule, q, k, v, beta, initial_state=s0
        )
        return weighted_sum(outputs, weights)

    def loss(*inputs):
        return weighted_sum(run(mode, 2)(*inputs), weights)

    _, grads = value_and_grad(loss, *inputs, jit=True)
    wide = [x.astype(np.float64) for x in inputs]
    for g, fd in zip(grads, finite_differences(numpy_loss, wide), strict=True):
        np.testing.assert_allclose(g, fd, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("mode", MODES)
def test_bfloat16_inputs(mode):
    case = (2, 100, 2, 16, 16)
    q, k, v, beta, s0 = (ops.cast(x, "bfloat16") for x in make_inputs(case))
    o, s = compiled(run(mode, 32))(q, k, v, beta, s0)
    assert keras.backend.standardize_dtype(o.dtype) == "bfloat16"
    assert keras.backend.standardize_dtype(s.dtype) == "float32"
    o_ref, s_ref = in_float64(
        reference.delta_rule,
        *(numpy(x) for x in (q, k, v, beta)),
        initial_state=numpy(s0),
    )
    assert rel_rms(numpy(o), o_ref) < 5e-3
    assert rel_rms(numpy(s), s_ref) < 5e-3


@pytest.mark.parametrize("mode", MODES)
def test_split_sequence_equals_one_run(mode):
    case = (2, 100, 2, 8, 4)
    q, k, v, beta, s0 = make_inputs(case)
    fn = compiled(run(mode, 16))

    def part(start, stop, state):
        return fn(*(x[:, start:stop] for x in (q, k, v, beta)), state)

    o, s = part(0, 100, s0)
    o1, s1 = part(0, 50, s0)
    o2, s2 = part(50, 100, s1)
    np.testing.assert_allclose(
        numpy(ops.concatenate([o1, o2], axis=1)), numpy(o), atol=1e-5
    )
    np.testing.assert_allclose(numpy(s2), numpy(s), atol=1e-5)


def test_step_equals_call():
    case = (2, 20, 3, 8, 4)
    q, k, v, beta, s0 = make_inputs(case)
    o, s = delta_rule(q, k, v, beta, initial_state=s0, return_final_state=True)
    step = compiled(delta_rule_step)
    state = s0
    for t in range(20):
        o_t, state = step(q[:, t], k[:, t], v[:, t], beta[:, t], state)
        np.testing.assert_allclose(numpy(o_t), numpy(o[:, t]), atol=1e-5)
    np.testing.assert_allclose(numpy(state), numpy(s), atol=1e-5)
    # no state means zeros; bfloat16 in, bfloat16 out, float32 state
    o_t, state = delta_rule_step(
        *(ops.cast(x[:, 0], "bfloat16") for x in (q, k, v, beta)), None
    )
    assert keras.backend.standardize_dtype(o_t.dtype) == "bfloat16"
    assert keras.backend.standardize_dtype(state.dtype) == "float32"
    o_ref, s_ref = in_float64(
        reference.delta_rule,
        *(numpy(ops.cast(x[:, :1], "bfloat16")) for x in (q, k, v, beta)),
    )
    assert rel_rms(numpy(o_t), o_ref[:, 0]) < 5e-3
    assert rel_rms(numpy(state), s_ref) < 1e-5


@pytest.mark.parametrize("mode", MODES)
def test_long_sequence_stays_finite(mode):
    # unit-norm keys; beta near 0 in head 0, near 2 (reflections) in head 1
    case = (1, 16384, 2, 8, 8)
    q, k, v, _, _ = make_inputs(case)
    beta = np.stack(
        [
            make_inputs(case, beta_range=(0.0, 1e-3))[3][..., 0],
            make_inputs(case, beta_range=(2.0 - 1e-3, 2.0))[3][..., 1],
        ],
        axis=-1,
    )
    o, s = compiled(
        lambda q, k, v, beta: delta_rule(
            q, k, v, beta, return_final_state=True, mode=mode
        )
    )(q, k, v, beta)
    o, s = numpy(o), numpy(s)
    assert np.all(np.isfinite(o)) and np.all(np.isfinite(s))
    o_ref, s_ref = in_float64(reference.delta_rule, q, k, v, beta)
    for head in range(2):
        assert rel_rms(o[:, :, head], o_ref[:, :, head]) < 1e-4
        assert rel_rms(s[:, head], s_ref[:, head]) < 1e-4


def test_recurrent_forward_keeps_no_state_per_token():
    heads, key_dim = 2, 32
    state_bytes = heads * key_dim * key_dim * 4
    growth = temp_bytes_per_token(
        lambda *x: delta_rule(*x, mode="recurrent"),
        lambda length: make_inputs((1, length, heads, key_dim, key_dim))[:4],
    )
    # inputs and outputs are re-laid out (~ 4 (3K + V + 1) bytes a token);
    # storing the state per token would add state_bytes a token
    assert growth < state_bytes / 4


def test_functional_model_with_unknown_batch_size():
    q, k, v, beta, _ = make_inputs((3, 20, 2, 8, 4))
    o_ref, _ = in_float64(reference.delta_rule, q, k, v, beta)
    for o in predict_per_mode(delta_rule, (q, k, v, beta), MODES):
        assert rel_rms(o, o_ref) < 2e-6


def test_trains_in_a_compiled_keras_model():
    # gradients reach the weights through the custom gradients in fit(),
    # with bfloat16 activations under mixed precision
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    length, heads, key_dim, value_dim = 40, 2, 8, 4
    inputs = [
        keras.Input((length, heads, key_dim)),
        keras.Input((length, heads, value_dim)),
    ]
    x, v = inputs
    q = keras.layers.Dense(key_dim)(x)
    k = keras.layers.UnitNormalization()(keras.layers.Dense(key_dim)(x))
    v = keras.layers.Dense(value_dim)(v)
    beta = 2.0 * keras.layers.Dense(1, activation="sigmoid")(x)[..., 0]
    # both modes: the first 24 tokens in the loop, the rest in chunks
    o = keras.layers.Lambda(
        lambda x: ops.concatenate(
            [
                delta_rule(*(y[:, :24] for y in x), mode="recurrent"),
                delta_rule(*(y[:, 24:] for y in x), mode="chunk"),
            ],
            axis=1,
        )
    )([q, k, v, beta])
    assert keras.backend.standardize_dtype(o.dtype) == "bfloat16"
    model = keras.Model(inputs, o)
    model.compile(optimizer="adam", loss="mse", jit_compile=True)
    rng = np.random.default_rng(42)
    data = [
        rng.normal(size=(4, length, heads, key_dim)).astype(np.float32),
        rng.normal(size=(4, length, heads, value_dim)).astype(np.float32),
    ]
    targets = rng.normal(size=(4, length, heads, value_dim))
    before = [w.copy() for w in model.get_weights()]
    history = model.fit(data, targets, batch_size=2, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    for w_before, w_after in zip(before, model.get_weights(), strict=True):
        assert not np.allclose(w_before, w_after)


def _bad(**changes):
    q, k, v, beta, s0 = make_inputs((2, 5, 3, 4, 6))
    args = dict(q=q, k=k, v=v, beta=beta, initial_state=s0)
    args.update(changes)
    return args


@pytest.mark.parametrize(
    "args, match",
    [
        (_bad(mode="fast"), r"`mode`.*'fast'"),
        (_bad(scale=np.ones((2,), "float32")), r"`scale`.*float"),
        (_bad(chunk_size=0), r"`chunk_size`.*positive integer, got 0"),
        (_bad(chunk_size=8.0), r"`chunk_size`"),
        (_bad(q=np.zeros((2, 5, 4), "float32")), r"`q`.*\(B, T, H, K\)"),
        (_bad(k=np.zeros((2, 5, 3, 5), "float32")), r"`k`.*\(2, 5, 3, 5\)"),
        (_bad(v=np.zeros((2, 4, 3, 6), "float32")), r"`v`.*\(2, 4, 3, 6\)"),
        (_bad(v=np.zeros((1, 5, 3, 6), "float32")), r"`v`.*\(1, 5, 3, 6\)"),
        (_bad(beta=np.zeros((2, 5), "float32")), r"`beta`.*\(B, T, H\)"),
        (_bad(beta=np.zeros((2, 5, 2), "float32")), r"`beta`.*\(2, 5, 2\)"),
        (_bad(q=np.zeros((2, 5, 3, 4), "int32")), r"`q`.*floating.*int32"),
        (_bad(beta=np.zeros((2, 5, 3), "int32")), r"`beta`.*floating"),
        (
            _bad(initial_state=np.zeros((2, 3, 6, 4), "float32")),
            r"`initial_state`.*\(B, H, K, V\).*\(2, 3, 6, 4\)",
        ),
    ],
)
def test_invalid_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        delta_rule(**args)


def test_invalid_step_arguments():
    q, k, v, beta, s0 = make_inputs((2, 1, 3, 4, 6))
    with pytest.raises(ValueError, match=r"`state`.*\(2, 3, 6, 6\)"):
        delta_rule_step(
            q[:, 0], k[:, 0], v[:, 0], beta[:, 0], np.zeros((2, 3, 6, 6))
        )
    with pytest.raises(ValueError, match=r"`beta_t`.*\(B, H\)"):
        delta_rule_step(q[:, 0], k[:, 0], v[:, 0], beta[:, 0, :2], s0)
    with pytest.raises(ValueError, match=r"`k_t`.*\(B, H, dim\)"):
        delta_rule_step(q[:, 0], k, v[:, 0], beta[:, 0], s0)
