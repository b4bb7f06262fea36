r"""GLUE: nine sentence(-pair) classification tasks, with GLUE's metrics.

Trains every model of `--model` on one task (or `--task=all`, the nine in
turn) and scores each validation split with the task's official metric
(CoLA: Matthews correlation; STS-B: Pearson and Spearman correlation;
MRPC and QQP: F1 and accuracy; MNLI: accuracy on the matched and the
mismatched sets; the others: accuracy). Results go to
`WORKDIR/<task>/<model>/`; after the runs the GLUE table (each task's score,
the mean of its metrics, and their average) is printed and saved as
`WORKDIR/glue_table.{md,csv}`.

    python -m experiments.glue --task=sst2 --model=gpt,mamba \
        --data_dir=/path/to/glue_data --tokenizer=gpt2 \
        --tokenizer_dir=/path/to/gpt2

`--data_dir` holds GLUE's release layout (`SST-2/train.tsv`, ...; see
`kerasseq/data/glue.py`); without it TensorFlow Datasets' `glue/<task>` is
used, downloaded and prepared the first time (`--download=never` reads a
prepared copy only). Sentence pairs are packed as `[first] A [end] B [end]`
(`first`: the end token, or WordPiece's `[CLS]`);
causal models classify from the last position, bidirectional ones from the
mean.
"""

import dataclasses
import functools
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

keras = lazy_import("keras")
np = lazy_import("numpy")
metrics = lazy_import("experiments.common.metrics")
train = lazy_import("experiments.common.train")
batching = lazy_import("kerasseq.data.batching")
glue = lazy_import("kerasseq.data.glue")


@dataclasses.dataclass
class GlueOptions(options.TokenizerOptions, options.ExampleLimits):
    """The GLUE binary's options."""

    max_length: int = setting(
        128, "Tokens per packed example (pairs cut to fit).", minimum=5
    )

    def for_task(self, task):
        glue.task_spec(task)
        return self


def define_flags():
    """Defines this binary's flags (only when it runs as the program, so
    that tests can import it beside the other binaries)."""
    define_shared_flags(
        catalogue.GLUE_TASKS + ("all",),
        default_task="sst2",
        default_model="gpt",
    )
    options.define_flags(GlueOptions)


FLAGS = flags.FLAGS


def _predictions(model, dataset, regression):
    outputs = model.predict(dataset, verbose=0)
    return outputs[:, 0] if regression else np.argmax(outputs, axis=-1)


def make_task_data(config):
    """Reads, tokenizes and packs the task's splits; the official metrics
    are scored on each validation split."""
    spec = glue.task_spec(config.task)
    args = config.task_args
    tokenizer = args.make_tokenizer()
    make_dataset, labels, report = {}, {}, {}
    for split in spec.splits:
        examples = glue.load_glue(
            config.task, split, config.data_dir, config.download
        )
        limit = args.limit(split)
        texts_a, texts_b = examples.texts_a, examples.texts_b
        split_labels = examples.labels
        if limit:
            texts_a, split_labels = texts_a[:limit], split_labels[:limit]
            texts_b = texts_b[:limit] if texts_b is not None else None
        if not len(split_labels):
            raise ValueError(f"The {config.task} {split} split is empty.")
        inputs, truncated = glue.pack(
            tokenizer, texts_a, texts_b, args.max_length
        )
        report[split] = {
            "examples": len(split_labels),
            "skipped_empty_text": examples.skipped,
            "truncated": truncated,
        }
        training = split == "train"
        make_dataset[split] = functools.partial(
            batching.array_dataset,
            inputs,
            split_labels,
            config.batch_size,
            config.seed,
            shuffle=training,
            drop_remainder=training,
        )
        labels[split] = split_labels
    if report["train"]["examples"] < config.batch_size:
        raise ValueError(
            f"{report['train']['examples']} training examples are fewer "
            f"than one batch (--batch_size={config.batch_size})."
        )

    def score(model, split, run_dir=None):
        predictions = _predictions(
            model, make_dataset[split](), spec.is_regression
        )
        return metrics.glue_metrics(config.task, labels[split], predictions)

    loss = make_metrics = None  # a classifier's: TaskData's defaults
    if spec.is_regression:
        loss = keras.losses.MeanSquaredError()
        make_metrics = lambda: [  # noqa: E731
            keras.metrics.MeanAbsoluteError(name="mae")
        ]
    return train.TaskData(
        head="sequence_classification",
        make_train=make_dataset["train"],
        evals={s: make_dataset[s]() for s in spec.eval_splits},
        model_args={
            "vocabulary_size": tokenizer.vocabulary_size,
            "num_classes": spec.num_classes,
            "max_sequence_length": args.max_length,
        },
        loss=loss,
        make_metrics=make_metrics,
        primary_metric=metrics.GLUE_METRICS[config.task][0],
        score=score,
        report=report,
    )


# === the GLUE table ===


def _task_scores(workdir, task, model):
    """The official metrics of `model` on `task` from its results.json, as
    `metrics.glue_score` takes them, or `{}`."""
    path = os.path.join(workdir, task, model, "results.json")
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        evals = json.load(f)["eval"]
    names = metrics.GLUE_METRICS[task]
    splits = glue.task_spec(task).eval_splits
    if not all(s in evals and set(names) <= set(evals[s]) for s in splits):
        return {}
    if task == "mnli":
        return {
            "mnli_matched": evals["validation_matched"],
            "mnli_mismatched": evals["validation_mismatched"],
        }
    return {task: evals["validation"]}


def glue_table(workdir, models):
    """Each model's GLUE score per task found under `workdir` (the mean of
    the task's metrics, in percent) and their average.

    Returns:
        list of dicts, one row per model of `models`.
    """
    rows = []
    for model in models:
        scores = {}
        for task in glue.TASKS:
            scores.update(_task_scores(workdir, task, model))
        row = {"model": model}
        summary = metrics.glue_score(scores) if scores else None
        for task in glue.TASKS:
            value = summary["tasks"].get(task) if summary else None
            row[task] = "" if value is None else round(100 * value, 2)
        row["average"] = round(100 * summary["average"], 2) if summary else ""
        row["tasks"] = len(summary["tasks"]) if summary else 0
        rows.append(row)
    return rows


def main(argv):
    del argv
    tasks = catalogue.GLUE_TASKS if FLAGS.task == "all" else (FLAGS.task,)
    configs = [
        config_lib.from_command_line(FLAGS, "glue", GlueOptions, task=task)
        for task in tasks
    ]
    train.run_suite(
        configs,
        make_task_data,
        glue_table,
        "glue_table",
        "GLUE, validation scores (%):",
    )


if __name__ == "__main__":
    define_flags()
    console.run(main)
