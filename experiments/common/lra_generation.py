"""LRA's ListOps and Pathfinder data drawn by kerasseq's generators
(`experiments.lra --generate`) into the data directory, once: a
`<task>_generator.json` beside the data records the settings it was drawn
with, and data drawn with other settings is an error, never overwritten.
"""

import json
import os
import sys

from experiments.common.run_records import SettingsConflict
from kerasseq.data import listops
from kerasseq.data import pathfinder

# the share of generated ListOps examples in each of `val` and `test`
LISTOPS_EVAL_FRACTION = 0.02


def _generated_dir(config):
    return config.data_dir or os.path.join(config.workdir, config.task, "data")


def _generator_record(config):
    """The settings that decide generated data."""
    args = config.task_args
    record = {
        "task": config.task,
        "seed": config.seed,
        "num_generated": args.num_generated,
    }
    if config.task == "listops":
        for name in (
            "max_length",
            "listops_max_depth",
            "listops_max_args",
            "listops_min_length",
        ):
            record[name] = getattr(args, name)
    else:
        record["pathfinder_difficulty"] = args.pathfinder_difficulty
    return record


def ensure_generated(config):
    """Draws ListOps or Pathfinder data into the data directory when it has
    none (`--generate`). A `<task>_generator.json` there records the
    settings (one per task: `--task=all` may share one `--data_dir`); data
    drawn with other settings is an error, never overwritten."""
    directory = _generated_dir(config)
    record_path = os.path.join(directory, f"{config.task}_generator.json")
    record = _generator_record(config)
    if os.path.exists(record_path):
        with open(record_path) as f:
            saved = json.load(f)
        if saved != record:
            raise SettingsConflict(
                f"{directory} holds {config.task} data generated with other "
                f"settings ({saved}, now {record}). Nothing was changed; use "
                "another --data_dir or --workdir."
            )
        return directory
    if config.task == "listops" and listops.split_path(directory, "train"):
        return directory
    if config.task == "pathfinder" and pathfinder.has_data(
        directory, config.task_args.pathfinder_difficulty
    ):
        return directory
    os.makedirs(directory, exist_ok=True)
    total = config.task_args.num_generated
    print(
        f"Drawing {total:,} {config.task} examples with the built-in "
        f"generator (seed {config.seed}) into {directory}; later runs read "
        "them there.",
        file=sys.stderr,
    )
    if config.task == "listops":
        args = config.task_args
        evals = max(1, int(total * LISTOPS_EVAL_FRACTION))
        splits = listops.generate(
            {"train": total - 2 * evals, "val": evals, "test": evals},
            config.seed,
            args.listops_max_depth,
            args.listops_max_args,
            args.listops_min_length,
            args.max_length,
            progress=True,
        )
        for split, examples in splits.items():
            path = os.path.join(directory, listops.SPLIT_FILES[split])
            listops.write_tsv(path, examples)
    else:
        difficulty = config.task_args.pathfinder_difficulty
        images, labels = pathfinder.generate(
            total,
            config.seed,
            contour_length=pathfinder.CONTOUR_LENGTHS[difficulty],
            progress=True,
        )
        pathfinder.write(directory, images, labels, difficulty=difficulty)
    with open(record_path, "w") as f:
        json.dump(record, f, indent=2, sort_keys=True)
    return directory
