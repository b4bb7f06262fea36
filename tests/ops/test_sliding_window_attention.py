import functools
import math
import re

import keras
import numpy as np
import pytest
from keras import ops

from kerasseq.ops import reference
from kerasseq.ops.sliding_window_attention import sliding_window_attention
from tests.ops.cases import numpy
from tests.testing import compiled
from tests.testing import float64
from tests.testing import in_float64
from tests.testing import rel_rms
from tests.testing import value_and_grad

# (B, T, H, K, V, window): odd lengths, windows that do not divide them, a
# window longer than the sequence (one chunk), K != V
FORWARD_CASES = [
    (2, 1, 2, 8, 8, 4),
    (2, 7, 2, 8, 4, 4),
    (1, 63, 2, 8, 8, 10),
    (2, 100, 2, 8, 16, 16),
    (2, 63, 1, 4, 4, 200),
    (1, 1000, 1, 4, 4, 30),
]
VARIANTS = [(False, 1), (False, 2), (True, 1), (True, 2)]
# (case, (causal, dilation)): every variant at T = 7, two at the others
GRAD_CASES = [((2, 7, 2, 4, 4, 4), variant) for variant in VARIANTS] + [
    ((1, 1, 1, 4, 4, 2), (False, 1)),
    ((1, 1, 1, 4, 4, 2), (True, 2)),
    ((1, 63, 2, 8, 4, 10), (False, 2)),
    ((1, 63, 2, 8, 4, 10), (True, 1)),
    ((2, 100, 1, 4, 8, 16), (False, 1)),
    ((2, 100, 1, 4, 8, 16), (True, 2)),
    ((1, 1000, 1, 4, 4, 30), (False, 2)),
    ((1, 1000, 1, 4, 4, 30), (True, 1)),
]
# JAX compiles eager ops one by one: XLA-compile whole functions there
JIT = keras.backend.backend() == "jax"
NUM_GLOBAL = 3


def case_id(value):
    if isinstance(value, tuple) and len(value) == 6:
        return "B{}-T{}-H{}-K{}-V{}-w{}".format(*value)
    if isinstance(value, tuple):
        return ("causal" if value[0] else "bidirectional") + f"-d{value[1]}"
    return str(value)


def window_for(case, causal):
    # an odd window where causal (allowed there)
    return max(1, case[5] - 1) if causal else case[5]


def make_inputs(case, extras, seed=42):
    """q, k, v and, with `extras`, a key mask (holes and a padded tail) and
    three global keys with one unused slot per row after the first."""
    batch, length, heads, key_dim, value_dim = case[:5]
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(batch, length, heads, key_dim))
    k = rng.normal(size=(batch, length, heads, key_dim))
    v = rng.normal(size=(batch, length, heads, value_dim))
    args = [x.astype(np.float32) for x in (q, k, v)]
    if not extras:
        return args, {}
    key_mask = rng.uniform(size=(batch, length)) > 0.2
    key_mask[-1, 2 * length // 3 :] = False
    global_keys = rng.normal(size=(batch, NUM_GLOBAL, heads, key_dim))
    global_values = rng.normal(size=(batch, NUM_GLOBAL, heads, value_dim))
    global_key_mask = np.ones((batch, NUM_GLOBAL), bool)
    global_key_mask[1:, 1] = False
    kwargs = dict(
        key_mask=key_mask,
        global_keys=global_keys.astype(np.float32),
        global_values=global_values.astype(np.float32),
        global_key_mask=global_key_mask,
    )
    return args, kwargs


def call(causal, dilation, window, **kwargs):
    def fn(q, k, v):
        return sliding_window_attention(
            q, k, v, window, causal=causal, dilation=dilation, **kwargs
        )

    return fn


@pytest.mark.parametrize("extras", [False, True], ids=["plain", "masked"])
@pytest.mark.parametrize("variant", VARIANTS, ids=case_id)
@pytest.mark.parametrize("case", FORWARD_CASES, ids=case_id)
def test_forward_matches_dense_reference(case, variant, extras):
    causal, dilation = variant
    window = window_for(case, causal)
    (q, k, v), kwargs = make_inputs(case, extras)
    fn = call(causal, dilation, window, **kwargs)
    o = (compiled(fn) if JIT else fn)(q, k, v)
    assert tuple(o.shape) == case[:3] + (case[4],)
    assert keras.backend.standardize_dtype(o.dtype) == "float32"
    expected = in_float64(
        reference.sliding_window_attention,
        q,
        k,
        v,
        window,
        causal,
        dilation,
        **kwargs,
    )
    assert rel_rms(numpy(o), expected) < 2e-6


@pytest.mark.parametrize("variant", [(False, 2), (True, 1)], ids=case_id)
def test_compiled_forward(variant):
    causal, dilation = variant
    case = (2, 100, 2, 8, 4, 12)
    window = window_for(case, causal)
    (q, k, v), kwargs = make_inputs(case, extras=True)
    fn = compiled(call(causal, dilation, window, **kwargs))
    expected = in_float64(
        reference.sliding_window_attention,
        q,
        k,
        v,
        window,
        causal,
        dilation,
        **kwargs,
    )
    assert rel_rms(numpy(fn(q, k, v)), expected) < 2e-6


def loss_weights(case, seed=7):
    batch, length, heads, _, value_dim = case[:5]
    rng = np.random.default_rng(seed)
    return rng.normal(size=(batch, length, heads, value_dim))


@functools.cache
def expected_gradients(case, variant, extras):
    """Loss and gradients by autodiff of the library's dense reference in
    float64."""
    causal, dilation = variant
    window = window_for(case, causal)
    (q, k, v), kwargs = make_inputs(case, extras)
    masks = (kwargs.get("key_mask"), kwargs.get("global_key_mask"))
    w_o = loss_weights(case)

    def loss(q, k, v, *globals_):
        gk, gv = globals_ or (None, None)
        o = reference.sliding_window_attention(
            q,
            k,
            v,
            window,
            causal,
            dilation,
            key_mask=masks[0],
            global_keys=gk,
            global_values=gv,
            global_key_mask=masks[1],
        )
        return ops.sum(o * w_o)

    inputs = [q, k, v]
    if extras:
        inputs += [kwargs["global_keys"], kwargs["global_values"]]
    with float64():
        inputs = [x.astype(np.float64) for x in inputs]
        return value_and_grad(loss, *inputs, jit=JIT)


def check_gradients(case, variant, extras, jit):
    causal, dilation = variant
    window = window_for(case, causal)
    (q, k, v), kwargs = make_inputs(case, extras)
    w_o = loss_weights(case).astype(np.float32)
    masks = {
        key: kwargs[key] for key in ("key_mask", "global_key_mask") if extras
    }

    def loss(q, k, v, *globals_):
        if globals_:
            gk, gv = globals_
            masks.update(global_keys=gk, global_values=gv)
        o = call(causal, dilation, window, **masks)(q, k, v)
        return ops.sum(o * w_o)

    inputs = [q, k, v]
    if extras:
        inputs += [kwargs["global_keys"], kwargs["global_values"]]
    value, grads = value_and_grad(loss, *inputs, jit=jit)
    value_ref, grads_ref = expected_gradients(case, variant, extras)
    np.testing.assert_allclose(value, value_ref, rtol=1e-5, atol=1e-5)
    names = ("q", "k", "v", "global_keys", "global_values")
    for name, g, g_ref in zip(names, grads, grads_ref, strict=False):
        assert g.shape == g_ref.shape, name
        assert rel_rms(g, g_ref) < 1e-5, name


@pytest.mark.parametrize("case, variant", GRAD_CASES, ids=case_id)
def test_gradients_match_autodiff_reference(case, variant):
    check_gradients(case, variant, extras=True, jit=JIT)


@pytest.mark.parametrize(
    "variant, extras",
    [((False, 2), False), ((True, 1), True)],
    ids=["bidirectional-d2-plain", "causal-d1-masked"],
)
def test_gradients_under_xla(variant, extras):
    check_gradients((2, 37, 2, 4, 8, 6), variant, extras, jit=True)


def test_rows_without_keys_are_zero_with_zero_gradient():
    # the padded tail beyond one side of the window sees no allowed key
    case = (2, 20, 2, 4, 4, 4)
    (q, k, v), _ = make_inputs(case, extras=False)
    key_mask = np.ones((2, 20), bool)
    key_mask[1, 12:] = False
    empty = np.zeros((2, 20), bool)
    empty[1, 15:] = True
    o = sliding_window_attention(q, k, v, 4, key_mask=key_mask)
    o = numpy(o)
    assert np.all(np.isfinite(o))
    np.testing.assert_array_equal(o[empty], 0.0)

    def loss(q, k, v):
        o = sliding_window_attention(q, k, v, 4, key_mask=key_mask)
        return ops.sum(ops.where(empty[:, :, None, None], o, 0.0))

    _, grads = value_and_grad(loss, q, k, v, jit=True)
    for g in grads:
        np.testing.assert_array_equal(g, 0.0)


def test_bfloat16_inputs():
    case = (2, 100, 2, 16, 16, 16)
    (q, k, v), kwargs = make_inputs(case, extras=True)
    for key in ("global_keys", "global_values"):
        kwargs[key] = ops.cast(kwargs[key], "bfloat16")
    q, k, v = (ops.cast(x, "bfloat16") for x in (q, k, v))
    o = compiled(call(False, 2, 16, **kwargs))(q, k, v)
    assert keras.backend.standardize_dtype(o.dtype) == "bfloat16"
    # the reference sees the same bfloat16-rounded numbers
    for key in ("global_keys", "global_values"):
        kwargs[key] = numpy(kwargs[key])
    q, k, v = (numpy(x) for x in (q, k, v))
    expected = in_float64(
        reference.sliding_window_attention, q, k, v, 16, False, 2, **kwargs
    )
    assert rel_rms(numpy(o), expected) < 1e-2


def largest_array(fn, *args):
    """Elements of the largest array in the XLA program of `fn(*args)`, as
    traced (every intermediate, before fusion)."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        compiled_fn = tf.function(fn, jit_compile=True)
        text = compiled_fn.experimental_get_compiler_ir(*args)(stage="hlo")
    else:
        import jax

        text = jax.jit(fn).lower(*args).as_text(dialect="hlo")
    shapes = re.findall(
        r"\b(?:pred|s32|s64|f16|bf16|f32|f64)\[([\d,]*)\]", text
    )
    return max(math.prod(int(d) for d in s.split(",") if d) for s in shapes)


def forward_and_gradients(fn):
    """`fn(q, k, v)`'s output and the gradients of its sum, traced
    together."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        def both(q, k, v):
            with tf.GradientTape() as tape:
                tape.watch((q, k, v))
                o = fn(q, k, v)
            return o, tape.gradient(ops.sum(o), (q, k, v))

        return both
    import jax

    def both(q, k, v):
        o, pullback = jax.vjp(fn, q, k, v)
        return o, pullback(ops.ones_like(o))

    return both


def test_never_builds_a_length_squared_array():
    # T^2 = 4.2M elements; the band holds T * 3 * window / 2 = 98k
    length, window = 2048, 32
    (q, k, v), _ = make_inputs((1, length, 1, 4, 4), extras=False)
    q, k, v = (ops.convert_to_tensor(x) for x in (q, k, v))
    banded = forward_and_gradients(call(False, 2, window))
    assert largest_array(banded, q, k, v) <= 2 * length * window
    causal = forward_and_gradients(call(True, 1, window))
    assert largest_array(causal, q, k, v) <= 2 * length * window

    # the measure sees the (T, T) scores of dense attention
    def dense(q, k, v):
        weights = ops.softmax(ops.einsum("bthk,bshk->bhts", q, k), axis=-1)
        return ops.einsum("bhts,bshv->bthv", weights, v)

    assert largest_array(forward_and_gradients(dense), q, k, v) >= length**2


def _bad(**changes):
    (q, k, v), kwargs = make_inputs((2, 5, 3, 4, 6), extras=True)
    args = dict(q=q, k=k, v=v, window=4, **kwargs)
    args.update(changes)
    return args


@pytest.mark.parametrize(
    "args, match",
    [
        (_bad(window=0), r"`window`.*positive integer, got 0"),
        (_bad(window=2.0), r"`window`.*positive integer, got 2.0"),
        (_bad(window=5), r"`window`.*even integer when causal=False.*got 5"),
        (_bad(dilation=0), r"`dilation`.*positive integer, got 0"),
        (_bad(dilation=True), r"`dilation`.*positive integer, got True"),
        (_bad(q=np.zeros((2, 5, 4), "float32")), r"`q`.*\(B, T, H, K\)"),
        (_bad(k=np.zeros((2, 5, 3, 5), "float32")), r"`k`.*\(2, 5, 3, 5\)"),
        (_bad(v=np.zeros((2, 4, 3, 6), "float32")), r"`v`.*\(2, 4, 3, 6\)"),
        (_bad(k=np.zeros((2, 5, 3, 4), "int32")), r"`k`.*floating.*int32"),
        (
            _bad(key_mask=np.ones((2, 6), bool)),
            r"`key_mask`.*\(B, T\) = \(2, 5\).*\(2, 6\)",
        ),
        (_bad(global_values=None), r"`global_keys` and `global_values`"),
        (
            _bad(global_keys=np.zeros((2, 3, 3, 5), "float32")),
            r"`global_keys`.*\(B, G, H, K\).*\(2, 3, 3, 5\)",
        ),
        (
            _bad(global_values=np.zeros((2, 2, 3, 6), "float32")),
            r"`global_values`.*\(B, G, H, V\).*\(2, 2, 3, 6\)",
        ),
        (
            _bad(global_key_mask=np.ones((2, 4), bool)),
            r"`global_key_mask`.*\(B, G\) = \(2, 3\).*\(2, 4\)",
        ),
    ],
)
def test_invalid_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        sliding_window_attention(**args)


def test_odd_window_allowed_when_causal():
    (q, k, v), _ = make_inputs((1, 9, 1, 4, 4), extras=False)
    o = sliding_window_attention(q, k, v, 3, causal=True)
    expected = in_float64(
        reference.sliding_window_attention, q, k, v, 3, True, 1
    )
    assert rel_rms(numpy(o), expected) < 2e-6
