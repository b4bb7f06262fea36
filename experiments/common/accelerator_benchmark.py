r"""`python -m experiments.benchmark accelerator`: kerasseq's kernels and
training steps on a GPU (JAX backend) against the peers on that machine.

    KERAS_BACKEND=jax python -m experiments.benchmark accelerator
    python -m experiments.benchmark accelerator --accelerator_size=tiny

One run measures, in bfloat16 (`--dtype` to change), each kernel on
kerasseq's side (JAX) and on its peer's (PyTorch, where installed):

- selective_scan: every mode (recurrent, chunk, parallel); mamba-ssm's
  `selective_scan_fn`;
- delta_rule: chunk; fla's `chunk_delta_rule`;
- linear_attention: chunk, normalized; fla's
  `chunk_linear_attn(normalize=True)`;
- softmax_attention: the attention layers' `compute_attention` (causal)
  and Keras's `ops.dot_product_attention`; PyTorch's
  `scaled_dot_product_attention`;

at fla's benchmark shapes (batch x length 8 x 2,048, 4 x 4,096, 2 x 8,192:
16,384 tokens a call; 16 heads of 128, fla's `dim=2048` at `headdim=128`;
the selective scan at mamba-130m's inner width 1,536 with state 16), the
forward and the forward+backward of `sum(y^2)`, then one training step of
every registered model (`--models`, `small` preset, batch 8, length 2,048,
`mixed_bfloat16` when `--dtype=bfloat16`).

Each row gives the median time of `--repeats` samples (each sample runs the
call enough times back to back to last about 20 ms, then waits for the
device: `experiments/peers/timing.py`, shared by both sides), tokens/s, the
achieved GB/s and TFLOP/s and, for kerasseq's rows, the time as a multiple
of the peer's. GB/s counts the least traffic the call needs (every input
read and output written once, forward; twice that with the backward's
gradients), so it is a lower bound; TFLOP/s counts the algorithm's matmul
FLOPs: causal softmax attention `2 B H T^2 K` forward (half of the square),
chunked linear attention `2 B H T (C (K + V) + 2 K V)` at chunk size C, and
three times the forward for forward+backward (attention: 3.5 times, as
FlashAttention counts it). The scans and the delta rule report GB/s only.

kerasseq's measurements run under `KERAS_BACKEND=jax` in a subprocess per
kernel; each peer runs `experiments/peers/gpu_kernels.py` under
`--peer_python` (default this Python) in a subprocess per kernel, so that
the two frameworks never share a device's memory. A peer that is not
installed, or that needs a GPU this machine lacks, is skipped with a line
saying why; nothing is installed at run time. No measurement starts after
`--budget_s` seconds (default 450, so that the run ends within about 8
minutes on a GPU); those not started are listed.

`--accelerator_size=tiny` runs the same code at toy shapes in seconds, on a
CPU too (tests).
"""

import json
import os
import sys
import time

from absl import flags

from experiments import peers
from experiments.common import results as results_lib
from experiments.peers.gpu_kernels import IMPLEMENTATIONS as PEERS
from experiments.peers.timing import timed

FLAGS = flags.FLAGS

flags.DEFINE_string(
    "accelerator_size",
    "full",
    "accelerator: `full` (fla's and mamba's benchmark shapes) or `tiny` "
    "(toy shapes, for tests).",
)
flags.DEFINE_float(
    "budget_s",
    450.0,
    "accelerator: no measurement starts after this many seconds.",
)

SIZES = ("full", "tiny")
KERNELS = (
    "selective_scan",
    "delta_rule",
    "linear_attention",
    "softmax_attention",
)
# (batch, length) pairs: fla's benchmark_delta_rule.py; 16,384 tokens each
SHAPES = {
    "full": {
        "pairs": [(8, 2048), (4, 4096), (2, 8192)],
        "heads": 16,
        "head_dim": 128,
        "scan_dim": 1536,
        "scan_state": 16,
        "steps": {"batch": 8, "seq_len": 2048, "preset": "small"},
    },
    "tiny": {
        "pairs": [(2, 64)],
        "heads": 2,
        "head_dim": 8,
        "scan_dim": 16,
        "scan_state": 4,
        "steps": {"batch": 2, "seq_len": 32, "preset": "tiny"},
    },
}
OURS = {
    "selective_scan": ("recurrent", "chunk", "parallel"),
    "delta_rule": ("chunk",),
    "linear_attention": ("chunk",),
    "softmax_attention": ("compute_attention", "keras dot_product_attention"),
}
PEER_SCRIPT = os.path.join(
    os.path.dirname(os.path.dirname(__file__)), "peers", "gpu_kernels.py"
)
# the selective scan's parameters stay float32, as mamba-ssm keeps them
FLOAT32_INPUTS = ("A", "D", "delta_bias")


def kernel_shapes(kernel, size):
    """The shapes (dicts) a kernel is measured at."""
    s = SHAPES[size]
    shapes = []
    for batch, length in s["pairs"]:
        shape = {"batch": batch, "seq_len": length}
        if kernel == "selective_scan":
            shape.update(dim=s["scan_dim"], state=s["scan_state"])
        else:
            shape.update(heads=s["heads"], key=s["head_dim"])
            shape["value"] = s["head_dim"]
        shapes.append(shape)
    return shapes


def work(kernel, shape, pass_name, dtype_bytes, chunk_size):
    """`(bytes, flops)` of one call: the least memory traffic and the
    matmul FLOPs (`None` where not counted); see the module docstring."""
    b, t = shape["batch"], shape["seq_len"]
    if kernel == "selective_scan":
        d, n = shape["dim"], shape["state"]
        # u, delta, y: (B, T, D); B, C: (B, T, N); A: (D, N) float32
        elements = 3 * b * t * d + 2 * b * t * n
        traffic = elements * dtype_bytes + d * n * 4
        flops = None
    else:
        h, k, v = shape["heads"], shape["key"], shape["value"]
        # q, k: (B, T, H, K); v, o: (B, T, H, V); the delta rule's beta
        elements = b * t * h * (2 * k + 2 * v)
        elements += b * t * h * (kernel == "delta_rule")
        traffic = elements * dtype_bytes
        flops = None
        if kernel == "softmax_attention":
            flops = 2 * b * h * t * t * k
        elif kernel == "linear_attention":
            flops = 2 * b * h * t * (chunk_size * (k + v) + 2 * k * v)
    if pass_name == "backward":
        traffic *= 2
        if flops is not None:
            flops *= 3.5 if kernel == "softmax_attention" else 3
    return traffic, flops


# === kerasseq's side (in a subprocess under KERAS_BACKEND=jax) ===


def _our_function(kernel, mode, shape, chunk_size):
    """`(fn(**inputs) -> output, inputs as NumPy)` for one of our rows."""
    import numpy as np

    from experiments.common import ops_benchmark

    rng = np.random.default_rng(0)
    if kernel != "softmax_attention":
        op = "linear_attention" if kernel == "linear_attention" else kernel
        inputs = ops_benchmark.make_inputs(op, shape, "float32", rng)
        return ops_benchmark.op_function(op, mode, chunk_size), inputs
    import keras

    from kerasseq.layers import SoftmaxAttention

    b, t, h, k = (shape[x] for x in ("batch", "seq_len", "heads", "key"))
    inputs = {
        x: rng.standard_normal((b, t, h, k)).astype("float32")
        for x in ("q", "k", "v")
    }
    if mode == "keras dot_product_attention":
        return (
            lambda q, k, v: keras.ops.dot_product_attention(
                q, k, v, is_causal=True
            ),
            inputs,
        )
    layer = SoftmaxAttention(num_heads=h, head_dim=k, causal=True)
    layer.build((b, t, h * k))
    positions = np.arange(t)
    mask = (positions[:, None] >= positions[None, :])[None, None]

    def attend(q, k, v):
        return layer.compute_attention(q, k, v, mask)

    return attend, inputs


def measure_kernel(spec):
    """kerasseq's rows of one kernel: every mode, shape and pass."""
    import jax

    from experiments.common import ops_benchmark

    rows = []
    for shape in spec["shapes"]:
        for mode in OURS[spec["kernel"]]:
            for pass_name in spec["passes"]:
                labels = _labels(spec, shape, pass_name, f"kerasseq {mode}")
                if time.time() > spec["deadline"]:
                    rows.append({**labels, "skipped": "over --budget_s"})
                    continue
                try:
                    fn, inputs = _our_function(
                        spec["kernel"], mode, shape, spec["chunk_size"]
                    )
                    names = list(inputs)
                    tensors = [
                        jax.numpy.asarray(
                            inputs[n],
                            "float32" if n in FLOAT32_INPUTS else spec["dtype"],
                        )
                        for n in names
                    ]
                    compiled = ops_benchmark.compile_pass(
                        fn, names, pass_name == "backward"
                    )
                    seconds, first = timed(
                        lambda c=compiled, x=tensors: c(*x),
                        jax.block_until_ready,
                        spec["repeats"],
                    )
                except Exception as error:  # a row fails, the run goes on
                    rows.append({**labels, "error": _message(error)})
                    continue
                rows.append({**labels, "seconds": seconds, "compile_s": first})
    return rows


def _labels(spec, shape, pass_name, implementation):
    return {
        "kernel": spec["kernel"],
        "implementation": implementation,
        "shape": f"{shape['batch']}x{shape['seq_len']}",
        "pass": pass_name,
        "dims": shape,
    }


def _step_labels(spec, name):
    return {
        "kernel": "training step",
        "implementation": f"kerasseq {name}",
        "shape": f"{spec['batch']}x{spec['seq_len']}",
        "pass": "train_on_batch",
    }


def _message(error):
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:200]


def measure_steps(spec):
    """One training step of each model, in this process (JAX)."""
    import keras

    from experiments.common import layers_benchmark

    if spec["dtype"] == "bfloat16":
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    rows = []
    for name in spec["models"]:
        labels = _step_labels(spec, name)
        if time.time() > spec["deadline"]:
            rows.append({**labels, "skipped": "over --budget_s"})
            continue
        try:
            result = layers_benchmark.measure_model(
                name,
                spec["seq_len"],
                batch=spec["batch"],
                preset=spec["preset"],
                repeats=spec["repeats"],
            )
        except Exception as error:
            rows.append({**labels, "error": _message(error)})
            continue
        # host memory and the backend say nothing here: not reported
        for key in ("backend", "peak_memory_mb"):
            result.pop(key)
        rows.append({**labels, **result})
    return rows


def measure(spec_path):
    """The child's entry: measures the spec's group, prints one JSON line:
    `{"device": ..., "rows": [...]}`."""
    import jax

    import kerasseq  # noqa: F401  (before the first tensor: XLA's flags)

    with open(spec_path) as f:
        spec = json.load(f)
    device = jax.devices()[0]
    if spec["group"] == "steps":
        rows = measure_steps(spec)
    else:
        rows = measure_kernel(spec)
    device = f"{device.platform}: {device.device_kind}"
    print(json.dumps({"device": device, "rows": rows}))


# === the run ===


class _Run:
    """The rows, devices and skipped lines of a run so far."""

    def __init__(self, budget_s, run_json):
        self.deadline = time.time() + budget_s
        self.run_json = run_json
        self.rows, self.devices, self.skipped = [], {}, []

    def group(self, argv, backend, labels, side):
        """Runs one child (on `backend`, or as it is where `None`) unless
        the budget is spent; keeps its rows, or `labels` with its error."""
        if time.time() > self.deadline:
            for r in labels:
                self.skip(r, "not started, over --budget_s")
            return
        result = self.run_json(argv, {"backend": backend})
        if "error" in result:
            rows = [{**r, "error": result["error"]} for r in labels]
        else:
            self.devices[side] = result["device"]
            rows = result["rows"]
        for r in rows:
            if "skipped" in r:
                self.skip(r, r["skipped"])
            else:
                self.rows.append(r)
                print(table([r]).splitlines()[-1], flush=True)

    def skip(self, row, why):
        self.skipped.append(
            f"{row['implementation']} {row['kernel']} {row['shape']} "
            f"{row['pass']}: {why}"
        )


def _write_spec(name, spec):
    path = os.path.join(FLAGS.output_dir, f"accelerator_{name}.json")
    with open(path, "w") as f:
        json.dump(spec, f)
    return path


def run(kernels, models, dtype, passes, run_json, save):
    """Measures every group in turn (`run_json(argv, labels)` runs a
    child), prints and saves the table."""
    size = FLAGS.accelerator_size
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    started = time.time()
    state = _Run(FLAGS.budget_s, run_json)
    base = {
        "dtype": dtype,
        "passes": passes,
        "repeats": FLAGS.repeats,
        "chunk_size": FLAGS.chunk_size,
        "deadline": state.deadline,
    }
    ours = [sys.executable, "-m", "experiments.benchmark", "accelerator"]
    peer_missing = peers.missing(FLAGS.peer_python, ("torch",))
    for kernel in kernels:
        spec = {**base, "group": "kernel", "kernel": kernel}
        spec["shapes"] = kernel_shapes(kernel, size)
        path = _write_spec(kernel, spec)
        labels = [
            _labels(spec, shape, p, f"kerasseq {mode}")
            for shape in spec["shapes"]
            for mode in OURS[kernel]
            for p in passes
        ]
        state.group([*ours, f"--_measure={path}"], "jax", labels, "kerasseq")
        if peer_missing:
            state.skipped.append(f"{PEERS[kernel]}: {peer_missing}")
            continue
        labels = [
            _labels(spec, shape, p, PEERS[kernel])
            for shape in spec["shapes"]
            for p in passes
        ]
        argv = [FLAGS.peer_python, PEER_SCRIPT, f"--spec={path}"]
        state.group(argv, None, labels, "peers")
    if models:
        spec = {**base, **SHAPES[size]["steps"], "group": "steps"}
        spec["models"] = models
        path = _write_spec("steps", spec)
        labels = [_step_labels(spec, name) for name in models]
        state.group([*ours, f"--_measure={path}"], "jax", labels, "kerasseq")
    rows = add_rates(state.rows, dtype, FLAGS.chunk_size)
    environment = {
        "backend": "jax",
        "size": size,
        "dtype": dtype,
        "elapsed_s": round(time.time() - started, 1),
        **state.devices,
    }
    text = table(rows)
    if state.skipped:
        text += "\n\n" + "\n".join(f"skipped: {x}" for x in state.skipped)
    save("accelerator", environment, rows, text)
    return rows, state.skipped


def add_rates(rows, dtype, chunk_size):
    """Adds tokens/s, GB/s, TFLOP/s and the time as a multiple of the
    peer's (same kernel, shape and pass) to each measured row."""
    dtype_bytes = {"bfloat16": 2, "float16": 2, "float32": 4}[dtype]
    peers = {
        (r["kernel"], r["shape"], r["pass"]): r["seconds"]
        for r in rows
        if "seconds" in r and not r["implementation"].startswith("kerasseq")
    }
    for r in rows:
        if "seconds" not in r:
            continue
        batch, length = map(int, r["shape"].split("x"))
        r["tokens_per_s"] = batch * length / r["seconds"]
        if "dims" in r:
            traffic, flops = work(
                r["kernel"], r["dims"], r["pass"], dtype_bytes, chunk_size
            )
            r["gb_per_s"] = traffic / r["seconds"] / 1e9
            if flops is not None:
                r["tflop_per_s"] = flops / r["seconds"] / 1e12
        peer = peers.get((r["kernel"], r["shape"], r["pass"]))
        if peer and r["implementation"].startswith("kerasseq"):
            r["time_vs_peer"] = r["seconds"] / peer
    return rows


def table(rows):
    """The markdown table of accelerator rows (`results.benchmark_table`)."""
    return results_lib.benchmark_table(
        rows,
        [
            ("kernel", "kernel"),
            ("implementation", "implementation"),
            ("B x T", "shape"),
            ("pass", "pass"),
        ],
        [
            ("ms", lambda r: f"{r['seconds'] * 1e3:.3f}"),
            ("tokens/s", lambda r: _cell(r, "tokens_per_s", "{:,.0f}")),
            ("GB/s", lambda r: _cell(r, "gb_per_s", "{:,.1f}")),
            ("TFLOP/s", lambda r: _cell(r, "tflop_per_s", "{:.2f}")),
            ("time × peer", lambda r: _cell(r, "time_vs_peer", "{:.2f}")),
        ],
    )


def _cell(row, key, template):
    return results_lib.formatted(row.get(key), template, "")
