r"""Long Range Arena: ListOps, Text, Retrieval, Image and Pathfinder.

Trains every model of `--model` on one task (or `--task=all`, the five in
turn), writes `WORKDIR/<task>/<model>/` and the task's comparison table,
then prints the LRA table: test accuracy per task and model, and the
average over the tasks that have results.

    python -m experiments.lra --task=listops --model=gpt,mamba \
        --data_dir=/path/to/lra_release/listops-1000
    python -m experiments.lra --task=pathfinder --model=lru --generate

Each task starts from LRA's base config (sequence length, model width and
depth, steps, batch size, learning rate, warm-up, weight decay; see
`kerasseq.data.lra.SPECS`). A flag given on the command line replaces the
task's value; `--preset` replaces LRA's model sizes by the preset's. Data
comes from `--data_dir` in the formats of LRA's release (see
`kerasseq/data/lra.py`); without it, ListOps and Pathfinder are drawn by
the built-in generators into `WORKDIR/<task>/data` (`--generate` draws
them into `--data_dir`, never over existing files), Text and Image come
from TensorFlow Datasets (`imdb_reviews`, `cifar10`, downloaded the first
time), and `--download=lra_release` fetches LRA's release archive (about
7.7 GB, into kerasseq's cache) for ListOps, Retrieval and Pathfinder.
"""

import dataclasses
import json
import os
import sys

import keras
import numpy as np
from absl import app
from absl import flags

from experiments.common import config as config_lib
from experiments.common import console
from experiments.common import results as results_lib
from experiments.common import train
from experiments.common.flags import define_shared_flags
from kerasseq.data import listops
from kerasseq.data import lra
from kerasseq.data import pathfinder
from kerasseq.data.batching import array_dataset

# the setup each task takes from LRA's config unless a flag is given
_TASK_SETUP = (
    "steps",
    "batch_size",
    "learning_rate",
    "warmup_steps",
    "weight_decay",
)
# examples the generators draw by default: LRA's ListOps splits and the
# size of one Pathfinder difficulty of LRA's release
GENERATED_SIZES = {"listops": 100_000, "pathfinder": 200_000}
LISTOPS_EVAL_FRACTION = 0.02


def define_flags():
    """Defines this binary's flags (only when it runs as the program, so
    that tests can import it beside the other binaries)."""
    define_shared_flags(
        lra.TASKS + ("all",),
        default_task="listops",
        default_model="gpt",
        download_modes=config_lib.download_modes("lra"),
    )
    flags.DEFINE_integer(
        "max_length",
        None,
        "Tokens per sequence (per document for retrieval); default LRA's.",
    )
    flags.DEFINE_integer(
        "num_train_examples", None, "Use the first N training examples."
    )
    flags.DEFINE_integer(
        "num_eval_examples", None, "Use the first N examples of each eval."
    )
    flags.DEFINE_integer(
        "validation_size",
        None,
        "text, image: examples held out from the end of the training set "
        "for validation (default: none for text, 5000 for image).",
    )
    flags.DEFINE_bool(
        "generate",
        False,
        "listops, pathfinder: draw the data with the built-in generator "
        "when --data_dir (or WORKDIR/<task>/data) has none (without "
        "--data_dir and with --download=auto they are drawn anyway).",
    )
    flags.DEFINE_integer(
        "num_generated",
        None,
        "Examples to generate (default 100000 ListOps, 200000 Pathfinder).",
    )
    flags.DEFINE_integer("listops_max_depth", 10, "Generated ListOps depth.")
    flags.DEFINE_integer(
        "listops_max_args", 10, "Generated ListOps: most arguments per list."
    )
    flags.DEFINE_integer(
        "listops_min_length",
        500,
        "Generated ListOps: shortest expression (the longest is --max_length).",
    )
    flags.DEFINE_enum(
        "pathfinder_difficulty",
        "curv_baseline",
        list(pathfinder.DIFFICULTIES),
        "Pathfinder: which of LRA's difficulties to read.",
    )


FLAGS = flags.FLAGS


def make_task_args(
    task,
    max_length=None,
    num_train_examples=None,
    num_eval_examples=None,
    validation_size=None,
    generate=False,
    num_generated=None,
    listops_max_depth=10,
    listops_max_args=10,
    listops_min_length=500,
    pathfinder_difficulty="curv_baseline",
):
    """Validates the options of one LRA task into the config's
    `task_args`; options that do not apply to the task are left out."""
    spec = lra.task_spec(task)
    for name, value, minimum in (
        ("max_length", max_length, 1),
        ("num_train_examples", num_train_examples, 1),
        ("num_eval_examples", num_eval_examples, 1),
        ("validation_size", validation_size, 0),
        ("num_generated", num_generated, 10),
    ):
        config_lib.check_count(name, value, minimum)
    if generate and task not in GENERATED_SIZES:
        raise ValueError(
            f"--generate applies to --task=listops or pathfinder (the tasks "
            f"with generators), got --task={task}."
        )
    if validation_size is not None and task not in ("text", "image"):
        raise ValueError(
            f"--validation_size applies to --task=text or image (the others "
            f"have validation files or a fixed split), got --task={task}."
        )
    if task in ("image", "pathfinder") and max_length not in (
        None,
        spec.max_length,
    ):
        raise ValueError(
            f"--max_length for --task={task} is the pixel count "
            f"{spec.max_length}, got {max_length}."
        )
    args = {
        "max_length": max_length or spec.max_length,
        "num_train_examples": num_train_examples,
        "num_eval_examples": num_eval_examples,
    }
    if task in ("text", "image"):
        default = 5000 if task == "image" else 0
        args["validation_size"] = (
            default if validation_size is None else validation_size
        )
    if task in GENERATED_SIZES:
        args["generate"] = generate
        if generate:
            args["num_generated"] = num_generated or GENERATED_SIZES[task]
    if task == "listops" and generate:
        args["listops_max_depth"] = listops_max_depth
        args["listops_max_args"] = listops_max_args
        args["listops_min_length"] = listops_min_length
        listops.check_settings(
            listops_max_depth,
            listops_max_args,
            listops_min_length,
            args["max_length"],
        )
    if task == "pathfinder":
        if pathfinder_difficulty not in pathfinder.DIFFICULTIES:
            raise ValueError(
                f"--pathfinder_difficulty must be one of "
                f"{list(pathfinder.DIFFICULTIES)}, got "
                f"{pathfinder_difficulty!r}."
            )
        args["pathfinder_difficulty"] = pathfinder_difficulty
    return args


def wants_generator(task, generate, data_dir, download):
    """Whether `task`'s data is drawn by the built-in generator: when
    `--generate` asks, or for ListOps and Pathfinder when no data is given
    (no `--data_dir`, `--download=auto`)."""
    if task not in GENERATED_SIZES:
        return False
    if download == "lra_release":
        if generate:
            raise ValueError(
                "--generate draws the data, --download=lra_release fetches "
                "LRA's release: give one of them."
            )
        return False
    return bool(generate) or (data_dir is None and download == "auto")


def task_config(base, task, task_args, given):
    """The config of one task: LRA's setup for it, except what `given`
    (the names of flags set on the command line) overrides.

    Args:
        base: an `ExperimentConfig` from the flags.
        task: the LRA task.
        task_args: from `make_task_args`.
        given: set of flag names given explicitly.
    """
    spec = lra.task_spec(task)
    lra_sizes = "preset" not in given
    changes = {
        "task": task,
        "task_args": {**task_args, "lra_sizes": lra_sizes},
        "family": "lra",
    }
    for name in _TASK_SETUP:
        if name not in given:
            changes[name] = getattr(spec, name)
    if lra_sizes:
        changes["preset"] = spec.preset
        changes["model_args"] = {**spec.model_args(), **base.model_args}
    return dataclasses.replace(base, **changes)


# === data ===


def _generated_dir(config):
    return config.data_dir or os.path.join(config.workdir, config.task, "data")


def _generator_record(config):
    """The settings that decide generated data."""
    args = config.task_args
    record = {
        "task": config.task,
        "seed": config.seed,
        "num_generated": args["num_generated"],
    }
    if config.task == "listops":
        for name in ("max_length", "listops_max_depth", "listops_max_args"):
            record[name] = args[name]
        record["listops_min_length"] = args["listops_min_length"]
    else:
        record["pathfinder_difficulty"] = args["pathfinder_difficulty"]
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
            raise train.SettingsConflict(
                f"{directory} holds {config.task} data generated with other "
                f"settings ({saved}, now {record}). Nothing was changed; use "
                "another --data_dir or --workdir."
            )
        return directory
    if config.task == "listops" and listops.split_path(directory, "train"):
        return directory
    if config.task == "pathfinder" and pathfinder.has_data(
        directory, config.task_args["pathfinder_difficulty"]
    ):
        return directory
    os.makedirs(directory, exist_ok=True)
    total = config.task_args["num_generated"]
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
            args["listops_max_depth"],
            args["listops_max_args"],
            args["listops_min_length"],
            args["max_length"],
            progress=True,
        )
        for split, examples in splits.items():
            path = os.path.join(directory, listops.SPLIT_FILES[split])
            listops.write_tsv(path, examples)
    else:
        difficulty = config.task_args["pathfinder_difficulty"]
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


def _hold_out(data, size, task):
    if size >= len(data):
        raise ValueError(
            f"--validation_size={size} leaves no training examples of the "
            f"{len(data)} {task} examples found."
        )
    split = len(data) - size
    return data.take(slice(0, split)), data.take(slice(split, None))


def load_splits(config):
    """The task's `train`, `val` (if any) and `test` splits as
    `lra.TokenData`."""
    task, args = config.task, config.task_args
    max_length = args["max_length"]
    data_dir = config.data_dir
    if args.get("generate"):
        data_dir = ensure_generated(config)
    elif config.download == "lra_release" and task in lra.RELEASE_TASKS:
        data_dir = lra.release_dir(
            task, args.get("pathfinder_difficulty", "curv_baseline")
        )
    # TensorFlow Datasets' downloads (text, image) go with any mode but never
    download = "never" if config.download == "never" else "auto"
    if task == "listops":
        return {
            s: lra.load_listops(data_dir, s, max_length)
            for s in ("train", "val", "test")
        }
    if task == "retrieval":
        return {
            s: lra.load_retrieval(data_dir, s, max_length)
            for s in ("train", "val", "test")
        }
    if task == "pathfinder":
        data = lra.load_pathfinder(
            data_dir, max_length, args["pathfinder_difficulty"]
        )
        # LRA's split of one difficulty: 80% train, 10% val, 10% test
        first, second = int(0.8 * len(data)), int(0.9 * len(data))
        return {
            "train": data.take(slice(0, first)),
            "val": data.take(slice(first, second)),
            "test": data.take(slice(second, None)),
        }
    load = lra.load_text if task == "text" else lra.load_image
    splits = {"train": load(data_dir, "train", max_length, download)}
    if args["validation_size"]:
        splits["train"], splits["val"] = _hold_out(
            splits["train"], args["validation_size"], task
        )
    splits["test"] = load(data_dir, "test", max_length, download)
    return splits


def make_task_data(config):
    """Loads the task's splits and builds the datasets `train.run` takes."""
    spec = lra.task_spec(config.task)
    args = config.task_args
    splits = load_splits(config)
    for split, data in splits.items():
        limit = args[
            "num_train_examples" if split == "train" else "num_eval_examples"
        ]
        if limit:
            splits[split] = data.take(slice(0, limit))
        if not len(splits[split]):
            raise ValueError(f"The {config.task} {split} split is empty.")

    def dataset(data, training=False):
        return array_dataset(
            data.inputs,
            data.labels,
            config.batch_size,
            config.seed,
            shuffle=training,
            drop_remainder=training,
        )

    if len(splits["train"]) < config.batch_size:
        raise ValueError(
            f"{len(splits['train'])} training examples are fewer than one "
            f"batch (--batch_size={config.batch_size})."
        )
    return train.TaskData(
        head=spec.head,
        make_train=lambda: dataset(splits["train"], training=True),
        evals={s: dataset(d) for s, d in splits.items() if s != "train"},
        model_args={
            "vocabulary_size": spec.vocabulary_size,
            "num_classes": spec.num_classes,
            "max_sequence_length": args["max_length"],
        },
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        make_metrics=lambda: [
            keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        ],
        model_overrides=spec.model_overrides if args.get("lra_sizes") else {},
    )


# === the LRA table ===


def lra_table(workdir, models):
    """Test accuracy of each model on each LRA task found under `workdir`,
    and the mean over the tasks it has results for.

    Returns:
        list of dicts, one row per model of `models`.
    """
    rows = []
    for model in models:
        row, scores = {"model": model}, []
        for task in lra.TASKS:
            path = os.path.join(workdir, task, model, "results.json")
            value = ""
            if os.path.exists(path):
                with open(path) as f:
                    accuracy = json.load(f)["eval"].get("test", {})
                if "accuracy" in accuracy:
                    value = round(100 * accuracy["accuracy"], 2)
                    scores.append(value)
            row[task] = value
        row["average"] = round(float(np.mean(scores)), 2) if scores else ""
        row["tasks"] = len(scores)
        rows.append(row)
    return rows


def main(argv):
    del argv
    tasks = lra.TASKS if FLAGS.task == "all" else (FLAGS.task,)
    given = {name for name in FLAGS if FLAGS[name].present}
    try:
        configs = []
        for task in tasks:
            task_args = make_task_args(
                task,
                FLAGS.max_length,
                FLAGS.num_train_examples,
                FLAGS.num_eval_examples,
                # with --task=all, it reaches the tasks it applies to
                FLAGS.validation_size
                if FLAGS.task != "all" or task in ("text", "image")
                else None,
                wants_generator(
                    task, FLAGS.generate, FLAGS.data_dir, FLAGS.download
                ),
                FLAGS.num_generated,
                FLAGS.listops_max_depth,
                FLAGS.listops_max_args,
                FLAGS.listops_min_length,
                FLAGS.pathfinder_difficulty,
            )
            base = config_lib.from_flags(FLAGS, "lra", task_args)
            configs.append(task_config(base, task, task_args, given))
    except ValueError as error:
        raise app.UsageError(str(error)) from error
    for config in configs:
        train.run_program(config, make_task_data)
    table = lra_table(FLAGS.workdir, configs[0].models)
    results_lib.write_table(table, os.path.join(FLAGS.workdir, "lra_table"))
    print("Long Range Arena, test accuracy (%):")
    print(results_lib.to_markdown(table))


if __name__ == "__main__":
    define_flags()
    console.run(main)
