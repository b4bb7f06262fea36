"""Reading Hugging Face checkpoints: `config.json` and the weights.

`from_hf(path_or_repo_id)` reads a checkpoint directory (or downloads one
from the hub when online), picks the converter for its `model_type`, and
returns the kerasseq model with the weights in place. Each converter module
(`gpt2.py`, `gpt_neox.py`, ...) defines `convert(checkpoint, task, **kw)`;
the helpers here take tensors out of the checkpoint and assign them with
their names and shapes checked, so that a wrong or partial file fails with
the tensor it is about. A decoder-only converter (GPT-2, GPT-NeoX) states
where its checkpoint keeps each tensor in a `DecoderLayout`;
`convert_decoder` builds and fills the model from it.
"""

import dataclasses
import importlib
import json
import os

import numpy as np

# model_type in config.json -> converter module (imported when needed)
CONVERTERS = {
    "gpt2": "kerasseq.pretrained.gpt2",
    "gpt_neox": "kerasseq.pretrained.gpt_neox",
    "mamba": "kerasseq.pretrained.mamba",
    "bert": "kerasseq.pretrained.bert",
    "roberta": "kerasseq.pretrained.bert",
    "longformer": "kerasseq.pretrained.longformer",
    "big_bird": "kerasseq.pretrained.bigbird",
}

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


class CheckpointError(ValueError):
    """A checkpoint is missing, partial, or does not fit the model."""


@dataclasses.dataclass
class Checkpoint:
    """A Hugging Face checkpoint read into memory.

    Attributes:
        directory: where its files are.
        config: `config.json`, as a dict.
        weights: tensor name -> float32 NumPy array, with any
            architecture prefix (`transformer.`, `gpt_neox.`, `backbone.`,
            `bert.`, ...) kept as in the file.
        used: names taken so far (see `take`).
    """

    directory: str
    config: dict
    weights: dict
    used: set = dataclasses.field(default_factory=set)

    def has(self, name):
        return name in self.weights

    def take(self, name, shape=None):
        """The tensor `name`, checked against `shape` if given (`None` in
        `shape`: any size along that axis)."""
        if name not in self.weights:
            near = sorted(self.weights)[:8]
            raise CheckpointError(
                f"{self.directory}: the weights have no tensor {name!r} "
                f"(a partial or different checkpoint). They hold "
                f"{len(self.weights)} tensors, e.g. {near}."
            )
        array = self.weights[name]
        if shape is not None and (
            array.ndim != len(shape)
            or any(
                n not in (None, m)
                for n, m in zip(shape, array.shape, strict=True)
            )
        ):
            needed = tuple("any" if n is None else n for n in shape)
            raise CheckpointError(
                f"{self.directory}: tensor {name!r} has shape "
                f"{tuple(array.shape)}, but the model built from "
                f"config.json needs {needed}."
            )
        self.used.add(name)
        return array

    def check_all_used(self, ignore=()):
        """Raises if a tensor was not taken (a layer the converter does not
        know would be dropped silently). `ignore`: name suffixes that
        carry no weights (attention-mask buffers, ...)."""
        left = [
            name
            for name in sorted(self.weights)
            if name not in self.used and not name.endswith(tuple(ignore))
        ]
        if left:
            raise CheckpointError(
                f"{self.directory}: {len(left)} tensors of the checkpoint "
                f"have no place in the kerasseq model: {left[:10]}."
            )


def assign(variable, array, name):
    """Sets a Keras variable from `array`, naming the checkpoint tensor
    `name` if the shapes differ."""
    array = np.asarray(array)
    if tuple(variable.shape) != tuple(array.shape):
        raise CheckpointError(
            f"Tensor {name!r} has shape {tuple(array.shape)}, but the "
            f"kerasseq weight {variable.path!r} has shape "
            f"{tuple(variable.shape)}."
        )
    variable.assign(array.astype(variable.dtype))


def load_table(checkpoint, table):
    """Assigns a converter's table: rows `(tensor name, its shape,
    [kerasseq variables], function from the tensor to their values)`."""
    for name, shape, variables, to_values in table:
        values = to_values(checkpoint.take(name, shape))
        for variable, value in zip(variables, values, strict=True):
            assign(variable, value, name)


def same(array):
    """A table row's function for a tensor that is the variable's value
    as it is."""
    return [array]


def qkv_variables(attention):
    """A `SoftmaxAttention`'s query, key and value kernels and biases, in
    that order: the two lists a packed qkv tensor of a checkpoint fills."""
    kernels = [
        attention.query_kernel,
        attention.key_kernel,
        attention.value_kernel,
    ]
    biases = [attention.query_bias, attention.key_bias, attention.value_bias]
    return kernels, biases


def config_size(checkpoint, key):
    """config.json's positive integer `key`."""
    value = checkpoint.config.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise CheckpointError(
            f"{checkpoint.directory}: config.json needs a positive integer "
            f"{key!r}, got {value!r}."
        )
    return value


def head_sizes(checkpoint, width_key, heads_key):
    """`(hidden_dim, num_heads)` from config.json's `width_key` and
    `heads_key`; the width must split evenly into the heads."""
    hidden_dim = config_size(checkpoint, width_key)
    num_heads = config_size(checkpoint, heads_key)
    if hidden_dim % num_heads:
        raise CheckpointError(
            f"{checkpoint.directory}: config.json has {width_key}="
            f"{hidden_dim}, not a multiple of {heads_key}={num_heads}."
        )
    return hidden_dim, num_heads


def find_prefix(checkpoint, prefixes, tensor, architecture):
    """The one of `prefixes` under which the weights hold `tensor` (the
    token embedding: `"transformer."` for a model with an LM head, `""`
    for a bare one)."""
    for prefix in prefixes:
        if checkpoint.has(f"{prefix}{tensor}"):
            return prefix
    raise CheckpointError(
        f"{checkpoint.directory}: no {architecture} token embedding in the "
        f"weights (looked for {[p + tensor for p in prefixes]})."
    )


def load_lm_head(model, checkpoint, names, embedding, task):
    """Loads a decoder's LM head, the tensor among `names` the weights
    hold: into the model's `output_embedding` when the causal LM's output
    is untied; else (tied, or another task) it must equal the token
    embedding `embedding` for a causal LM, and is only marked used."""
    present = [name for name in names if checkpoint.has(name)]
    if len(present) > 1:
        raise CheckpointError(
            f"{checkpoint.directory}: the weights hold two LM heads, "
            f"{present}; expected one."
        )
    if task == "causal_lm" and not model.tie_embeddings:
        # named in the error when missing
        name = present[0] if present else names[0]
        table = model.output_embedding.embeddings
        assign(table, checkpoint.take(name, tuple(table.shape)), name)
        return
    if not present:
        return
    lm_head = checkpoint.take(present[0])
    if task == "causal_lm" and not np.array_equal(
        lm_head, checkpoint.weights[embedding]
    ):
        raise CheckpointError(
            f"{checkpoint.directory}: {present[0]!r} differs from "
            f"{embedding!r}, but config.json has tie_word_embeddings=true."
        )


def check_not_fixed(checkpoint, task, fixed, head_args):
    """Raises if `head_args` sets what config.json fixes (`fixed`)."""
    clash = sorted(set(head_args) & set(fixed))
    if clash:
        raise CheckpointError(
            f"{checkpoint.directory}: {clash} are fixed by the checkpoint's "
            f"config.json and cannot be passed to a {task!r} model loaded "
            "from it."
        )


def build_checked(checkpoint, name, task, fixed, head_args):
    """`build_model(name, task, **fixed, **head_args)` for a converter.

    `fixed` holds what config.json decides (sizes, layout, the backbone's
    dropout); `head_args` what the caller gives the head (`num_classes`,
    `pooling`, `dropout`: the head's own, passed on as `head=`) and
    options that leave the weights alone (`dtype`).

    Raises:
        CheckpointError: `head_args` sets what config.json fixes, or the
            registry refuses the arguments.
    """
    from kerasseq.models.registry import build_model

    head_args = dict(head_args)
    # the head's own dropout (a plain `dropout` is the backbone's)
    head = (
        {"dropout": head_args.pop("dropout")} if "dropout" in head_args else {}
    )
    check_not_fixed(checkpoint, task, fixed, head_args)
    try:
        return build_model(name, task, "small", **fixed, **head_args, head=head)
    except ValueError as error:
        raise CheckpointError(
            f"{checkpoint.directory}: cannot build a {name!r} {task!r} model "
            f"from it: {error}"
        ) from error


@dataclasses.dataclass(frozen=True)
class DecoderLayout:
    """Where a decoder-only checkpoint keeps its tensors, for
    `convert_decoder`.

    Attributes:
        architecture: the registry's model name it becomes (`"gpt2"`).
        name: the architecture's name in errors (`"GPT-2"`).
        prefixes: the prefixes the tensor names may carry: the causal
            LM's (`"transformer."`), then `""` (a bare model).
        token_embedding: the token embedding's name after the prefix.
        blocks: the blocks' name after the prefix (`"h"`: `h.{i}.…`).
        lm_heads: the names the LM head may have (never prefixed).
        buffers: endings of the names of non-weights some files keep
            beside the weights (masks, rotary frequencies), ignored.
        model_arguments: `(checkpoint, task) -> dict`, the `build_model`
            arguments that config.json fixes.
        backbone_table: `(backbone, prefix) -> rows` of the tensors
            outside the blocks, as `load_table` takes them.
        block_table: `(block, name) -> rows` of one block named `name`.
    """

    architecture: str
    name: str
    prefixes: tuple
    token_embedding: str
    blocks: str
    lm_heads: tuple
    buffers: tuple
    model_arguments: object
    backbone_table: object
    block_table: object


def convert_decoder(checkpoint, task, head_args, layout):
    """Builds the kerasseq model of a decoder-only checkpoint laid out as
    `layout` says, with its weights.

    Args:
        checkpoint: a `Checkpoint`.
        task: `None` or `"causal_lm"` for the language model; another
            kerasseq head (`"sequence_classification"`, ...) gets the
            checkpoint's backbone and a freshly initialised head (the LM
            head is then left out).
        head_args: dict, the head's arguments (`num_classes`, `pooling`,
            `dropout`: the head's) and `dtype`.
        layout: a `DecoderLayout`.

    Returns:
        The task model, a `keras.Model`.

    Raises:
        CheckpointError: an unsupported configuration, a missing or
            misshapen tensor, or a tensor the model has no place for.
    """
    task = task or "causal_lm"
    arguments = layout.model_arguments(checkpoint, task)
    model = build_checked(
        checkpoint, layout.architecture, task, arguments, head_args
    )
    backbone = model.backbone
    prefix = find_prefix(
        checkpoint, layout.prefixes, layout.token_embedding, layout.name
    )
    table = layout.backbone_table(backbone, prefix)
    for i, block in enumerate(backbone.blocks):
        table += layout.block_table(block, f"{prefix}{layout.blocks}.{i}")
    load_table(checkpoint, table)
    embedding = f"{prefix}{layout.token_embedding}"
    load_lm_head(model, checkpoint, layout.lm_heads, embedding, task)
    checkpoint.check_all_used(ignore=layout.buffers)
    return model


def _looks_like_repo_id(path):
    parts = path.split("/")
    return (
        not os.path.isabs(path)
        and not path.startswith(".")
        and len(parts) <= 2
        and all(parts)
    )


def _download(repo_id):
    """The local snapshot of hub repo `repo_id` (config and weights only)."""
    try:
        import huggingface_hub
    except ImportError as error:
        raise CheckpointError(
            f"{repo_id!r} is not a local directory, and reading it from the "
            "Hugging Face hub needs `pip install huggingface_hub`."
        ) from error
    try:
        return huggingface_hub.snapshot_download(
            repo_id,
            allow_patterns=["config.json", "*.safetensors", "*.json", "*.txt"],
        )
    except Exception as error:  # offline, unknown repo, no access
        raise CheckpointError(
            f"{repo_id!r} is not a local directory, and the Hugging Face "
            f"hub could not give it ({type(error).__name__}: {error}). "
            "Offline, pass a directory holding config.json and "
            "model.safetensors."
        ) from error


def resolve(path_or_repo_id):
    """The local directory of a checkpoint: `path_or_repo_id` itself, or
    the hub snapshot of a repo id (`"gpt2"`, `"EleutherAI/pythia-70m"`)."""
    path = os.fspath(path_or_repo_id)
    if os.path.isdir(path):
        return path
    if _looks_like_repo_id(path):
        return _download(path)
    raise CheckpointError(
        f"No checkpoint directory at {path!r} (expected config.json and "
        f"{' or '.join(WEIGHT_FILES)} there)."
    )


def _read_weights(directory):
    safetensors_path = os.path.join(directory, "model.safetensors")
    if os.path.exists(safetensors_path):
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        try:
            weights = load_file(safetensors_path)
        except (SafetensorError, OSError, ValueError) as error:
            raise CheckpointError(
                f"{safetensors_path} is not a readable safetensors file "
                f"({error}); it may be cut short. Download it again."
            ) from error
    elif os.path.exists(os.path.join(directory, "pytorch_model.bin")):
        try:
            import torch
        except ImportError as error:
            raise CheckpointError(
                f"{directory} holds only pytorch_model.bin, which needs "
                "torch to read. Convert it once where torch is installed: "
                "`transformers.AutoModel.from_pretrained(DIR)"
                ".save_pretrained(DIR, safe_serialization=True)` writes "
                "model.safetensors beside it."
            ) from error
        state = torch.load(
            os.path.join(directory, "pytorch_model.bin"),
            map_location="cpu",
            weights_only=True,
        )
        weights = {k: v.float().numpy() for k, v in state.items()}
    else:
        raise CheckpointError(
            f"{directory} has no weights: expected "
            f"{' or '.join(WEIGHT_FILES)} beside config.json."
        )
    return {
        name: np.asarray(array, dtype=np.float32)
        if np.issubdtype(np.asarray(array).dtype, np.floating)
        else np.asarray(array)
        for name, array in weights.items()
    }


def read_config(path_or_repo_id):
    """`(directory, config.json as a dict)` of a checkpoint, without its
    weights."""
    directory = resolve(path_or_repo_id)
    config_path = os.path.join(directory, "config.json")
    if not os.path.exists(config_path):
        raise CheckpointError(
            f"{directory} has no config.json (expected config.json and "
            f"{' or '.join(WEIGHT_FILES)})."
        )
    with open(config_path) as f:
        try:
            return directory, json.load(f)
        except json.JSONDecodeError as error:
            raise CheckpointError(
                f"{config_path} is not valid JSON: {error}."
            ) from error


def read_checkpoint(path_or_repo_id):
    """Reads `config.json` and the weights of a checkpoint.

    Returns:
        A `Checkpoint`.

    Raises:
        CheckpointError: no such directory (and no hub access), no
            `config.json`, no weight file.
    """
    directory, config = read_config(path_or_repo_id)
    return Checkpoint(directory, config, _read_weights(directory))


def check_supported(model_type):
    """Raises unless a converter reads checkpoints of `model_type`."""
    if model_type not in CONVERTERS:
        raise CheckpointError(
            f"Unsupported model_type {model_type!r} in config.json. "
            f"Supported: {', '.join(sorted(CONVERTERS))}."
        )


def converter(model_type):
    """The converter module of `model_type`."""
    check_supported(model_type)
    return importlib.import_module(CONVERTERS[model_type])


def from_hf(path_or_repo_id, task=None, **kwargs):
    """Builds the kerasseq model of a Hugging Face checkpoint.

    Args:
        path_or_repo_id: a directory with `config.json` and
            `model.safetensors` (or `pytorch_model.bin`, read only when
            torch is installed), or a hub repo id (downloaded when online).
        task: a kerasseq head (`"causal_lm"`, `"sequence_classification"`,
            ...). Defaults to the checkpoint's own: `"causal_lm"` for
            causal LMs, the backbone alone for encoders.
        **kwargs: head arguments (`num_classes`, ...) and the converter's
            options.

    Returns:
        The kerasseq model with the checkpoint's weights.
    """
    checkpoint = read_checkpoint(path_or_repo_id)
    model_type = checkpoint.config.get("model_type")
    return converter(model_type).convert(checkpoint, task, **kwargs)
