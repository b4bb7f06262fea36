r"""Synthetic tasks: bit parity, controlled bit parity, Dyck, MQAR.

Trains every model of `--model` on the same generated data and compares
their per-step accuracy at the training lengths and at each
`--eval_seq_len` range (length generalisation).

    python -m experiments.synthetic --model=gpt,lstm --task=mqar \
        --num_kv_pairs=8 --train_seq_len=32,32 --eval_seq_len=64,128
"""

import dataclasses

from absl import flags

from experiments.common import config as config_lib
from experiments.common import console
from experiments.common import options
from experiments.common.flags import define_shared_flags
from experiments.common.lazy import lazy_import
from experiments.common.options import catalogue
from experiments.common.options import setting

keras = lazy_import("keras")
synthetic = lazy_import("kerasseq.data.synthetic")
train = lazy_import("experiments.common.train")

# per task: default train lengths, default eval lengths
DEFAULT_LENGTHS = {
    "bit_parity": ("16,16", ["64,128"]),
    "controlled_bit_parity": ("16,16", ["64,128"]),
    "dyck": ("32,32", ["64,128"]),
    "mqar": ("32,32", ["64,128"]),
}
# per task: the options that are its generator's keyword arguments
GENERATOR_OPTIONS = {
    "bit_parity": (),
    "controlled_bit_parity": ("num_ones", "eval_num_ones"),
    "dyck": ("num_bracket_types", "max_depth", "error_rate"),
    "mqar": (
        "num_kv_pairs",
        "vocab_size",
        "num_keys",
        "num_values",
        "key_reuse",
    ),
}


@dataclasses.dataclass
class SyntheticOptions(options.TaskOptions):
    """The synthetic binary's options; a generator option left `None` takes
    the generator's default."""

    train_seq_len: str | None = setting(
        None,
        "Training lengths `min,max` (or one length). Default depends on "
        "--task.",
    )
    eval_seq_len: list | None = setting(
        None,
        "Eval lengths `min,max`; repeat the flag for several ranges. The "
        "training range is always evaluated too.",
    )
    num_train_examples: int = setting(20000, "Training sequences.", minimum=1)
    num_eval_examples: int = setting(
        1000, "Sequences per eval split.", minimum=1
    )
    num_ones: int | None = setting(
        None, "controlled_bit_parity: 1s per train seq."
    )
    eval_num_ones: int | None = setting(
        None, "controlled_bit_parity: 1s per eval seq (default free)."
    )
    num_bracket_types: int | None = setting(None, "dyck: bracket types k.")
    max_depth: int | None = setting(None, "dyck: maximum nesting depth.")
    error_rate: float | None = setting(
        None, "dyck: share of corrupted sequences."
    )
    num_kv_pairs: int | None = setting(
        None, "mqar: key-value pairs per sequence."
    )
    vocab_size: int | None = setting(None, "mqar: total vocabulary (Zoology).")
    num_keys: int | None = setting(None, "mqar: key vocabulary size.")
    num_values: int | None = setting(None, "mqar: value vocabulary size.")
    key_reuse: bool | None = setting(
        None, "mqar: keys may repeat (last binding wins)."
    )

    def generator(self, task):
        """The generator arguments of `task` that are set."""
        return {
            name: getattr(self, name)
            for name in GENERATOR_OPTIONS[task]
            if getattr(self, name) is not None
        }

    def length_ranges(self):
        """The training range and the eval ranges, as `(min, max)`."""
        train_range = synthetic.parse_length_range(
            self.train_seq_len, "train_seq_len"
        )
        evals = [
            synthetic.parse_length_range(v, "eval_seq_len")
            for v in self.eval_seq_len
        ]
        return train_range, evals

    def for_task(self, task):
        synthetic.task_spec(task)
        for name in {n for names in GENERATOR_OPTIONS.values() for n in names}:
            if getattr(self, name) is not None and (
                name not in GENERATOR_OPTIONS[task]
            ):
                applies = [t for t, n in GENERATOR_OPTIONS.items() if name in n]
                raise ValueError(
                    f"--{name} applies to --task={applies[0]}, got "
                    f"--task={task}."
                )
        train_default, eval_default = DEFAULT_LENGTHS[task]
        train_range = synthetic.parse_length_range(
            self.train_seq_len or train_default, "train_seq_len"
        )
        evals = [
            synthetic.parse_length_range(value, "eval_seq_len")
            for value in self.eval_seq_len or eval_default
        ]
        # one example per range proves the settings valid before training
        for seq_len in [train_range, *evals]:
            synthetic.generate(task, 1, seq_len, 0, **self.generator(task))
        # ranges spelled `min,max` whatever was given ("16" is "16,16")
        return dataclasses.replace(
            self,
            train_seq_len=_spelled(train_range),
            eval_seq_len=[_spelled(r) for r in evals],
        )


def _spelled(length_range):
    return f"{length_range[0]},{length_range[1]}"


define_shared_flags(
    catalogue.SYNTHETIC_TASKS, default_task="mqar", download_modes=None
)
options.define_flags(SyntheticOptions)
FLAGS = flags.FLAGS


def make_task_data(config):
    """Generates the train and eval splits of `config.task`."""
    task, args = config.task, config.task_args
    kwargs = args.generator(task)
    spec = synthetic.task_spec(task, **kwargs)
    train_len, eval_lens = args.length_ranges()
    ranges = [train_len] + [r for r in eval_lens if r != train_len]

    def dataset(split, seq_len, num_examples):
        return synthetic.make_dataset(
            task,
            num_examples=num_examples,
            seq_len=seq_len,
            batch_size=config.batch_size,
            seed=config.seed,
            split=split,
            **kwargs,
        )

    evals = {}
    for low, high in ranges:
        name = f"T{low}-{high}"
        evals[name] = dataset(
            f"eval_{name}", (low, high), args.num_eval_examples
        )
    return train.TaskData(
        head="token_classification",
        # generating is cheap (under 0.5 s for 20,000 examples); each
        # model's new dataset starts the seeded shuffle afresh
        make_train=lambda: dataset("train", train_len, args.num_train_examples),
        evals=evals,
        model_args={
            "vocabulary_size": spec.vocabulary_size,
            "num_classes": spec.num_classes,
            "max_sequence_length": max(high for _, high in ranges),
        },
        loss=keras.losses.SparseCategoricalCrossentropy(
            from_logits=True, reduction="mean_with_sample_weight"
        ),
    )


def main(argv):
    del argv
    config = config_lib.from_command_line(FLAGS, "synthetic", SyntheticOptions)
    train.run_program(config, make_task_data)


if __name__ == "__main__":
    console.run(main)
