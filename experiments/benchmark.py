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

from experiments.common import console
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


def measure(op, mode, pass_name):
    """One measurement in this process: returns a result dict."""
    import numpy as np
    from keras import ops

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
    baseline = ops_benchmark.reset_peak_rss()
    start = time.perf_counter()
    model.train_on_batch(inputs, labels)
    compile_s = time.perf_counter() - start
    times = []
    for _ in range(FLAGS.repeats):
        start = time.perf_counter()
        loss = model.train_on_batch(inputs, labels)
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    peak = ops_benchmark.read_status("VmHWM")
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
                results_lib.error_row([r["model"], r["seq_len"]], r["error"], 7)
            )
            continue
        memory = results_lib.formatted(r["peak_memory_mb"], "{:,.0f}", "n/a")
        speed = results_lib.formatted(r.get("speed_vs_gpt"), "{:.2f}")
        ratio = results_lib.formatted(r.get("memory_vs_gpt"), "{:.2f}")
        lines.append(
            f"| {r['model']} | {r['seq_len']} | {r['steps_per_s']:.3f} | "
            f"{r['tokens_per_s']:,.0f} | {speed} | {memory} | {ratio} |"
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
    ops_ = parse_list(FLAGS.op, ops_benchmark.OPS, "op")
    passes = parse_list(FLAGS.passes, ops_benchmark.PASSES, "passes")
    results = []
    for op in ops_:
        allowed = (*ops_benchmark.MODES[op], "autodiff")
        modes = parse_list(FLAGS.mode, allowed, "mode")
        for mode in modes:
            for pass_name in passes:
                result = _run_isolated(op, mode, pass_name)
                results.append(result)
                print(
                    ops_benchmark.table([result]).splitlines()[-1], flush=True
                )
    _save("ops", _environment(), results, ops_benchmark.table(results))


if __name__ == "__main__":
    console.run(main)
