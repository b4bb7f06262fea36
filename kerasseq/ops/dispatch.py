"""The one place where kerasseq talks to a backend directly.

`keras.ops` covers almost everything; what it cannot express portably lives
here so that ops and layers stay backend-free. Every op builds on these:

- Loops, one home for all. `fori_loop` runs a compiled loop over step
  indices; `read_step` / `write_step` read and write one time step of a
  batch-major tensor in place inside it (no transposes, no stacking);
  `state_loop` is the loop of a recurrence h_t = update(h_{t-1}, t);
  `in_row_blocks` runs a loop on blocks of batch rows one after the other.
  `scan` is the loop over a leading time axis with stacked per-step
  outputs that need not match the carry (on TensorFlow, `keras.ops.scan`
  requires them to match and fails under XLA once gradients are taken; a
  `tf.while_loop` with `maximum_iterations` and TensorArrays compiles
  forward and backward; on JAX it is `jax.lax.scan`). The ops never let
  autodiff differentiate their loops, which would stack every
  intermediate of every step: each has a backward loop of its own.
- `custom_gradient`: runs a forward function with its hand-written
  backward pass, hiding how TensorFlow and JAX hand over the upstream
  gradients, and leaving out inputs that are `None` (no initial state).
- `device_kind`, for what `mode="auto"` picks (`kerasseq.ops.modes`).

Plus `compile_function` (XLA-compiles a function for repeated calls, on
JAX too) and the complex-number helpers.
"""

import os
import warnings

import keras
from keras import ops


def _backend():
    return keras.backend.backend()


# XLA:CPU as JAX ships it hands reductions to YNNPACK library calls; inside
# the kernels' compiled loops (a reduction or two per time step) their
# per-call cost dominated: the selective scan's recurrent forward (B=8,
# T=1024, Dm=512, N=16) ran 4-5x slower on JAX than on TensorFlow's XLA,
# and as fast with this flag (kerasseq/ops/README.md)
XLA_CPU_FLAG = "--xla_cpu_experimental_ynn_fusion_type=-reduce"


def keep_reductions_in_xla():
    """On JAX, compiles reductions with XLA's own CPU code (as TensorFlow
    does) rather than YNNPACK calls, by adding `XLA_CPU_FLAG` to
    `XLA_FLAGS`: unless `XLA_FLAGS` already sets YNN fusions (the user's
    choice stands), and only while JAX has not started its backends (the
    flags are read then; on a CPU it warns if they have started).
    `import kerasseq` calls it. Returns whether the flag is in effect."""
    flags = os.environ.get("XLA_FLAGS", "")
    if _backend() != "jax" or "ynn_fusion_type" in flags:
        return XLA_CPU_FLAG in flags.split()
    try:
        from jax._src import xla_bridge

        started = xla_bridge.backends_are_initialized()
    except (ImportError, AttributeError):  # a JAX that does not say
        started = False
    if started:
        import jax

        if jax.default_backend() == "cpu":
            warnings.warn(
                "JAX ran a computation before kerasseq was imported, so "
                "kerasseq could not set XLA_FLAGS: its kernels' loops may "
                "run several times slower on this CPU. Import kerasseq "
                f"first, or start Python with XLA_FLAGS={XLA_CPU_FLAG}.",
                stacklevel=3,
            )
        return False
    os.environ["XLA_FLAGS"] = f"{flags} {XLA_CPU_FLAG}".strip()
    return True


def fori_loop(lower, upper, body, init):
    """`body(i, carry) -> carry` for i = lower .. upper - 1, compiled.

    `keras.ops.fori_loop`: a `tf.while_loop` on TensorFlow, a
    `jax.lax.fori_loop` on JAX (bounds may be tensors, e.g. a chunk's
    start and end inside an outer loop). Not differentiated by autodiff:
    the ops that loop give it a backward pass of its own with
    `custom_gradient`.
    """
    return ops.fori_loop(lower, upper, body, init)


def read_step(x, index, axis=1):
    """`x[:, index]` (`axis=1`) or `x[index]` (`axis=0`) by a dynamic slice,
    for a loop index that may be a tensor."""
    start = [0] * len(x.shape)
    start[axis] = index
    # -1: all of a dimension unknown when tracing (a symbolic batch size)
    shape = [-1 if size is None else size for size in x.shape]
    shape[axis] = 1
    return ops.squeeze(ops.slice(x, start, shape), axis)


def write_step(x, index, value, axis=1):
    """`x` with `x[:, index]` (`axis=1`) or `x[index]` (`axis=0`) set to
    `value`; in place inside a compiled loop."""
    start = [0] * len(x.shape)
    start[axis] = index
    return ops.slice_update(x, start, ops.expand_dims(value, axis))


def state_loop(update, initial_state, outputs, reverse=False):
    """h_t = update(h_{t-1}, t) over the time axis (1) of `outputs`.

    The loop of the recurrent modes: it reads its inputs at step t inside
    `update` (with `read_step`) and writes h_t into `outputs` in place.

    Args:
        update: `update(h, t) -> h_t`.
        initial_state: h_{-1} `(B, ...)` (h_T when `reverse`).
        outputs: a `(B, T, ...)` tensor to write the states into, e.g.
            zeros; its time axis sets the number of steps.
        reverse: bool. Run t = T - 1 down to 0.

    Returns:
        The states `(B, T, ...)`.
    """
    length = outputs.shape[1]

    def step(i, carry):
        h, outputs = carry
        t = length - 1 - i if reverse else i
        h = update(h, t)
        return h, write_step(outputs, t, h)

    _, outputs = fori_loop(0, length, step, (initial_state, outputs))
    return outputs


def previous_states(h, initial_state, reverse=False):
    """h_{t-1} for every t of `h` `(B, T, ...)` (h_{t+1} when `reverse`):
    `h` shifted one step in time, `initial_state` `(B, ...)` (zeros when
    `None`) entering first; for the gradients of a recurrence's inputs."""
    if initial_state is None:
        first = ops.zeros_like(h[:, :1])
    else:
        first = ops.expand_dims(initial_state, 1)
    if reverse:
        return ops.concatenate([h[:, 1:], first], axis=1)
    return ops.concatenate([first, h[:, :-1]], axis=1)


def rows_per_block(batch, row_bytes, block_bytes):
    """The largest divisor of `batch` whose rows fit in `block_bytes`;
    `None` (one block) for a batch size unknown when tracing (`None` on
    TensorFlow, a symbolic dimension on JAX)."""
    if not isinstance(batch, int):
        return None
    rows = max(1, min(batch, block_bytes // row_bytes))
    while batch % rows:
        rows -= 1
    return rows


def in_row_blocks(fn, rows, inputs, outputs):
    """Runs `fn` on blocks of `rows` batch rows, one block after the other.

    Args:
        fn: function of the blocks of `inputs`, returning one tensor per
            entry of `outputs`.
        rows: int, a divisor of the batch size, or `None` for one block.
        inputs: list of `(tensor, axis)`: the batch axis of each input,
            `None` for inputs shared by every block.
        outputs: list of `(shape, axis)`: the full shape of each output and
            its batch axis, `None` for outputs summed over blocks.

    Returns:
        The outputs, assembled from the blocks.
    """
    tensor, axis = next(x for x in inputs if x[1] is not None)
    batch = tensor.shape[axis]
    if rows is None or rows == batch:
        return fn(*(x for x, _ in inputs))

    def block(x, start, axis):
        begin = [0] * len(x.shape)
        begin[axis] = start
        shape = list(x.shape)
        shape[axis] = rows
        return ops.slice(x, begin, shape)

    def body(i, results):
        start = i * rows
        block_outputs = fn(
            *(
                x if axis is None else block(x, start, axis)
                for x, axis in inputs
            )
        )
        merged = []
        for result, value, (_, axis) in zip(
            results, block_outputs, outputs, strict=True
        ):
            if axis is None:
                merged.append(result + value)
            else:
                begin = [0] * len(result.shape)
                begin[axis] = start
                merged.append(ops.slice_update(result, begin, value))
        return tuple(merged)

    initial = tuple(ops.zeros(shape, tensor.dtype) for shape, _ in outputs)
    return fori_loop(0, batch // rows, body, initial)


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


def custom_gradient(forward, *inputs):
    """`forward(*inputs)` differentiated by the backward pass it returns.

    The one adapter between the ops' hand-written backward passes and
    `keras.ops.custom_gradient`, whose gradient function receives the
    upstream gradients differently per backend: TensorFlow passes one
    tensor per (flattened) output, possibly `None` for an output that does
    not reach the loss; JAX passes one structure like the outputs.

    Args:
        forward: `forward(*inputs) -> (outputs, backward)`, `outputs` a
            tensor or a nested tuple of tensors, and `backward(upstream)`
            returning one gradient per input; `upstream` has the structure
            of `outputs`, zeros where no gradient arrives.
        *inputs: tensors, or `None` for absent optional inputs (an initial
            state, a mask): `forward` receives them as `None`, they are not
            differentiated and their entries of `backward`'s result are
            ignored.

    Returns:
        `outputs`.
    """
    present = [i for i, x in enumerate(inputs) if x is not None]

    @ops.custom_gradient
    def run(*tensors):
        full = list(inputs)
        for i, x in zip(present, tensors, strict=True):
            full[i] = x
        outputs, backward = forward(*full)

        def grad(*args, upstream=None):
            if upstream is None:
                upstream = args
            flat = keras.tree.flatten(upstream)
            flat = [
                ops.zeros_like(y) if g is None else g
                for g, y in zip(flat, keras.tree.flatten(outputs), strict=True)
            ]
            grads = backward(keras.tree.pack_sequence_as(outputs, flat))
            return tuple(grads[i] for i in present)

        return outputs, grad

    return run(*(inputs[i] for i in present))


def compile_function(fn, relax_shapes=True, variables=None):
    """Compiles `fn` with XLA for repeated calls on the active backend.

    On TensorFlow this is `tf.function(jit_compile=True)`, without
    AutoGraph: the code traces under `jax.jit` too, so it has no Python
    control flow on tensors to convert, and converting the methods it calls
    cost 6 s of a Mamba model's first prefill (of 9 s).

    On JAX it is `jax.jit`. Layers hold their weights as stateful Keras
    variables, which a jitted function would bake in as constants, so the
    variables `fn` reads are passed in: their current values go into the
    compiled function as arguments, and inside it each variable reads its
    argument (`keras.StatelessScope`), as keras-hub compiles `generate`.
    Without `variables` the function is returned as it is (run op by op).
    Python scalars and `None` among the arguments are static: one program
    per value, as `tf.function` traces one per Python value.

    Args:
        fn: a Python function of tensors (nested structures allowed) that
            reads `variables` and assigns none.
        relax_shapes: bool. On TensorFlow, whether calls with new shapes may
            share one program over shapes with unknown dimensions (fewer
            compilations); `False` compiles one program per shape, with
            every length known (as the scan kernels need). JAX compiles
            one program per shape in any case.
        variables: on JAX, the Keras variables `fn` reads (e.g. a model's
            `variables`).

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
    if _backend() != "jax" or variables is None:
        return fn
    return _jax_compiled(fn, list(variables))


def _is_static(value):
    return value is None or isinstance(value, (bool, int, float, str))


def _jax_compiled(fn, variables):
    import jax

    programs = {}

    def call(*args):
        static = tuple(
            (i, arg) for i, arg in enumerate(args) if _is_static(arg)
        )
        if static not in programs:
            fixed = dict(static)

            def stateless(values, dynamic):
                dynamic = iter(dynamic)
                full = [
                    fixed[i] if i in fixed else next(dynamic)
                    for i in range(len(args))
                ]
                mapping = list(zip(variables, values, strict=True))
                with keras.StatelessScope(state_mapping=mapping):
                    return fn(*full)

            programs[static] = jax.jit(stateless)
        dynamic = [arg for arg in args if not _is_static(arg)]
        values = [variable.value for variable in variables]
        return programs[static](values, dynamic)

    return call


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
