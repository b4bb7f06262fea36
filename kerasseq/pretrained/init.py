"""Fine-tuning from a checkpoint: a registered model name plus a Hugging
Face checkpoint of its architecture (the binaries' `--init_from`)."""

from kerasseq.models.registry import MODELS
from kerasseq.models.registry import model_config
from kerasseq.pretrained.hf import CheckpointError
from kerasseq.pretrained.hf import check_supported
from kerasseq.pretrained.hf import converter
from kerasseq.pretrained.hf import read_checkpoint
from kerasseq.pretrained.hf import read_config
from kerasseq.pretrained.warm_start import warm_start

# backbone settings a task fixes, checked against the checkpoint's model
_CHECKED = ("vocabulary_size", "max_sequence_length")


def loaders_of(model_type):
    """Registered model names whose checkpoints have `model_type`."""
    return [
        n
        for n, s in MODELS.items()
        if model_type in s.checkpoints + s.warm_starts
    ]


def check_model_type(name, path):
    """Raises unless model `name` is the architecture of the checkpoint at
    `path` (reading its config.json only)."""
    directory, config = read_config(path)
    model_type = config.get("model_type")
    check_supported(model_type)
    spec = MODELS[name]
    if model_type not in spec.checkpoints + spec.warm_starts:
        raise CheckpointError(
            f"--init_from={directory} is a {model_type!r} "
            f"checkpoint, which model {name!r} cannot load. Models that "
            f"load it: {', '.join(loaders_of(model_type)) or 'none'}."
        )


def build_from_checkpoint(name, path, task, **overrides):
    """The task model of registered model `name` with the weights of the
    checkpoint at `path` (its architecture and sizes come from the
    checkpoint; a new head is initialised as `build_model` would).

    Args:
        name: a registered model whose `ModelSpec.checkpoints` hold the
            checkpoint's `model_type`.
        path: checkpoint directory (or hub id, online).
        task: a kerasseq head.
        **overrides: what the task's data fixes (`vocabulary_size`,
            `max_sequence_length`, `num_classes`, ...): the vocabulary
            must be the checkpoint's, the length within its positions.

    Raises:
        CheckpointError: another architecture, or a vocabulary or length
            the checkpoint does not have.
    """
    check_model_type(name, path)
    checkpoint = read_checkpoint(path)
    # the head's own arguments (`num_classes`, `pooling`, ...); the
    # checkpoint decides the output table, and the head's dropout keeps its
    # own name (a bare `dropout` would reach the backbone)
    head = dict(model_config(name, task, **overrides)["head"])
    head.pop("tie_embeddings", None)
    if "dropout" in head:
        head["head_dropout"] = head.pop("dropout")
    spec = MODELS[name]
    wrapper = spec.heads.get(task)
    length = overrides.get("max_sequence_length")
    if checkpoint.config.get("model_type") in spec.warm_starts:
        # a BERT-style encoder grown into this model's attention, at the
        # task's length (positions tiled)
        model = warm_start(
            path,
            name,
            task,
            max_sequence_length=length,
            **{**spec.mixer_args, **head},
        )
    elif wrapper is not None:
        # a head of the model's own around the checkpoint's backbone
        # (RecurrentGPT2 around GPT-2's): load the plain model, then wrap
        plain = converter(checkpoint.config["model_type"]).convert(
            checkpoint, task
        )
        model = wrapper(plain.backbone, **head, name=f"{name}_{task}")
        length = head.get("segment_length")
    else:
        model = converter(checkpoint.config["model_type"]).convert(
            checkpoint, task, **head
        )
    backbone = model.backbone if hasattr(model, "backbone") else model
    vocabulary = overrides.get("vocabulary_size")
    if vocabulary is not None and vocabulary != backbone.vocabulary_size:
        raise CheckpointError(
            f"The checkpoint at {checkpoint.directory} has a vocabulary of "
            f"{backbone.vocabulary_size} tokens, but the task's tokenizer "
            f"has {vocabulary}. Use the checkpoint's tokenizer (for GPT-2: "
            f"--tokenizer=gpt2 --tokenizer_dir={checkpoint.directory})."
        )
    limit = backbone.max_sequence_length
    if (
        length is not None
        and backbone.position_embedding is not None
        and length > limit
    ):
        raise CheckpointError(
            f"The task's sequences hold {length} tokens, but the checkpoint "
            f"at {checkpoint.directory} has positions for {limit}."
        )
    return model
