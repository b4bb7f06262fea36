"""The kernel benchmark of `python -m experiments.benchmark ops`: the ops,
their standard shapes and modes, their inputs, the function each mode (or
the autodiff baseline) runs, XLA compilation of a pass, the memory probes
and the results table. `experiments/benchmark.py` says what is measured.
"""

from experiments.common import results as results_lib

OPS = (
    "linear_recurrence",
    "matrix_recurrence",
    "selective_scan",
    "delta_rule",
    "linear_attention",
    "lstm_recurrence",
)
PASSES = ("forward", "backward")

# standard shapes: the README's tables are measured at these
SHAPES = {
    "linear_recurrence": {"batch": 8, "seq_len": 1024, "dim": 512},
    # the linear RNN's dense transition at the small preset's width
    "matrix_recurrence": {"batch": 8, "seq_len": 1024, "dim": 128},
    "selective_scan": {"batch": 8, "seq_len": 1024, "dim": 512, "state": 16},
    "delta_rule": {
        "batch": 8,
        "seq_len": 1024,
        "heads": 4,
        "key": 64,
        "value": 64,
    },
    "linear_attention": {
        "batch": 8,
        "seq_len": 1024,
        "heads": 4,
        "key": 64,
        "value": 64,
    },
    "lstm_recurrence": {"batch": 8, "seq_len": 1024, "units": 256},
}
MODES = {
    "linear_recurrence": ("recurrent", "chunk", "parallel"),
    "matrix_recurrence": ("recurrent",),
    "selective_scan": ("recurrent", "chunk", "parallel"),
    "delta_rule": ("recurrent", "chunk"),
    "linear_attention": ("recurrent", "chunk", "parallel"),
    "lstm_recurrence": ("recurrent",),
}


def shape_of(op, seq_len=None, batch_size=None):
    """The op's standard shape, with the length and batch overridden."""
    shape = dict(SHAPES[op])
    if seq_len:
        shape["seq_len"] = seq_len
    if batch_size:
        shape["batch"] = batch_size
    return shape


def make_inputs(op, shape, dtype, rng):
    """The op's keyword arguments at `shape` as NumPy arrays."""
    import numpy as np

    b, t = shape["batch"], shape["seq_len"]

    def normal(*dims, scale=1.0):
        return (rng.standard_normal(dims) * scale).astype(dtype)

    if op == "linear_recurrence":
        d = shape["dim"]
        a = rng.uniform(0.9, 0.999, (b, t, d)).astype(dtype)
        return {"a": a, "b": normal(b, t, d)}
    if op == "matrix_recurrence":
        d = shape["dim"]
        # spectral radius about 0.9: the states stay bounded
        return {"A": normal(d, d, scale=0.9 / d**0.5), "b": normal(b, t, d)}
    if op == "selective_scan":
        d, n = shape["dim"], shape["state"]
        return {
            "u": normal(b, t, d),
            "delta": normal(b, t, d, scale=0.5),
            "A": -np.exp(rng.standard_normal((d, n)) * 0.5).astype("float32"),
            "B": normal(b, t, n),
            "C": normal(b, t, n),
            "D": normal(d),
            "delta_bias": normal(d, scale=0.1),
        }
    if op == "lstm_recurrence":
        units = shape["units"]
        return {
            "gates": normal(b, t, 4 * units),
            "recurrent_kernel": normal(units, 4 * units, scale=units**-0.5),
        }
    h, k, v = shape["heads"], shape["key"], shape["value"]
    q, key = normal(b, t, h, k), normal(b, t, h, k)
    if op == "delta_rule":
        key = key / np.linalg.norm(key, axis=-1, keepdims=True)
        beta = rng.uniform(0, 1, (b, t, h)).astype(dtype)
        return {
            "q": q,
            "k": key.astype(dtype),
            "v": normal(b, t, h, v),
            "beta": beta,
        }
    return {"q": np.abs(q), "k": np.abs(key), "v": normal(b, t, h, v)}


def op_function(op, mode, chunk_size=64):
    """Returns `f(**inputs) -> output` for a mode or the autodiff baseline."""
    from kerasseq import ops as kops

    if mode == "autodiff":
        return autodiff_baseline(op)
    fn = getattr(kops, op)
    extra = {}
    if op == "selective_scan":
        extra = {"delta_softplus": True}
    if mode == "chunk":
        extra["chunk_size"] = chunk_size
    return lambda **x: _first(fn(**x, **extra, mode=mode))


def _first(result):
    return result[0] if isinstance(result, (tuple, list)) else result


def autodiff_baseline(op):
    """The op's readable reference (`kerasseq.ops.reference`), its step
    looped by `kerasseq.ops.dispatch.scan` in float32 as the kernels compute,
    differentiated by the backend's autodiff through the loop."""
    from keras import ops

    from kerasseq.ops import dispatch
    from kerasseq.ops import reference

    extra = {"delta_softplus": True} if op == "selective_scan" else {}

    def f(**inputs):
        dtype = next(iter(inputs.values())).dtype
        wide = {k: ops.cast(x, "float32") for k, x in inputs.items()}
        fn = getattr(reference, op)
        out = fn(**wide, **extra, scan=dispatch.scan)[0]
        return ops.cast(out, dtype)

    return f


def compile_pass(fn, names, backward):
    """XLA-compiles the forward, or the forward and backward together."""
    import keras
    from keras import ops

    def loss(*args):
        out = fn(**dict(zip(names, args, strict=True)))
        return ops.sum(ops.cast(out, "float32") ** 2)

    if keras.backend.backend() == "jax":
        import jax

        if backward:
            return jax.jit(jax.grad(loss, argnums=tuple(range(len(names)))))
        return jax.jit(lambda *a: fn(**dict(zip(names, a, strict=True))))
    import tensorflow as tf

    if backward:

        def both(*args):
            with tf.GradientTape() as tape:
                tape.watch(args)
                value = loss(*args)
            return tape.gradient(value, args)

        return tf.function(both, jit_compile=True)
    return tf.function(
        lambda *a: fn(**dict(zip(names, a, strict=True))), jit_compile=True
    )


def block(result):
    import keras

    for leaf in keras.tree.flatten(result):
        if leaf is not None:
            keras.ops.convert_to_numpy(leaf)


def temp_bytes(fn, tensors):
    """XLA's temporary buffers of the compiled `fn` (JAX only, else None)."""
    import keras

    if keras.backend.backend() != "jax":
        return None
    analysis = fn.lower(*tensors).compile().memory_analysis()
    return None if analysis is None else analysis.temp_size_in_bytes


def read_status(field):
    """A `/proc/self/status` field in KiB (None where there is no /proc)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def reset_peak_rss():
    """Resets the peak-RSS mark (Linux); returns the resident KiB now."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return None
    return read_status("VmRSS")


def table(results):
    """The markdown table of ops results (`results.benchmark_table`)."""
    return results_lib.benchmark_table(
        results,
        [("op", "op"), ("mode", "mode"), ("pass", "pass")],
        [
            ("tokens/s", lambda r: f"{r['tokens_per_s']:,.0f}"),
            ("ms/call", lambda r: f"{r['seconds'] * 1e3:.1f}"),
            ("memory (MB)", _memory),
        ],
    )


def _memory(result):
    return results_lib.formatted(result["peak_memory_mb"], "{:,.0f}", "n/a")
