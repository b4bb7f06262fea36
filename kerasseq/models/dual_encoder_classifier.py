import keras
from keras import ops

from kerasseq.layers.sequence_pooling import SequencePooling
from kerasseq.models.task import Task
from kerasseq.ops.checks import check_int
from kerasseq.ops.checks import check_rate


@keras.saving.register_keras_serializable(package="kerasseq")
class DualEncoderClassifier(Task):
    """Predicts one label for a pair of sequences, each encoded alone.

    For matching tasks such as the Long Range Arena's "Retrieval" (do two
    documents cite each other?). One backbone, with one set of weights,
    encodes each sequence separately; each is pooled over its own real
    tokens into `u` and `v` (`"last"` for causal mixers, `"mean"` for
    bidirectional ones, as in `SequenceClassifier`), and a ReLU layer and
    an output layer map the interaction features `[u, v, u * v, u - v]` to
    logits, as the Long Range Arena's matching models do.

    The two sequences may have different lengths; each is padded on the
    right and starts at position 0. A backbone over continuous features
    takes `"features_1"` and `"features_2"` in place of the token ids.

    Args:
        backbone: a `kerasseq.models.SequenceBackbone`.
        num_classes: int. Number of classes.
        pooling: one of `"mean"`, `"last"`, `"first"`, `"max"`.
        intermediate_dim: int. Width of the ReLU layer. Defaults to the
            backbone's `hidden_dim`, so that the head is the same size for
            every model of a preset (the backbones' MLP widths differ).
        dropout: float. Dropout after the ReLU layer.
        **kwargs: other keyword arguments of `keras.Model`.

    Call arguments:
        inputs: dict with `"token_ids_1"` int `(batch_size, seq_len_1)`,
            `"padding_mask_1"` bool `(batch_size, seq_len_1)`,
            `"token_ids_2"` int `(batch_size, seq_len_2)` and
            `"padding_mask_2"` bool `(batch_size, seq_len_2)`.

    Returns:
        Logits `(batch_size, num_classes)`, float32.

    Example:

    >>> model = kerasseq.models.build_model(
    ...     "transformer", "dual_encoder_classification", "tiny",
    ...     vocabulary_size=50, num_classes=2, max_sequence_length=16)
    >>> model({"token_ids_1": np.ones((2, 9), "int32"),
    ...        "padding_mask_1": np.ones((2, 9), "bool"),
    ...        "token_ids_2": np.ones((2, 5), "int32"),
    ...        "padding_mask_2": np.ones((2, 5), "bool")}).shape
    (2, 2)

    Reference:
        - [Tay et al., 2021](https://arxiv.org/abs/2011.04006) (Long Range
          Arena, the retrieval task and its dual-encoder setup)
    """

    def __init__(
        self,
        backbone,
        num_classes,
        pooling="mean",
        intermediate_dim=None,
        dropout=0.0,
        **kwargs,
    ):
        self._check_backbone(backbone)
        check_int("num_classes", num_classes)
        check_int("intermediate_dim", intermediate_dim, allow_none=True)
        check_rate("dropout", dropout)
        if intermediate_dim is None:
            intermediate_dim = backbone.hidden_dim

        # === layers ===
        self.backbone = backbone
        self.pooler = SequencePooling(pooling, name="pooling")
        self.intermediate_dense = keras.layers.Dense(
            intermediate_dim, activation="relu", name="intermediate"
        )
        self.output_dropout = keras.layers.Dropout(dropout, name="dropout")
        self.output_dense = keras.layers.Dense(
            num_classes, dtype="float32", name="logits"
        )

        # === functional model ===
        # inputs of its own, shaped like the backbone's, for each sequence;
        # the one backbone is called on both
        key = "token_ids" if backbone.token_inputs else "features"
        spec = backbone.input[key]
        inputs = {}
        pooled = []
        for i in (1, 2):
            x = keras.Input(
                shape=spec.shape[1:], dtype=spec.dtype, name=f"{key}_{i}"
            )
            mask = keras.Input(
                shape=(None,), dtype="bool", name=f"padding_mask_{i}"
            )
            inputs[f"{key}_{i}"] = x
            inputs[f"padding_mask_{i}"] = mask
            hidden = backbone({key: x, "padding_mask": mask})
            pooled.append(self.pooler(hidden, padding_mask=mask))
        u, v = pooled
        x = ops.concatenate([u, v, u * v, u - v], axis=-1)
        x = self.output_dropout(self.intermediate_dense(x))
        outputs = self.output_dense(x)
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)

        # === config ===
        self.num_classes = num_classes
        self.pooling = pooling
        self.intermediate_dim = intermediate_dim
        self.dropout = dropout
