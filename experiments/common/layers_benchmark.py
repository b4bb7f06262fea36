"""`python -m experiments.benchmark layers`: one model's training step
measured in a process (`measure_model`, also run by `accelerator`), and
the tables and plot: each model's training speed and memory against `gpt`
at the same length, and against the first backend where several ran
(`--backends`)."""

import statistics
import time

from experiments.common import ops_benchmark
from experiments.common import results as results_lib

# each model is a token classifier over this vocabulary (causal and
# bidirectional models run the same head), trained at this batch size
VOCABULARY = 256
BATCH = 4


def measure_model(name, length, batch=None, preset="small", repeats=5):
    """Training speed and memory of one registered model in this process:
    `repeats` timed `train_on_batch` calls after a first one (compile)."""
    import keras
    import numpy as np

    from kerasseq.models import build_model
    from kerasseq.models import count_parameters

    batch = batch or BATCH
    model = build_model(
        name,
        "token_classification",
        preset,
        vocabulary_size=VOCABULARY,
        num_classes=VOCABULARY,
        max_sequence_length=length,
    )
    model.compile(
        optimizer=keras.optimizers.Adam(1e-4),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=True,
    )
    rng = np.random.default_rng(0)
    ids = rng.integers(1, VOCABULARY, (batch, length)).astype("int32")
    inputs = {"token_ids": ids, "padding_mask": np.ones_like(ids, bool)}
    labels = np.roll(ids, -1, axis=1)
    baseline = ops_benchmark.reset_peak_rss()
    start = time.perf_counter()
    model.train_on_batch(inputs, labels)
    compile_s = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        loss = model.train_on_batch(inputs, labels)
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    peak = ops_benchmark.read_status("VmHWM")
    memory = (peak - baseline) / 1024 if peak and baseline else None
    return {
        "backend": keras.backend.backend(),
        "model": name,
        "seq_len": length,
        "batch": batch,
        "preset": preset,
        "parameters": count_parameters(model)["total"],
        "seconds": seconds,
        "steps_per_s": 1.0 / seconds,
        "tokens_per_s": batch * length / seconds,
        "compile_s": compile_s,
        "peak_memory_mb": memory,
        "loss_finite": bool(np.isfinite(float(np.asarray(loss).ravel()[0]))),
    }


def relative_to_gpt(results):
    """Adds throughput and memory ratios to gpt at the same length (on
    the same backend)."""
    gpt = {
        (r["seq_len"], r.get("backend")): r
        for r in results
        if r.get("model") == "gpt" and "error" not in r
    }
    for r in results:
        ref = gpt.get((r.get("seq_len"), r.get("backend")))
        if ref is None or "error" in r:
            continue
        r["speed_vs_gpt"] = r["tokens_per_s"] / ref["tokens_per_s"]
        if r["peak_memory_mb"] and ref["peak_memory_mb"]:
            r["memory_vs_gpt"] = r["peak_memory_mb"] / ref["peak_memory_mb"]
    return results


def table(results):
    """The markdown table of layers results (`results.benchmark_table`)."""
    return results_lib.benchmark_table(
        results,
        [("model", "model"), ("T", "seq_len")],
        [
            ("steps/s", lambda r: f"{r['steps_per_s']:.3f}"),
            ("tokens/s", lambda r: f"{r['tokens_per_s']:,.0f}"),
            ("× gpt speed", lambda r: _ratio(r, "speed_vs_gpt")),
            ("memory (MB)", lambda r: _memory(r)),
            ("× gpt memory", lambda r: _ratio(r, "memory_vs_gpt")),
        ],
    )


def _ratio(result, field):
    return results_lib.formatted(result.get(field), "{:.2f}")


def _memory(result):
    return results_lib.formatted(result["peak_memory_mb"], "{:,.0f}", "n/a")


def plot(results, path, title=""):
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
