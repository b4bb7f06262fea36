"""The model registry: every comparable model by name, at matched sizes.

A model is a `SequenceBackbone` with one kind of token mixer and a task head.
`MODELS` maps a name to a `ModelSpec` saying which mixer, with which
arguments, and how the shared block is shaped around it; a new mixer joins
every experiment binary with one `register_model` line.

Presets fix `hidden_dim` and `num_layers` for all models; each spec adjusts
its MLP width (and mixer arguments) so that the parameters outside the
embeddings agree within 10% across models at every preset. For example the
LSTM mixer has 8 d^2 weights where attention has 4 d^2, so the LSTM model
uses an MLP of ratio 2 where GPT uses 4: both blocks hold about 12 d^2.
"""

import dataclasses
import inspect
import math

from kerasseq import catalogue
from kerasseq.layers.bigbird_attention import BigBirdAttention
from kerasseq.layers.deltanet import DeltaNet
from kerasseq.layers.linear_attention import LinearAttention
from kerasseq.layers.linear_rnn import DiagonalRNN
from kerasseq.layers.linear_rnn import LinearRNN
from kerasseq.layers.linformer_attention import LinformerAttention
from kerasseq.layers.longformer_attention import LongformerAttention
from kerasseq.layers.lru import LRU
from kerasseq.layers.lstm import LSTM
from kerasseq.layers.mamba import Mamba
from kerasseq.layers.performer_attention import PerformerAttention
from kerasseq.layers.quasi_lstm import QuasiLSTM
from kerasseq.layers.softmax_attention import SoftmaxAttention
from kerasseq.models.causal_lm import CausalLM
from kerasseq.models.dual_encoder_classifier import DualEncoderClassifier
from kerasseq.models.recurrent_gpt2 import RecurrentGPT2
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


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """How to build one registered model.

    Attributes:
        mixer: the token-mixer layer class.
        mixer_args: keyword arguments of the mixer at every preset.
        preset_args: per preset, extra mixer or backbone arguments.
        causal: whether the mixer only looks back (decides pooling for
            classification and whether the model can be a `CausalLM`).
        position_embedding: `"learned"` or `"none"`.
        mlp_ratio: MLP width as a multiple of `hidden_dim`, chosen so that
            parameter counts match across models.
        description: one line for listings.
        backbone_args: other backbone arguments (block type, norm,
            activation) of an architecture with pretrained checkpoints.
        head_args: head arguments of the architecture (`tie_embeddings`).
        checkpoints: the Hugging Face `model_type`s whose checkpoints
            this name loads (`--init_from`, `kerasseq.pretrained`); the
            checkpoint then fixes the sizes and block layout.
        warm_starts: the `model_type`s of encoder checkpoints this model
            starts from as the BigBird and Longformer authors did (BERT's
            weights copied, positions tiled to the longer length).
        compared: whether every-model comparisons and tests run it
            (`COMPARED_MODELS`); the architectures registered for their
            checkpoints differ from `gpt` only in details those fix.
        heads: per task, a head class that replaces `HEADS[task]` for
            this model (`RecurrentGPT2` for `"causal_lm"`).
    """

    mixer: type
    mixer_args: dict = dataclasses.field(default_factory=dict)
    preset_args: dict = dataclasses.field(default_factory=dict)
    causal: bool = True
    position_embedding: str = "none"
    mlp_ratio: float = 4
    description: str = ""
    backbone_args: dict = dataclasses.field(default_factory=dict)
    head_args: dict = dataclasses.field(default_factory=dict)
    checkpoints: tuple = ()
    warm_starts: tuple = ()
    compared: bool = True
    heads: dict = dataclasses.field(default_factory=dict)


MODELS = {}

# heads of 16 (tiny), 32 (small) and 64 (base) dimensions, for every
# attention mixer
ATTENTION_HEADS = {
    "tiny": {"num_heads": 4},
    "small": {"num_heads": 4},
    "base": {"num_heads": 8},
}


def register_model(name, spec):
    """Adds a model to the registry under `name`."""
    if name in MODELS:
        raise ValueError(f"A model named {name!r} is already registered.")
    MODELS[name] = spec


register_model(
    "gpt",
    ModelSpec(
        SoftmaxAttention,
        mixer_args={"causal": True},
        preset_args=ATTENTION_HEADS,
        causal=True,
        position_embedding="learned",
        mlp_ratio=4,
        description="GPT-style Transformer: causal softmax attention",
    ),
)
register_model(
    "transformer",
    ModelSpec(
        SoftmaxAttention,
        mixer_args={"causal": False},
        preset_args=ATTENTION_HEADS,
        causal=False,
        position_embedding="learned",
        mlp_ratio=4,
        # its checkpoints are post-norm, with a norm on the embeddings
        checkpoints=("bert", "roberta"),
        description="BERT-style Transformer: bidirectional softmax attention",
    ),
)
register_model(
    "lstm",
    ModelSpec(
        LSTM,
        causal=True,
        mlp_ratio=2,
        description="LSTM (keras.layers.LSTM) blocks",
    ),
)

register_model(
    "mamba",
    ModelSpec(
        Mamba,
        mixer_args={"state_size": 16, "expand": 2},
        causal=True,
        # the Mamba mixer holds about 7 d^2 weights; an MLP of ratio 2.5
        # brings a block within 7% of GPT's at every preset
        mlp_ratio=2.5,
        # its checkpoints have RMS norms and no MLP
        checkpoints=("mamba",),
        description="Mamba-1 selective state-space blocks",
    ),
)

register_model(
    "linear_attention",
    ModelSpec(
        LinearAttention,
        mixer_args={"causal": True},
        preset_args=ATTENTION_HEADS,
        causal=True,
        position_embedding="learned",
        mlp_ratio=4,
        description="Linear Transformer: causal elu+1 linear attention",
    ),
)

register_model(
    "bidirectional_linear_attention",
    ModelSpec(
        LinearAttention,
        mixer_args={"causal": False},
        preset_args=ATTENTION_HEADS,
        causal=False,
        position_embedding="learned",
        mlp_ratio=4,
        description="Linear Transformer encoder: bidirectional elu+1 linear "
        "attention, for classification",
    ),
)

register_model(
    "qlstm",
    ModelSpec(
        QuasiLSTM,
        causal=True,
        # 4 d^2 gate weights, so the MLP of GPT (8 d^2) makes 12 d^2
        mlp_ratio=4,
        description="Quasi-LSTM: input-only gates, parallel cell recurrence",
    ),
)

register_model(
    "linear_rnn",
    ModelSpec(
        LinearRNN,
        # halved Glorot: defined at every state size (the paper's 'fixed'
        # needs N >= 166; pass A_init='fixed' at the base preset)
        mixer_args={"A_init": "rescaled_glorot"},
        causal=True,
        # A, B, C and the GLU hold 5 d^2; an MLP of ratio 3.5 adds 7 d^2
        mlp_ratio=3.5,
        description="Linear RNN with a dense transition (rescaled Glorot)",
    ),
)

register_model(
    "diag_rnn",
    ModelSpec(
        DiagonalRNN,
        mixer_args={"A_init": "rescaled_glorot"},
        causal=True,
        # complex B and C and the GLU hold 6 d^2; an MLP of ratio 3 adds 6
        mlp_ratio=3,
        description="Linear RNN with a complex diagonal transition",
    ),
)

register_model(
    "lru",
    ModelSpec(
        LRU,
        causal=True,
        # complex B and C (4 d^2) and the GLU (2 d^2); an MLP of ratio 3
        # adds 6 d^2
        mlp_ratio=3,
        description="Linear Recurrent Unit (Orvieto et al.) with its GLU",
    ),
)

# heads of 32 (tiny and small) and 64 (base) dimensions: the delta-rule
# state is head_dim^2 per head
DELTANET_HEADS = {
    "tiny": {"num_heads": 2},
    "small": {"num_heads": 4},
    "base": {"num_heads": 8},
}

register_model(
    "deltanet",
    ModelSpec(
        DeltaNet,
        preset_args=DELTANET_HEADS,
        causal=True,
        # q, k, v, gate and output projections hold 5 d^2; an MLP of
        # ratio 3.5 adds 7 d^2
        mlp_ratio=3.5,
        description="DeltaNet: delta-rule linear attention, short convs",
    ),
)

register_model(
    "deltanet_negeig",
    ModelSpec(
        DeltaNet,
        mixer_args={"allow_neg_eigval": True},
        preset_args=DELTANET_HEADS,
        causal=True,
        mlp_ratio=3.5,
        description="DeltaNet with beta in [0, 2]: negative eigenvalues "
        "(Grazzi et al. 2024), for state tracking such as parity",
    ),
)

# efficient Transformers: GPT's blocks with another attention; the
# bidirectional ones are the encoders of the Long Range Arena

register_model(
    "linformer",
    ModelSpec(
        LinformerAttention,
        # one E for keys and values of every head and layer; E grows with
        # max_sequence_length and counts, like position tables, as an
        # embedding (see count_parameters)
        # (projected_length: the layer's min(256, max_sequence_length))
        mixer_args={"sharing": "layerwise"},
        preset_args=ATTENTION_HEADS,
        causal=False,
        position_embedding="learned",
        mlp_ratio=4,
        description="Linformer encoder: keys and values projected to k rows "
        "along the sequence",
    ),
)

register_model(
    "bigbird",
    ModelSpec(
        BigBirdAttention,
        # the reference's blocks: 64 tokens, first and last global, 3
        # random; full attention up to (3 + 2 + 2 * 3) * 64 = 704 tokens
        mixer_args={
            "block_size": 64,
            "num_global_blocks": 2,
            "num_random_blocks": 3,
        },
        preset_args=ATTENTION_HEADS,
        causal=False,
        position_embedding="learned",
        mlp_ratio=4,
        checkpoints=("big_bird",),
        warm_starts=("bert", "roberta"),
        description="BigBird encoder: block-sparse attention (window, "
        "global and random blocks)",
    ),
)

register_model(
    "longformer",
    ModelSpec(
        LongformerAttention,
        # 128 tokens on each side; the first token is global (a CLS token
        # that reads and is read by the whole sequence)
        mixer_args={"window": 256, "num_global_tokens": 1},
        preset_args=ATTENTION_HEADS,
        causal=False,
        position_embedding="learned",
        # local and global projections hold 7 d^2; an MLP of ratio 2.5
        # adds 5 d^2, GPT's 12 d^2 in all
        mlp_ratio=2.5,
        checkpoints=("longformer",),
        warm_starts=("bert", "roberta"),
        description="Longformer encoder: sliding-window attention and a "
        "global first token",
    ),
)

register_model(
    "longformer_causal",
    ModelSpec(
        LongformerAttention,
        mixer_args={"window": 256, "causal": True},
        preset_args=ATTENTION_HEADS,
        causal=True,
        position_embedding="learned",
        mlp_ratio=4,
        description="Causal Longformer: each token attends the 256 before it",
    ),
)

register_model(
    "performer",
    ModelSpec(
        PerformerAttention,
        mixer_args={"causal": False},
        preset_args=ATTENTION_HEADS,
        causal=False,
        position_embedding="learned",
        mlp_ratio=4,
        description="Performer encoder: FAVOR+ estimate of softmax attention",
    ),
)

register_model(
    "performer_causal",
    ModelSpec(
        PerformerAttention,
        mixer_args={"causal": True},
        preset_args=ATTENTION_HEADS,
        causal=True,
        position_embedding="learned",
        mlp_ratio=4,
        description="Causal Performer: FAVOR+ features, prefix sums",
    ),
)

# architectures of pretrained checkpoints (kerasseq.pretrained.from_hf),
# from scratch at the presets' sizes or fine-tuned with --init_from
register_model(
    "gpt2",
    ModelSpec(
        SoftmaxAttention,
        mixer_args={"causal": True},
        preset_args=ATTENTION_HEADS,
        causal=True,
        position_embedding="learned",
        mlp_ratio=4,
        backbone_args={"activation": "gelu_approximate"},
        checkpoints=("gpt2",),
        compared=False,
        description="GPT-2 (and DistilGPT-2): GPT with GELU's tanh "
        "approximation",
    ),
)
register_model(
    "distilgpt2",
    ModelSpec(
        SoftmaxAttention,
        mixer_args={"causal": True},
        preset_args=ATTENTION_HEADS,
        causal=True,
        position_embedding="learned",
        mlp_ratio=4,
        backbone_args={"activation": "gelu_approximate"},
        checkpoints=("gpt2",),
        compared=False,
        description="DistilGPT-2: GPT-2's architecture (its checkpoints "
        "have 6 layers)",
    ),
)
register_model(
    "recurrent_gpt2",
    ModelSpec(
        SoftmaxAttention,
        mixer_args={"causal": True},
        preset_args=ATTENTION_HEADS,
        causal=True,
        position_embedding="learned",
        mlp_ratio=4,
        backbone_args={"activation": "gelu_approximate"},
        head_args={"segment_length": 128},
        heads={"causal_lm": RecurrentGPT2},
        checkpoints=("gpt2",),
        compared=False,
        description="GPT-2 over segments of 128 tokens, a GRU state carried "
        "from each segment's top layer to the next one's embeddings "
        "(gated, closed at initialisation)",
    ),
)
register_model(
    "pythia",
    ModelSpec(
        SoftmaxAttention,
        mixer_args={"causal": True, "rotary_fraction": 0.25},
        preset_args=ATTENTION_HEADS,
        causal=True,
        position_embedding="none",
        mlp_ratio=4,
        backbone_args={"block_type": "parallel"},
        head_args={"tie_embeddings": False},
        checkpoints=("gpt_neox",),
        compared=False,
        description="Pythia (GPT-NeoX): parallel attention and MLP, rotary "
        "positions on a quarter of each head, untied output",
    ),
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
    return spec.heads.get(task, HEADS[task])


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
        "mixer": _arg_names(spec.mixer),
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
