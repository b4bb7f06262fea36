"""The model registry: every model by name, and `build_model`.

A model is a `SequenceBackbone` with one kind of token mixer and a task head
(or, for an architecture such as `RecurrentGPT2`, its own model class
around the backbone). `MODELS` maps a name to a `ModelSpec`
(`model_spec.py`) saying which mixer, with which arguments, and how the
shared block is shaped around it; the comparable models, one per mixer,
are registered in `mixer_models.py` at matched sizes, the architectures of
pretrained checkpoints in `architectures/`. A new mixer joins every
experiment binary with one `register_model` line.
"""

import dataclasses
import inspect
import math

from kerasseq import catalogue

# the models register as these load: the comparable models, then the
# architectures of checkpoints (which load the former first)
from kerasseq.layers.sequence_layer import init_arguments
from kerasseq.models import architectures  # noqa: F401
from kerasseq.models import mixer_models  # noqa: F401
from kerasseq.models.causal_lm import CausalLM
from kerasseq.models.dual_encoder_classifier import DualEncoderClassifier
from kerasseq.models.model_spec import MODELS
from kerasseq.models.model_spec import ModelSpec  # noqa: F401  (public)
from kerasseq.models.model_spec import register_model  # noqa: F401
from kerasseq.models.sequence_backbone import SequenceBackbone
from kerasseq.models.sequence_classifier import SequenceClassifier
from kerasseq.models.span_extractor import SpanExtractor
from kerasseq.models.token_classifier import TokenClassifier

PRESETS = catalogue.PRESETS

HEADS = {
    "sequence_classification": SequenceClassifier,
    "token_classification": TokenClassifier,
    "causal_lm": CausalLM,
    "dual_encoder_classification": DualEncoderClassifier,
    "span_extraction": SpanExtractor,
}

DEFAULT_MAX_SEQUENCE_LENGTH = 1024

_BACKBONE_ARGS = (
    "num_layers",
    "hidden_dim",
    "vocabulary_size",
    "feature_dim",
    "max_sequence_length",
    "position_embedding",
    "mlp_ratio",
    "dropout",
    "layer_norm_epsilon",
    "block_type",
    "normalization",
    "activation",
    "embedding_norm",
    "final_norm",
    "dtype",
)

# the catalogue names the built-in models for programs that list them
# without loading Keras; it must name exactly the models registered above
if tuple(MODELS) != catalogue.MODEL_NAMES:
    raise ImportError(
        f"kerasseq/catalogue.py names the models {catalogue.MODEL_NAMES} "
        f"and the registry builds {tuple(MODELS)}: make them agree."
    )
MODEL_NAMES = catalogue.MODEL_NAMES
# the models every-model comparisons and tests run: the pretrained
# architectures above differ from gpt only in details their checkpoints fix
COMPARED_MODELS = tuple(n for n, s in MODELS.items() if s.compared)


def _check_name(kind, value, allowed):
    if value not in allowed:
        raise ValueError(
            f"Unknown {kind} {value!r}. Valid {kind}s: "
            f"{', '.join(sorted(allowed))}."
        )


def _arg_names(cls):
    params = inspect.signature(cls.__init__).parameters
    return {
        name
        for name, p in params.items()
        if name != "self" and p.kind is p.POSITIONAL_OR_KEYWORD
    }


def _head(spec, task):
    """The class built around the backbone: the architecture's own model
    class, or the task's head."""
    return spec.architecture_for(task) or HEADS[task]


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """What a registered model is built from: the keyword arguments of each
    of its three parts (the mixer layer, the `SequenceBackbone` and the
    task head), as each part's constructor takes them. `build()` makes the
    model; a run records `to_dict()` as its model in `config.json`.

    Attributes:
        name: the registered model, a key of `MODELS`.
        task: the head, a key of `HEADS`.
        mixer: the mixer's arguments (`num_heads`, `state_size`, ...).
        backbone: the backbone's (`hidden_dim`, `num_layers`, `dropout`,
            ...).
        head: the head's (`num_classes`, `pooling`, its own `dropout`).
        checkpoint: for a model loaded from a checkpoint
            (`kerasseq.pretrained.check_checkpoint`), its config.json,
            which fixes the sizes and layout; the model is built, with the
            checkpoint's weights, by
            `kerasseq.pretrained.build_from_checkpoint`.
        fixed: with `checkpoint`, the names of the arguments its
            config.json decides (sizes, layout, the backbone's dropout).
    """

    name: str
    task: str
    mixer: dict
    backbone: dict
    head: dict
    checkpoint: dict | None = None
    fixed: tuple = ()

    def __post_init__(self):
        # a tuple whatever was given (JSON gives back a list)
        object.__setattr__(self, "fixed", tuple(self.fixed))

    def to_dict(self):
        return dataclasses.asdict(self)

    def build(self):
        """The task model, a `keras.Model` with fresh weights."""
        if self.checkpoint is not None:
            raise ValueError(
                f"This {self.name!r} config is of a checkpoint (model_type "
                f"{self.checkpoint.get('model_type')!r}): build it with "
                "kerasseq.pretrained.build_from_checkpoint."
            )
        spec = MODELS[self.name]
        dtype = self.backbone.get("dtype")
        mixer = spec.mixer(**self.mixer, dtype=dtype, name="mixer")
        backbone = SequenceBackbone(
            mixer=mixer, **self.backbone, name=f"{self.name}_backbone"
        )
        head = _head(spec, self.task)
        return head(backbone, **self.head, name=f"{self.name}_{self.task}")


def model_config(
    name,
    task,
    preset="small",
    *,
    mixer=None,
    backbone=None,
    head=None,
    **overrides,
):
    """The `ModelConfig` of a registered model: its preset's sizes, the
    model's own settings, and the caller's.

    Args:
        name: a name in `MODEL_NAMES`.
        task: a key of `HEADS`.
        preset: a key of `PRESETS`.
        mixer, backbone, head: dicts of arguments for that part only
            (e.g. `head={"dropout": 0.1}`: the head's dropout, where a
            plain `dropout` is the backbone's).
        **overrides: arguments by name alone; each reaches every part
            that takes it, except `dropout`, which is the backbone's (and
            the mixer's, where it has one).

    Raises:
        ValueError: an unknown name, task or preset, an argument no part
            takes, or a bidirectional model as a causal LM.
    """
    _check_name("model", name, MODELS)
    _check_name("task", task, HEADS)
    _check_name("preset", preset, PRESETS)
    spec = MODELS[name]
    names = {
        # with the arguments a mixer passes to its base (an attention's
        # `head_dim`, ...)
        "mixer": set(init_arguments(spec.mixer)),
        "backbone": set(_BACKBONE_ARGS),
        "head": _arg_names(_head(spec, task)) - {"backbone"},
    }
    parts = {
        "mixer": mixer or {},
        "backbone": backbone or {},
        "head": head or {},
    }
    # by name alone, `dropout` is the backbone's: the head's is head=
    head_names = names["head"] - {"dropout"}
    by_name = names["mixer"] | names["backbone"] | head_names
    unknown = sorted(set(overrides) - by_name)
    unknown += [
        f"{part}={key}"
        for part, given in parts.items()
        for key in sorted(set(given) - names[part])
    ]
    if unknown:
        raise ValueError(
            f"Unknown argument(s) {unknown} for model {name!r} and task "
            f"{task!r}. Allowed: {', '.join(sorted(by_name))}; and for one "
            f"part: mixer={sorted(names['mixer'])}, "
            f"backbone={sorted(names['backbone'])}, "
            f"head={sorted(names['head'])}."
        )
    merged = {
        "mlp_ratio": spec.mlp_ratio,
        "position_embedding": spec.position_embedding,
        **spec.backbone_args,
        **spec.head_args,
        **PRESETS[preset],
        **spec.mixer_args,
        **spec.preset_args.get(preset, {}),
        **overrides,
    }
    if "pooling" in head_names:
        # a causal model's last state has seen the whole sequence
        merged.setdefault("pooling", "last" if spec.causal else "mean")
    if merged["position_embedding"] == "learned":
        merged.setdefault("max_sequence_length", DEFAULT_MAX_SEQUENCE_LENGTH)
    if "segment_length" in head_names and "segment_length" not in overrides:
        # segments no longer than the task's sequences
        merged["segment_length"] = min(
            merged["segment_length"],
            merged.get("max_sequence_length", merged["segment_length"]),
        )
    if "max_length" in names["mixer"] and "max_sequence_length" in merged:
        # a mixer with weights per position (Linformer) covers the
        # backbone's length unless told otherwise
        merged.setdefault("max_length", merged["max_sequence_length"])
    if task == "causal_lm" and not spec.causal:
        raise ValueError(
            f"Model {name!r} is bidirectional and cannot be a causal LM. "
            "Causal models: "
            f"{', '.join(n for n, s in MODELS.items() if s.causal)}."
        )
    split = {
        "mixer": names["mixer"],
        "backbone": names["backbone"],
        "head": head_names,
    }
    return ModelConfig(
        name,
        task,
        **{
            part: {
                **{k: v for k, v in merged.items() if k in split[part]},
                **parts[part],
            }
            for part in split
        },
    )


def build_model(name, task, preset="small", **overrides):
    """Builds a registered model for a task.

    Args:
        name: a name in `MODEL_NAMES`, e.g. `"gpt"`, `"lstm"`.
        task: a key of `HEADS`: `"sequence_classification"`,
            `"token_classification"`, `"causal_lm"`,
            `"dual_encoder_classification"` or `"span_extraction"`.
        preset: `"tiny"`, `"small"` or `"base"`.
        **overrides: as `model_config` takes them: any backbone argument
            (`vocabulary_size` or `feature_dim`, `max_sequence_length`,
            `hidden_dim`, ...), mixer argument (`num_heads`, ...) or head
            argument (`num_classes`, `pooling`, `intermediate_dim`) by
            name, and `mixer=`, `backbone=`, `head=` dicts for one part
            (`head={"dropout": 0.1}`). `pooling` defaults to `"last"` for
            causal models and `"mean"` for bidirectional ones.

    Returns:
        The task model, a `keras.Model`.

    Example:

    >>> model = build_model("lstm", "token_classification", "tiny",
    ...                     vocabulary_size=3, num_classes=2)
    """
    return model_config(name, task, preset, **overrides).build()


def count_parameters(model):
    """Counts a model's weights, split into embeddings and the rest.

    Returns:
        dict with `total`, `embedding` (token, position and feature-input
        tables, and a mixer's weights indexed by position, such as
        Linformer's E and F, which like a position table grow with
        `max_sequence_length`) and `non_embedding` parameter counts.
    """
    backbone = getattr(model, "backbone", model)
    embedding = 0
    for attr in ("token_embedding", "position_embedding", "feature_projection"):
        layer = getattr(backbone, attr, None)
        if layer is not None:
            embedding += layer.count_params()
    for block in getattr(backbone, "blocks", []):
        for weight in getattr(block.mixer, "position_weights", ()):
            embedding += math.prod(weight.shape)
    total = model.count_params()
    return {
        "total": total,
        "embedding": embedding,
        "non_embedding": total - embedding,
    }
