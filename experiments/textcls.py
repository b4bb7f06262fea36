r"""Text classification from a folder per class (e.g. BBC News, 5 classes).

Trains every model of `--model` on the texts under `--data_dir/<class>/`
(see `kerasseq/data/textcls.py`), split into train / validation / test
within each class by `--seed`, and reports accuracy on validation and test.
With `--init_from` a model starts from a pretrained checkpoint (and
`--tokenizer=wordpiece --tokenizer_dir=` the checkpoint's `vocab.txt` for a
BERT-style one):

    python -m experiments.textcls --data_dir=bbcnews/data \
        --model=transformer --tokenizer=wordpiece --tokenizer_dir=CKPT \
        --init_from=CKPT --max_length=256

Each text is packed as `[first] text [end]` and cut to `--max_length`.
"""

import functools

import keras
from absl import app
from absl import flags

from experiments.common import config as config_lib
from experiments.common import console
from experiments.common import train
from experiments.common.flags import define_shared_flags
from experiments.common.flags import define_tokenizer_flags
from kerasseq.data import textcls
from kerasseq.data import tokenizers
from kerasseq.data.batching import array_dataset
from kerasseq.data.glue import pack

TASKS = ("folder",)


def define_flags():
    """Defines this binary's flags (only when it runs as the program)."""
    define_shared_flags(
        TASKS, default_task="folder", default_model="gpt", download_modes=None
    )
    define_tokenizer_flags()
    flags.DEFINE_integer("max_length", 256, "Tokens per example (cut).")
    flags.DEFINE_float(
        "validation_fraction", 0.1, "Share of each class for validation."
    )
    flags.DEFINE_float("test_fraction", 0.2, "Share of each class for test.")


FLAGS = flags.FLAGS


def make_task_args(
    tokenizer="bytes",
    tokenizer_dir=None,
    max_length=256,
    validation_fraction=0.1,
    test_fraction=0.2,
):
    """Validates the options into the config's `task_args`."""
    config_lib.check_count("max_length", max_length, 3)
    tokenizers.check_name(tokenizer)
    # the fractions' own checks, on a two-class stand-in
    textcls.split_indices([0, 1], validation_fraction, test_fraction, 0)
    return {
        "tokenizer": tokenizer,
        "tokenizer_dir": tokenizer_dir,
        "max_length": max_length,
        "validation_fraction": validation_fraction,
        "test_fraction": test_fraction,
    }


def make_task_data(config):
    """Reads the folder, splits it and packs each split."""
    args = config.task_args
    tokenizer = tokenizers.make_tokenizer(
        args["tokenizer"], args["tokenizer_dir"]
    )
    folder = textcls.load_folder(config.data_dir)
    indices = textcls.split_indices(
        folder.labels,
        args["validation_fraction"],
        args["test_fraction"],
        config.seed,
    )
    report = {
        "classes": list(folder.class_names),
        "latin1_files": folder.latin1_files,
    }
    make_dataset = {}
    for split, rows in indices.items():
        if not len(rows):
            continue
        inputs, truncated = pack(
            tokenizer,
            [folder.texts[i] for i in rows],
            None,
            args["max_length"],
        )
        report[split] = {"examples": len(rows), "truncated": truncated}
        training = split == "train"
        make_dataset[split] = functools.partial(
            array_dataset,
            inputs,
            folder.labels[rows],
            config.batch_size,
            config.seed,
            shuffle=training,
            drop_remainder=training,
        )
    if report["train"]["examples"] < config.batch_size:
        raise ValueError(
            f"{report['train']['examples']} training examples are fewer "
            f"than one batch (--batch_size={config.batch_size})."
        )
    return train.TaskData(
        head="sequence_classification",
        make_train=make_dataset["train"],
        evals={
            s: make_dataset[s]()
            for s in ("validation", "test")
            if s in make_dataset
        },
        model_args={
            "vocabulary_size": tokenizer.vocabulary_size,
            "num_classes": len(folder.class_names),
            "max_sequence_length": args["max_length"],
        },
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        make_metrics=lambda: [
            keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        ],
        primary_metric="accuracy",
        report=report,
    )


def main(argv):
    del argv
    try:
        task_args = make_task_args(
            FLAGS.tokenizer,
            FLAGS.tokenizer_dir,
            FLAGS.max_length,
            FLAGS.validation_fraction,
            FLAGS.test_fraction,
        )
        config = config_lib.from_flags(FLAGS, "textcls", task_args)
    except ValueError as error:
        raise app.UsageError(str(error)) from error
    train.run_program(config, make_task_data)


if __name__ == "__main__":
    define_flags()
    console.run(main)
