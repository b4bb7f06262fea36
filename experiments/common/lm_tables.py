"""The tables of `python -m experiments.benchmark lm`: each side's
measurement summarized into rows (scoring, and generation at each batch
size and prompt length, compared with kerasseq's where the peer ran), and
the two Markdown tables."""

from experiments.common import results as results_lib


def _agreeing_prefix(ours, theirs):
    """How many tokens two sequences share from their start."""
    same = 0
    for a, b in zip(ours, theirs, strict=True):
        if a != b:
            break
        same += 1
    return same


def summarize(name, result, documents, new_tokens, reference=None):
    """One side's table rows: its scoring, and its generation at each
    (batch size, prompt length); compared with `reference` (kerasseq's
    measurement) where given."""
    row = {
        "model": name,
        "framework": result["framework"],
        "parameters": result["parameters"],
        "docs_per_s": documents / result["score_s"],
        "first_score_s": result["score_first_s"],
        "generation": [],
    }
    if reference is not None:
        pairs = list(zip(result["scores"], reference["scores"], strict=True))
        row["max_score_difference"] = max(abs(a - b) for a, b in pairs)
        row["max_relative_score_difference"] = max(
            abs(a - b) / max(abs(b), 1e-30) for a, b in pairs
        )
    for i, setting in enumerate(result["generation"]):
        tokens = setting["batch_size"] * new_tokens
        decode = setting["generate_s"] - setting["first_token_s"]
        generation = {
            "batch_size": setting["batch_size"],
            "prompt_len": setting["prompt_len"],
            "first_token_s": setting["first_token_s"],
            # none where the tokens after the first took no measurable time
            "decode_tokens_per_s": (
                (tokens - setting["batch_size"]) / decode
                if decode > 0
                else None
            ),
            "tokens_per_s": tokens / setting["generate_s"],
            "first_generate_s": setting["first_generate_s"],
            "state_bytes": setting["state_bytes"],
        }
        if reference is not None:
            # the fewest leading tokens any of the batch's sequences share
            generation["same_greedy_tokens"] = min(
                _agreeing_prefix(ours, theirs)
                for ours, theirs in zip(
                    reference["generation"][i]["generated"],
                    setting["generated"],
                    strict=True,
                )
            )
        row["generation"].append(generation)
    return row


def table(rows, new_tokens):
    """The scoring table, then the generation table, in Markdown."""
    scoring = [
        "| model | framework | parameters | SST-2 docs/s | first call (s) | "
        "max Δ log-lik (relative) |",
        "|---|---|---|---|---|---|",
    ]
    generation = [
        "| model | framework | batch | prompt | time to first token (s) | "
        "decode tokens/s | tokens/s | first call (s) | state KiB per "
        "sequence | same greedy tokens |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            keys = [r["model"], r["framework"]]
            scoring.append(results_lib.error_row(keys, r["error"], 6, 100))
            continue
        difference = results_lib.formatted(
            r.get("max_score_difference"), "{:.1e}"
        )
        relative = results_lib.formatted(
            r.get("max_relative_score_difference"), " ({:.1e})"
        )
        scoring.append(
            f"| {r['model']} | {r['framework']} | {r['parameters']:,} | "
            f"{r['docs_per_s']:.1f} | {r['first_score_s']:.1f} | "
            f"{difference}{relative} |"
        )
        for g in r["generation"]:
            same = results_lib.formatted(
                g.get("same_greedy_tokens"), f"{{}}/{new_tokens}"
            )
            decode = results_lib.formatted(
                g["decode_tokens_per_s"], "{:.1f}", "—"
            )
            generation.append(
                f"| {r['model']} | {r['framework']} | {g['batch_size']} | "
                f"{g['prompt_len']} | {g['first_token_s']:.2f} | "
                f"{decode} | {g['tokens_per_s']:.1f} "
                f"| {g['first_generate_s']:.1f} | "
                f"{g['state_bytes'] / g['batch_size'] / 1024:,.1f} | {same} |"
            )
    return "\n".join(scoring) + "\n\n" + "\n".join(generation)


def progress(row, new_tokens):
    """Prints `row`'s table lines as it is measured."""
    for line in table([row], new_tokens).splitlines():
        if line and not line.startswith(("| model |", "|---")):
            print(line, flush=True)
