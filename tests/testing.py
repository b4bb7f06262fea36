"""A keras-hub-style test helper that runs a model through its paces."""

import contextlib
import hashlib
import inspect

import keras
import numpy as np

from kerasseq.ops import dispatch


def run_model_test(make_model, inputs, labels, sample_weight=None):
    """Config round trip, symbolic and eager call, a fit step, a bfloat16
    call.

    Args:
        make_model: function of no arguments returning a fresh model (called
            again under the `mixed_bfloat16` policy).
        inputs: dict of numpy arrays, the model's inputs.
        labels: numpy labels for one `fit` step.
        sample_weight: optional numpy sample weights.
    """
    model = make_model()

    # eager call
    outputs = keras.ops.convert_to_numpy(model(inputs))
    assert np.all(np.isfinite(outputs))

    # symbolic call gives the eager shape
    symbolic = {
        k: keras.KerasTensor(v.shape, dtype=str(v.dtype))
        for k, v in inputs.items()
    }
    spec = model.compute_output_spec(symbolic)
    assert tuple(spec.shape) == outputs.shape

    # config round trip rebuilds the same architecture
    config = model.get_config()
    restored = model.__class__.from_config(config)
    assert restored.get_config() == config
    assert restored.count_params() == model.count_params()
    restored.set_weights(model.get_weights())
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(restored(inputs)), outputs, atol=1e-5
    )

    # one fit step changes the weights and gives a finite loss
    _fit_once(model, inputs, labels, sample_weight)

    # mixed precision: bfloat16 compute, float32 logits (training under
    # mixed policies: the large tests/models/test_mixed_precision.py)
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        mixed = make_model()
        mixed_outputs = mixed(inputs)
        assert keras.backend.standardize_dtype(mixed_outputs.dtype) == "float32"
        assert np.all(np.isfinite(keras.ops.convert_to_numpy(mixed_outputs)))
    finally:
        keras.mixed_precision.set_global_policy("float32")


def _fit_once(model, inputs, labels, sample_weight):
    before = [w.copy() for w in model.get_weights()]
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    if labels.dtype.kind == "f":
        loss = keras.losses.MeanSquaredError()
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2), loss=loss, jit_compile=True
    )
    history = model.fit(
        inputs,
        labels,
        sample_weight=sample_weight,
        batch_size=len(labels),
        epochs=1,
        verbose=0,
    )
    assert np.isfinite(history.history["loss"][0])
    changed = [
        not np.allclose(a, b)
        for a, b in zip(before, model.get_weights(), strict=False)
    ]
    assert any(changed)


def value_and_grad(fn, *args, jit=False):
    """`fn(*args)` (a scalar) and its gradients, on the active backend.

    With `jit=True` the forward and backward passes are compiled together
    with XLA, as `model.fit(jit_compile=True)` compiles a train step.
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        def both(*args):
            with tf.GradientTape() as tape:
                tape.watch(args)
                value = fn(*args)
            return value, tape.gradient(value, args)

        if jit:
            both = tf.function(both, jit_compile=True)
        value, grads = both(*[tf.convert_to_tensor(a) for a in args])
    elif backend == "jax":
        import jax

        argnums = tuple(range(len(args)))
        both = jax.value_and_grad(fn, argnums=argnums)
        if jit:
            both = jax.jit(both)
        value, grads = both(*args)
    else:
        raise NotImplementedError(f"no gradient helper for {backend}")
    return (
        keras.ops.convert_to_numpy(value),
        [keras.ops.convert_to_numpy(g) for g in grads],
    )


def compiled(fn):
    """`fn` compiled with XLA: `tf.function(jit_compile=True)` / `jax.jit`."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.function(fn, jit_compile=True)
    import jax

    return jax.jit(fn)


@contextlib.contextmanager
def float64():
    """Lets float64 references run: on JAX, switches x64 on for the block."""
    if keras.backend.backend() == "jax":
        import jax

        with jax.enable_x64(True):
            yield
    else:
        yield


_FLOAT64_RESULTS = {}


def in_float64(fn, *args, **kwargs):
    """`fn(*args, **kwargs)` on float64 (complex128) copies of its float
    (complex) NumPy arguments, under `float64()`; the results as NumPy.
    Runs the references of `kerasseq.ops.reference` in double precision.

    The references loop over time one eager step at a time, so results are
    kept by the arguments' contents: a test that checks every mode against
    the same inputs computes the reference once. On JAX, whose eager steps
    cost ~10x TensorFlow's (3.3 s against 0.18 s for a 1,000-step linear
    recurrence), a reference that takes `scan` loops with `lax.scan`
    (`dispatch.scan`): the same step function, compiled once.
    """

    def wide(x):
        if isinstance(x, np.ndarray) and x.dtype.kind in "fc":
            return x.astype(np.complex128 if x.dtype.kind == "c" else "f8")
        return x

    key = _content_key((fn, args, kwargs))
    if key is not None and key in _FLOAT64_RESULTS:
        return keras.tree.map_structure(np.copy, _FLOAT64_RESULTS[key])
    if (
        keras.backend.backend() == "jax"
        and "scan" in inspect.signature(fn).parameters
        and "scan" not in kwargs
    ):
        kwargs = {**kwargs, "scan": dispatch.scan}
    with float64():
        args, kwargs = keras.tree.map_structure(wide, (args, kwargs))
        result = fn(*args, **kwargs)
        result = keras.tree.map_structure(keras.ops.convert_to_numpy, result)
    if key is not None:
        _FLOAT64_RESULTS[key] = keras.tree.map_structure(np.copy, result)
    return result


def _content_key(x):
    """A hashable key of NumPy arrays (by contents), Python values and
    containers of them; `None` where anything else (a tensor) is inside."""
    if isinstance(x, np.ndarray):
        digest = hashlib.sha1(np.ascontiguousarray(x).tobytes()).hexdigest()
        return ("array", x.shape, x.dtype.str, digest)
    if isinstance(x, (tuple, list)):
        keys = [_content_key(y) for y in x]
        return None if None in keys else (type(x).__name__, *keys)
    if isinstance(x, dict):
        keys = [(k, _content_key(v)) for k, v in sorted(x.items())]
        return None if any(v is None for _, v in keys) else ("dict", *keys)
    if x is None or isinstance(x, (bool, int, float, complex, str)):
        return ("value", type(x).__name__, x)
    if callable(x):
        return ("function", x)
    return None


def rel_rms(x, ref):
    """Relative RMS error of `x` against `ref` (real or complex arrays)."""
    x = np.asarray(x).astype(np.complex128)
    ref = np.asarray(ref).astype(np.complex128)
    scale = np.sqrt(np.mean(np.abs(ref) ** 2))
    return np.sqrt(np.mean(np.abs(x - ref) ** 2)) / max(scale, 1e-30)


def time_steps(x):
    """`[x[:, t] for t in range(T)]` at the cost of one compiled op: an
    unstack on tensorflow, gathers on jax (whose eager slices compile once
    per index)."""
    if keras.backend.backend() == "jax":
        return [keras.ops.take(x, t, axis=1) for t in range(x.shape[1])]
    return keras.ops.unstack(x, axis=1)


def layer_weights(layer):
    """A layer's weights by path below the layer (`"in_proj/kernel"`,
    `"A_log"`), as float64 NumPy arrays for reference implementations."""
    return {
        w.path.split("/", 1)[1]: np.asarray(
            keras.ops.convert_to_numpy(w.value), np.float64
        )
        for w in layer.weights
    }


def perturb_weights(layer, rng, scale=0.1):
    """Adds `scale` times Gaussian noise to every weight, so that no term
    of a reference hides behind an initial value (ones, zeros, equal rows).
    """
    for w in layer.weights:
        value = keras.ops.convert_to_numpy(w.value)
        noise = scale * rng.normal(size=value.shape)
        w.assign((value + noise).astype(value.dtype))
    return layer


def step_through(layer, x, jit=False):
    """Runs `layer.step` over the time axis of `x` from the layer's initial
    state, as generation does.

    Returns:
        `(outputs, state)`: the per-step outputs stacked along axis 1 as
        NumPy, and the final state.
    """
    step = compiled(layer.step) if jit else layer.step
    state = layer.get_initial_state(x.shape[0], max_length=x.shape[1])
    outputs = []
    for x_t in time_steps(keras.ops.convert_to_tensor(x)):
        y, state = step(x_t, state)
        outputs.append(keras.ops.convert_to_numpy(y))
    return np.stack(outputs, 1), state


def assert_step_equals_call(layer, x, atol=1e-5, jit=False):
    """Stepping token by token reproduces the whole-sequence call."""
    full = keras.ops.convert_to_numpy(layer(x))
    stepped, state = step_through(layer, x, jit=jit)
    np.testing.assert_allclose(stepped, full, atol=atol)
    return state


def one_model_per_mixer():
    """Registered model names, one per (mixer class, causal, block type,
    output table) combination: models that differ only in mixer arguments
    (`deltanet_negeig` beside `deltanet`) or activation (`gpt2` beside
    `gpt`) have those tested in the layer tests, and need not pay for the
    whole-model tests twice; `pythia`'s parallel blocks and untied output
    are whole-model matters."""
    from kerasseq.models import MODELS

    seen = set()
    names = []
    for name, spec in MODELS.items():
        key = (
            spec.mixer,
            spec.causal,
            spec.backbone_args.get("block_type"),
            spec.head_args.get("tie_embeddings", True),
        )
        if key not in seen:
            seen.add(key)
            names.append(name)
    return names


def layer_gradients(layer, x, jit=False):
    """Gradients of `sum(layer(x)^2)` with respect to `x` and every
    trainable weight of a built layer, through `stateless_call`.

    Returns:
        list of NumPy arrays: the input's gradient, then one per weight in
        `layer.trainable_variables` order.
    """
    values = [
        keras.ops.convert_to_numpy(w.value) for w in layer.trainable_variables
    ]
    # e.g. the seed state of a layer with dropout: held fixed
    fixed = [w.value for w in layer.non_trainable_variables]

    def loss(x, *weights):
        outputs, _ = layer.stateless_call(weights, fixed, x)
        return keras.ops.sum(keras.ops.square(outputs))

    return value_and_grad(loss, x, *values, jit=jit)[1]


def is_traced(x):
    """Whether `x` is a tensor being traced for compilation (not a
    concrete value computed op by op)."""
    if keras.backend.backend() == "jax":
        import jax

        return isinstance(x, jax.core.Tracer)
    import tensorflow as tf

    return not tf.executing_eagerly()


def recording_traced_calls(model):
    """Wraps `model.call` to record, per call, whether its token ids were
    being traced for compilation; returns the list it appends to and a
    function that restores `model.call`."""
    seen = []
    call = model.call

    def recording(inputs, *args, **kwargs):
        seen.append(is_traced(inputs["token_ids"]))
        return call(inputs, *args, **kwargs)

    model.call = recording

    def restore():
        model.call = call

    return seen, restore
