import keras

from kerasseq.layers.sequence_pooling import SequencePooling
from kerasseq.models.task import Task
from kerasseq.ops.checks import check_int
from kerasseq.ops.checks import check_rate


@keras.saving.register_keras_serializable(package="kerasseq")
class SequenceClassifier(Task):
    """Predicts one label per sequence (or one score, for regression).

    Pools the backbone's outputs over the real tokens (`"last"` for causal
    mixers, whose last state has seen the whole sequence; `"mean"` or
    `"first"` for bidirectional ones) and maps the pooled vector to logits.

    Args:
        backbone: a `kerasseq.models.SequenceBackbone`.
        num_classes: int. Number of classes; 1 for regression.
        pooling: one of `"mean"`, `"last"`, `"first"`, `"max"`.
        dropout: float. Dropout before the output layer.
        **kwargs: other keyword arguments of `keras.Model`.

    Call arguments:
        inputs: the backbone's input dict.

    Returns:
        Logits `(batch_size, num_classes)`, float32.
    """

    def __init__(
        self, backbone, num_classes, pooling="mean", dropout=0.0, **kwargs
    ):
        self._check_backbone(backbone)
        check_int("num_classes", num_classes)
        check_rate("dropout", dropout)

        # === layers ===
        self.backbone = backbone
        self.pooler = SequencePooling(pooling, name="pooling")
        self.output_dropout = keras.layers.Dropout(dropout, name="dropout")
        self.output_dense = keras.layers.Dense(
            num_classes, dtype="float32", name="logits"
        )

        # === functional model ===
        inputs = backbone.input
        x = backbone(inputs)
        x = self.pooler(x, padding_mask=inputs["padding_mask"])
        outputs = self.output_dense(self.output_dropout(x))
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)

        # === config ===
        self.num_classes = num_classes
        self.pooling = pooling
        self.dropout = dropout
