"""Fine-tuning from a checkpoint: a registered model name plus a Hugging
Face checkpoint of its architecture (the binaries' `--init_from`)."""

from kerasseq.models.registry import MODELS
from kerasseq.models.registry import ModelConfig
from kerasseq.models.registry import model_config
from kerasseq.pretrained.hf import Checkpoint
from kerasseq.pretrained.hf import CheckpointError
from kerasseq.pretrained.hf import check_supported
from kerasseq.pretrained.hf import converter
from kerasseq.pretrained.hf import read_checkpoint
from kerasseq.pretrained.hf import read_config
from kerasseq.pretrained.warm_start import mixer_names
from kerasseq.pretrained.warm_start import (
    model_arguments as warm_start_arguments,
)
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


def _head_arguments(config):
    """The head's arguments of a `ModelConfig` that the checkpoint leaves
    to the caller, as the converters take them (`dropout` is the head's
    own)."""
    head = {k: v for k, v in config.head.items() if k not in config.fixed}
    head.pop("tie_embeddings", None)  # the checkpoint decides the output
    return head


def _free_mixer_arguments(name, parts, warm):
    """The mixer's arguments a warm start leaves to the caller (Longformer's
    window, BigBird's blocks); none for a converted checkpoint, whose
    config.json decides its attention."""
    if not warm:
        return {}
    free = mixer_names(name)
    return {k: v for k, v in parts.mixer.items() if k in free}


def check_checkpoint(name, path, task, **overrides):
    """What `build_from_checkpoint` checks from config.json alone, before
    any weights are read: the architecture, the vocabulary, and that
    `overrides` set nothing the checkpoint fixes.

    Returns:
        The `ModelConfig` of the model `build_from_checkpoint` builds (a
        run's record of its model): the arguments config.json fixes, as
        the converter maps them (named in its `fixed`), and beside them
        the head's (`num_classes`, `pooling`, ...) and, for a warm start,
        the mixer's (`window`, `block_size`, ...); its `checkpoint` is the
        checkpoint's config.json.

    Raises:
        CheckpointError: as `build_from_checkpoint`.
    """
    check_model_type(name, path)
    directory, config = read_config(path)
    spec = MODELS[name]
    warm = config.get("model_type") in spec.warm_starts
    try:
        parts = model_config(name, task, **overrides)
    except ValueError as error:
        raise CheckpointError(str(error)) from error
    head = _head_arguments(parts)
    mixer = _free_mixer_arguments(name, parts, warm)
    named = set(overrides) - {"mixer", "backbone", "head"}
    fixed = sorted(named - set(head) - set(mixer) - set(_CHECKED))
    fixed += [f"backbone={k}" for k in sorted(overrides.get("backbone", {}))]
    fixed += [
        f"mixer={k}"
        for k in sorted(overrides.get("mixer", {}))
        if k not in mixer
    ]
    if fixed:
        raise CheckpointError(
            f"{fixed} cannot be set for model {name!r} loaded from "
            f"{directory}: its config.json fixes them. What can be set: "
            f"{', '.join(sorted({*head, *mixer}))}."
        )
    vocabulary = overrides.get("vocabulary_size")
    if vocabulary is not None and vocabulary != config.get("vocab_size"):
        raise CheckpointError(
            f"The checkpoint at {directory} has a vocabulary of "
            f"{config.get('vocab_size')} tokens, but the task's tokenizer "
            f"has {vocabulary}. Use the checkpoint's tokenizer (for GPT-2: "
            f"--tokenizer=gpt2 --tokenizer_dir={directory}; for BERT: "
            f"--tokenizer=wordpiece --tokenizer_dir={directory})."
        )
    given = _checkpoint_arguments(
        name, directory, config, task, warm, overrides
    )
    try:
        # the task's length and vocabulary are only checked against the
        # checkpoint's (a warm start takes the length: it is in `given`)
        caller = {k: v for k, v in overrides.items() if k not in _CHECKED}
        full = model_config(name, task, **{**caller, **given})
    except ValueError as error:
        raise CheckpointError(f"{directory}: {error}") from error
    # the head as the task sizes it (segments no longer than its sequences),
    # with what the checkpoint decides of it (a tied output layer)
    fixed_head = {k: v for k, v in full.head.items() if k in given}
    return ModelConfig(
        name,
        task,
        mixer=full.mixer,
        backbone=full.backbone,
        head={**parts.head, **fixed_head},
        checkpoint=config,
        fixed=tuple(sorted(given)),
    )


def _checkpoint_arguments(name, directory, config, task, warm, overrides):
    """The `build_model` arguments the checkpoint's config.json fixes, as
    its converter (or the warm start) maps them; no weights are read."""
    probe = Checkpoint(directory, config, weights={})
    if warm:
        length = overrides.get("max_sequence_length")
        return warm_start_arguments(probe, name, length)
    given = converter(config["model_type"]).model_arguments(probe, task)
    if MODELS[name].architecture_for(task) is not None:
        # a model class of the architecture's own wraps the checkpoint's
        # backbone: the checkpoint's output layer is not part of it
        given.pop("tie_embeddings", None)
    return given


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
            must be the checkpoint's, the length within its positions. The
            head's arguments (`pooling`, `dropout`, ...) and, for a
            warm start, the mixer's (Longformer's `window`, BigBird's
            `block_size`, ...) can be set; what config.json fixes cannot.

    Raises:
        CheckpointError: another architecture, a vocabulary or length the
            checkpoint does not have, or an override of what it fixes.
    """
    arguments = check_checkpoint(name, path, task, **overrides)
    checkpoint = read_checkpoint(path)
    spec = MODELS[name]
    warm = checkpoint.config.get("model_type") in spec.warm_starts
    # what the caller sets beside the checkpoint's settings
    head = _head_arguments(arguments)
    mixer = _free_mixer_arguments(name, arguments, warm)
    wrapper = spec.architecture_for(task)
    length = overrides.get("max_sequence_length")
    if warm:
        # a BERT-style encoder grown into this model's attention, at the
        # task's length (positions tiled)
        model = warm_start(
            path,
            name,
            task,
            max_sequence_length=length,
            **mixer,
            **head,
        )
    elif wrapper is not None:
        # the architecture's own model class around the checkpoint's
        # backbone (RecurrentGPT2 around GPT-2's): load the plain model,
        # then wrap
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
