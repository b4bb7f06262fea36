"""The experiment config: one object that says everything about a run.

Each shared setting is one field of `ExperimentConfig`, with its default,
help and allowed values (see `options.setting`); every binary's shared
flags are made from these fields, and `config.json` serialises them with
the binary's own task options.
"""

import dataclasses
import json
import os
import tempfile

from experiments.common import console
from experiments.common import options
from experiments.common.options import catalogue
from experiments.common.options import check_settings
from experiments.common.options import setting

MIXED_PRECISION = ("none", "bfloat16", "float16")
LEARNING_RATE_SCALING = ("none", "linear")
WANDB_MODES = ("offline", "online", "disabled")
# where to train (experiments/common/distribute.py): tf.distribute
# strategies on TensorFlow, keras.distribution layouts on JAX
TF_STRATEGIES = ("mirrored", "multi_worker", "tpu")
JAX_STRATEGIES = ("data_parallel", "model_parallel")
STRATEGIES = ("auto", "default", *TF_STRATEGIES, *JAX_STRATEGIES)
# what --download may say in each family (the others: auto, never);
# lra_release fetches LRA's release archive, several GB, only when asked
FAMILY_DOWNLOAD_MODES = {"lra": catalogue.DOWNLOAD_MODES + ("lra_release",)}


def download_modes(family):
    """The values `--download` takes in the binary of `family`."""
    return FAMILY_DOWNLOAD_MODES.get(family, catalogue.DOWNLOAD_MODES)


def _names():
    return ", ".join(catalogue.MODEL_NAMES)


def parse_models(value):
    """Splits `"gpt,lstm"` into `("gpt", "lstm")`."""
    names = tuple(n.strip() for n in value.split(",") if n.strip())
    if not names:
        raise ValueError(
            f"--model is empty ({value!r}). Valid models: {_names()}."
        )
    return names


MODEL_PARTS = ("mixer", "backbone", "head")


def parse_model_args(value):
    """Parses `"num_layers=2,head.dropout=0.1"` into the keyword arguments
    of `kerasseq.models.model_config`, with typed values: a `part.name`
    key sets that part's argument only (`{"head": {"dropout": 0.1}}`)."""
    result = {}
    for item in filter(None, (s.strip() for s in (value or "").split(","))):
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(
                f"--model_args expects key=value pairs separated by commas, "
                f"got {item!r} in {value!r}."
            )
        part, dot, name = key.rpartition(".")
        if not dot:
            result[key] = _parse_scalar(raw.strip())
        elif part in MODEL_PARTS and name:
            result.setdefault(part, {})[name] = _parse_scalar(raw.strip())
        else:
            raise ValueError(
                f"--model_args key {key!r}: a qualified key is "
                f"{' / '.join(MODEL_PARTS)} + `.name`, e.g. head.dropout."
            )
    return result


def _parse_scalar(raw):
    lowered = raw.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(raw)
        except ValueError:
            pass
    return raw


def _preset_help():
    sizes = ", ".join(
        f"{name} ({size['num_layers']} layers of {size['hidden_dim']})"
        for name, size in catalogue.PRESETS.items()
    )
    return f"Model size: {sizes}."


@dataclasses.dataclass
class ExperimentConfig:
    """Everything a run depends on; saved as `config.json` beside results.

    `family` (the binary: `"synthetic"`, `"lra"`, ...) and `task_args` (the
    binary's own options) have no flag; every other field is the flag of
    the same name (`models` is `--model`), documented by its help below.
    """

    family: str
    task: str = setting(dataclasses.MISSING, "Task to run.")
    models: tuple = setting(
        dataclasses.MISSING,
        "Model name, or a comma-separated list of names to compare. "
        f"Registered: {_names()}.",
        flag="model",
        parse=parse_models,
    )
    preset: str = setting("small", _preset_help())
    model_args: dict = setting(
        {},
        "Overrides of the preset, `key=value` pairs separated by commas, "
        "e.g. `num_layers=2,dropout=0.1`; `mixer.`, `backbone.` or `head.` "
        "before a name sets that part's argument only (`head.dropout=0.1`: "
        "the head's dropout, where `dropout` is the backbone's).",
        parse=parse_model_args,
        flag_default="",
    )
    task_args: options.TaskOptions | None = None
    workdir: str = setting("runs", "Where results are written.", path=True)
    seed: int = setting(42, "Random seed for data and weights.")
    steps: int = setting(
        1000,
        "Training steps (0: train for --epochs over the data).",
        minimum=0,
    )
    epochs: int = setting(1, "Epochs over the data when --steps=0.", minimum=1)
    eval_every: int = setting(
        100, "Steps between validation and logging points.", minimum=1
    )
    checkpoint_every: int = setting(
        0,
        "Steps between the checkpoints an interrupted run resumes from; "
        "divides --eval_every. 0: about every tenth of --steps, and at "
        "least at every evaluation.",
        minimum=0,
    )
    checkpoint_minutes: float = setting(
        10.0,
        "Minutes of training after which a checkpoint is also written "
        "between those of --checkpoint_every (with --steps), so that a "
        "killed run loses at most about this long. 0: none.",
        minimum=0,
    )
    batch_size: int = setting(32, "Global batch size.", minimum=1)
    learning_rate: float = setting(1e-3, "Peak learning rate (AdamW).")
    weight_decay: float = setting(0.01, "AdamW weight decay.", minimum=0)
    warmup_steps: int = setting(
        0, "Linear warm-up steps before cosine decay.", minimum=0
    )
    data_dir: str | None = setting(
        None,
        "Local data files (task-dependent layout); when given, only they "
        "are read and nothing is downloaded.",
        path=True,
    )
    download: str = setting(
        "auto",
        "Without --data_dir: auto downloads what is missing (TensorFlow "
        "Datasets into TFDS_DATA_DIR, other archives into KERASSEQ_CACHE, "
        "default ~/.cache/kerasseq) and reads it from there next time; "
        "never reads only what is on this machine; lra_release (the LRA "
        "binary) also fetches LRA's release archive (about 7.7 GB) for "
        "listops, retrieval and pathfinder.",
    )
    wandb_mode: str = setting(
        "offline",
        "Weights & Biases mode; offline needs no account or network.",
        choices=WANDB_MODES,
    )
    strategy: str = setting(
        "auto",
        "Where to train: tf.distribute (default, mirrored, multi_worker "
        "from TF_CONFIG, tpu) on TensorFlow, keras.distribution "
        "(data_parallel, model_parallel) on JAX; auto uses every local "
        "accelerator (see experiments/common/distribute.py).",
        choices=STRATEGIES,
    )
    virtual_devices: int = setting(
        0,
        "Split the CPU into this many logical devices (to try a strategy "
        "without accelerators; 0 leaves the devices as found).",
        minimum=0,
    )
    learning_rate_scaling: str = setting(
        "none",
        "none: --learning_rate as given, whatever the replicas; linear: "
        "multiplied by the number of replicas (Goyal et al., 2017). "
        "Results record the rate used.",
        choices=LEARNING_RATE_SCALING,
    )
    mixed_precision: str = setting(
        "none",
        "Keras mixed-precision policy (kernels keep float32 state).",
        choices=MIXED_PRECISION,
    )
    overwrite: bool = setting(
        False,
        "Rerun models whose results.json already exists (otherwise reuse).",
    )
    verbose: int = setting(
        2,
        "What is printed: 0 the results only; 1 also a progress bar; 2 a "
        "line per evaluation instead; 3 also the libraries' own logs and "
        "warnings (TensorFlow's C++ logs, Python warnings, W&B's banners).",
        minimum=0,
        maximum=3,
    )
    # the binaries default to True (see flags.define_shared_flags); a
    # Python caller's runs stay in its process unless it asks
    fresh_process: bool = setting(
        False,
        "With several models, train each in a new Python process, so that "
        "the memory one model's compiled programs hold is given back before "
        "the next (TensorFlow keeps about 0.2 to 1 GB per model otherwise).",
    )
    init_from: str | None = setting(
        None,
        "Fine-tune from a Hugging Face checkpoint: a directory with "
        "config.json and model.safetensors (or a hub id, online) of the "
        "--model's architecture (gpt2/distilgpt2: gpt2; pythia: gpt_neox; "
        "mamba: mamba; transformer: bert, roberta). Its sizes replace "
        "--preset's.",
        path=True,
    )

    def __post_init__(self):
        self.models = tuple(self.models)
        self.validate()
        if self.task_args is not None:
            if not isinstance(self.task_args, options.TaskOptions):
                raise TypeError(
                    "task_args must be the binary's options (an "
                    f"options.TaskOptions), got {type(self.task_args)}."
                )
            self.task_args = self.task_args.for_task(self.task)

    def validate(self):
        """Raises `ValueError` for any setting that would fail later."""
        if not self.models:
            raise ValueError("No model given. Valid models: " + _names())
        for name in self.models:
            if name not in catalogue.MODEL_NAMES:
                raise ValueError(
                    f"Unknown model {name!r}. Valid models: {_names()}."
                )
        if len(set(self.models)) != len(self.models):
            raise ValueError(f"A model is listed twice: {self.models}.")
        if self.preset not in catalogue.PRESETS:
            raise ValueError(
                f"Unknown preset {self.preset!r}. Valid presets: "
                f"{', '.join(catalogue.PRESETS)}."
            )
        check_settings(self)
        if not self.learning_rate > 0:
            raise ValueError(
                f"--learning_rate must be positive, got {self.learning_rate}."
            )
        if self.checkpoint_every and not self.steps:
            raise ValueError(
                "--checkpoint_every counts steps of --steps; with --steps=0 "
                "each epoch over the data is checkpointed at its end."
            )
        if self.checkpoint_every and self.eval_every % self.checkpoint_every:
            raise ValueError(
                f"--eval_every={self.eval_every} must be a multiple of "
                f"--checkpoint_every={self.checkpoint_every} (evaluations "
                "fall on checkpoints)."
            )
        if self.data_dir is not None and not os.path.isdir(self.data_dir):
            raise ValueError(
                f"--data_dir {self.data_dir!r} is not a directory."
            )
        allowed = download_modes(self.family)
        if self.download not in allowed:
            raise ValueError(
                f"Unknown --download={self.download!r}; valid: "
                f"{', '.join(allowed)}."
            )
        if self.download == "lra_release" and self.data_dir is not None:
            raise ValueError(
                "--download=lra_release reads LRA's release from kerasseq's "
                f"cache, and --data_dir={self.data_dir!r} names local files: "
                "give one of them."
            )

    def checkpoint_steps(self):
        """Steps between checkpoints (`None` with `steps=0`: each epoch):
        `checkpoint_every`, or by default the largest divisor of the
        evaluation spacing that is at most a tenth of `steps`, so that a
        killed run loses at most about 10% of its training (and, with
        `checkpoint_minutes`, at most that long)."""
        if not self.steps:
            return None
        if self.checkpoint_every:
            return self.checkpoint_every
        every = self.eval_steps()
        most = max(1, min(every, self.steps // 10))
        return max(d for d in range(1, most + 1) if every % d == 0)

    def eval_steps(self):
        """Steps between evaluations: `eval_every`, or `steps` when fewer
        (a run is evaluated at its end at least)."""
        return min(self.eval_every, self.steps) if self.steps else None

    def run_dir(self, model):
        """`WORKDIR/<task>/<model>`, where one model's results go."""
        return os.path.join(self.workdir, self.task, model)

    def to_dict(self):
        return dataclasses.asdict(self)

    def to_json(self):
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


def check_workdir_writable(workdir):
    """Creates `workdir` and proves it writable before any training."""
    try:
        os.makedirs(workdir, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=workdir, prefix=".probe"):
            pass
    except OSError as error:
        raise ValueError(
            f"--workdir {workdir!r} is not writable: {error}."
        ) from error


def from_flags(flag_values, family, task_args, **values):
    """Builds an `ExperimentConfig` from parsed absl flags; `values` replace
    flags (e.g. one task of `--task=all`). A binary's `main` calls
    `from_command_line`."""
    config = options.from_flags(
        ExperimentConfig,
        flag_values,
        family=family,
        task_args=task_args,
        **values,
    )
    check_workdir_writable(config.workdir)
    return config


def from_command_line(flag_values, family, options_class, **values):
    """A binary's config from its parsed flags: its own options (an
    `options_class` from the flags) and the shared settings, as `from_flags`
    makes them; a value either refuses is a usage error."""
    with console.usage_errors():
        task_args = options.from_flags(options_class, flag_values)
        return from_flags(flag_values, family, task_args, **values)
