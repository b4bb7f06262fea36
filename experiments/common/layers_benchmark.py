"""The tables and plot of `python -m experiments.benchmark layers`: each
model's training speed and memory against `gpt` at the same length, and
against the first backend where several ran (`--backends`)."""

from experiments.common import results as results_lib


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
