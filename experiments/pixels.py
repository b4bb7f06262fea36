r"""Pixel-sequence classification: sMNIST, psMNIST and sCIFAR.

Every model of `--model` reads the same images one pixel per step (784
steps for MNIST, 1024 steps of RGB for CIFAR-10) and classifies them;
results go to `WORKDIR/<task>/<model>/` and a comparison table.

    python -m experiments.pixels --task=smnist --model=lru,mamba \
        --data_dir=/path/to/mnist --preset=small --steps=2000

`--data_dir` holds the official files (MNIST IDX, CIFAR-10 python batches;
see `kerasseq/data/pixels.py`); without it TensorFlow Datasets' `mnist` or
`cifar10` is used, downloaded and prepared the first time
(`--download=never` reads a prepared copy only). psMNIST's permutation is
drawn from `--seed` and saved as `WORKDIR/psmnist/permutation.npy` (or read
from `--permutation_file`).
"""

import dataclasses
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
pixels = lazy_import("kerasseq.data.pixels")


@dataclasses.dataclass
class PixelsOptions(options.ExampleLimits):
    """The pixel binary's options."""

    validation_size: int = setting(
        5000,
        "Images held out from the end of the training set for validation.",
        minimum=0,
    )
    permutation_file: str | None = setting(
        None,
        "psmnist: a .npy or text file with the pixel order (default: drawn "
        "from --seed and saved in the workdir).",
        path=True,
    )

    def for_task(self, task):
        pixels.task_spec(task)
        if self.permutation_file is not None:
            if task != "psmnist":
                raise ValueError(
                    f"--permutation_file applies to --task=psmnist, got "
                    f"--task={task}."
                )
            if not os.path.exists(self.permutation_file):
                raise ValueError(
                    f"--permutation_file={self.permutation_file!r}: no such "
                    "file."
                )
        return self


def define_flags():
    """Defines this binary's flags; only when it runs as the main program,
    so that tests can import it beside other binaries (each defines
    `--task` with its own choices)."""
    define_shared_flags(
        catalogue.PIXEL_TASKS, default_task="smnist", default_model="lru"
    )
    options.define_flags(PixelsOptions)


FLAGS = flags.FLAGS


def _read_permutation(path, seq_len):
    try:
        if path.endswith(".npy"):
            values = np.load(path, allow_pickle=False)
        else:
            values = np.loadtxt(path, dtype=np.int64, ndmin=1)
    except (OSError, ValueError) as error:
        kind = "a .npy array" if path.endswith(".npy") else "integers as text"
        raise ValueError(
            f"--permutation_file {path!r} is not {kind} of a permutation of "
            f"range({seq_len}): {error}"
        ) from error
    return pixels.check_permutation(values, seq_len, source=path)


def task_permutation(config):
    """psMNIST's pixel order: `--permutation_file`, or drawn from the seed
    and saved beside the results; a saved order from another seed is an
    error, never overwritten."""
    seq_len = pixels.task_spec(config.task).seq_len
    given = config.task_args.permutation_file
    if given:
        return _read_permutation(given, seq_len)
    permutation = pixels.make_permutation(seq_len, config.seed)
    path = os.path.join(config.workdir, config.task, "permutation.npy")
    if os.path.exists(path):
        saved = _read_permutation(path, seq_len)
        if not np.array_equal(saved, permutation):
            raise train.SettingsConflict(
                f"{path} holds the permutation of another seed than "
                f"--seed={config.seed}; pass --permutation_file={path} to "
                "reuse it, or another --workdir."
            )
        return saved
    os.makedirs(os.path.dirname(path), exist_ok=True)
    np.save(path, permutation)
    return permutation


def make_task_data(config):
    """Loads the task's images and builds the train/validation/test
    splits."""
    task, args = config.task, config.task_args
    spec = pixels.task_spec(task)
    permutation = task_permutation(config) if task == "psmnist" else None
    images, labels = pixels.load_images(
        task, "train", config.data_dir, config.download
    )
    test_images, test_labels = pixels.load_images(
        task, "test", config.data_dir, config.download
    )
    held_out = args.validation_size
    if held_out >= len(images):
        raise ValueError(
            f"--validation_size={held_out} leaves no training images of "
            f"the {len(images)} found."
        )
    split = len(images) - held_out
    train_x, train_y = images[:split], labels[:split]
    if args.num_train_examples:
        train_x = train_x[: args.num_train_examples]
        train_y = train_y[: args.num_train_examples]
    if args.num_eval_examples:
        test_images = test_images[: args.num_eval_examples]
        test_labels = test_labels[: args.num_eval_examples]

    def dataset(x, y, training=False):
        return pixels.make_dataset(
            pixels.to_sequences(x, task, permutation),
            y,
            config.batch_size,
            config.seed,
            shuffle=training,
            drop_remainder=training,
        )

    evals = {}
    if held_out:
        evals["val"] = dataset(images[split:], labels[split:])
    evals["test"] = dataset(test_images, test_labels)
    return train.TaskData(
        head="sequence_classification",
        make_train=lambda: dataset(train_x, train_y, training=True),
        evals=evals,
        model_args={
            "feature_dim": spec.feature_dim,
            "num_classes": spec.num_classes,
            "max_sequence_length": spec.seq_len,
        },
    )


def main(argv):
    del argv
    config = config_lib.from_command_line(FLAGS, "pixels", PixelsOptions)
    train.run_program(config, make_task_data)


if __name__ == "__main__":
    define_flags()
    console.run(main)
