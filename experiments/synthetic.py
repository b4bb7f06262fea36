r"""Synthetic tasks: bit parity, controlled bit parity, Dyck, MQAR.

Trains every model of `--model` on the same generated data and compares
their per-step accuracy at the training lengths and at each
`--eval_seq_len` range (length generalisation).

    python -m experiments.synthetic --model=gpt,lstm --task=mqar \
        --num_kv_pairs=8 --train_seq_len=32,32 --eval_seq_len=64,128
"""

import keras
from absl import app
from absl import flags

from experiments.common import config as config_lib
from experiments.common import console
from experiments.common import train
from experiments.common.flags import define_shared_flags
from kerasseq.data import synthetic

# per task: default train lengths, default eval lengths
DEFAULT_LENGTHS = {
    "bit_parity": ("16,16", ["64,128"]),
    "controlled_bit_parity": ("16,16", ["64,128"]),
    "dyck": ("32,32", ["64,128"]),
    "mqar": ("32,32", ["64,128"]),
}
# per task: the flags that become its generator's keyword arguments
TASK_FLAGS = {
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

define_shared_flags(synthetic.TASKS, default_task="mqar", download_modes=None)
flags.DEFINE_string(
    "train_seq_len",
    None,
    "Training lengths `min,max` (or one length). Default depends on --task.",
)
flags.DEFINE_multi_string(
    "eval_seq_len",
    None,
    "Eval lengths `min,max`; repeat the flag for several ranges. The "
    "training range is always evaluated too.",
)
flags.DEFINE_integer("num_train_examples", 20000, "Training sequences.")
flags.DEFINE_integer("num_eval_examples", 1000, "Sequences per eval split.")
flags.DEFINE_integer(
    "num_ones", None, "controlled_bit_parity: 1s per train seq."
)
flags.DEFINE_integer(
    "eval_num_ones",
    None,
    "controlled_bit_parity: 1s per eval seq (default free).",
)
flags.DEFINE_integer("num_bracket_types", None, "dyck: bracket types k.")
flags.DEFINE_integer("max_depth", None, "dyck: maximum nesting depth.")
flags.DEFINE_float("error_rate", None, "dyck: share of corrupted sequences.")
flags.DEFINE_integer(
    "num_kv_pairs", None, "mqar: key-value pairs per sequence."
)
flags.DEFINE_integer("vocab_size", None, "mqar: total vocabulary (Zoology).")
flags.DEFINE_integer("num_keys", None, "mqar: key vocabulary size.")
flags.DEFINE_integer("num_values", None, "mqar: value vocabulary size.")
flags.DEFINE_bool(
    "key_reuse", None, "mqar: keys may repeat (last binding wins)."
)
FLAGS = flags.FLAGS


def make_task_args(
    task,
    train_seq_len=None,
    eval_seq_len=None,
    num_train_examples=20000,
    num_eval_examples=1000,
    **generator,
):
    """Collects and validates the options of a synthetic task.

    Args:
        task: a name in `kerasseq.data.synthetic.TASKS`.
        train_seq_len: training length range, e.g. `"16,16"`.
        eval_seq_len: list of eval length ranges.
        num_train_examples: int.
        num_eval_examples: int, per eval split.
        **generator: the task generator's own arguments.

    Returns:
        dict, the config's `task_args`.
    """
    for name, value in [
        ("num_train_examples", num_train_examples),
        ("num_eval_examples", num_eval_examples),
    ]:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(
                f"--{name} must be a positive integer, got {value!r}."
            )
    train_default, eval_default = DEFAULT_LENGTHS[task]
    args = {
        "train_seq_len": list(
            synthetic.parse_length_range(
                train_seq_len or train_default, "train_seq_len"
            )
        ),
        "eval_seq_len": [
            list(synthetic.parse_length_range(v, "eval_seq_len"))
            for v in (eval_seq_len or eval_default)
        ],
        "num_train_examples": num_train_examples,
        "num_eval_examples": num_eval_examples,
        "generator": generator,
    }
    # one example per range proves the settings valid before any training
    for seq_len in [args["train_seq_len"], *args["eval_seq_len"]]:
        synthetic.generate(task, 1, seq_len, 0, **generator)
    return args


def task_args_from_flags(flag_values):
    """`make_task_args` from the parsed flags."""
    task = flag_values.task
    generator = {}
    for name in TASK_FLAGS[task]:
        value = getattr(flag_values, name)
        if value is not None:
            generator[name] = value
    return make_task_args(
        task,
        flag_values.train_seq_len,
        flag_values.eval_seq_len,
        flag_values.num_train_examples,
        flag_values.num_eval_examples,
        **generator,
    )


def make_task_data(config):
    """Generates the train and eval splits of `config.task`."""
    task, args = config.task, config.task_args
    kwargs = args["generator"]
    spec = synthetic.task_spec(task, **kwargs)
    train_len = tuple(args["train_seq_len"])
    ranges = [train_len]
    ranges += [tuple(r) for r in args["eval_seq_len"] if tuple(r) != train_len]

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
            f"eval_{name}", (low, high), args["num_eval_examples"]
        )
    return train.TaskData(
        head="token_classification",
        # generating is cheap (under 0.5 s for 20,000 examples); each
        # model's new dataset starts the seeded shuffle afresh
        make_train=lambda: dataset(
            "train", train_len, args["num_train_examples"]
        ),
        evals=evals,
        model_args={
            "vocabulary_size": spec.vocabulary_size,
            "num_classes": spec.num_classes,
            "max_sequence_length": max(high for _, high in ranges),
        },
        loss=keras.losses.SparseCategoricalCrossentropy(
            from_logits=True, reduction="mean_with_sample_weight"
        ),
        make_metrics=lambda: [
            keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        ],
    )


def main(argv):
    del argv
    try:
        config = config_lib.from_flags(
            FLAGS, "synthetic", task_args_from_flags(FLAGS)
        )
    except ValueError as error:
        raise app.UsageError(str(error)) from error
    train.run_program(config, make_task_data)


if __name__ == "__main__":
    console.run(main)
