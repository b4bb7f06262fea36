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

import dataclasses
import functools

from absl import flags

from experiments.common import config as config_lib
from experiments.common import console
from experiments.common import options
from experiments.common.flags import define_shared_flags
from experiments.common.lazy import lazy_import
from experiments.common.options import setting

train = lazy_import("experiments.common.train")
batching = lazy_import("kerasseq.data.batching")
glue = lazy_import("kerasseq.data.glue")
textcls = lazy_import("kerasseq.data.textcls")

TASKS = ("folder",)


@dataclasses.dataclass
class TextclsOptions(options.TokenizerOptions):
    """The text classification binary's options."""

    max_length: int = setting(256, "Tokens per example (cut).", minimum=3)
    validation_fraction: float = setting(
        0.1, "Share of each class for validation."
    )
    test_fraction: float = setting(0.2, "Share of each class for test.")

    def __post_init__(self):
        super().__post_init__()
        # the fractions' own checks, on a two-class stand-in
        textcls.split_indices(
            [0, 1], self.validation_fraction, self.test_fraction, 0
        )


def define_flags():
    """Defines this binary's flags (only when it runs as the program)."""
    define_shared_flags(
        TASKS, default_task="folder", default_model="gpt", download_modes=None
    )
    options.define_flags(TextclsOptions)


FLAGS = flags.FLAGS


def make_task_data(config):
    """Reads the folder, splits it and packs each split."""
    args = config.task_args
    tokenizer = args.make_tokenizer()
    folder = textcls.load_folder(config.data_dir)
    indices = textcls.split_indices(
        folder.labels,
        args.validation_fraction,
        args.test_fraction,
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
        inputs, truncated = glue.pack(
            tokenizer,
            [folder.texts[i] for i in rows],
            None,
            args.max_length,
        )
        report[split] = {"examples": len(rows), "truncated": truncated}
        training = split == "train"
        make_dataset[split] = functools.partial(
            batching.array_dataset,
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
            "max_sequence_length": args.max_length,
        },
        primary_metric="accuracy",
        report=report,
    )


def main(argv):
    del argv
    config = config_lib.from_command_line(FLAGS, "textcls", TextclsOptions)
    train.run_program(config, make_task_data)


if __name__ == "__main__":
    define_flags()
    console.run(main)
