"""Longformer and BigBird encoders warm-started from a BERT or RoBERTa
checkpoint, as their authors built them (Beltagy et al., 2020, section 5;
Zaheer et al., 2020, appendix E).

`warm_start(path, "longformer" | "bigbird")` builds kerasseq's registered
`longformer` or `bigbird` model with the checkpoint's sizes and post-norm
blocks (see `bert.py`) and copies every weight of the encoder:

- Embeddings and blocks as `bert.convert` loads them (token type 0 folded
  into the positions; RoBERTa's positions from `pad_token_id + 1`).
- Positions: the checkpoint's usable rows `0..P-1` are repeated (`0..P-1,
  0..P-1, ...`) up to `max_sequence_length`, so that every window sees
  the local position pattern BERT was trained on.
- Longformer's global projections (`query_global`, `key_global`,
  `value_global`) start as copies of the local `query`, `key`, `value`.

Before any training, with a window (or blocks) covering the whole input,
the model computes exactly what the checkpoint's BERT does: a global token
attends everything with the same projections, and every token's window is
the whole sequence.
"""

from kerasseq.layers.sequence_layer import init_arguments
from kerasseq.models.registry import MODELS
from kerasseq.pretrained import bert
from kerasseq.pretrained import longformer
from kerasseq.pretrained.hf import CheckpointError
from kerasseq.pretrained.hf import read_checkpoint

NAMES = ("longformer", "bigbird")
# mixer arguments config.json fixes
FIXED_MIXER = ("num_heads", "head_dim", "use_bias", "causal", "dropout")


def mixer_names(name):
    """The mixer arguments of model `name` a warm start leaves free (the
    checkpoint's config.json fixes the heads and sizes)."""
    return set(init_arguments(MODELS[name].mixer)) - set(FIXED_MIXER)


def _longformer_attention(checkpoint, name, mixer):
    bert.load_attention(checkpoint, name, mixer)
    longformer.load_global(checkpoint, name, mixer, source="local")


def model_arguments(checkpoint, name, max_sequence_length=None):
    """The `build_model(name, ...)` arguments a BERT-style checkpoint fixes
    for the model `name` grown from it, at `max_sequence_length` positions
    (default the checkpoint's)."""
    fixed = bert.encoder_settings(checkpoint)[0]
    if max_sequence_length is not None:
        fixed["max_sequence_length"] = max_sequence_length
    if name == "bigbird":
        del fixed["causal"]  # BigBirdAttention is bidirectional only
    return fixed


def warm_start(
    path, name, task=None, max_sequence_length=None, **mixer_and_head_args
):
    """Builds a Longformer or BigBird encoder from a BERT-style checkpoint.

    Args:
        path: a checkpoint directory (or hub repo id) whose config.json has
            `model_type` `"bert"` or `"roberta"`.
        name: `"longformer"` or `"bigbird"`, the registered model.
        task: `None` for the `SequenceBackbone`, or a kerasseq head
            initialised afresh (as in `bert.convert`).
        max_sequence_length: the new model's length (positions); defaults
            to the checkpoint's. Longer tables repeat the checkpoint's rows.
        **mixer_and_head_args: the mixer's arguments (Longformer: `window`,
            `num_global_tokens`, `dilation`, ...; BigBird: `block_size`,
            `num_global_blocks`, `num_random_blocks`, `seed`, ...; the
            registered defaults otherwise) and the head's (`num_classes`,
            `pooling`, `dropout`, `dtype`).

    Returns:
        The backbone, or the task model.

    Raises:
        CheckpointError: an unknown `name`, a checkpoint that is not BERT
            or RoBERTa, or a tensor missing, misshapen or left over.

    Example:

    >>> model = warm_start("roberta-base", "longformer",  # doctest: +SKIP
    ...                    task="sequence_classification", num_classes=2,
    ...                    max_sequence_length=4096, window=512)
    """
    if name not in NAMES:
        raise CheckpointError(
            f"Unknown model {name!r} to warm-start; valid: {', '.join(NAMES)}."
        )
    checkpoint = read_checkpoint(path)
    model_type = bert.check_encoder(
        checkpoint,
        tuple(bert.PREFIXES),
        task,
        f"; {name} is warm-started from a BERT-style encoder",
    )
    fixed = model_arguments(checkpoint, name, max_sequence_length)
    offset = bert.position_offset(checkpoint)
    free = mixer_names(name)
    mixer_args = {k: v for k, v in mixer_and_head_args.items() if k in free}
    head_args = {k: v for k, v in mixer_and_head_args.items() if k not in free}
    model = bert.build(checkpoint, name, task, fixed, head_args, mixer_args)
    prefix = bert.encoder_prefix(checkpoint, bert.PREFIXES[model_type])
    loader = _longformer_attention if name == "longformer" else None
    bert.load_encoder(
        checkpoint,
        prefix,
        model.backbone,
        offset,
        tile=True,
        attention_loader=loader,
    )
    bert.drop_heads(checkpoint, prefix)
    checkpoint.check_all_used(ignore=bert.IGNORED)
    return model.backbone if task is None else model
