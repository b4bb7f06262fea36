"""Comparison tables across the models of one run."""

import csv
import os


def comparison_table(config, all_results, data):
    """One row per model: sizes, training cost and the primary eval metric.

    Returns:
        list of dicts, in the order of `config.models`.
    """
    metric = data.primary_metric
    rows = []
    for name in config.models:
        result = all_results[name]
        row = {
            "model": name,
            "params": result["parameters"]["total"],
            "non_embedding_params": result["parameters"]["non_embedding"],
            "train_steps": result["train_steps"],
            "train_time_s": round(result["train_time_s"], 1),
        }
        # the task's split order (results.json stores them sorted by name)
        splits = [s for s in data.evals if s in result["eval"]]
        splits += [s for s in result["eval"] if s not in splits]
        for split in splits:
            row[f"{split} {metric}"] = round(
                result["eval"][split].get(metric, float("nan")), 4
            )
        rows.append(row)
    return rows


def _columns(rows):
    """Every key of every row, in order of first appearance."""
    return list(dict.fromkeys(k for row in rows for k in row))


def to_markdown(rows):
    """Renders rows as a GitHub markdown table."""
    if not rows:
        return ""
    keys = _columns(rows)
    lines = [
        "| " + " | ".join(keys) + " |",
        "|" + "|".join("---" for _ in keys) + "|",
    ]
    for row in rows:
        lines.append(
            "| " + " | ".join(str(row.get(k, "")) for k in keys) + " |"
        )
    return "\n".join(lines)


def write_table(rows, base_path):
    """Writes `base_path.md` and `base_path.csv`."""
    os.makedirs(os.path.dirname(base_path) or ".", exist_ok=True)
    with open(base_path + ".md", "w") as f:
        f.write(to_markdown(rows) + "\n")
    with open(base_path + ".csv", "w", newline="") as f:
        if rows:
            writer = csv.DictWriter(f, fieldnames=_columns(rows))
            writer.writeheader()
            writer.writerows(rows)
