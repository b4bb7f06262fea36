"""Flags shared by every experiment binary.

Each binary calls `define_shared_flags(...)` with its task names and default
model, defines its own task flags, and turns the parsed flags into an
`ExperimentConfig` with `config.from_flags`.
"""

import os

from absl import flags

from experiments.common.config import LEARNING_RATE_SCALING
from experiments.common.config import MIXED_PRECISION
from experiments.common.distribute import STRATEGIES
from kerasseq.data.download import MODES
from kerasseq.data.tokenizers import TOKENIZERS
from kerasseq.models import MODEL_NAMES
from kerasseq.models import PRESETS

WANDB_MODES = ("offline", "online", "disabled")


class PathParser(flags.ArgumentParser):
    """A path flag's value with `~` expanded (the shell leaves the `~` of
    `--data_dir=~/x` as it is)."""

    syntactic_help = "a path"

    def parse(self, argument):
        return None if argument is None else os.path.expanduser(argument)

    def flag_type(self):
        return "path"


def define_path(name, default, help_text):
    """Defines the string flag `--name` holding a path (`~` expanded)."""
    flags.DEFINE(
        PathParser(),
        name,
        default,
        help_text,
        serializer=flags.ArgumentSerializer(),
    )


def define_shared_flags(
    tasks, default_task, default_model="gpt", download_modes=MODES
):
    """Defines the flags every binary takes (see DESIGN.md); `--download`
    with the values `download_modes`, or none if it is `None` (binaries
    that download nothing)."""
    flags.DEFINE_string(
        "model",
        default_model,
        "Model name, or a comma-separated list of names to compare. "
        f"Registered: {', '.join(MODEL_NAMES)}.",
    )
    flags.DEFINE_enum("task", default_task, list(tasks), "Task to run.")
    flags.DEFINE_string(
        "preset",
        "small",
        "Model size: "
        + ", ".join(
            f"{name} ({size['num_layers']} layers of {size['hidden_dim']})"
            for name, size in PRESETS.items()
        )
        + ".",
    )
    flags.DEFINE_string(
        "model_args",
        "",
        "Overrides of the preset, `key=value` pairs separated by commas, "
        "e.g. `num_layers=2,dropout=0.1`.",
    )
    define_path("workdir", "runs", "Where results are written.")
    flags.DEFINE_integer("seed", 42, "Random seed for data and weights.")
    flags.DEFINE_integer(
        "steps", 1000, "Training steps (0: train for --epochs over the data)."
    )
    flags.DEFINE_integer("epochs", 1, "Epochs over the data when --steps=0.")
    flags.DEFINE_integer(
        "eval_every", 100, "Steps between validation and logging points."
    )
    flags.DEFINE_integer(
        "checkpoint_every",
        0,
        "Steps between the checkpoints an interrupted run resumes from "
        "(0: at every evaluation); divides --eval_every.",
    )
    flags.DEFINE_integer("batch_size", 32, "Global batch size.")
    flags.DEFINE_float("learning_rate", 1e-3, "Peak learning rate (AdamW).")
    flags.DEFINE_float("weight_decay", 0.01, "AdamW weight decay.")
    flags.DEFINE_integer(
        "warmup_steps", 0, "Linear warm-up steps before cosine decay."
    )
    define_path(
        "data_dir",
        None,
        "Local data files (task-dependent layout); when given, only they "
        "are read and nothing is downloaded.",
    )
    if download_modes is not None:
        flags.DEFINE_enum(
            "download",
            "auto",
            list(download_modes),
            "Without --data_dir: auto downloads what is missing (TensorFlow "
            "Datasets into TFDS_DATA_DIR, other archives into "
            "KERASSEQ_CACHE, default ~/.cache/kerasseq) and reads it from "
            "there next time; never reads only what is on this machine."
            + (
                " lra_release also fetches LRA's release archive (about "
                "7.7 GB) for listops, retrieval and pathfinder."
                if "lra_release" in download_modes
                else ""
            ),
        )
    flags.DEFINE_enum(
        "wandb_mode",
        "offline",
        list(WANDB_MODES),
        "Weights & Biases mode; offline needs no account or network.",
    )
    flags.DEFINE_enum(
        "strategy",
        "auto",
        list(STRATEGIES),
        "Where to train: tf.distribute (default, mirrored, multi_worker "
        "from TF_CONFIG, tpu) on TensorFlow, keras.distribution "
        "(data_parallel, model_parallel) on JAX; auto uses every local "
        "accelerator (see experiments/common/distribute.py).",
    )
    flags.DEFINE_integer(
        "virtual_devices",
        0,
        "Split the CPU into this many logical devices (to try a strategy "
        "without accelerators; 0 leaves the devices as found).",
    )
    flags.DEFINE_enum(
        "learning_rate_scaling",
        "none",
        list(LEARNING_RATE_SCALING),
        "none: --learning_rate as given, whatever the replicas; linear: "
        "multiplied by the number of replicas.",
    )
    flags.DEFINE_enum(
        "mixed_precision",
        "none",
        list(MIXED_PRECISION),
        "Keras mixed-precision policy (kernels keep float32 state).",
    )
    flags.DEFINE_bool(
        "overwrite",
        False,
        "Rerun models whose results.json already exists (otherwise reuse).",
    )
    flags.DEFINE_integer(
        "verbose",
        2,
        "What is printed: 0 the results only; 1 also a progress bar; 2 a "
        "line per evaluation instead; 3 also the libraries' own logs and "
        "warnings (TensorFlow's C++ logs, Python warnings, W&B's banners).",
        lower_bound=0,
        upper_bound=3,
    )
    define_path(
        "init_from",
        None,
        "Fine-tune from a Hugging Face checkpoint: a directory with "
        "config.json and model.safetensors (or a hub id, online) of the "
        "--model's architecture (gpt2/distilgpt2: gpt2; pythia: gpt_neox; "
        "mamba: mamba; transformer: bert, roberta). Its sizes replace "
        "--preset's.",
    )
    flags.DEFINE_bool(
        "fresh_process",
        True,
        "With several models, train each in a new Python process, so that "
        "the memory one model's compiled programs hold is given back before "
        "the next (TensorFlow keeps about 0.2 to 1 GB per model otherwise).",
    )


def define_tokenizer_flags():
    """`--tokenizer` and `--tokenizer_dir`, for the binaries over text."""
    flags.DEFINE_enum(
        "tokenizer",
        "bytes",
        list(TOKENIZERS),
        "bytes: UTF-8 bytes, no files; gpt2: GPT-2's BPE from "
        "--tokenizer_dir; wordpiece: BERT's vocab.txt from --tokenizer_dir "
        "(classification only).",
    )
    define_path(
        "tokenizer_dir",
        None,
        "--tokenizer=gpt2: directory with vocab.json + merges.txt or "
        "encoder.json + vocab.bpe; --tokenizer=wordpiece: with vocab.txt.",
    )
