r"""Reports: matched parameter counts, and tables of finished runs.

    python -m experiments.report params            # every model x preset
    python -m experiments.report results --results_dir=runs

`params` builds every registered model at every preset for one task shape
and prints total, embedding and non-embedding parameters, with each model's
non-embedding count relative to GPT's (presets are matched within 10%).
`results` collects every `results.json` under `--results_dir` into one table per
task.
"""

import glob
import json
import os

from absl import app
from absl import flags

from experiments.common import console
from experiments.common import results as results_lib

flags.DEFINE_string("results_dir", "runs", "Workdir to collect results from.")
flags.DEFINE_string("head", "token_classification", "Task head for params.")
flags.DEFINE_integer("vocabulary_size", 256, "Vocabulary for params.")
flags.DEFINE_integer("num_classes", 2, "Classes for params.")
flags.DEFINE_integer("max_sequence_length", 1024, "Positions for params.")
FLAGS = flags.FLAGS


def parameter_rows(task, vocabulary_size, num_classes, max_sequence_length):
    """One row per (preset, model) with parameter counts."""
    from kerasseq.models import MODEL_NAMES
    from kerasseq.models import PRESETS
    from kerasseq.models import build_model
    from kerasseq.models import count_parameters

    rows = []
    for preset in PRESETS:
        counts = {}
        for name in MODEL_NAMES:
            kwargs = {"vocabulary_size": vocabulary_size}
            if task != "causal_lm":
                kwargs["num_classes"] = num_classes
            model = build_model(
                name,
                task,
                preset,
                max_sequence_length=max_sequence_length,
                **kwargs,
            )
            counts[name] = count_parameters(model)
        reference = counts.get("gpt", next(iter(counts.values())))
        for name, count in counts.items():
            ratio = count["non_embedding"] / reference["non_embedding"]
            rows.append(
                {
                    "preset": preset,
                    "model": name,
                    "total": count["total"],
                    "embedding": count["embedding"],
                    "non_embedding": count["non_embedding"],
                    "vs_gpt": f"{ratio:.3f}",
                }
            )
    return rows


def result_tables(workdir):
    """Task name -> rows of its finished models."""
    tables = {}
    pattern = os.path.join(workdir, "*", "*", "results.json")
    for path in sorted(glob.glob(pattern)):
        with open(path) as f:
            result = json.load(f)
        row = {
            "model": result["model"],
            "preset": result["preset"],
            "params": result["parameters"]["total"],
            "train_steps": result["train_steps"],
            "train_time_s": round(result["train_time_s"], 1),
        }
        for split, metrics in result["eval"].items():
            for key, value in metrics.items():
                if key != "loss":
                    row[f"{split} {key}"] = round(value, 4)
        tables.setdefault(result["task"], []).append(row)
    return tables


def main(argv):
    if len(argv) != 2 or argv[1] not in ("params", "results"):
        raise app.UsageError(
            "usage: python -m experiments.report params|results [flags]"
        )
    if argv[1] == "params":
        rows = parameter_rows(
            FLAGS.head,
            FLAGS.vocabulary_size,
            FLAGS.num_classes,
            FLAGS.max_sequence_length,
        )
        print(results_lib.to_markdown(rows))
        return
    tables = result_tables(FLAGS.results_dir)
    if not tables:
        raise app.UsageError(
            f"no results.json under {FLAGS.results_dir!r}/*/*/"
        )
    for task, rows in tables.items():
        print(f"\n## {task}\n\n{results_lib.to_markdown(rows)}")


if __name__ == "__main__":
    console.run(main)
