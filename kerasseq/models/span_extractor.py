import keras
from keras import ops

from kerasseq.models.task import Task
from kerasseq.ops.checks import check_rate

# the logit of padded positions: exp(-1e9 - max) is 0 in float32, so they
# never win and take no probability
PADDING_LOGIT = -1e9


@keras.saving.register_keras_serializable(package="kerasseq")
class SpanExtractor(Task):
    """Predicts where an answer span starts and ends in the sequence.

    For extractive question answering such as SQuAD: a dense layer maps
    each hidden state to a start logit and an end logit, as BERT's SQuAD
    head does. The logits come as `(batch_size, 2, seq_len)`, start logits
    in row 0 and end logits in row 1, so that labels `(batch_size, 2)` of
    `[start_index, end_index]` train with
    `keras.losses.SparseCategoricalCrossentropy(from_logits=True)` and
    score with `keras.metrics.SparseCategoricalAccuracy` as they are.
    Padded positions get a logit of -1e9, so they never win and take no
    probability.

    A causal model sees only the tokens before each position; give it the
    question before the context, as its start and end logits at a context
    token can then depend on the question.

    Args:
        backbone: a `kerasseq.models.SequenceBackbone` over token ids.
        dropout: float. Dropout before the output layer.
        **kwargs: other keyword arguments of `keras.Model`.

    Call arguments:
        inputs: the backbone's input dict.

    Returns:
        Logits `(batch_size, 2, seq_len)`, float32: start logits, then end
        logits.

    Example:

    >>> model = kerasseq.models.build_model(
    ...     "transformer", "span_extraction", "tiny",
    ...     vocabulary_size=50, max_sequence_length=16)
    >>> model({"token_ids": np.ones((2, 9), "int32"),
    ...        "padding_mask": np.ones((2, 9), "bool")}).shape
    (2, 2, 9)

    Reference:
        - [Devlin et al., 2019](https://arxiv.org/abs/1810.04805) (BERT,
          its SQuAD start and end vectors)
        - [Rajpurkar et al., 2016](https://arxiv.org/abs/1606.05250) (SQuAD)
    """

    def __init__(self, backbone, dropout=0.0, **kwargs):
        self._check_backbone(backbone)
        if not backbone.token_inputs:
            raise ValueError(
                "SpanExtractor needs a backbone over token ids, got one over "
                f"continuous features (feature_dim={backbone.feature_dim})."
            )
        check_rate("dropout", dropout)

        # === layers ===
        self.backbone = backbone
        self.output_dropout = keras.layers.Dropout(dropout, name="dropout")
        self.output_dense = keras.layers.Dense(
            2, dtype="float32", name="span_logits"
        )

        # === functional model ===
        inputs = backbone.input
        x = self.output_dropout(backbone(inputs))
        logits = self.output_dense(x)  # (B, T, 2)
        logits = ops.transpose(logits, (0, 2, 1))  # (B, 2, T)
        mask = ops.expand_dims(inputs["padding_mask"], axis=1)  # (B, 1, T)
        outputs = ops.where(mask, logits, ops.cast(PADDING_LOGIT, logits.dtype))
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)

        # === config ===
        self.dropout = dropout
