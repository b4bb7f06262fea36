import functools
import importlib

import keras
import numpy as np
import pytest
from keras import ops

from kerasseq.ops import reference
from kerasseq.ops.selective_scan import selective_scan
from kerasseq.ops.selective_scan import selective_scan_step
from tests.ops.cases import finite_differences
from tests.testing import compiled
from tests.testing import float64
from tests.testing import in_float64
from tests.testing import rel_rms
from tests.testing import value_and_grad

MODES = ["recurrent", "chunk", "parallel"]
NAMES = [
    "u",
    "delta",
    "A",
    "B",
    "C",
    "D",
    "z",
    "delta_bias",
    "initial_state",
]
# (T, chunk_size, (batch, Dm, N, G)); G = None: B and C are (B, T, N)
CASES = [
    (1, 16, (2, 4, 3, None)),
    (7, 16, (1, 6, 2, 3)),
    (63, 32, (3, 8, 4, 2)),
    (100, 64, (2, 4, 3, None)),
    (1000, 32, (1, 4, 2, 2)),
]


def softplus(x):
    return np.logaddexp(0.0, x)


def weighted_loss(weights, state_weights, u, delta, A, B, C, *optional):
    """A weighted loss of the library's reference loop, for the backend's
    own autodiff: the full call with `optional` = (D, z, delta_bias,
    initial_state) and softplus, the bare call without."""
    D, z, delta_bias, h0 = optional if optional else (None,) * 4
    y, h = reference.selective_scan(
        u, delta, A, B, C, D, z, delta_bias, bool(optional), h0
    )
    return ops.sum(y * weights) + ops.sum(h * state_weights)


def numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x)).astype(np.float64)


def make_inputs(rng, length, shape, decay=(0.5, 4.0)):
    """All nine arguments of a full call as float32 arrays, in NAMES order.

    `delta` is raw (it goes through `delta_bias` and softplus); `A` has
    entries in -decay.
    """
    batch, channels, state, groups = shape
    grouped = () if groups is None else (groups,)
    sequence = (batch, length, channels)
    arrays = [
        rng.normal(size=sequence),
        rng.normal(size=sequence) - 1.0,
        -rng.uniform(*decay, size=(channels, state)),
        rng.normal(size=(batch, length, *grouped, state)),
        rng.normal(size=(batch, length, *grouped, state)),
        rng.normal(size=(channels,)),
        rng.normal(size=sequence),
        0.5 * rng.normal(size=(channels,)),
        rng.normal(size=(batch, channels, state)),
    ]
    return [x.astype(np.float32) for x in arrays]


def full_call(arrays, **kwargs):
    u, delta, A, B, C, D, z, delta_bias, h0 = arrays
    return selective_scan(
        u,
        delta,
        A,
        B,
        C,
        D=D,
        z=z,
        delta_bias=delta_bias,
        delta_softplus=True,
        initial_state=h0,
        return_final_state=True,
        **kwargs,
    )


def bare_call(arrays, **kwargs):
    """Only the five required arguments; `delta` must then be positive."""
    u, delta, A, B, C = arrays[:5]
    return selective_scan(u, delta, A, B, C, return_final_state=True, **kwargs)


def bare_arrays(arrays):
    u, delta, A, B, C = arrays[:5]
    return [u, softplus(delta).astype(np.float32), A, B, C]


@pytest.mark.parametrize("length,chunk_size,shape", CASES)
@pytest.mark.parametrize("mode", MODES)
def test_outputs_and_final_state(mode, length, chunk_size, shape):
    rng = np.random.default_rng(42)
    full = make_inputs(rng, length, shape)
    bare = bare_arrays(make_inputs(rng, length, shape))

    def run(*arrays):
        kwargs = dict(mode=mode, chunk_size=chunk_size)
        return full_call(arrays[:9], **kwargs), bare_call(arrays[9:], **kwargs)

    (y, state), (y_bare, state_bare) = compiled(run)(*full, *bare)
    y_ref, state_ref = in_float64(
        reference.selective_scan, *full[:8], True, full[8]
    )
    y_bare_ref, state_bare_ref = in_float64(reference.selective_scan, *bare)
    batch, channels, state_size = shape[:3]
    assert y.shape == (batch, length, channels)
    assert state.shape == (batch, channels, state_size)
    assert keras.backend.standardize_dtype(y.dtype) == "float32"
    assert keras.backend.standardize_dtype(state.dtype) == "float32"
    assert rel_rms(numpy(y), y_ref) < 1e-5
    assert rel_rms(numpy(state), state_ref) < 1e-5
    assert rel_rms(numpy(y_bare), y_bare_ref) < 1e-5
    assert rel_rms(numpy(state_bare), state_bare_ref) < 1e-5


@functools.cache
def expected_gradients(length, shape):
    """Loss and gradients by autodiff of the float64 reference loop, for the
    full and the bare call of `gradient_problem`."""
    full, bare, weights = gradient_problem(length, shape)
    with float64():
        wide = [x.astype(np.float64) for x in weights]
        full_ref = value_and_grad(
            functools.partial(weighted_loss, *wide[:2]),
            *(x.astype(np.float64) for x in full),
        )
        bare_ref = value_and_grad(
            functools.partial(weighted_loss, *wide[2:]),
            *(x.astype(np.float64) for x in bare),
        )
    return full_ref, bare_ref


def gradient_problem(length, shape):
    rng = np.random.default_rng(42)
    full = make_inputs(rng, length, shape)
    bare = bare_arrays(make_inputs(rng, length, shape))
    batch, channels, state_size = shape[:3]
    weights = [
        rng.normal(size=size).astype(np.float32)
        for size in [
            (batch, length, channels),
            (batch, channels, state_size),
        ]
        * 2
    ]
    return full, bare, weights


@pytest.mark.parametrize("length,chunk_size,shape", CASES)
@pytest.mark.parametrize("mode", MODES)
def test_gradients_match_autodiff_of_a_plain_loop(
    mode, length, chunk_size, shape
):
    full, bare, weights = gradient_problem(length, shape)

    def loss(*arrays):
        kwargs = dict(mode=mode, chunk_size=chunk_size)
        y, state = full_call(arrays[:9], **kwargs)
        y_bare, state_bare = bare_call(arrays[9:], **kwargs)
        return sum(
            ops.sum(x * w)
            for x, w in zip(
                (y, state, y_bare, state_bare), weights, strict=True
            )
        )

    value, grads = value_and_grad(loss, *full, *bare, jit=True)
    (full_value, full_grads), (bare_value, bare_grads) = expected_gradients(
        length, shape
    )
    np.testing.assert_allclose(
        value, full_value + bare_value, rtol=1e-4, atol=1e-4
    )
    names = NAMES + [f"{name} (bare call)" for name in NAMES[:5]]
    for name, grad, grad_ref in zip(
        names, grads, full_grads + bare_grads, strict=True
    ):
        assert grad.shape == grad_ref.shape, name
        assert grad.dtype == np.float32, name
        assert rel_rms(grad, grad_ref) < 1e-5, name


def test_recurrent_mode_in_blocks_of_batch_rows(monkeypatch):
    # at these sizes every batch row fits one block; shrink the budgets so
    # that the forward runs 3 blocks of 2 rows and the backward 2 of 3
    # (the package exports the function under the module's name)
    module = importlib.import_module("kerasseq.ops.selective_scan")

    length, shape = 37, (6, 8, 4, 2)
    row_bytes = 4 * shape[1] * shape[2]
    monkeypatch.setattr(module, "_FORWARD_BLOCK_BYTES", 2 * row_bytes)
    monkeypatch.setattr(module, "_BACKWARD_BLOCK_BYTES", 3 * row_bytes)
    full, bare, weights = gradient_problem(length, shape)

    def loss(*arrays):
        y, state = full_call(arrays, mode="recurrent", chunk_size=16)
        return ops.sum(y * weights[0]) + ops.sum(state * weights[1])

    value, grads = value_and_grad(loss, *full, jit=True)
    (value_ref, grads_ref), _ = expected_gradients(length, shape)
    np.testing.assert_allclose(value, value_ref, rtol=1e-4, atol=1e-4)
    for name, grad, grad_ref in zip(NAMES, grads, grads_ref, strict=True):
        assert rel_rms(grad, grad_ref) < 1e-5, name
    y, state = compiled(lambda *a: full_call(a, mode="recurrent"))(*full)
    y_ref, state_ref = in_float64(
        reference.selective_scan, *full[:8], True, full[8]
    )
    assert rel_rms(numpy(y), y_ref) < 1e-5
    assert rel_rms(numpy(state), state_ref) < 1e-5


@pytest.mark.parametrize("groups", [None, 2])
@pytest.mark.parametrize("mode", MODES)
def test_gradients_match_finite_differences(mode, groups):
    rng = np.random.default_rng(42)
    shape = (1, 4, 2, groups)
    arrays = make_inputs(rng, 5, shape)
    weights = rng.normal(size=(1, 5, 4)), rng.normal(size=(1, 4, 2))

    def numpy_loss(*arrays):
        y, state = in_float64(
            reference.selective_scan, *arrays[:8], True, arrays[8]
        )
        return np.sum(y * weights[0]) + np.sum(state * weights[1])

    def kernel_loss(*arrays):
        y, state = full_call(arrays, mode=mode, chunk_size=2)
        return ops.sum(y * weights[0].astype(np.float32)) + ops.sum(
            state * weights[1].astype(np.float32)
        )

    _, grads = value_and_grad(kernel_loss, *arrays, jit=True)
    wide = [x.astype(np.float64) for x in arrays]
    fds = finite_differences(numpy_loss, wide)
    for name, grad, expected in zip(NAMES, grads, fds, strict=True):
        np.testing.assert_allclose(
            grad, expected, rtol=1e-3, atol=1e-4, err_msg=name
        )


@pytest.mark.parametrize("mode", MODES)
def test_bfloat16_inputs(mode):
    rng = np.random.default_rng(42)
    arrays = [
        ops.cast(x, "bfloat16")
        for x in make_inputs(rng, 100, (2, 8, 4, 2), decay=(0.05, 1.0))
    ]

    def run(*arrays):
        return full_call(arrays, mode=mode, chunk_size=16)

    y, state = compiled(run)(*arrays)
    assert keras.backend.standardize_dtype(y.dtype) == "bfloat16"
    assert keras.backend.standardize_dtype(state.dtype) == "float32"
    rounded = [numpy(ops.cast(x, "float32")) for x in arrays]
    y_ref, state_ref = in_float64(
        reference.selective_scan, *rounded[:8], True, rounded[8]
    )
    assert rel_rms(numpy(ops.cast(y, "float32")), y_ref) < 5e-3
    assert rel_rms(numpy(state), state_ref) < 5e-3

    def loss(*arrays):
        return ops.sum(ops.cast(run(*arrays)[0], "float32"))

    _, grads = value_and_grad(loss, *arrays, jit=True)
    for name, grad in zip(NAMES, grads, strict=True):
        assert keras.backend.standardize_dtype(grad.dtype) == "bfloat16", name
        assert np.all(np.isfinite(numpy(grad))), name


@pytest.mark.parametrize("mode", MODES)
def test_split_sequence_with_carried_state_equals_one_run(mode):
    rng = np.random.default_rng(42)
    arrays = make_inputs(rng, 100, (2, 6, 3, 3))

    def run(*arrays):
        kwargs = dict(mode=mode, chunk_size=16)
        y, state = full_call(arrays, **kwargs)
        sequences = [0, 1, 3, 4, 6]  # arguments with a time axis
        first, second = list(arrays), list(arrays)
        for i in sequences:
            first[i], second[i] = arrays[i][:, :37], arrays[i][:, 37:]
        y1, carried = full_call(first, **kwargs)
        second[8] = carried
        y2, state_split = full_call(second, **kwargs)
        return (y, state), (ops.concatenate([y1, y2], axis=1), state_split)

    (y, state), (y_split, state_split) = compiled(run)(*arrays)
    np.testing.assert_allclose(numpy(y_split), numpy(y), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        numpy(state_split), numpy(state), rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("groups", [None, 3])
def test_step_equals_call(groups):
    rng = np.random.default_rng(42)
    u, delta, A, B, C, D, z, delta_bias, h0 = make_inputs(
        rng, 7, (2, 6, 3, groups)
    )
    y, state = full_call([u, delta, A, B, C, D, z, delta_bias, h0])
    step_state = h0
    for t in range(7):
        y_t, step_state = selective_scan_step(
            u[:, t],
            delta[:, t],
            A,
            B[:, t],
            C[:, t],
            D=D,
            z_t=z[:, t],
            delta_bias=delta_bias,
            delta_softplus=True,
            state=step_state,
        )
        np.testing.assert_allclose(numpy(y_t), numpy(y[:, t]), atol=1e-5)
    np.testing.assert_allclose(numpy(step_state), numpy(state), atol=1e-5)
    assert keras.backend.standardize_dtype(step_state.dtype) == "float32"

    # no state: the scan from zeros
    bare = bare_arrays([u, delta, A, B, C])
    y_bare = bare_call(bare)[0]
    y_0, _ = selective_scan_step(*(x[:, 0] if x.ndim > 2 else x for x in bare))
    np.testing.assert_allclose(numpy(y_0), numpy(y_bare[:, 0]), atol=1e-5)


@pytest.mark.parametrize("mode", MODES)
def test_long_sequences_stay_finite(mode):
    rng = np.random.default_rng(42)
    shape = (1, 2, 2, None)
    problems = [
        # decays exp(delta A) near zero, and near one
        make_inputs(rng, 16384, shape, decay=(50.0, 100.0)),
        make_inputs(rng, 16384, shape, decay=(1e-4, 1e-3)),
    ]

    def run(*arrays):
        return [
            full_call(arrays[i : i + 9], mode=mode, chunk_size=64)
            for i in range(0, len(arrays), 9)
        ]

    results = compiled(run)(*problems[0], *problems[1])
    for arrays, (y, state) in zip(problems, results, strict=True):
        y, state = numpy(y), numpy(state)
        assert np.all(np.isfinite(y)) and np.all(np.isfinite(state))
        y_ref, state_ref = in_float64(
            reference.selective_scan, *arrays[:8], True, arrays[8]
        )
        assert rel_rms(y, y_ref) < 1e-4
        assert rel_rms(state, state_ref) < 1e-4


def test_auto_mode_matches_recurrent():
    rng = np.random.default_rng(42)
    arrays = make_inputs(rng, 20, (2, 4, 3, None))
    auto = full_call(arrays, mode="auto")[0]
    recurrent = full_call(arrays, mode="recurrent")[0]
    np.testing.assert_allclose(numpy(auto), numpy(recurrent), rtol=1e-6)


def test_recurrent_forward_keeps_no_state_per_token():
    if keras.backend.backend() != "jax":
        pytest.skip("reads XLA's memory analysis through jax")
    import jax

    rng = np.random.default_rng(42)
    batch, length, channels, state_size = 2, 2048, 64, 16
    u, delta, A, B, C = make_inputs(
        rng, length, (batch, channels, state_size, None)
    )[:5]

    def run(u, delta, B, C):
        return selective_scan(u, delta, A, B, C, mode="recurrent")

    memory = jax.jit(run).lower(u, delta, B, C).compile().memory_analysis()
    states = batch * length * channels * state_size * 4
    inputs_and_outputs = (
        memory.argument_size_in_bytes + memory.output_size_in_bytes
    )
    # copies of the inputs are allowed, one (B, T, Dm, N) tensor is not
    assert memory.temp_size_in_bytes < 2 * inputs_and_outputs < states / 2


def test_unknown_length_is_a_clear_error():
    if keras.backend.backend() != "tensorflow":
        pytest.skip("jax traces with static lengths")
    import tensorflow as tf

    spec = tf.TensorSpec((2, None, 4))
    B_spec = tf.TensorSpec((2, None, 3))
    run = tf.function(
        lambda u, B: selective_scan(u, u, -np.ones((4, 3), "float32"), B, B)
    )
    with pytest.raises(
        ValueError, match=r"static sequence length.*\(2, None, 4\)"
    ):
        run.get_concrete_function(spec, B_spec)


@pytest.mark.parametrize("mode", MODES)
def test_trains_in_a_functional_model_with_unknown_batch_size(mode):
    # keras.Input leaves the batch size unknown when the model is traced;
    # fit and predict then run batches of 2 and a last one of 1
    rng = np.random.default_rng(42)
    length, channels, state_size = 12, 6, 4
    A = -np.exp(rng.normal(size=(channels, state_size))).astype("float32")
    x = keras.Input((length, channels))
    u, delta, B, C = (
        keras.layers.Dense(size)(x)
        for size in (channels, channels, state_size, state_size)
    )
    y = keras.layers.Lambda(
        lambda args: selective_scan(
            *args[:2], A, *args[2:], delta_softplus=True, mode=mode
        )
    )([u, delta, B, C])
    model = keras.Model(x, keras.layers.GlobalAveragePooling1D()(y))
    model.compile(optimizer="sgd", loss="mse", jit_compile=True)
    inputs = rng.normal(size=(5, length, channels)).astype("float32")
    targets = rng.normal(size=(5, channels)).astype("float32")
    before = [w.numpy() for w in model.trainable_weights]
    history = model.fit(inputs, targets, batch_size=2, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    changed = [
        not np.allclose(a, w.numpy())
        for a, w in zip(before, model.trainable_weights, strict=True)
    ]
    assert all(changed)
    predicted = model.predict(inputs, batch_size=2, verbose=0)
    np.testing.assert_allclose(predicted, numpy(model(inputs)), atol=1e-5)


def invalid(**changes):
    arguments = dict(
        u=np.ones((2, 5, 4), "float32"),
        delta=np.ones((2, 5, 4), "float32"),
        A=-np.ones((4, 3), "float32"),
        B=np.ones((2, 5, 3), "float32"),
        C=np.ones((2, 5, 3), "float32"),
    )
    arguments.update(changes)
    return arguments


@pytest.mark.parametrize(
    "arguments,match",
    [
        (invalid(mode="fast"), "`mode`.*'fast'"),
        (invalid(chunk_size=0), "`chunk_size`.*got 0"),
        (invalid(u=np.ones((2, 5), "float32")), r"`u`.*\(B, T, Dm\).*\(2, 5\)"),
        (invalid(u=np.ones((2, 5, 4), "int32")), "`u`.*floating.*int32"),
        (
            invalid(delta=np.ones((2, 6, 4), "float32")),
            r"`delta`.*\(2, 5, 4\).*\(2, 6, 4\)",
        ),
        (
            invalid(A=-np.ones((5, 3), "float32")),
            r"`A`.*\(Dm, N\).*\(5, 3\)",
        ),
        (
            invalid(A=-np.ones((4, 3), "complex64")),
            "`A`.*real.*complex64",
        ),
        (invalid(B=np.ones((2, 5), "float32")), r"`B`.*\(B, T, N\).*\(2, 5\)"),
        (
            invalid(B=np.ones((2, 5, 2), "float32")),
            r"`B`.*\(2, 5, 3\).*\(2, 5, 2\)",
        ),
        (
            invalid(
                B=np.ones((2, 5, 3, 3), "float32"),
                C=np.ones((2, 5, 3, 3), "float32"),
            ),
            r"`B`.*divides Dm = 4.*G = 3",
        ),
        (
            invalid(C=np.ones((2, 5, 2, 3), "float32")),
            r"`C`.*\(2, 5, 3\).*\(2, 5, 2, 3\)",
        ),
        (invalid(D=np.ones((5,), "float32")), r"`D`.*\(4,\).*\(5,\)"),
        (invalid(z=np.ones((2, 5, 3), "float32")), r"`z`.*\(2, 5, 4\)"),
        (
            invalid(delta_bias=np.ones((4, 1), "float32")),
            r"`delta_bias`.*\(4,\).*\(4, 1\)",
        ),
        (
            invalid(initial_state=np.ones((2, 4), "float32")),
            r"`initial_state`.*\(2, 4, 3\).*\(2, 4\)",
        ),
    ],
)
def test_invalid_arguments(arguments, match):
    with pytest.raises(ValueError, match=match):
        selective_scan(**arguments)


def test_step_invalid_arguments():
    with pytest.raises(ValueError, match=r"`state`.*\(2, 4, 3\).*\(2, 3, 4\)"):
        selective_scan_step(
            np.ones((2, 4), "float32"),
            np.ones((2, 4), "float32"),
            -np.ones((4, 3), "float32"),
            np.ones((2, 3), "float32"),
            np.ones((2, 3), "float32"),
            state=np.ones((2, 3, 4), "float32"),
        )
