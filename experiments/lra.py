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

from absl import flags

from experiments.common import config as config_lib
from experiments.common import console
from experiments.common import options
from experiments.common.flags import define_shared_flags
from experiments.common.lazy import lazy_import
from experiments.common.options import catalogue
from experiments.common.options import setting

np = lazy_import("numpy")
train = lazy_import("experiments.common.train")
lra_generation = lazy_import("experiments.common.lra_generation")
batching = lazy_import("kerasseq.data.batching")
listops = lazy_import("kerasseq.data.listops")
lra = lazy_import("kerasseq.data.lra")

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
# the tasks that hold out validation examples from their training set
HELD_OUT_VALIDATION = {"text": 0, "image": 5000}


@dataclasses.dataclass
class LraOptions(options.ExampleLimits):
    """The LRA binary's options. For one task (`for_task`) the options that
    do not apply to it are `None`, so that they are not part of its run's
    record."""

    max_length: int | None = setting(
        None,
        "Tokens per sequence (per document for retrieval); default LRA's.",
        minimum=1,
    )
    validation_size: int | None = setting(
        None,
        "text, image: examples held out from the end of the training set "
        "for validation (default: none for text, 5000 for image).",
        minimum=0,
    )
    generate: bool | None = setting(
        False,
        "listops, pathfinder: draw the data with the built-in generator "
        "when --data_dir (or WORKDIR/<task>/data) has none (without "
        "--data_dir and with --download=auto they are drawn anyway).",
    )
    num_generated: int | None = setting(
        None,
        "Examples to generate (default 100000 ListOps, 200000 Pathfinder).",
        minimum=10,
    )
    listops_max_depth: int | None = setting(
        10, "Generated ListOps depth.", minimum=1
    )
    listops_max_args: int | None = setting(
        10, "Generated ListOps: most arguments per list.", minimum=1
    )
    listops_min_length: int | None = setting(
        500,
        "Generated ListOps: shortest expression (the longest is --max_length).",
        minimum=1,
    )
    listops_tokens: str | None = setting(
        "lra",
        "ListOps tokens: lra drops ']' as LRA's pipeline did for its "
        "published table (the LRA paper's); brackets keeps it, as LRA's "
        "pipeline since March 2021 and S4's do.",
        choices=catalogue.LISTOPS_TOKENS,
    )
    pathfinder_difficulty: str | None = setting(
        "curv_baseline",
        "Pathfinder: which of LRA's difficulties to read.",
        choices=catalogue.PATHFINDER_DIFFICULTIES,
    )
    # whether the model takes LRA's sizes for the task (set by task_config)
    lra_sizes: bool = False

    def for_task(self, task):
        spec = lra.task_spec(task)
        if self.generate and task not in GENERATED_SIZES:
            raise ValueError(
                f"--generate applies to --task=listops or pathfinder (the "
                f"tasks with generators), got --task={task}."
            )
        if self.validation_size is not None and (
            task not in HELD_OUT_VALIDATION
        ):
            raise ValueError(
                f"--validation_size applies to --task=text or image (the "
                f"others have validation files or a fixed split), got "
                f"--task={task}."
            )
        if task in ("image", "pathfinder") and self.max_length not in (
            None,
            spec.max_length,
        ):
            raise ValueError(
                f"--max_length for --task={task} is the pixel count "
                f"{spec.max_length}, got {self.max_length}."
            )
        generate = bool(self.generate) and task in GENERATED_SIZES
        generating_listops = generate and task == "listops"
        resolved = dataclasses.replace(
            self,
            max_length=self.max_length or spec.max_length,
            validation_size=_given_or_default(
                self.validation_size, HELD_OUT_VALIDATION.get(task)
            ),
            generate=generate if task in GENERATED_SIZES else None,
            num_generated=_given_or_default(
                self.num_generated, GENERATED_SIZES[task] if generate else None
            ),
            listops_max_depth=_applying(
                generating_listops, self.listops_max_depth
            ),
            listops_max_args=_applying(
                generating_listops, self.listops_max_args
            ),
            listops_min_length=_applying(
                generating_listops, self.listops_min_length
            ),
            listops_tokens=_applying(task == "listops", self.listops_tokens),
            pathfinder_difficulty=_applying(
                task == "pathfinder", self.pathfinder_difficulty
            ),
        )
        if generating_listops:
            listops.check_settings(
                resolved.listops_max_depth,
                resolved.listops_max_args,
                resolved.listops_min_length,
                resolved.max_length,
            )
        return resolved


def _given_or_default(value, default):
    """`value`, or `default` where the option applies (`default` is not
    `None`) and was not given."""
    if default is None:
        return None
    return default if value is None else value


def _applying(applies, value):
    return value if applies else None


def define_flags():
    """Defines this binary's flags (only when it runs as the program, so
    that tests can import it beside the other binaries)."""
    define_shared_flags(
        catalogue.LRA_TASKS + ("all",),
        default_task="listops",
        download_modes=config_lib.download_modes("lra"),
    )
    options.define_flags(LraOptions)


FLAGS = flags.FLAGS


def wants_generator(task, generate, data_dir, download):
    """Whether `task`'s data is drawn by the built-in generator: when
    `--generate` asks, or for ListOps and Pathfinder when no data is given
    (no `--data_dir`, `--download=auto`)."""
    if task not in GENERATED_SIZES:
        return generate  # LraOptions.for_task refuses it
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
        task_args: the task's `LraOptions`.
        given: set of flag names given explicitly.
    """
    spec = lra.task_spec(task)
    lra_sizes = "preset" not in given
    changes = {
        "task": task,
        "task_args": dataclasses.replace(task_args, lra_sizes=lra_sizes),
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
    max_length = args.max_length
    data_dir = config.data_dir
    if args.generate:
        data_dir = lra_generation.ensure_generated(config)
    elif config.download == "lra_release" and task in lra.RELEASE_TASKS:
        data_dir = lra.release_dir(
            task, args.pathfinder_difficulty or "curv_baseline"
        )
    # TensorFlow Datasets' downloads (text, image) go with any mode but never
    download = "never" if config.download == "never" else "auto"
    if task == "listops":
        return {
            s: lra.load_listops(data_dir, s, max_length, args.listops_tokens)
            for s in ("train", "val", "test")
        }
    if task == "retrieval":
        return {
            s: lra.load_retrieval(data_dir, s, max_length)
            for s in ("train", "val", "test")
        }
    if task == "pathfinder":
        data = lra.load_pathfinder(
            data_dir, max_length, args.pathfinder_difficulty
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
    if args.validation_size:
        splits["train"], splits["val"] = _hold_out(
            splits["train"], args.validation_size, task
        )
    splits["test"] = load(data_dir, "test", max_length, download)
    return splits


def make_task_data(config):
    """Loads the task's splits and builds the datasets `train.run` takes."""
    spec = lra.task_spec(config.task)
    args = config.task_args
    splits = load_splits(config)
    for split, data in splits.items():
        limit = args.limit(split)
        if limit:
            splits[split] = data.take(slice(0, limit))
        if not len(splits[split]):
            raise ValueError(f"The {config.task} {split} split is empty.")

    def dataset(data, training=False):
        return batching.array_dataset(
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
            "max_sequence_length": args.max_length,
        },
        model_overrides=spec.model_overrides if args.lra_sizes else {},
        report=_report(config),
    )


def _report(config):
    """What `results.json` says of the data: for ListOps, its tokens and
    the published results that read the same ones."""
    if config.task != "listops":
        return {}
    tokens = config.task_args.listops_tokens
    return {
        "listops_tokens": tokens,
        "published_with": listops.PUBLISHED_WITH[tokens],
    }


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
    tasks = catalogue.LRA_TASKS if FLAGS.task == "all" else (FLAGS.task,)
    given = {name for name in FLAGS if FLAGS[name].present}
    with console.usage_errors():
        flagged = options.from_flags(LraOptions, FLAGS)
        configs = []
        for task in tasks:
            task_args = dataclasses.replace(
                flagged,
                # with --task=all, it reaches the tasks it applies to
                validation_size=flagged.validation_size
                if FLAGS.task != "all" or task in HELD_OUT_VALIDATION
                else None,
                # with --task=all, --generate reaches the generated tasks
                generate=wants_generator(
                    task,
                    FLAGS.generate
                    and (FLAGS.task != "all" or task in GENERATED_SIZES),
                    FLAGS.data_dir,
                    FLAGS.download,
                ),
            )
            base = config_lib.from_flags(FLAGS, "lra", task_args, task=task)
            configs.append(task_config(base, task, base.task_args, given))
    train.run_suite(
        configs,
        make_task_data,
        lra_table,
        "lra_table",
        "Long Range Arena, test accuracy (%):",
    )


if __name__ == "__main__":
    define_flags()
    console.run(main)
