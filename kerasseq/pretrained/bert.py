"""Hugging Face BERT and RoBERTa encoders (`model_type: "bert"` and
`"roberta"`) as kerasseq models.

Both are post-norm Transformer encoders: the embeddings are the sum of
word, position and token-type embeddings, normalised; each layer is
`x = norm(x + attention(x))`, then `x = norm(x + mlp(x))`, and no norm
follows the last layer. That is the registered `transformer` model
(bidirectional `SoftmaxAttention`, learned positions) with
`block_type="post_norm"`, `embedding_norm=True` and `final_norm=False`:

    checkpoint (prefix `bert.` / `roberta.`   kerasseq
    in task checkpoints, else none)
    embeddings.word_embeddings     (V, D)     token_embedding (V, D)
    embeddings.position_embeddings (P, D)  +  position_embedding (L, D),
    embeddings.token_type_embeddings[0]       rows added together
    embeddings.LayerNorm                      embedding_norm
    encoder.layer.{i}.attention.
        self.query / key / value   (HK, D)    mixer.{query,key,value}_kernel
                                              (D, H, K), bias (H, K)
        output.dense               (D, HK)    mixer.output_kernel (H, K, D)
        output.LayerNorm                      block_{i}.mixer_norm
    encoder.layer.{i}.intermediate.dense      block_{i}.mlp_in
    encoder.layer.{i}.output.dense            block_{i}.mlp_out
    encoder.layer.{i}.output.LayerNorm        block_{i}.mlp_norm

LayerNorms named `gamma` / `beta` (early exports) are read as `weight` /
`bias`.

What kerasseq's inputs mean, and where that is exact:

- Token types: kerasseq has no token-type input, so row 0 of the
  token-type table is folded into every position row. That is exact for
  all-zero `token_type_ids`, Hugging Face's default (single sequences);
  sentence pairs with type 1 for the second segment are not represented.
- RoBERTa positions: RoBERTa numbers real tokens from `pad_token_id + 1`
  (2) and gives padding the position `pad_token_id`. The table's rows
  `pad + 1 : pad + 1 + L` become kerasseq's positions `0 : L`, which is
  exact for right-padded inputs (the outputs at real tokens; padded ones
  are masked anyway); `max_sequence_length` is the
  `max_position_embeddings - pad_token_id - 1` usable rows (512 for
  `roberta-base`).
- Dropout: kerasseq's one `dropout` rate acts where BERT's
  `hidden_dropout_prob` does (embeddings, both residual branches) and on
  the attention weights too; it is set to `hidden_dropout_prob`, which
  published checkpoints also use as `attention_probs_dropout_prob`.

Heads: the pooler (`pooler.dense`, a tanh layer on the first token) and
the heads of task checkpoints (`classifier.*` of
`...ForSequenceClassification`, `cls.*` / `lm_head.*` of masked LMs,
`qa_outputs.*`) are read and left out. A kerasseq `SequenceClassifier` is
one Dense layer on the pooled vector, whereas BERT's classifier runs the
tanh pooler first and RoBERTa's has a tanh layer of its own, so no
classifier maps exactly and the kerasseq head starts fresh.
"""

import numpy as np

from kerasseq.models.registry import HEADS
from kerasseq.pretrained.hf import CheckpointError
from kerasseq.pretrained.hf import assign
from kerasseq.pretrained.hf import build_checked
from kerasseq.pretrained.hf import check_not_fixed

# model_type -> prefix of the encoder's tensors in task checkpoints
PREFIXES = {"bert": "bert.", "roberta": "roberta."}
# tensors of heads kerasseq does not map (relative to the encoder prefix
# for the pooler, at the top for task heads)
POOLER = "pooler."
TASK_HEADS = ("classifier.", "cls.", "lm_head.", "qa_outputs.")
# buffers exports carry, with no weights in them
IGNORED = ("position_ids", "token_type_ids")
# hidden_act of config.json -> kerasseq activation
ACTIVATIONS = {
    "gelu": "gelu",
    "gelu_new": "gelu_approximate",
    "gelu_pytorch_tanh": "gelu_approximate",
    "relu": "relu",
    "silu": "silu",
    "swish": "silu",
}


def _config_value(checkpoint, key):
    value = checkpoint.config.get(key)
    if value is None:
        raise CheckpointError(
            f"{checkpoint.directory}/config.json has no {key!r}, which a "
            f"{checkpoint.config.get('model_type')} checkpoint needs."
        )
    return value


def check_supported(checkpoint):
    config = checkpoint.config
    where = f"{checkpoint.directory}/config.json"
    position_type = config.get("position_embedding_type", "absolute")
    if position_type != "absolute":
        raise CheckpointError(
            f"{where}: position_embedding_type={position_type!r}; kerasseq "
            "loads absolute position embeddings only ('absolute')."
        )
    for key in ("is_decoder", "add_cross_attention"):
        if config.get(key):
            raise CheckpointError(
                f"{where}: {key} is true; kerasseq loads BERT and RoBERTa "
                "as bidirectional encoders without cross-attention only."
            )
    act = config.get("hidden_act", "gelu")
    if act not in ACTIVATIONS:
        raise CheckpointError(
            f"{where}: hidden_act={act!r} has no kerasseq counterpart. "
            f"Supported: {', '.join(sorted(ACTIVATIONS))}."
        )
    hidden, heads = config.get("hidden_size"), config.get("num_attention_heads")
    if hidden and heads and hidden % heads:
        raise CheckpointError(
            f"{where}: hidden_size={hidden} is not a multiple of "
            f"num_attention_heads={heads}."
        )


def position_offset(checkpoint):
    """The table row of kerasseq's position 0."""
    # Longformer numbers its positions as RoBERTa does
    if checkpoint.config["model_type"] not in ("roberta", "longformer"):
        return 0
    return _config_value(checkpoint, "pad_token_id") + 1


def _head_defaults(task, head_args, config):
    """`head_args` with the defaults of an encoder checkpoint's head:
    first-token pooling, and as many classes as config.json's labels."""
    args = dict(head_args)
    if task == "sequence_classification":
        # the first token is BERT's [CLS] and RoBERTa's <s>
        args.setdefault("pooling", "first")
        if "num_classes" not in args:
            if not config.get("id2label"):
                raise CheckpointError(
                    "task='sequence_classification' needs num_classes "
                    "(config.json has no id2label to count labels from)."
                )
            args["num_classes"] = len(config["id2label"])
    return args


def _weight_name(checkpoint, name, legacy):
    """`name`, or its early-export spelling `legacy` if only that is in
    the file."""
    if not checkpoint.has(name) and checkpoint.has(legacy):
        return legacy
    return name


def _load_norm(checkpoint, name, norm):
    for attr, suffix, legacy in (
        ("gamma", "weight", "gamma"),
        ("beta", "bias", "beta"),
    ):
        tensor = _weight_name(
            checkpoint, f"{name}.{suffix}", f"{name}.{legacy}"
        )
        variable = getattr(norm, attr)
        assign(variable, checkpoint.take(tensor, variable.shape), tensor)


def _load_dense(checkpoint, name, dense):
    """A Linear `name` (weight `(out, in)`, bias) into Keras `dense`."""
    kernel = dense.kernel
    weight = checkpoint.take(f"{name}.weight", kernel.shape[::-1])
    assign(kernel, weight.T, f"{name}.weight")
    bias = checkpoint.take(f"{name}.bias", dense.bias.shape)
    assign(dense.bias, bias, f"{name}.bias")


def load_attention(checkpoint, name, mixer):
    hidden_dim, heads, head_dim = mixer.query_kernel.shape
    width = heads * head_dim
    for part in ("query", "key", "value"):
        tensor = f"{name}.self.{part}"
        weight = checkpoint.take(f"{tensor}.weight", (width, hidden_dim))
        kernel = weight.T.reshape(hidden_dim, heads, head_dim)
        assign(getattr(mixer, f"{part}_kernel"), kernel, f"{tensor}.weight")
        bias = checkpoint.take(f"{tensor}.bias", (width,))
        bias = bias.reshape(heads, head_dim)
        assign(getattr(mixer, f"{part}_bias"), bias, f"{tensor}.bias")
    tensor = f"{name}.output.dense"
    weight = checkpoint.take(f"{tensor}.weight", (hidden_dim, width))
    kernel = weight.T.reshape(heads, head_dim, hidden_dim)
    assign(mixer.output_kernel, kernel, f"{tensor}.weight")
    bias = checkpoint.take(f"{tensor}.bias", (hidden_dim,))
    assign(mixer.output_bias, bias, f"{tensor}.bias")


def tile_rows(rows, length):
    """`length` rows: `rows` repeated from the first (rows 0..P-1, 0..P-1,
    ...), as Longformer and BigBird extend a BERT position table."""
    repeats = -(-length // len(rows))
    return np.concatenate([rows] * repeats)[:length]


def _load_embeddings(checkpoint, prefix, backbone, offset, tile=False):
    """The embeddings; with `tile`, the position table's usable rows (from
    `offset`) are repeated to the model's `max_sequence_length`."""
    name = f"{prefix}embeddings"
    table = backbone.token_embedding.embeddings
    words = checkpoint.take(f"{name}.word_embeddings.weight", table.shape)
    assign(table, words, f"{name}.word_embeddings.weight")
    positions = backbone.position_embedding.embeddings
    length, hidden_dim = positions.shape
    if tile:
        # as many positions as the checkpoint has, repeated to the length
        rows = checkpoint.take(
            f"{name}.position_embeddings.weight", (None, hidden_dim)
        )
        rows = np.concatenate([rows[:offset], tile_rows(rows[offset:], length)])
    else:
        rows = checkpoint.take(
            f"{name}.position_embeddings.weight", (offset + length, hidden_dim)
        )
    types = checkpoint.take(
        f"{name}.token_type_embeddings.weight", (None, hidden_dim)
    )
    # token type 0 at every position, the only type kerasseq inputs have
    assign(positions, rows[offset:] + types[0], f"{name}.position_embeddings")
    _load_norm(checkpoint, f"{name}.LayerNorm", backbone.embedding_norm)


def drop_heads(checkpoint, prefix):
    """Reads the tensors of the heads kerasseq does not map, leaving
    them out."""
    heads = (f"{prefix}{POOLER}", *TASK_HEADS)
    for name in list(checkpoint.weights):
        if name.startswith(heads):
            checkpoint.take(name)


def model_arguments(checkpoint, task):
    """The `build_model("transformer", task, ...)` arguments config.json
    fixes."""
    del task
    return encoder_settings(checkpoint)[0]


def convert(checkpoint, task=None, **head_args):
    """Builds the kerasseq encoder of a BERT or RoBERTa checkpoint.

    Args:
        checkpoint: a `kerasseq.pretrained.hf.Checkpoint` whose config.json
            has `model_type` `"bert"` or `"roberta"` (`BertModel`,
            `RobertaModel`, their `...ForSequenceClassification`, or
            another task checkpoint, whose head is left out).
        task: `None` (the default) for the `SequenceBackbone` alone (its
            outputs are the encoder's last hidden states), or a kerasseq
            head such as `"sequence_classification"`, initialised afresh
            over the loaded encoder.
        **head_args: the head's arguments, as the head takes them. For
            `"sequence_classification"`: `num_classes` (default: the
            labels in config.json's `id2label`), `pooling` (default
            `"first"`, the [CLS] / <s> token) and `dropout` (the head's;
            the encoder's is config.json's `hidden_dropout_prob`). Also
            `dtype`, with or without a task.

    Returns:
        The backbone, or the task model, with the checkpoint's weights.

    Raises:
        CheckpointError: a tensor missing, misshapen or left over, or a
            setting kerasseq cannot represent (relative positions, a
            decoder, an activation without a counterpart).

    Example:

    >>> backbone = kerasseq.pretrained.from_hf(  # doctest: +SKIP
    ...     "bert-base-uncased")
    >>> classifier = kerasseq.pretrained.from_hf(  # doctest: +SKIP
    ...     "roberta-base", task="sequence_classification", num_classes=2)
    """
    model_type = check_encoder(checkpoint, tuple(PREFIXES), task)
    fixed, offset = encoder_settings(checkpoint)
    model = build(checkpoint, "transformer", task, fixed, head_args)
    backbone = model.backbone
    prefix = encoder_prefix(checkpoint, PREFIXES[model_type])
    load_encoder(checkpoint, prefix, backbone, offset)
    drop_heads(checkpoint, prefix)
    checkpoint.check_all_used(ignore=IGNORED)
    return backbone if task is None else model


def check_encoder(checkpoint, model_types, task, purpose=""):
    """The checkpoint's `model_type`, once checked: one of `model_types`,
    `task` a kerasseq head (or None), and settings kerasseq represents.
    `purpose` ends the message of a wrong model_type."""
    model_type = checkpoint.config.get("model_type")
    if model_type not in model_types:
        expected = (
            repr(model_types[0])
            if len(model_types) == 1
            else f"one of {', '.join(model_types)}"
        )
        raise CheckpointError(
            f"{checkpoint.directory}: model_type {model_type!r} is not "
            f"{expected}{purpose}."
        )
    _check_task(model_type, task)
    check_supported(checkpoint)
    return model_type


def _check_task(model_type, task):
    if task is not None and task not in HEADS:
        raise CheckpointError(
            f"Unknown task {task!r} for a {model_type} checkpoint. Valid "
            f"tasks: {', '.join(sorted(HEADS))} (or None for the encoder)."
        )


def encoder_settings(checkpoint):
    """`(fixed, offset)`: the `build_model` arguments config.json fixes for
    a BERT-style post-norm encoder, and the position-table row of
    kerasseq's position 0."""
    config = checkpoint.config
    hidden_dim = _config_value(checkpoint, "hidden_size")
    num_heads = _config_value(checkpoint, "num_attention_heads")
    intermediate = _config_value(checkpoint, "intermediate_size")
    offset = position_offset(checkpoint)
    positions = _config_value(checkpoint, "max_position_embeddings")
    if positions <= offset:
        raise CheckpointError(
            f"{checkpoint.directory}/config.json: max_position_embeddings="
            f"{positions} leaves no position after the first {offset} "
            "rows RoBERTa reserves."
        )
    fixed = {
        "num_layers": _config_value(checkpoint, "num_hidden_layers"),
        "hidden_dim": hidden_dim,
        "vocabulary_size": _config_value(checkpoint, "vocab_size"),
        "max_sequence_length": positions - offset,
        "position_embedding": "learned",
        "mlp_ratio": intermediate / hidden_dim,
        "dropout": config.get("hidden_dropout_prob", 0.1),
        "layer_norm_epsilon": config.get("layer_norm_eps", 1e-12),
        "block_type": "post_norm",
        "normalization": "layer_norm",
        "activation": ACTIVATIONS[config.get("hidden_act", "gelu")],
        "embedding_norm": True,
        "final_norm": False,
        "num_heads": num_heads,
        "head_dim": hidden_dim // num_heads,
        "use_bias": True,
        "causal": False,
    }
    return fixed, offset


def build(checkpoint, name, task, fixed, head_args, mixer_args=None):
    """The registered model `name` (a `task` model; with `task=None` one
    whose backbone is the encoder) with the settings `fixed`, the mixer's
    `mixer_args` and the head's `head_args`."""
    fixed = {**fixed, **(mixer_args or {})}
    if task is None:
        unused = sorted(set(head_args) - {"dtype"})
        if unused:
            raise CheckpointError(
                f"Head arguments {unused} need a task; with task=None the "
                "encoder is loaded alone."
            )
        # build_model always puts a head on; the backbone is its first part
        return build_checked(
            checkpoint,
            name,
            "sequence_classification",
            fixed,
            {**head_args, "num_classes": 1},
        )
    check_not_fixed(checkpoint, task, fixed, head_args)
    head_args = _head_defaults(task, head_args, checkpoint.config)
    return build_checked(checkpoint, name, task, fixed, head_args)


def encoder_prefix(checkpoint, prefix):
    """`prefix` if the encoder's tensors carry it (task checkpoints), else
    the empty one."""
    if any(name.startswith(prefix) for name in checkpoint.weights):
        return prefix
    return ""


def load_encoder(
    checkpoint, prefix, backbone, offset, tile=False, attention_loader=None
):
    """Assigns the embeddings and post-norm blocks of a BERT-style encoder
    (names under `prefix`) to `backbone`. `tile`: repeat the position rows
    to the backbone's length. `attention_loader(checkpoint, name, mixer)`:
    how each layer's attention (`{prefix}encoder.layer.{i}.attention`)
    loads; by default BERT's query, key, value and output."""
    attention_loader = attention_loader or load_attention
    _load_embeddings(checkpoint, prefix, backbone, offset, tile=tile)
    for i, block in enumerate(backbone.blocks):
        layer = f"{prefix}encoder.layer.{i}"
        attention = f"{layer}.attention"
        attention_loader(checkpoint, attention, block.mixer)
        _load_norm(
            checkpoint, f"{attention}.output.LayerNorm", block.mixer_norm
        )
        _load_dense(checkpoint, f"{layer}.intermediate.dense", block.mlp_in)
        _load_dense(checkpoint, f"{layer}.output.dense", block.mlp_out)
        _load_norm(checkpoint, f"{layer}.output.LayerNorm", block.mlp_norm)
