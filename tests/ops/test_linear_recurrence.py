import functools

import keras
import numpy as np
import pytest
from keras import ops

from kerasseq.ops import reference
from kerasseq.ops.linear_recurrence import linear_recurrence
from kerasseq.ops.linear_recurrence import linear_recurrence_step
from tests.ops.cases import finite_differences
from tests.testing import compiled
from tests.testing import float64
from tests.testing import in_float64
from tests.testing import rel_rms
from tests.testing import value_and_grad

MODES = ["recurrent", "chunk", "parallel"]
# (T, chunk_size): odd lengths, each chunk size, one length below it
LENGTHS = [(1, 16), (7, 16), (63, 32), (100, 64), (1000, 32)]


def make_inputs(rng, shape, complex_=False, low=0.0, high=0.99):
    """Decays with |a| in [low, high] (random signs or phases), normal
    inputs and initial state, float32 or complex64."""
    magnitude = rng.uniform(low, high, shape)
    state_shape = shape[:1] + shape[2:]
    if complex_:
        a = magnitude * np.exp(1j * rng.uniform(-np.pi, np.pi, shape))
        b = rng.normal(size=shape) + 1j * rng.normal(size=shape)
        h0 = rng.normal(size=state_shape) + 1j * rng.normal(size=state_shape)
        return [x.astype(np.complex64) for x in (a, b, h0)]
    a = magnitude * rng.choice([-1.0, 1.0], shape)
    b = rng.normal(size=shape)
    h0 = rng.normal(size=state_shape)
    return [x.astype(np.float32) for x in (a, b, h0)]


def numpy(x):
    return keras.ops.convert_to_numpy(x)


@pytest.mark.parametrize("length,chunk_size", LENGTHS)
@pytest.mark.parametrize("mode", MODES)
def test_outputs_and_final_state(mode, length, chunk_size):
    rng = np.random.default_rng(42)
    real = make_inputs(rng, (2, length, 3))
    cplx = make_inputs(rng, (2, length, 2, 2), complex_=True)
    # (inputs, reverse, with initial state)
    cases = [
        (real, False, True),
        (real, True, False),
        (cplx, False, False),
        (cplx, True, True),
    ]

    def run(*arrays):
        results = []
        for inputs, reverse, with_state in cases:
            a, b, h0 = arrays[:3] if inputs is real else arrays[3:]
            results.append(
                linear_recurrence(
                    a,
                    b,
                    h0 if with_state else None,
                    return_final_state=True,
                    reverse=reverse,
                    mode=mode,
                    chunk_size=chunk_size,
                )
            )
        return results

    results = compiled(run)(*real, *cplx)
    for (inputs, reverse, with_state), (h, state) in zip(
        cases, results, strict=True
    ):
        h_ref, state_ref = in_float64(
            reference.linear_recurrence,
            *inputs[:2],
            inputs[2] if with_state else None,
            reverse,
        )
        dtype = "float32" if inputs is real else "complex64"
        assert keras.backend.standardize_dtype(h.dtype) == dtype
        assert keras.backend.standardize_dtype(state.dtype) == dtype
        assert h.shape == h_ref.shape and state.shape == state_ref.shape
        assert rel_rms(numpy(h), h_ref) < 1e-5
        assert rel_rms(numpy(state), state_ref) < 1e-5


def weighted_loss(h, state, weights, state_weights):
    """A real loss that touches the real and imaginary part of every
    output and of the final state."""
    return ops.sum(ops.real(h * weights)) + ops.sum(
        ops.real(state * state_weights)
    )


# (T, chunk_size, reverse); the initial state is left out at T = 63
GRADIENT_CASES = [
    (1, 16, False),
    (7, 16, True),
    (63, 32, False),
    (100, 64, True),
    (1000, 32, False),
    (1000, 64, True),
]


def gradient_problem(length):
    """One real and one complex problem: (a, b, initial_state) each, and
    weights (h, final state) for each."""
    rng = np.random.default_rng(42)
    shape = (2, length, 3)
    real, cplx = make_inputs(rng, shape), make_inputs(rng, shape, True)
    weights = make_inputs(rng, shape)[1:], make_inputs(rng, shape, True)[1:]
    return (real, cplx), weights


@functools.cache
def expected_gradients(length, reverse, with_state):
    """Loss and gradients by autodiff of the float64 reference loop."""
    problems, weights = gradient_problem(length)
    with float64():
        args, split = [], []
        for inputs, wide in zip(
            problems, (np.float64, np.complex128), strict=True
        ):
            inputs = [x.astype(wide) for x in inputs]
            args += inputs if with_state else inputs[:2]
            split.append(len(args))

        def loss(*args):
            total = 0.0
            starts = (0, split[0])
            wides = (np.float64, np.complex128)
            for start, wide, problem_weights in zip(
                starts, wides, weights, strict=True
            ):
                a, b = args[start : start + 2]
                h0 = args[start + 2] if with_state else ops.zeros_like(a[:, 0])
                w, w_state = (x.astype(wide) for x in problem_weights)
                h, h_last = reference.linear_recurrence(a, b, h0, reverse)
                total = total + weighted_loss(h, h_last, w, w_state)
            return total

        return value_and_grad(loss, *args)


@pytest.mark.parametrize("length,chunk_size,reverse", GRADIENT_CASES)
@pytest.mark.parametrize("mode", MODES)
def test_gradients_match_autodiff_of_a_plain_loop(
    mode, length, chunk_size, reverse
):
    with_state = length != 63
    (real, cplx), weights = gradient_problem(length)
    if not with_state:
        real, cplx = real[:2], cplx[:2]
    split = len(real)

    def loss(*args):
        total = 0.0
        for inputs, (w, w_state) in zip(
            (args[:split], args[split:]), weights, strict=True
        ):
            h, state = linear_recurrence(
                *inputs,
                return_final_state=True,
                reverse=reverse,
                mode=mode,
                chunk_size=chunk_size,
            )
            total = (
                total
                + ops.sum(ops.real(h * w))
                + ops.sum(ops.real(state * w_state))
            )
        return total

    value, grads = value_and_grad(loss, *real, *cplx, jit=True)
    value_ref, grads_ref = expected_gradients(length, reverse, with_state)
    np.testing.assert_allclose(value, value_ref, rtol=1e-4, atol=1e-4)
    assert len(grads) == len(grads_ref)
    names = ["a", "b", "initial_state"][:split] * 2
    for name, grad, grad_ref in zip(names, grads, grads_ref, strict=True):
        assert grad.shape == grad_ref.shape
        wide = np.iscomplexobj(grad_ref)
        assert grad.dtype == (np.complex64 if wide else np.float32)
        assert rel_rms(grad, grad_ref) < 1e-5, name


@pytest.mark.parametrize("complex_", [False, True])
@pytest.mark.parametrize("mode", MODES)
def test_gradients_match_finite_differences(mode, complex_):
    rng = np.random.default_rng(42)
    shape = (1, 5, 2)
    forward = make_inputs(rng, shape, complex_, low=0.3)
    backward = make_inputs(rng, shape, complex_, low=0.3)
    wide = np.complex128 if complex_ else np.float64
    weights = [x.astype(wide) for x in make_inputs(rng, shape, complex_)[1:]]

    def numpy_loss(*args):
        total = 0.0
        for inputs, reverse in ((args[:3], False), (args[3:], True)):
            h, state = in_float64(
                reference.linear_recurrence, *inputs, reverse=reverse
            )
            total += np.sum(np.real(h * weights[0]))
            total += np.sum(np.real(state * weights[1]))
        return total

    def kernel_loss(*args):
        total = 0.0
        for inputs, reverse in ((args[:3], False), (args[3:], True)):
            h, state = linear_recurrence(
                *inputs,
                return_final_state=True,
                reverse=reverse,
                mode=mode,
                chunk_size=2,
            )
            total = total + weighted_loss(
                h, state, *(ops.cast(w, h.dtype) for w in weights)
            )
        return total

    _, grads = value_and_grad(kernel_loss, *forward, *backward, jit=True)
    args = [x.astype(wide) for x in forward + backward]
    directions = (1.0, 1j) if complex_ else (1.0,)
    fds = finite_differences(numpy_loss, args, directions=directions)
    for grad, expected in zip(grads, fds, strict=True):
        # for a real loss of z = x + iy, tensorflow's gradient is
        # dL/dx + i dL/dy and jax's its conjugate
        if complex_ and keras.backend.backend() == "jax":
            expected = np.conj(expected)
        np.testing.assert_allclose(grad, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("mode", MODES)
def test_bfloat16_inputs(mode):
    rng = np.random.default_rng(42)
    a, b, h0 = make_inputs(rng, (2, 100, 8))
    a, b, h0 = (ops.cast(x, "bfloat16") for x in (a, b, h0))

    def run(a, b, h0):
        return linear_recurrence(
            a, b, h0, return_final_state=True, mode=mode, chunk_size=16
        )

    h, state = compiled(run)(a, b, h0)
    assert keras.backend.standardize_dtype(h.dtype) == "bfloat16"
    assert keras.backend.standardize_dtype(state.dtype) == "float32"
    rounded = [numpy(ops.cast(x, "float32")) for x in (a, b, h0)]
    h_ref, state_ref = in_float64(reference.linear_recurrence, *rounded)
    assert rel_rms(numpy(ops.cast(h, "float32")), h_ref) < 5e-3
    assert rel_rms(numpy(state), state_ref) < 5e-3

    def loss(a, b, h0):
        return ops.sum(ops.cast(run(a, b, h0)[0], "float32"))

    _, grads = value_and_grad(loss, a, b, h0, jit=True)
    for grad in grads:
        assert keras.backend.standardize_dtype(grad.dtype) == "bfloat16"
        assert np.all(np.isfinite(grad.astype(np.float32)))


@pytest.mark.parametrize("mode", MODES)
def test_split_sequence_with_carried_state_equals_one_run(mode):
    rng = np.random.default_rng(42)
    real = make_inputs(rng, (2, 100, 3))
    cplx = make_inputs(rng, (2, 100, 3), complex_=True)

    def split_run(a, b, h0, reverse):
        kwargs = dict(
            return_final_state=True, reverse=reverse, mode=mode, chunk_size=16
        )
        whole = linear_recurrence(a, b, h0, **kwargs)
        # a reverse run starts from the end, so the end goes first
        first, second = slice(0, 37), slice(37, None)
        if reverse:
            first, second = second, first
        h1, state = linear_recurrence(a[:, first], b[:, first], h0, **kwargs)
        h2, state = linear_recurrence(
            a[:, second], b[:, second], state, **kwargs
        )
        parts = [h2, h1] if reverse else [h1, h2]
        return whole, (ops.concatenate(parts, axis=1), state)

    def run(*arrays):
        return [
            split_run(*arrays[:3], reverse=False),
            split_run(*arrays[3:], reverse=True),
        ]

    for whole, parts in compiled(run)(*real, *cplx):
        for x, y in zip(parts, whole, strict=True):
            np.testing.assert_allclose(numpy(x), numpy(y), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("complex_", [False, True])
def test_step_equals_call(complex_):
    rng = np.random.default_rng(42)
    a, b, h0 = make_inputs(rng, (2, 7, 3), complex_)
    h, state = linear_recurrence(a, b, h0, return_final_state=True)
    step_state = h0
    for t in range(7):
        h_t, step_state = linear_recurrence_step(a[:, t], b[:, t], step_state)
        assert h_t.dtype == h.dtype
        np.testing.assert_allclose(numpy(h_t), numpy(h[:, t]), rtol=1e-6)
    np.testing.assert_allclose(numpy(step_state), numpy(state), rtol=1e-6)
    h_0, _ = linear_recurrence_step(a[:, 0], b[:, 0], None)
    np.testing.assert_allclose(numpy(h_0), b[:, 0])


@pytest.mark.parametrize("mode", MODES)
def test_long_sequences_stay_finite(mode):
    rng = np.random.default_rng(42)
    shape = (1, 16384, 2)
    problems = [
        make_inputs(rng, shape, complex_, low=low, high=high)
        for complex_ in (False, True)
        # decays near zero, decays near one
        for low, high in ((0.0, 1e-3), (1 - 1e-4, 1.0))
    ]

    def run(*arrays):
        return [
            linear_recurrence(
                *arrays[i : i + 3],
                return_final_state=True,
                mode=mode,
                chunk_size=64,
            )
            for i in range(0, len(arrays), 3)
        ]

    results = compiled(run)(*[x for inputs in problems for x in inputs])
    for inputs, (h, state) in zip(problems, results, strict=True):
        h, state = numpy(h), numpy(state)
        assert np.all(np.isfinite(h)) and np.all(np.isfinite(state))
        h_ref, state_ref = in_float64(reference.linear_recurrence, *inputs)
        assert rel_rms(h, h_ref) < 1e-4
        assert rel_rms(state, state_ref) < 1e-4


def test_auto_mode_matches_recurrent():
    rng = np.random.default_rng(42)
    a, b, h0 = make_inputs(rng, (2, 50, 3))
    auto = linear_recurrence(a, b, h0, mode="auto")
    recurrent = linear_recurrence(a, b, h0, mode="recurrent")
    np.testing.assert_allclose(numpy(auto), numpy(recurrent), rtol=1e-6)


def test_mixed_real_decays_and_complex_inputs():
    rng = np.random.default_rng(42)
    a = make_inputs(rng, (2, 9, 3))[0]
    b = make_inputs(rng, (2, 9, 3), complex_=True)[1]
    h = linear_recurrence(a, b, mode="recurrent")
    assert keras.backend.standardize_dtype(h.dtype) == "complex64"
    assert (
        rel_rms(numpy(h), in_float64(reference.linear_recurrence, a, b)[0])
        < 1e-6
    )


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(mode="fast"), "`mode`.*'fast'"),
        (dict(chunk_size=0), "`chunk_size`.*got 0"),
        (dict(chunk_size=-4), "`chunk_size`.*got -4"),
        (dict(chunk_size=2.5), "`chunk_size`.*got 2.5"),
        (dict(a=np.ones((4,), "float32")), r"`a`.*\(B, T, \.\.\.\).*\(4,\)"),
        (
            dict(b=np.ones((2, 5, 4), "float32")),
            r"`b`.*\(2, 5, 3\).*\(2, 5, 4\)",
        ),
        (
            dict(initial_state=np.ones((2, 5, 3), "float32")),
            r"`initial_state`.*\(2, 3\).*\(2, 5, 3\)",
        ),
        (dict(a=np.ones((2, 5, 3), "int32")), "`a`.*floating.*int32"),
        (dict(b=np.ones((2, 5, 3), "int32")), "`b`.*floating.*int32"),
    ],
)
def test_invalid_arguments(kwargs, match):
    arguments = dict(
        a=np.ones((2, 5, 3), "float32"), b=np.ones((2, 5, 3), "float32")
    )
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=match):
        linear_recurrence(**arguments)


def test_step_invalid_arguments():
    with pytest.raises(ValueError, match=r"`state`.*\(2, 3\).*\(2, 4\)"):
        linear_recurrence_step(
            np.ones((2, 3), "float32"),
            np.ones((2, 3), "float32"),
            np.ones((2, 4), "float32"),
        )
