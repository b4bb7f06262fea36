"""The experiment config: one object that says everything about a run."""

import dataclasses
import json
import os
import tempfile

from experiments.common.distribute import STRATEGIES
from kerasseq.data import download as download_lib
from kerasseq.models import MODEL_NAMES
from kerasseq.models import PRESETS

MIXED_PRECISION = ("none", "bfloat16", "float16")
LEARNING_RATE_SCALING = ("none", "linear")
# what --download may say in each family (the others: auto, never);
# lra_release fetches LRA's release archive, several GB, only when asked
FAMILY_DOWNLOAD_MODES = {"lra": download_lib.MODES + ("lra_release",)}


def download_modes(family):
    """The values `--download` takes in the binary of `family`."""
    return FAMILY_DOWNLOAD_MODES.get(family, download_lib.MODES)


@dataclasses.dataclass
class ExperimentConfig:
    """Everything a run depends on; saved as `config.json` beside results.

    Attributes:
        family: the binary's task family (`"synthetic"`, `"lra"`, ...).
        task: the task within the family.
        models: names of the registered models to train, in order.
        preset: model size preset.
        model_args: overrides of the preset, passed to `build_model`.
        task_args: the family's own options (sequence lengths, ...).
        learning_rate: peak learning rate for the global batch
            (`batch_size`, split across the replicas).
        learning_rate_scaling: `"none"` trains at `learning_rate` on any
            number of replicas; `"linear"` at `learning_rate` times the
            number of replicas (Goyal et al., 2017). Results record the
            rate used.
        checkpoint_every: steps between the checkpoints an interrupted
            run resumes from; 0 checkpoints at every evaluation. Divides
            `eval_every`.
        download: what may be downloaded when `data_dir` is not given:
            `"auto"` (what is missing), `"never"`, or in the LRA binary
            `"lra_release"` (LRA's release archive as well).
        Others: see `experiments/common/flags.py`.
    """

    family: str
    task: str
    models: tuple
    preset: str = "small"
    model_args: dict = dataclasses.field(default_factory=dict)
    task_args: dict = dataclasses.field(default_factory=dict)
    workdir: str = "runs"
    seed: int = 42
    steps: int = 1000
    epochs: int = 1
    eval_every: int = 100
    checkpoint_every: int = 0
    batch_size: int = 32
    learning_rate: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 0
    data_dir: str = None
    download: str = "auto"
    wandb_mode: str = "offline"
    strategy: str = "auto"
    virtual_devices: int = 0
    learning_rate_scaling: str = "none"
    mixed_precision: str = "none"
    overwrite: bool = False
    verbose: int = 2
    fresh_process: bool = False
    init_from: str = None

    def __post_init__(self):
        self.models = tuple(self.models)
        self.validate()

    def validate(self):
        """Raises `ValueError` for any setting that would fail later."""
        if not self.models:
            raise ValueError("No model given. Valid models: " + _names())
        for name in self.models:
            if name not in MODEL_NAMES:
                raise ValueError(
                    f"Unknown model {name!r}. Valid models: {_names()}."
                )
        if len(set(self.models)) != len(self.models):
            raise ValueError(f"A model is listed twice: {self.models}.")
        if self.preset not in PRESETS:
            raise ValueError(
                f"Unknown preset {self.preset!r}. Valid presets: "
                f"{', '.join(PRESETS)}."
            )
        for name in ("batch_size", "eval_every", "epochs"):
            _check_positive(name, getattr(self, name))
        for name in ("steps", "warmup_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"--{name} must be an integer, got {value!r}.")
            if value < 0:
                raise ValueError(f"--{name} must be >= 0, got {value}.")
        if not self.learning_rate > 0:
            raise ValueError(
                f"--learning_rate must be positive, got {self.learning_rate}."
            )
        if self.weight_decay < 0:
            raise ValueError(
                f"--weight_decay must be >= 0, got {self.weight_decay}."
            )
        for name, value, allowed in (
            ("strategy", self.strategy, STRATEGIES),
            ("mixed_precision", self.mixed_precision, MIXED_PRECISION),
            (
                "learning_rate_scaling",
                self.learning_rate_scaling,
                LEARNING_RATE_SCALING,
            ),
        ):
            if value not in allowed:
                raise ValueError(
                    f"Unknown --{name}={value!r}; valid: {', '.join(allowed)}."
                )
        check_count("virtual_devices", self.virtual_devices, 0)
        check_count("checkpoint_every", self.checkpoint_every, 0)
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

    def run_dir(self, model):
        """`WORKDIR/<task>/<model>`, where one model's results go."""
        return os.path.join(self.workdir, self.task, model)

    def to_dict(self):
        return dataclasses.asdict(self)

    def to_json(self):
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


def _names():
    return ", ".join(MODEL_NAMES)


def _check_positive(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"--{name} must be a positive integer, got {value!r}.")


def check_count(name, value, minimum=1):
    """Raises `ValueError` unless the flag `--name` is `None` (not given) or
    an integer >= `minimum`."""
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int) or value < minimum
    ):
        raise ValueError(
            f"--{name} must be an integer >= {minimum}, got {value!r}."
        )


def parse_models(value):
    """Splits `"gpt,lstm"` into `("gpt", "lstm")`."""
    names = tuple(n.strip() for n in value.split(",") if n.strip())
    if not names:
        raise ValueError(
            f"--model is empty ({value!r}). Valid models: {_names()}."
        )
    return names


def parse_model_args(value):
    """Parses `"num_layers=2,dropout=0.1"` into a dict of typed values."""
    result = {}
    for item in filter(None, (s.strip() for s in (value or "").split(","))):
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(
                f"--model_args expects key=value pairs separated by commas, "
                f"got {item!r} in {value!r}."
            )
        result[key.strip()] = _parse_scalar(raw.strip())
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


def from_flags(flag_values, family, task_args):
    """Builds an `ExperimentConfig` from parsed absl flags."""
    config = ExperimentConfig(
        family=family,
        task=flag_values.task,
        models=parse_models(flag_values.model),
        preset=flag_values.preset,
        model_args=parse_model_args(flag_values.model_args),
        task_args=task_args,
        workdir=flag_values.workdir,
        seed=flag_values.seed,
        steps=flag_values.steps,
        epochs=flag_values.epochs,
        eval_every=flag_values.eval_every,
        checkpoint_every=flag_values.checkpoint_every,
        batch_size=flag_values.batch_size,
        learning_rate=flag_values.learning_rate,
        weight_decay=flag_values.weight_decay,
        warmup_steps=flag_values.warmup_steps,
        data_dir=flag_values.data_dir,
        # binaries without downloads (synthetic, textcls) have no flag
        download=getattr(flag_values, "download", "auto"),
        wandb_mode=flag_values.wandb_mode,
        strategy=flag_values.strategy,
        virtual_devices=flag_values.virtual_devices,
        learning_rate_scaling=flag_values.learning_rate_scaling,
        mixed_precision=flag_values.mixed_precision,
        overwrite=flag_values.overwrite,
        verbose=flag_values.verbose,
        fresh_process=flag_values.fresh_process,
        init_from=flag_values.init_from,
    )
    check_workdir_writable(config.workdir)
    return config
