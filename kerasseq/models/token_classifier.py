import keras

from kerasseq.models.task import Task
from kerasseq.ops.checks import check_int
from kerasseq.ops.checks import check_rate


@keras.saving.register_keras_serializable(package="kerasseq")
class TokenClassifier(Task):
    """Predicts a label at every step of the sequence.

    For per-step tasks such as bit parity, Dyck prefix recognition and
    associative recall: a dense layer maps each hidden state to logits.
    Train with per-step labels and a `sample_weight` that is 0 where no label
    is asked for.

    Args:
        backbone: a `kerasseq.models.SequenceBackbone`.
        num_classes: int. Number of classes at each step.
        dropout: float. Dropout before the output layer.
        **kwargs: other keyword arguments of `keras.Model`.

    Call arguments:
        inputs: the backbone's input dict.

    Returns:
        Logits `(batch_size, seq_len, num_classes)`, float32.
    """

    def __init__(self, backbone, num_classes, dropout=0.0, **kwargs):
        self._check_backbone(backbone)
        check_int("num_classes", num_classes)
        check_rate("dropout", dropout)

        # === layers ===
        self.backbone = backbone
        self.output_dropout = keras.layers.Dropout(dropout, name="dropout")
        self.output_dense = keras.layers.Dense(
            num_classes, dtype="float32", name="logits"
        )

        # === functional model ===
        inputs = backbone.input
        x = self.output_dropout(backbone(inputs))
        outputs = self.output_dense(x)
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)

        # === config ===
        self.num_classes = num_classes
        self.dropout = dropout
