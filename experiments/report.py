r"""Reports: matched parameter counts, tables of finished runs, and the
measured-results documents of `docs/results/`.

    python -m experiments.report params            # every model x preset
    python -m experiments.report results --results_dir=runs
    python -m experiments.report document --results_dir=runs \
        --title="MQAR at the small preset" --output=docs/results/mqar.md

`params` builds every registered model at every preset for one task shape
and prints total, embedding and non-embedding parameters, with each model's
non-embedding count relative to GPT's (presets are matched within 10%).
`results` collects every `results.json` under `--results_dir` into one table per
task. `document` writes the same tables (and those of `experiments.benchmark`
outputs in the directory) as a markdown document stamped with what the runs
recorded (`provenance` in `results.json`: command, commit, date, machine,
library versions) and the commands that regenerate it;
`--results_dir` may list several workdirs, separated by commas, and
`--notes` names a markdown file appended below the tables.
"""

import glob
import json
import os
import shlex

from absl import app
from absl import flags

from experiments.common import console
from experiments.common import results as results_lib

flags.DEFINE_string(
    "results_dir", "runs", "Workdir(s) to collect results from (commas)."
)
flags.DEFINE_string("output", "", "document: the file to write (else stdout).")
flags.DEFINE_string("title", "Measured results", "document: its title.")
flags.DEFINE_string("notes", "", "document: a markdown file to append.")
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
        if "eval" not in result:  # experiments.evaluate's, not a training run
            continue
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


NOT_RECORDED = "not recorded"


def _stamp_value(values):
    """One stamp line's text from the runs' values: their distinct values,
    in order, or `not recorded` where no run recorded one."""
    values = [v for v in dict.fromkeys(values) if v]
    return "; ".join(values) if values else NOT_RECORDED


def _date_range(dates):
    """`first to last` of the runs' dates (one date where they agree)."""
    dates = sorted(d for d in dates if d)
    if not dates:
        return NOT_RECORDED
    return dates[0] if dates[0] == dates[-1] else f"{dates[0]} to {dates[-1]}"


def _versions_text(versions):
    return ", ".join(f"{name} {version}" for name, version in versions.items())


def stamp_lines(stamp):
    """The stamp of a results document, as markdown lines: `stamp` maps
    command, commit, date, machine, versions and regenerate to text."""
    lines = []
    for key in ("command", "commit", "date", "machine", "versions"):
        value = stamp.get(key) or NOT_RECORDED
        code = key in ("command", "commit")
        lines.append(f"- {key}: " + (_code(value) if code else value))
    lines.append(f"- regenerate with: {_code(stamp['regenerate'])}")
    return lines


def _code(value):
    """`value` as inline code, unless it says it was not recorded."""
    return value if value.startswith(NOT_RECORDED) else f"`{value}`"


GENERATED = (
    "<!-- written by `python -m experiments.report document`: rerun it "
    "(see regenerate) rather than editing the numbers -->"
)


def render_document(title, stamp, tables, notes="", origin=GENERATED):
    """A results document: title, origin, stamp, one table per task, notes.

    `tables` maps a section name to its rows (dicts) or to markdown text;
    `docs/results/*.md` are all in this form.
    """
    parts = [f"# {title}", origin, "\n".join(stamp_lines(stamp))]
    for name, table in tables.items():
        text = (
            table if isinstance(table, str) else results_lib.to_markdown(table)
        )
        parts.append(f"## {name}\n\n{text.strip()}")
    if notes.strip():
        parts.append(notes.strip())
    return "\n\n".join(parts) + "\n"


def _finished_results(workdirs):
    """Every `results.json` of a finished training run under `workdirs`."""
    found = []
    for workdir in workdirs:
        pattern = os.path.join(workdir, "*", "*", "results.json")
        for path in sorted(glob.glob(pattern)):
            with open(path) as f:
                result = json.load(f)
            if "eval" in result:  # a training run (as `result_tables`)
                found.append(result)
    return found


def _benchmark_outputs(workdirs):
    """`(name, saved json, table)` of every `experiments.benchmark` output
    in `workdirs` (its `--output_dir`: `<kind>_<backend>.json` holding
    `environment` and `results`, and the `.md` table beside it)."""
    found = []
    for workdir in workdirs:
        for path in sorted(glob.glob(os.path.join(workdir, "*.json"))):
            with open(path) as f:
                saved = json.load(f)
            base = path.removesuffix(".json")
            if not isinstance(saved, dict) or "environment" not in saved:
                continue
            if not os.path.exists(base + ".md"):
                continue
            with open(base + ".md") as f:
                # the first paragraph repeats the environment (the stamp's)
                table = f.read().split("\n\n", 1)[-1]
            found.append((os.path.basename(base), saved, table))
    return found


def _benchmark_provenance(saved):
    """A benchmark output's provenance, the machine and versions filled in
    from its environment where the output predates `provenance`."""
    env = saved["environment"]
    versions = {k: env.get(k) for k in ("python", "keras", "tensorflow", "jax")}
    machine = f"{env.get('machine')}, {env.get('cpus')} CPUs"
    machine += f", device {env.get('device_name') or env.get('device')}"
    return {
        "machine": machine,
        "versions": {k: v for k, v in versions.items() if v},
        **saved.get("provenance", {}),
    }


def regenerate_command(workdirs, title, output, notes=""):
    """The `report document` command that writes this document again."""
    argv = [
        "python",
        "-m",
        "experiments.report",
        "document",
        f"--results_dir={','.join(workdirs)}",
        f"--title={title}",
        f"--output={output or '-'}",
    ]
    if notes:
        argv.append(f"--notes={notes}")
    return shlex.join(argv)


def results_document(workdirs, title, output="", notes_path=""):
    """The markdown document of what `workdirs` hold: finished training
    runs (one table per task, as `results`) and `experiments.benchmark`
    outputs (their tables), stamped with the provenance they recorded.
    None where there is neither."""
    runs = _finished_results(workdirs)
    benchmarks = _benchmark_outputs(workdirs)
    if not runs and not benchmarks:
        return None
    recorded = [r.get("provenance") or {} for r in runs]
    recorded += [_benchmark_provenance(saved) for _, saved, _ in benchmarks]
    finished = [r.get("finished_at") for r in runs] + [None] * len(benchmarks)
    commands = [p.get("command") for p in recorded]
    stamp = {
        "command": _stamp_value(commands),
        "commit": _stamp_value(p.get("commit") for p in recorded),
        "date": _date_range(
            p.get("date") or date
            for p, date in zip(recorded, finished, strict=True)
        ),
        "machine": _stamp_value(p.get("machine") for p in recorded),
        "versions": _stamp_value(
            _versions_text(p["versions"]) for p in recorded if p.get("versions")
        ),
    }
    rerun = [c for c in dict.fromkeys(commands) if c]
    stamp["regenerate"] = " && ".join(
        rerun + [regenerate_command(workdirs, title, output, notes_path)]
    )
    notes = ""
    if notes_path:
        with open(notes_path) as f:
            notes = f.read()
    tables = {}
    for workdir in workdirs:
        for task, rows in result_tables(workdir).items():
            tables.setdefault(task, []).extend(rows)
    for name, _, table in benchmarks:
        tables[name] = table
    return render_document(title, stamp, tables, notes)


def main(argv):
    if len(argv) != 2 or argv[1] not in ("params", "results", "document"):
        raise app.UsageError(
            "usage: python -m experiments.report params|results|document "
            "[flags]"
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
    if argv[1] == "document":
        workdirs = [d for d in FLAGS.results_dir.split(",") if d]
        output = "" if FLAGS.output == "-" else FLAGS.output
        text = results_document(workdirs, FLAGS.title, output, FLAGS.notes)
        if text is None:
            raise app.UsageError(
                f"no results.json under {FLAGS.results_dir!r} (*/*/)"
            )
        if not output:
            print(text, end="")
            return
        os.makedirs(os.path.dirname(output) or ".", exist_ok=True)
        with open(output, "w") as f:
            f.write(text)
        print(f"wrote {output}")
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
