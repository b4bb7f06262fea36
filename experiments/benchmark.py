r"""Benchmarks of the kerasseq kernels and models: tokens/s and memory.

    python -m experiments.benchmark ops --op=selective_scan --mode=all
    python -m experiments.benchmark ops --seq_len=16384 --passes=forward
    python -m experiments.benchmark ops --backends=tensorflow,jax
    python -m experiments.benchmark layers --models=gpt,mamba \
        --lengths=1024,2048,4096
    python -m experiments.benchmark lm --models=gpt2,mamba \
        --tokenizer_dir=.venv/share/gpt2 --peer_python=PYTHON_WITH_TORCH
    KERAS_BACKEND=jax python -m experiments.benchmark accelerator

`accelerator` measures the kernels and a training step of every model on
a GPU (JAX) against fla, mamba-ssm and PyTorch's SDPA, in one call
(`experiments/common/accelerator_benchmark.py` says how).

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
into each other. With `--backends=tensorflow,jax` (ops, layers) each runs on
both backends in turn, and the table gives each time as a multiple of the
first backend's.

`autodiff` is the baseline every mode is measured against: the op's readable
reference (`kerasseq.ops.reference`, in float32), its step looped with
`kerasseq.ops.dispatch.scan`, differentiated by the backend's autodiff
through the loop.

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

from experiments.common import accelerator_benchmark
from experiments.common import console
from experiments.common import layers_benchmark
from experiments.common import lm_benchmark
from experiments.common import ops_benchmark
from experiments.common import results as results_lib
from experiments.common.parsing import parse_lengths
from experiments.common.parsing import parse_list

flags.DEFINE_string(
    "op", "all", f"Op to benchmark: all or one of {ops_benchmark.OPS}."
)
flags.DEFINE_string(
    "mode", "all", "Comma list of modes, `all`, or `autodiff` (the baseline)."
)
flags.DEFINE_string("passes", "forward,backward", "forward and/or backward.")
flags.DEFINE_integer("seq_len", None, "Override the standard sequence length.")
flags.DEFINE_integer(
    "batch_size",
    None,
    f"Override the standard batch size (layers: {layers_benchmark.BATCH}).",
)
flags.DEFINE_string(
    "dtype", "float32", "Input dtype (accelerator: bfloat16 unless given)."
)
flags.DEFINE_integer("repeats", 5, "Timed calls per measurement.")
flags.DEFINE_integer("chunk_size", 64, "Chunk size of the chunk modes.")
flags.DEFINE_string(
    "models",
    "all",
    "layers, lm, accelerator: comma list of models, or all "
    "(accelerator: none for no training steps).",
)
flags.DEFINE_string(
    "lengths", "1024,2048,4096", "layers: comma list of sequence lengths."
)
flags.DEFINE_string("preset", "small", "layers: the model preset.")
flags.DEFINE_string(
    "backends",
    "",
    "ops, layers: comma list of Keras backends (tensorflow, jax) to measure "
    "side by side, each measurement in turn on each; default the active one.",
)
flags.DEFINE_string(
    "kernels",
    "all",
    "accelerator: comma list of kernels, or all: "
    f"{', '.join(accelerator_benchmark.KERNELS)}.",
)
flags.DEFINE_string("output_dir", "runs/benchmark", "Where to save results.")
flags.DEFINE_string("tag", "", "Suffix of the saved file names.")
flags.DEFINE_string("_measure", None, "Internal: run one measurement (JSON).")
FLAGS = flags.FLAGS
BACKENDS = ("tensorflow", "jax")


def _backend():
    import keras

    return keras.backend.backend()


def _backends():
    """The backends of `--backends`, by default the active one."""
    if not FLAGS.backends:
        return [_backend()]
    return parse_list(FLAGS.backends, BACKENDS, "backends")


def measure(op, mode, pass_name):
    """One measurement in this process: returns a result dict."""
    import numpy as np
    from keras import ops

    # before the first tensor: on JAX it sets XLA's flags
    import kerasseq  # noqa: F401

    shape = ops_benchmark.shape_of(op, FLAGS.seq_len, FLAGS.batch_size)
    rng = np.random.default_rng(42)
    inputs = ops_benchmark.make_inputs(op, shape, FLAGS.dtype, rng)
    names = list(inputs)
    tensors = [ops.convert_to_tensor(inputs[n]) for n in names]
    fn = ops_benchmark.compile_pass(
        ops_benchmark.op_function(op, mode, FLAGS.chunk_size),
        names,
        pass_name == "backward",
    )
    baseline = ops_benchmark.reset_peak_rss()
    start = time.perf_counter()
    ops_benchmark.block(fn(*tensors))
    compile_s = time.perf_counter() - start
    times = []
    for _ in range(FLAGS.repeats):
        start = time.perf_counter()
        ops_benchmark.block(fn(*tensors))
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    peak = ops_benchmark.read_status("VmHWM")
    temp = ops_benchmark.temp_bytes(fn, tensors)
    if temp is not None:
        memory = temp / 2**20
    elif peak and baseline:
        memory = (peak - baseline) / 1024
    else:
        memory = None
    tokens = shape["batch"] * shape["seq_len"]
    return {
        "backend": _backend(),
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


def _environment(backends=None):
    """The machine, the backends and their versions of a run."""
    import importlib.metadata

    import keras

    backends = backends or [_backend()]
    info = {
        "backend": "+".join(backends),
        "keras": keras.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "dtype": FLAGS.dtype,
    }
    from kerasseq.ops.dispatch import device_kind

    info["device"] = device_kind()
    for backend in backends:
        info[backend] = importlib.metadata.version(backend)
    if backends == ["jax"]:
        import jax

        info["device_name"] = str(jax.devices()[0].device_kind)
    memory = {
        "jax": "XLA temporary buffers",
        "tensorflow": "peak RSS rise, compile included",
    }
    info["memory"] = "; ".join(
        f"{b}: {memory[b]}" if len(backends) > 1 else memory[b]
        for b in backends
    )
    return info


def _run_isolated(op, mode, pass_name, backend):
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
    labels = {"backend": backend, "op": op, "mode": mode, "pass": pass_name}
    return _run_json(argv, labels)


def _run_json(argv, labels):
    """Runs one measurement in a subprocess, on `labels["backend"]` where
    given; its last JSON line, or the `labels` with the error that stopped
    it."""
    env = dict(os.environ)
    if labels.get("backend"):
        env["KERAS_BACKEND"] = labels["backend"]
    result = subprocess.run(argv, capture_output=True, text=True, env=env)
    lines = [x for x in result.stdout.splitlines() if x.startswith("{")]
    if result.returncode != 0 or not lines:
        error = (result.stderr.strip().splitlines() or ["no output"])[-1]
        return {**labels, "error": error}
    return json.loads(lines[-1])


def _run_model_isolated(name, length, backend):
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
    labels = {"backend": backend, "model": name, "seq_len": length}
    return _run_json(argv, labels)


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


def main_layers():
    from kerasseq.models import MODEL_NAMES
    from kerasseq.models import PRESETS

    if FLAGS._measure:
        name, length = FLAGS._measure.split(":")
        result = layers_benchmark.measure_model(
            name, int(length), FLAGS.batch_size, FLAGS.preset, FLAGS.repeats
        )
        print(json.dumps(result))
        return
    names = parse_list(FLAGS.models, MODEL_NAMES, "models")
    if FLAGS.preset not in PRESETS:
        raise app.UsageError(
            f"--preset={FLAGS.preset!r}: allowed: {', '.join(PRESETS)}."
        )
    lengths = parse_lengths(FLAGS.lengths)
    if "gpt" not in names:
        names = ["gpt", *names]  # the reference of every ratio
    backends = _backends()
    results = []
    for length in lengths:
        for name in names:
            for backend in backends:
                result = _run_model_isolated(name, length, backend)
                results.append(result)
                print(
                    layers_benchmark.table([result]).splitlines()[-1],
                    flush=True,
                )
    results = layers_benchmark.relative_to_gpt(results)
    results = results_lib.versus_first_backend(results, ("model", "seq_len"))
    env = _environment(backends)
    env["preset"] = FLAGS.preset
    base = _save("layers", env, results, layers_benchmark.table(results))
    batch = results[0].get("batch", "?")
    layers_benchmark.plot(
        results,
        base + ".png",
        f"{env['backend']}, preset {FLAGS.preset}, batch {batch}",
    )
    print(f"saved {base}.png")


DTYPES = ("bfloat16", "float16", "float32")


def main_accelerator():
    """`accelerator`: the kernels and training steps on JAX against the
    peers (`experiments/common/accelerator_benchmark.py`)."""
    if FLAGS._measure:
        accelerator_benchmark.measure(FLAGS._measure)
        return
    if FLAGS.accelerator_size not in accelerator_benchmark.SIZES:
        raise app.UsageError(
            f"--accelerator_size={FLAGS.accelerator_size!r}: allowed: "
            f"{', '.join(accelerator_benchmark.SIZES)}."
        )
    dtype = FLAGS.dtype if FLAGS["dtype"].present else "bfloat16"
    parse_list(dtype, DTYPES, "dtype")
    kernels = parse_list(
        FLAGS.kernels, accelerator_benchmark.KERNELS, "kernels"
    )
    passes = parse_list(FLAGS.passes, ops_benchmark.PASSES, "passes")
    # this process only reads the model names: every measurement runs on
    # JAX in a child process (TensorFlow may be absent on a GPU machine)
    os.environ.setdefault("KERAS_BACKEND", "jax")
    from kerasseq.catalogue import MODEL_NAMES

    models = []
    if FLAGS.models != "none":
        models = parse_list(FLAGS.models, MODEL_NAMES, "models")
    accelerator_benchmark.run(kernels, models, dtype, passes, _run_json, _save)


def main(argv):
    commands = ("ops", "layers", "lm", "accelerator")
    if len(argv) != 2 or argv[1] not in commands:
        raise app.UsageError(
            "usage: python -m experiments.benchmark ops [--op=...] "
            "[--mode=...] | layers [--models=...] [--lengths=...] | lm "
            "[--models=...] --tokenizer_dir=... | accelerator "
            "[--kernels=...] [--models=...|none]"
        )
    if argv[1] == "accelerator":
        main_accelerator()
        return
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
    ops_ = parse_list(FLAGS.op, ops_benchmark.OPS, "op")
    passes = parse_list(FLAGS.passes, ops_benchmark.PASSES, "passes")
    backends = _backends()
    results = []
    for op in ops_:
        allowed = (*ops_benchmark.MODES[op], "autodiff")
        modes = parse_list(FLAGS.mode, allowed, "mode")
        for mode in modes:
            for pass_name in passes:
                for backend in backends:
                    result = _run_isolated(op, mode, pass_name, backend)
                    results.append(result)
                    row = ops_benchmark.table([result]).splitlines()[-1]
                    print(row, flush=True)
    results = results_lib.versus_first_backend(results, ("op", "mode", "pass"))
    table = ops_benchmark.table(results)
    _save("ops", _environment(backends), results, table)


if __name__ == "__main__":
    console.run(main)
