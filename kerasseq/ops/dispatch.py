"""The one place where kerasseq talks to a backend directly.

`keras.ops` covers almost everything; what it cannot express portably lives
here so that ops and layers stay backend-free:

- `scan`: a compiled loop over a leading time axis whose per-step outputs
  need not match the carry. On TensorFlow, `keras.ops.scan` requires them to
  match and fails under XLA once gradients are taken; a `tf.while_loop` with
  `maximum_iterations` and TensorArrays compiles forward and backward. On
  JAX it is `jax.lax.scan`.
- `compile_function`: XLA-compiles a Python function for repeated calls.
"""

import keras


def _backend():
    return keras.backend.backend()


def scan(fn, init, xs, reverse=False, unroll=1):
    """Loops `fn` over the leading axis of `xs`, carrying a state.

    Args:
        fn: `fn(carry, x) -> (carry, y)`; `carry`, `x` and `y` may be nested
            structures (lists, tuples, dicts) of tensors.
        init: initial carry.
        xs: nested structure of tensors sharing a static leading length T.
        reverse: bool. Loop from t = T - 1 down to 0; `ys` stays in time
            order.
        unroll: int. Steps per loop iteration (a hint; JAX only).

    Returns:
        `(carry, ys)`: the final carry and `y` stacked along a new leading
        axis of length T.
    """
    if _backend() == "jax":
        import jax

        return jax.lax.scan(fn, init, xs, reverse=reverse, unroll=unroll)
    if _backend() != "tensorflow":
        raise NotImplementedError(
            f"kerasseq scans support the tensorflow and jax backends, not "
            f"{_backend()!r}."
        )
    return _tf_scan(fn, init, xs, reverse)


def _tf_scan(fn, init, xs, reverse):
    import tensorflow as tf

    flat_xs = tf.nest.flatten(xs)
    length = flat_xs[0].shape[0]
    if length is None:
        length = tf.shape(flat_xs[0])[0]
    x_arrays = [
        tf.TensorArray(x.dtype, size=length, infer_shape=True).unstack(x)
        for x in flat_xs
    ]
    # trace one step to learn the structure and dtypes of y
    y_spec = tf.nest.map_structure(
        lambda t: tf.TensorSpec(t.shape, t.dtype),
        _first_y(fn, init, xs),
    )
    flat_spec = tf.nest.flatten(y_spec)
    y_arrays = [
        tf.TensorArray(s.dtype, size=length, element_shape=s.shape)
        for s in flat_spec
    ]

    def body(i, carry, y_arrays):
        t = length - 1 - i if reverse else i
        x = tf.nest.pack_sequence_as(xs, [a.read(t) for a in x_arrays])
        carry, y = fn(carry, x)
        y_arrays = [
            a.write(t, v)
            for a, v in zip(y_arrays, tf.nest.flatten(y), strict=True)
        ]
        return i + 1, carry, y_arrays

    _, carry, y_arrays = tf.while_loop(
        lambda i, *_: i < length,
        body,
        (tf.constant(0), init, y_arrays),
        maximum_iterations=length,
    )
    ys = tf.nest.pack_sequence_as(y_spec, [a.stack() for a in y_arrays])
    return carry, ys


def _first_y(fn, init, xs):
    import tensorflow as tf

    x0 = tf.nest.map_structure(lambda x: x[0], xs)
    graph = tf.function(lambda c, x: fn(c, x)[1]).get_concrete_function(
        tf.nest.map_structure(lambda c: tf.TensorSpec(c.shape, c.dtype), init),
        tf.nest.map_structure(lambda x: tf.TensorSpec(x.shape, x.dtype), x0),
    )
    return graph.structured_outputs


def compile_function(fn, relax_shapes=True):
    """Compiles `fn` with XLA for repeated calls on the active backend.

    On TensorFlow this is `tf.function(jit_compile=True)`, without
    AutoGraph: the code traces under `jax.jit` too, so it has no Python
    control flow on tensors to convert, and converting the methods it calls
    cost 6 s of a Mamba model's first prefill (of 9 s). On JAX the
    function is returned unchanged, since layers hold their weights as
    stateful variables that `jax.jit` would bake in as constants.

    Args:
        fn: a Python function of tensors (nested structures allowed).
        relax_shapes: bool. On TensorFlow, whether calls with new shapes may
            share one program over shapes with unknown dimensions (fewer
            compilations); `False` compiles one program per shape, with
            every length known (as the scan kernels need).

    Returns:
        A callable with the same signature.
    """
    if _backend() == "tensorflow":
        import tensorflow as tf

        return tf.function(
            fn,
            jit_compile=True,
            reduce_retracing=relax_shapes,
            autograph=False,
        )
    return fn


def device_kind():
    """`"cpu"`, `"gpu"` or `"tpu"`: the accelerator the backend computes on.

    Ops use it for `mode="auto"`: compiled recurrent loops are fastest on a
    CPU, chunked matmul forms fill a GPU or TPU.
    """
    if _backend() == "jax":
        import jax

        return jax.default_backend()
    if _backend() == "tensorflow":
        import tensorflow as tf

        for kind in ("TPU", "GPU"):
            if tf.config.list_logical_devices(kind):
                return kind.lower()
    return "cpu"


def conjugates_complex_gradients():
    """Whether gradients of complex tensors come conjugated on this backend.

    For a real loss L of a complex z = x + iy, TensorFlow's gradient is
    dL/dx + i dL/dy and JAX's is its conjugate dL/dx - i dL/dy (JAX
    transposes the linear map, TensorFlow takes its adjoint). Hand-written
    backward passes compute in JAX's convention and conjugate the upstream
    gradient and their results where this is `True`.
    """
    return _backend() == "tensorflow"


def make_complex(real, imag):
    """`real + i imag` as complex64, differentiable in both parts.

    The backends' own constructors (`tf.complex`, `jax.lax.complex`):
    building it from casts works too, but TensorFlow's gradient of a
    float-to-complex cast warns at every step that it discards the
    imaginary part (which is what that gradient should do).
    """
    real = keras.ops.cast(real, "float32")
    imag = keras.ops.cast(imag, "float32")
    if _backend() == "tensorflow":
        import tensorflow as tf

        return tf.complex(real, imag)
    import jax

    return jax.lax.complex(real, imag)
