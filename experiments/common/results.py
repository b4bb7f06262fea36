"""Comparison tables across the models of one run, and the provenance
(command, commit, date, machine, library versions) each result records."""

import csv
import datetime
import os
import platform
import shlex
import subprocess
import sys

ROOT = os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
)


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


def formatted(value, template, missing=""):
    """A table cell: `template.format(value)`, or `missing` where the
    result has no value (`None`)."""
    return missing if value is None else template.format(value)


def error_row(cells, error, num_columns, chars=80):
    """The markdown row of a benchmark result that failed: its key `cells`
    (model, length, ...), then `error: <message>` cut to `chars`
    characters, then empty cells up to `num_columns`."""
    cells = [*map(str, cells), f"error: {error[:chars]}"]
    return "| " + " | ".join(cells) + " |" + " |" * (num_columns - len(cells))


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


def write_and_print_table(rows, base_path, title=None):
    """`write_table`, then prints `title` (if given) and the table as
    Markdown."""
    write_table(rows, base_path)
    if title:
        print(title)
    print(to_markdown(rows))


def command_line(argv=None):
    """The command that started this process, as a user would type it:
    `python -m experiments.glue --task=sst2` for a binary run as a module."""
    argv = list(sys.argv if argv is None else argv)
    program = argv[0] if argv else ""
    name = os.path.basename(program).removesuffix(".py")
    if os.path.basename(os.path.dirname(program)) == "experiments":
        head = ["python", "-m", f"experiments.{name}"]
    else:
        head = ["python", program]
    return shlex.join(head + argv[1:])


def git_commit(root=ROOT):
    """The checkout's commit (`+dirty` with uncommitted changes to tracked
    files), or None outside a git checkout."""
    try:
        run = subprocess.run(
            ["git", "-C", root, "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if run.returncode:
            return None
        dirty = subprocess.run(
            [
                "git",
                "-C",
                root,
                "status",
                "--porcelain",
                "--untracked-files=no",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return run.stdout.strip() + ("+dirty" if dirty else "")


def library_versions():
    """Versions of Python and of the libraries a result depends on (those
    already imported: asking costs no import)."""
    versions = {"python": platform.python_version()}
    for name in ("keras", "tensorflow", "jax", "numpy"):
        module = sys.modules.get(name)
        if module is not None and hasattr(module, "__version__"):
            versions[name] = module.__version__
    if "keras" in sys.modules:
        versions["backend"] = sys.modules["keras"].backend.backend()
    return versions


def machine():
    """The operating system, processor, CPU count and, once Keras is
    imported, its devices: `Linux x86_64, 2 CPUs, devices cpu:0`."""
    text = f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs"
    keras = sys.modules.get("keras")
    if keras is not None:
        try:
            text += ", devices " + ", ".join(keras.distribution.list_devices())
        except Exception:  # a backend without the listing: the rest stands
            pass
    return text


def provenance():
    """How, where and when a result was made, for `results.json`:
    `{"command", "commit", "date" (UTC), "machine", "versions"}`."""
    return {
        "command": command_line(),
        "commit": git_commit(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds"
        ),
        "machine": machine(),
        "versions": library_versions(),
    }


def versus_first_backend(results, keys):
    """Adds to each result the ratio of its time to the first backend's
    for the same measurement (`keys`), where more than one ran."""
    if len({r.get("backend") for r in results}) < 2:
        return results
    first = {}
    for r in results:
        key = tuple(r.get(k) for k in keys)
        if "error" not in r:
            first.setdefault(key, r)
    for r in results:
        ref = first.get(tuple(r.get(k) for k in keys))
        if ref is not None and "error" not in r:
            r["time_vs_first_backend"] = r["seconds"] / ref["seconds"]
    return results


def benchmark_table(results, keys, values):
    """The markdown table of benchmark results, one row each.

    Args:
        results: result dicts; a failed one has an `error`.
        keys: `(header, field)` pairs naming each measurement.
        values: `(header, function of a result -> cell)` pairs.

    Where the results come from more than one backend (`--backends`), a
    `backend` column follows the keys and a last column gives each time as
    a multiple of the first backend's (`versus_first_backend`).
    """
    backends = list(dict.fromkeys(r.get("backend") for r in results))
    compared = len(backends) > 1
    header = [name for name, _ in keys] + ["backend"] * compared
    header += [name for name, _ in values]
    if compared:
        header.append(f"time × {backends[0]}")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in results:
        cells = [r[field] for _, field in keys] + [r.get("backend")] * compared
        if "error" in r:
            lines.append(error_row(cells, r["error"], len(header)))
            continue
        cells += [cell(r) for _, cell in values]
        if compared:
            ratio = r.get("time_vs_first_backend")
            cells.append(formatted(ratio, "{:.2f}"))
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)
