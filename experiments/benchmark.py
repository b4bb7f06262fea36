r"""Benchmarks of the kerasseq kernels and models: tokens/s and memory.

    python -m experiments.benchmark ops --op=selective_scan --mode=all
    python -m experiments.benchmark ops --seq_len=16384 --passes=forward
    python -m experiments.benchmark layers --models=gpt,mamba \
        --lengths=1024,2048,4096
    python -m experiments.benchmark lm --models=gpt2,mamba \
        --tokenizer_dir=.venv/share/gpt2 --peer_python=PYTHON_WITH_TORCH

`lm` measures a language model's 0-shot scoring and generation against
transformers (`experiments/common/lm_benchmark.py` says how).

`layers` trains each registered model (`--preset`, `small` by default, as a
token classifier over a 256-token vocabulary, so that causal and
bidirectional models run the same head) with `model.train_on_batch` under
`jit_compile=True`, and reports training steps/s, tokens/s and the rise of
peak resident memory (compile included) per model and length, each also as
a ratio to `gpt` at the same length in the same run, and plots steps/s and
memory against length (a PNG beside the table).

For every op and mode it measures, at the op's standard shape (overridable),
forward and forward+backward throughput in tokens/s (tokens = batch × time;
median of `--repeats` timed calls after a compile-and-warm-up call), and the
memory beyond the inputs:

- JAX: the temporary buffers of the compiled executable (outputs apart),
  from XLA's own memory analysis (exact);
- TensorFlow: the rise of the process's peak resident memory from just
  before the first call to the end of the timed calls. TensorFlow keeps the
  buffers of a compiled call for the next one, so the first call is
  counted, and with it XLA's compile memory (about the same at every
  sequence length: compare lengths, not ops, with this number).

Every measurement runs in its own subprocess so that the numbers do not leak
into each other.

`autodiff` is the baseline every mode is measured against: the op's one-token
`*_step` function looped with `kerasseq.ops.dispatch.scan`, differentiated by
the backend's autodiff through the loop.

Results are printed and saved as JSON and markdown under `--output_dir`,
with the backend, device and versions noted. Numbers are only comparable
within one run: machines are shared and noisy.
"""

import json
import os
import platform
import statistics
import subprocess
import sys
import time

from absl import app
from absl import flags

from experiments.common import console
from experiments.common import lm_benchmark
from experiments.common import results as results_lib
from experiments.common.parsing import parse_lengths
from experiments.common.parsing import parse_list

OPS = (
    "linear_recurrence",
    "selective_scan",
    "delta_rule",
    "linear_attention",
    "lstm_recurrence",
)
PASSES = ("forward", "backward")

# standard shapes: the README's tables are measured at these
SHAPES = {
    "linear_recurrence": {"batch": 8, "seq_len": 1024, "dim": 512},
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
    "selective_scan": ("recurrent", "chunk", "parallel"),
    "delta_rule": ("recurrent", "chunk"),
    "linear_attention": ("recurrent", "chunk", "parallel"),
    "lstm_recurrence": ("recurrent",),
}

flags.DEFINE_string("op", "all", f"Op to benchmark: all or one of {OPS}.")
flags.DEFINE_string(
    "mode", "all", "Comma list of modes, `all`, or `autodiff` (the baseline)."
)
flags.DEFINE_string("passes", "forward,backward", "forward and/or backward.")
flags.DEFINE_integer("seq_len", None, "Override the standard sequence length.")
flags.DEFINE_integer(
    "batch_size", None, "Override the standard batch size (layers: 4)."
)
flags.DEFINE_string("dtype", "float32", "Input dtype.")
flags.DEFINE_integer("repeats", 5, "Timed calls per measurement.")
flags.DEFINE_integer("chunk_size", 64, "Chunk size of the chunk modes.")
flags.DEFINE_string(
    "models", "all", "layers: comma list of registered models, or all."
)
flags.DEFINE_string(
    "lengths", "1024,2048,4096", "layers: comma list of sequence lengths."
)
flags.DEFINE_string("preset", "small", "layers: the model preset.")
flags.DEFINE_string("output_dir", "runs/benchmark", "Where to save results.")
flags.DEFINE_string("tag", "", "Suffix of the saved file names.")
flags.DEFINE_string("_measure", None, "Internal: run one measurement (JSON).")
FLAGS = flags.FLAGS


def _shape(op):
    shape = dict(SHAPES[op])
    if FLAGS.seq_len:
        shape["seq_len"] = FLAGS.seq_len
    if FLAGS.batch_size:
        shape["batch"] = FLAGS.batch_size
    return shape


def _inputs(op, shape, dtype, rng):
    import numpy as np

    b, t = shape["batch"], shape["seq_len"]

    def normal(*dims, scale=1.0):
        return (rng.standard_normal(dims) * scale).astype(dtype)

    if op == "linear_recurrence":
        d = shape["dim"]
        a = rng.uniform(0.9, 0.999, (b, t, d)).astype(dtype)
        return {"a": a, "b": normal(b, t, d)}
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


def _op_function(op, mode):
    """Returns `f(**inputs) -> output` for a mode or the autodiff baseline."""
    from kerasseq import ops as kops
    from kerasseq.ops import dispatch

    if mode != "autodiff":
        fn = getattr(kops, op)
        extra = {}
        if op == "selective_scan":
            extra = {"delta_softplus": True}
        if mode == "chunk":
            extra["chunk_size"] = FLAGS.chunk_size
        return lambda **x: _first(fn(**x, **extra, mode=mode))
    return _autodiff_baseline(op, kops, dispatch)


def _first(result):
    return result[0] if isinstance(result, (tuple, list)) else result


def _autodiff_baseline(op, kops, dispatch):
    import keras
    from keras import ops

    def time_major(x):
        return ops.moveaxis(x, 1, 0)

    if op == "linear_recurrence":

        def f(a, b):
            init = ops.zeros_like(b[:, 0])

            def step(h, x):
                h, _ = kops.linear_recurrence_step(x[0], x[1], h)
                return h, h

            _, hs = dispatch.scan(step, init, (time_major(a), time_major(b)))
            return time_major(hs)

        return f
    if op == "selective_scan":

        def f(u, delta, A, B, C, D, delta_bias):
            state = ops.zeros((u.shape[0], u.shape[2], A.shape[1]), "float32")

            def step(h, x):
                y, h = kops.selective_scan_step(
                    x[0],
                    x[1],
                    A,
                    x[2],
                    x[3],
                    D=D,
                    delta_bias=delta_bias,
                    delta_softplus=True,
                    state=h,
                )
                return h, y

            xs = tuple(time_major(x) for x in (u, delta, B, C))
            _, ys = dispatch.scan(step, state, xs)
            return time_major(ys)

        return f
    if op == "delta_rule":

        def f(q, k, v, beta):
            b, _, h, dk = q.shape
            state = ops.zeros((b, h, dk, v.shape[-1]), "float32")

            def step(s, x):
                o, s = kops.delta_rule_step(*x, s)
                return s, o

            xs = tuple(time_major(x) for x in (q, k, v, beta))
            _, os_ = dispatch.scan(step, state, xs)
            return time_major(os_)

        return f

    if op == "lstm_recurrence":

        def f(gates, recurrent_kernel):
            zeros = ops.zeros((gates.shape[0], recurrent_kernel.shape[0]))

            def step(state, gates_t):
                h, c = state
                z = gates_t + ops.matmul(h, recurrent_kernel)
                i, f, g, o = ops.split(z, 4, axis=-1)
                c = ops.sigmoid(f) * c + ops.sigmoid(i) * ops.tanh(g)
                h = ops.sigmoid(o) * ops.tanh(c)
                return (h, c), h

            _, hs = dispatch.scan(step, (zeros, zeros), time_major(gates))
            return time_major(hs)

        return f

    def f(q, k, v):
        b, _, h, dk = q.shape
        state = (
            ops.zeros((b, h, dk, v.shape[-1]), "float32"),
            ops.zeros((b, h, dk), "float32"),
        )

        def step(s, x):
            o, s = kops.linear_attention_step(*x, s)
            return s, o

        xs = tuple(time_major(x) for x in (q, k, v))
        _, os_ = dispatch.scan(step, state, xs)
        return time_major(os_)

    del keras
    return f


def _compile_pass(fn, names, backward):
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


def _block(result):
    import keras

    for leaf in keras.tree.flatten(result):
        if leaf is not None:
            keras.ops.convert_to_numpy(leaf)


def _temp_bytes(fn, tensors):
    """XLA's temporary buffers of the compiled `fn` (JAX only, else None)."""
    import keras

    if keras.backend.backend() != "jax":
        return None
    analysis = fn.lower(*tensors).compile().memory_analysis()
    return None if analysis is None else analysis.temp_size_in_bytes


def _read_status(field):
    """A `/proc/self/status` field in KiB (None where there is no /proc)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss():
    """Resets the peak-RSS mark (Linux); returns the resident KiB now."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return None
    return _read_status("VmRSS")


def measure(op, mode, pass_name):
    """One measurement in this process: returns a result dict."""
    import numpy as np
    from keras import ops

    shape = _shape(op)
    rng = np.random.default_rng(42)
    inputs = _inputs(op, shape, FLAGS.dtype, rng)
    names = list(inputs)
    tensors = [ops.convert_to_tensor(inputs[n]) for n in names]
    fn = _compile_pass(_op_function(op, mode), names, pass_name == "backward")
    baseline = _reset_peak_rss()
    start = time.perf_counter()
    _block(fn(*tensors))
    compile_s = time.perf_counter() - start
    times = []
    for _ in range(FLAGS.repeats):
        start = time.perf_counter()
        _block(fn(*tensors))
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    peak = _read_status("VmHWM")
    temp = _temp_bytes(fn, tensors)
    if temp is not None:
        memory = temp / 2**20
    elif peak and baseline:
        memory = (peak - baseline) / 1024
    else:
        memory = None
    tokens = shape["batch"] * shape["seq_len"]
    return {
        "op": op,
        "mode": mode,
        "pass": pass_name,
        "shape": shape,
        "seconds": seconds,
        "tokens_per_s": tokens / seconds,
        "compile_s": compile_s,
        "input_mb": sum(x.nbytes for x in inputs.values()) / 2**20,
        "peak_memory_mb": memory,
    }


def _environment():
    import keras

    info = {
        "backend": keras.backend.backend(),
        "keras": keras.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "dtype": FLAGS.dtype,
    }
    from kerasseq.ops.dispatch import device_kind

    info["device"] = device_kind()
    if info["backend"] == "jax":
        import jax

        info["jax"] = jax.__version__
        info["device_name"] = str(jax.devices()[0].device_kind)
    else:
        import tensorflow as tf

        info["tensorflow"] = tf.__version__
    info["memory"] = (
        "XLA temporary buffers"
        if info["backend"] == "jax"
        else "peak RSS rise, compile included"
    )
    return info


def _run_isolated(op, mode, pass_name):
    argv = [
        sys.executable,
        "-m",
        "experiments.benchmark",
        "ops",
        f"--_measure={op}:{mode}:{pass_name}",
        f"--dtype={FLAGS.dtype}",
        f"--repeats={FLAGS.repeats}",
        f"--chunk_size={FLAGS.chunk_size}",
    ]
    if FLAGS.seq_len:
        argv.append(f"--seq_len={FLAGS.seq_len}")
    if FLAGS.batch_size:
        argv.append(f"--batch_size={FLAGS.batch_size}")
    return _run_json(argv, {"op": op, "mode": mode, "pass": pass_name})


def _run_json(argv, labels):
    """Runs one measurement in a subprocess; its last JSON line, or the
    `labels` with the error that stopped it."""
    result = subprocess.run(argv, capture_output=True, text=True)
    lines = [x for x in result.stdout.splitlines() if x.startswith("{")]
    if result.returncode != 0 or not lines:
        error = (result.stderr.strip().splitlines() or ["no output"])[-1]
        return {**labels, "error": error}
    return json.loads(lines[-1])


LAYERS_VOCABULARY = 256
LAYERS_BATCH = 4


def measure_model(name, length):
    """Training speed and memory of one registered model in this process."""
    import keras
    import numpy as np

    from kerasseq.models import build_model
    from kerasseq.models import count_parameters

    batch = FLAGS.batch_size or LAYERS_BATCH
    model = build_model(
        name,
        "token_classification",
        FLAGS.preset,
        vocabulary_size=LAYERS_VOCABULARY,
        num_classes=LAYERS_VOCABULARY,
        max_sequence_length=length,
    )
    model.compile(
        optimizer=keras.optimizers.Adam(1e-4),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=True,
    )
    rng = np.random.default_rng(0)
    ids = rng.integers(1, LAYERS_VOCABULARY, (batch, length)).astype("int32")
    inputs = {"token_ids": ids, "padding_mask": np.ones_like(ids, bool)}
    labels = np.roll(ids, -1, axis=1)
    baseline = _reset_peak_rss()
    start = time.perf_counter()
    model.train_on_batch(inputs, labels)
    compile_s = time.perf_counter() - start
    times = []
    for _ in range(FLAGS.repeats):
        start = time.perf_counter()
        loss = model.train_on_batch(inputs, labels)
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    peak = _read_status("VmHWM")
    memory = (peak - baseline) / 1024 if peak and baseline else None
    return {
        "model": name,
        "seq_len": length,
        "batch": batch,
        "preset": FLAGS.preset,
        "parameters": count_parameters(model)["total"],
        "seconds": seconds,
        "steps_per_s": 1.0 / seconds,
        "tokens_per_s": batch * length / seconds,
        "compile_s": compile_s,
        "peak_memory_mb": memory,
        "loss_finite": bool(np.isfinite(float(np.asarray(loss).ravel()[0]))),
    }


def _relative(results):
    """Adds throughput and memory ratios to gpt at the same length."""
    gpt = {
        r["seq_len"]: r
        for r in results
        if r.get("model") == "gpt" and "error" not in r
    }
    for r in results:
        ref = gpt.get(r.get("seq_len"))
        if ref is None or "error" in r:
            continue
        r["speed_vs_gpt"] = r["tokens_per_s"] / ref["tokens_per_s"]
        if r["peak_memory_mb"] and ref["peak_memory_mb"]:
            r["memory_vs_gpt"] = r["peak_memory_mb"] / ref["peak_memory_mb"]
    return results


def _model_table(results):
    lines = [
        "| model | T | steps/s | tokens/s | × gpt speed | memory (MB) "
        "| × gpt memory |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if "error" in r:
            lines.append(
                f"| {r['model']} | {r['seq_len']} | error: "
                f"{r['error'][:80]} | | | | |"
            )
            continue
        memory = r["peak_memory_mb"]
        memory = "n/a" if memory is None else f"{memory:,.0f}"
        speed = r.get("speed_vs_gpt")
        ratio = r.get("memory_vs_gpt")
        lines.append(
            f"| {r['model']} | {r['seq_len']} | {r['steps_per_s']:.3f} | "
            f"{r['tokens_per_s']:,.0f} | "
            f"{'' if speed is None else f'{speed:.2f}'} | {memory} | "
            f"{'' if ratio is None else f'{ratio:.2f}'} |"
        )
    return "\n".join(lines)


def _run_model_isolated(name, length):
    argv = [
        sys.executable,
        "-m",
        "experiments.benchmark",
        "layers",
        f"--_measure={name}:{length}",
        f"--repeats={FLAGS.repeats}",
        f"--preset={FLAGS.preset}",
    ]
    if FLAGS.batch_size:
        argv.append(f"--batch_size={FLAGS.batch_size}")
    return _run_json(argv, {"model": name, "seq_len": length})


def _save(kind, env, results, table):
    note = ", ".join(f"{k}={v}" for k, v in env.items())
    print(f"\n{note}\n\n{table}")
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    tag = FLAGS.tag and "_" + FLAGS.tag
    base = os.path.join(FLAGS.output_dir, f"{kind}_{env['backend']}{tag}")
    with open(base + ".json", "w") as f:
        record = {"environment": env, "results": results}
        record["provenance"] = results_lib.provenance()
        json.dump(record, f, indent=2)
    with open(base + ".md", "w") as f:
        f.write(f"{note}\n\n{table}\n")
    print(f"\nsaved {base}.json and {base}.md")
    return base


def plot_layers(results, path, title=""):
    """Training steps/s and peak memory against sequence length, one
    line per model, as the Long Range Arena paper plots them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (speed, memory) = plt.subplots(1, 2, figsize=(11, 4.2))
    models = list(dict.fromkeys(r["model"] for r in results))
    for name in models:
        rows = sorted(
            (r for r in results if r["model"] == name and "error" not in r),
            key=lambda r: r["seq_len"],
        )
        lengths = [r["seq_len"] for r in rows]
        style = {"marker": "o", "label": name}
        if name == "gpt":
            style.update(color="black", linestyle="--")
        speed.plot(lengths, [r["steps_per_s"] for r in rows], **style)
        used = [(r["seq_len"], r["peak_memory_mb"]) for r in rows]
        used = [u for u in used if u[1] is not None]
        if used:
            memory.plot(*zip(*used, strict=True), **style)
    for axis, label in (
        (speed, "training steps / s"),
        (memory, "peak memory (MB)"),
    ):
        axis.set_xscale("log", base=2)
        axis.set_yscale("log")
        axis.set_xlabel("sequence length")
        axis.set_ylabel(label)
        axis.grid(True, which="both", alpha=0.3)
    speed.legend(fontsize="small")
    figure.suptitle(title, fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main_layers():
    from kerasseq.models import MODEL_NAMES
    from kerasseq.models import PRESETS

    if FLAGS._measure:
        name, length = FLAGS._measure.split(":")
        print(json.dumps(measure_model(name, int(length))))
        return
    names = parse_list(FLAGS.models, MODEL_NAMES, "models")
    if FLAGS.preset not in PRESETS:
        raise app.UsageError(
            f"--preset={FLAGS.preset!r}: allowed: {', '.join(PRESETS)}."
        )
    lengths = parse_lengths(FLAGS.lengths)
    if "gpt" not in names:
        names = ["gpt", *names]  # the reference of every ratio
    results = []
    for length in lengths:
        for name in names:
            result = _run_model_isolated(name, length)
            results.append(result)
            print(_model_table([result]).splitlines()[-1], flush=True)
    results = _relative(results)
    env = _environment()
    env["preset"] = FLAGS.preset
    base = _save("layers", env, results, _model_table(results))
    batch = results[0].get("batch", "?")
    plot_layers(
        results,
        base + ".png",
        f"{env['backend']}, preset {FLAGS.preset}, batch {batch}",
    )
    print(f"saved {base}.png")


def _table(results):
    lines = [
        "| op | mode | pass | tokens/s | ms/call | memory (MB) |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        if "error" in r:
            lines.append(
                f"| {r['op']} | {r['mode']} | {r['pass']} | error: "
                f"{r['error'][:80]} | | |"
            )
            continue
        memory = r["peak_memory_mb"]
        memory = "n/a" if memory is None else f"{memory:,.0f}"
        lines.append(
            f"| {r['op']} | {r['mode']} | {r['pass']} | "
            f"{r['tokens_per_s']:,.0f} | {r['seconds'] * 1e3:.1f} | "
            f"{memory} |"
        )
    return "\n".join(lines)


def main(argv):
    if len(argv) != 2 or argv[1] not in ("ops", "layers", "lm"):
        raise app.UsageError(
            "usage: python -m experiments.benchmark ops [--op=...] "
            "[--mode=...] | layers [--models=...] [--lengths=...] | lm "
            "[--models=...] --tokenizer_dir=..."
        )
    if argv[1] == "layers":
        main_layers()
        return
    if argv[1] == "lm":
        models = parse_list(FLAGS.models, lm_benchmark.LM_MODELS, "models")
        lm_benchmark.main(models, _run_json, _environment, _save)
        return
    if FLAGS._measure:
        op, mode, pass_name = FLAGS._measure.split(":")
        print(json.dumps(measure(op, mode, pass_name)))
        return
    ops_ = parse_list(FLAGS.op, OPS, "op")
    passes = parse_list(FLAGS.passes, PASSES, "passes")
    results = []
    for op in ops_:
        allowed = (*MODES[op], "autodiff")
        modes = parse_list(FLAGS.mode, allowed, "mode")
        for mode in modes:
            for pass_name in passes:
                result = _run_isolated(op, mode, pass_name)
                results.append(result)
                print(_table([result]).splitlines()[-1], flush=True)
    _save("ops", _environment(), results, _table(results))


if __name__ == "__main__":
    console.run(main)
