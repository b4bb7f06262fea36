"""What the registry holds: a `ModelSpec` per model name, in `MODELS`.

The specs themselves are registered in `mixer_models` (one comparable
model per token mixer) and `architectures` (the architectures of
pretrained checkpoints); `registry` builds the models.
"""

import dataclasses


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
        head_args: arguments of the model class around the backbone (the
            head's `tie_embeddings`, the architecture's `segment_length`).
        checkpoints: the Hugging Face `model_type`s whose checkpoints
            this name loads (`--init_from`, `kerasseq.pretrained`); the
            checkpoint then fixes the sizes and block layout.
        warm_starts: the `model_type`s of encoder checkpoints this model
            starts from as the BigBird and Longformer authors did (BERT's
            weights copied, positions tiled to the longer length).
        compared: whether every-model comparisons and tests run it
            (`COMPARED_MODELS`); the architectures registered for their
            checkpoints differ from `gpt` only in details those fix.
        architecture: for a model that is more than a backbone and a task
            head, its model class (`RecurrentGPT2`), built around the
            backbone in place of the head of the task it serves (its
            class attribute `task`); other tasks, and `None` (the
            default), take the task's head from `HEADS`.
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
    architecture: type | None = None

    def architecture_for(self, task):
        """The model class `architecture` if it serves `task`, else
        `None`."""
        if self.architecture is not None and self.architecture.task == task:
            return self.architecture
        return None


MODELS = {}


def register_model(name, spec):
    """Adds a model to the registry under `name`."""
    if name in MODELS:
        raise ValueError(f"A model named {name!r} is already registered.")
    MODELS[name] = spec


# heads of 16 (tiny), 32 (small) and 64 (base) dimensions, for every
# attention mixer
ATTENTION_HEADS = {
    "tiny": {"num_heads": 4},
    "small": {"num_heads": 4},
    "base": {"num_heads": 8},
}


def attention_spec(mixer, causal, mixer_args, **fields):
    """The `ModelSpec` of a Transformer with attention `mixer`: heads per
    preset (`ATTENTION_HEADS`) and, unless `fields` say otherwise, learned
    positions and GPT's MLP of ratio 4 (attention's 4 d^2 weights and the
    MLP's 8 d^2 make the 12 d^2 per block that every model matches)."""
    fields = {"position_embedding": "learned", "mlp_ratio": 4, **fields}
    return ModelSpec(
        mixer,
        mixer_args=mixer_args,
        preset_args=ATTENTION_HEADS,
        causal=causal,
        **fields,
    )
