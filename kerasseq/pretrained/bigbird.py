"""Hugging Face BigBird encoders (`model_type: "big_bird"`) as kerasseq's
registered `bigbird` model.

A BigBird checkpoint is BERT (see `bert.py`: the same tensor names, with
the prefix `bert.` in task checkpoints, position 0 at row 0) whose
self-attention is block-sparse: `block_size` tokens per block, the first
and last blocks global, sliding neighbour blocks, and `num_random_blocks`
random blocks per block row. The attention weights are BERT's `query`,
`key`, `value` and `output.dense`, which are `BigBirdAttention`'s too;
`attention_type: "original_full"` checkpoints load onto the registered
`transformer` (full `SoftmaxAttention`) instead.

What is exact:

- Up to `(5 + 2 * num_random_blocks) * block_size` tokens both
  transformers and kerasseq's `BigBirdAttention` (with its 2 global
  blocks) use full attention: the outputs match.
- Longer inputs use the block-sparse pattern in both. In eval mode
  transformers attends no random block: every random slot gathers block 0
  (so block 0's keys count `1 + num_random_blocks` times in each
  non-global block row). The converted `BigBirdAttention` layers get
  `inference_random_blocks="first_block"`, which does the same at
  inference, so the outputs match there too, padded or not. In training
  both draw random blocks, from different generators: kerasseq's from
  `seed`, transformers' from NumPy's global one.
- `rescale_embeddings: true` (multiplying the word embeddings by
  `sqrt(hidden_size)`, as in Pegasus-style checkpoints) and
  `use_bias: false` are refused; token types are folded as in `bert.py`.
"""

from kerasseq.pretrained import bert
from kerasseq.pretrained.hf import CheckpointError

PREFIX = "bert."
TASK_HEADS = ("qa_classifier.",)
IGNORED = bert.IGNORED


def _mixer_args(checkpoint, seed):
    config = checkpoint.config
    where = f"{checkpoint.directory}/config.json"
    attention_type = config.get("attention_type", "block_sparse")
    if attention_type == "original_full":
        return "transformer", {}
    if attention_type != "block_sparse":
        raise CheckpointError(
            f"{where}: attention_type={attention_type!r} is neither "
            "'block_sparse' nor 'original_full'."
        )
    return "bigbird", {
        "block_size": bert._config_value(checkpoint, "block_size"),
        "num_global_blocks": 2,
        "num_random_blocks": bert._config_value(
            checkpoint, "num_random_blocks"
        ),
        "seed": seed,
        # transformers' eval mode: block 0 in every random slot
        "inference_random_blocks": "first_block",
    }


def model_arguments(checkpoint, task, seed=0):
    """The `build_model` arguments config.json fixes: the encoder's and,
    for block-sparse attention, its blocks (`seed` draws the random ones of
    training; at inference they are transformers' eval-mode ones).
    """
    del task
    fixed = bert.encoder_settings(checkpoint)[0]
    name, mixer_args = _mixer_args(checkpoint, seed)
    if name == "bigbird":
        del fixed["causal"]  # BigBirdAttention is bidirectional only
    return {**fixed, **mixer_args}


def convert(checkpoint, task=None, seed=0, **head_args):
    """Builds kerasseq's `bigbird` from a BigBird checkpoint.

    Args:
        checkpoint: a `kerasseq.pretrained.hf.Checkpoint` with `model_type`
            `"big_bird"` (`BigBirdModel` or a task checkpoint, whose head
            is left out).
        task: `None` for the `SequenceBackbone`, or a kerasseq head
            initialised afresh (see `bert.convert`).
        seed: the seed of `BigBirdAttention`'s random blocks in training
            (at inference every random slot holds block 0, as in
            transformers' eval mode).
        **head_args: the head's arguments, as in `bert.convert`.

    Returns:
        The backbone, or the task model, with the checkpoint's weights.

    Raises:
        CheckpointError: a tensor missing, misshapen or left over, or a
            setting kerasseq cannot represent.
    """
    config = checkpoint.config
    bert.check_encoder(checkpoint, ("big_bird",), task)
    where = f"{checkpoint.directory}/config.json"
    if config.get("rescale_embeddings"):
        raise CheckpointError(
            f"{where}: rescale_embeddings is true; kerasseq's embeddings "
            "are not scaled."
        )
    if not config.get("use_bias", True):
        raise CheckpointError(
            f"{where}: use_bias is false; kerasseq loads BigBird with "
            "biased query, key and value projections only."
        )
    name, _ = _mixer_args(checkpoint, seed)
    fixed = model_arguments(checkpoint, task, seed)
    offset = bert.position_offset(checkpoint)
    model = bert.build(checkpoint, name, task, fixed, head_args)
    prefix = bert.encoder_prefix(checkpoint, PREFIX)
    bert.load_encoder(checkpoint, prefix, model.backbone, offset)
    bert.drop_heads(checkpoint, prefix)
    for name in list(checkpoint.weights):
        if name.startswith(TASK_HEADS):
            checkpoint.take(name)
    checkpoint.check_all_used(ignore=IGNORED)
    return model.backbone if task is None else model
