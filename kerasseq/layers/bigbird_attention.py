import keras

from kerasseq.layers.attention_base import BaseAttention
from kerasseq.layers.attention_base import recomputed
from kerasseq.ops import checks
from kerasseq.ops.block_sparse_attention import RANDOM_BLOCKS
from kerasseq.ops.block_sparse_attention import block_sparse_attention
from kerasseq.ops.block_sparse_attention import check_block_arguments


@keras.saving.register_keras_serializable(package="kerasseq")
class BigBirdAttention(BaseAttention):
    """Multi-head BigBird block-sparse self-attention (bidirectional).

    The token mixer of BigBird (ITC: internal global tokens). The sequence
    is split into blocks of `block_size` tokens. Queries in the global
    blocks (the first `ceil(g / 2)` and the last `floor(g / 2)` of the
    `g = num_global_blocks`) attend to every key; queries in any other
    block attend to its neighbour blocks on both sides and itself, to the
    global blocks, and to `num_random_blocks` random blocks drawn once, per
    head and block row, from `seed` (see
    `kerasseq.ops.block_sparse_attention.random_block_plan`). Memory and
    time grow linearly with the sequence length.

    As in the reference implementation, sequences of at most
    `(3 + g + 2 * num_random_blocks) * block_size` tokens (with `g = 2`:
    `(5 + 2 * num_random_blocks) * block_size`) use full attention, the
    attention of `BaseAttention.call`, since the sparse pattern would
    cover most of the keys anyway. The projections are those of
    `BaseAttention`, with the same weight names (`query`, `key`, `value`,
    `output`: Hugging Face BigBird's `query`, `key`, `value` and
    `output.dense`).

    In training the random blocks are always the seeded draw. At inference
    `inference_random_blocks` chooses them: `"seeded"` (the default) keeps
    the same draw, so the layer attends the same keys in training and
    inference; `"first_block"` reproduces transformers'
    `BigBirdBlockSparseAttention` in eval mode, which attends no random
    block but gathers block 0 in each of the `num_random_blocks` random
    slots, so that block 0's keys count `num_random_blocks` more times in
    the softmax of every non-global block row (padded keys stay masked, the
    global rows attend every key). `kerasseq.pretrained` sets
    `"first_block"` on BigBird checkpoints converted from Hugging Face, so
    that they predict as they did in transformers.

    Global blocks read the whole sequence, so the layer has no causal form
    and no token-by-token decoding.

    Args:
        num_heads: int. Number of attention heads.
        block_size: int. Tokens per block.
        num_global_blocks: int. Number of global blocks (2: the first and
            the last block, as in BigBird).
        num_random_blocks: int. Random key blocks per non-global block row.
        seed: int. Seed of the random blocks (a NumPy draw at trace time,
            the same on every backend).
        inference_random_blocks: `"seeded"` or `"first_block"`. The random
            blocks outside training: the seeded draw of training, or block
            0 in every random slot (transformers' BigBird in eval mode).
        dropout: float. Dropout rate on the attention weights.
        recompute_attention: bool, see `BaseAttention`.
        **kwargs: `head_dim`, `use_bias`, `kernel_initializer` (see
            `BaseAttention`) and `keras.layers.Layer`'s arguments.

    Call arguments:
        As `SequenceLayer`'s, with a static `seq_len`. Padded keys
        receive no attention. In training the random blocks are the
        seeded draw, whatever `inference_random_blocks` says.

    Example:

    >>> layer = BigBirdAttention(num_heads=4, block_size=16)
    >>> layer(keras.random.normal((2, 1000, 64))).shape
    (2, 1000, 64)
    >>> layer.max_full_attention_length  # shorter sequences attend fully
    176

    Reference:
        - [Zaheer et al., 2020](https://arxiv.org/abs/2007.14062)
    """

    def __init__(
        self,
        num_heads,
        block_size=64,
        num_global_blocks=2,
        num_random_blocks=3,
        seed=0,
        inference_random_blocks="seeded",
        dropout=0.0,
        recompute_attention=True,
        **kwargs,
    ):
        causal = kwargs.pop("causal", False)
        if causal:
            raise ValueError(
                "Received an invalid value for argument `causal`, expected "
                f"False, got {causal!r}: BigBirdAttention is bidirectional "
                "only, since its global blocks attend to the whole sequence "
                "and every block attends to the global blocks."
            )
        check_block_arguments(
            block_size, num_global_blocks, num_random_blocks, seed
        )
        checks.check_choice(
            "inference_random_blocks", inference_random_blocks, RANDOM_BLOCKS
        )
        super().__init__(num_heads, **kwargs)
        self.set_dropout(dropout)
        self.block_size = block_size
        self.num_global_blocks = num_global_blocks
        self.num_random_blocks = num_random_blocks
        self.seed = seed
        self.inference_random_blocks = inference_random_blocks
        self.recompute_attention = recompute_attention

    @property
    def max_full_attention_length(self):
        """Sequences up to this length use full attention."""
        blocks = 3 + self.num_global_blocks + 2 * self.num_random_blocks
        return blocks * self.block_size

    def call(self, inputs, padding_mask=None, training=None, mask=None):
        self.check_inputs(inputs, 3, padding_mask)
        inputs, padding_mask = self.mask_inputs(inputs, padding_mask, mask)
        length = inputs.shape[1]
        if length is None:
            raise ValueError(
                "Received an invalid shape for argument `inputs`, expected a "
                "static sequence length, got shape "
                f"{tuple(inputs.shape)}: BigBirdAttention picks its key "
                "blocks when tracing."
            )
        if length <= self.max_full_attention_length:
            return super().call(
                inputs, padding_mask=padding_mask, training=training
            )
        q = self.project(inputs, "query")
        k = self.project(inputs, "key")
        v = self.project(inputs, "value")
        dropout = self.weights_dropout(training)
        random_blocks = "seeded" if training else self.inference_random_blocks

        def attend(q, k, v):
            return block_sparse_attention(
                q,
                k,
                v,
                self.block_size,
                num_global_blocks=self.num_global_blocks,
                num_random_blocks=self.num_random_blocks,
                seed=self.seed,
                key_mask=padding_mask,
                dropout=dropout,
                random_blocks=random_blocks,
            )

        enabled = self.recompute_attention and dropout is None
        o = recomputed(attend, enabled)(q, k, v)
        return self.project_output(o)
