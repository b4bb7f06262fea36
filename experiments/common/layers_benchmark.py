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
    """The markdown table of layers results; with a `backend` column and
    each time as a multiple of the first backend's where results come from
    more than one backend (`--backends`)."""
    backends = list(dict.fromkeys(r.get("backend") for r in results))
    compared = len(backends) > 1
    header = ["model", "T", "steps/s", "tokens/s", "× gpt speed"]
    header += ["memory (MB)", "× gpt memory"]
    if compared:
        header[2:2] = ["backend"]
        header.append(f"time × {backends[0]}")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in results:
        keys = [r["model"], r["seq_len"]]
        if compared:
            keys.append(r.get("backend"))
        if "error" in r:
            lines.append(results_lib.error_row(keys, r["error"], len(header)))
            continue
        cells = [
            *keys,
            f"{r['steps_per_s']:.3f}",
            f"{r['tokens_per_s']:,.0f}",
            results_lib.formatted(r.get("speed_vs_gpt"), "{:.2f}"),
            results_lib.formatted(r["peak_memory_mb"], "{:,.0f}", "n/a"),
            results_lib.formatted(r.get("memory_vs_gpt"), "{:.2f}"),
        ]
        if compared:
            ratio = r.get("time_vs_first_backend")
            cells.append(results_lib.formatted(ratio, "{:.2f}"))
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


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
