import keras
import numpy as np
import pytest

from kerasseq.layers import PositionEmbedding
from kerasseq.layers import TokenEmbedding


def test_lookup_and_reverse():
    layer = TokenEmbedding(10, 4)
    ids = np.array([[1, 2, 9]])
    table = None
    y = keras.ops.convert_to_numpy(layer(ids))
    table = keras.ops.convert_to_numpy(layer.embeddings)
    np.testing.assert_allclose(y, table[ids])
    hidden = np.random.normal(size=(2, 3, 4)).astype("float32")
    logits = keras.ops.convert_to_numpy(layer(hidden, reverse=True))
    np.testing.assert_allclose(logits, hidden @ table.T, atol=1e-5)


def test_position_embedding_offsets():
    layer = PositionEmbedding(8)
    x = np.zeros((2, 3, 4), "float32")
    full = keras.ops.convert_to_numpy(layer(np.zeros((1, 8, 4), "float32")))
    part = keras.ops.convert_to_numpy(layer(x, start=5))
    np.testing.assert_allclose(part[0], full[0, 5:8])


def test_bad_sizes():
    with pytest.raises(ValueError, match="`vocabulary_size`.*got 0"):
        TokenEmbedding(0, 4)
    with pytest.raises(ValueError, match="`max_sequence_length`.*got -2"):
        PositionEmbedding(-2)


def test_input_longer_than_the_table_is_refused_clearly():
    layer = PositionEmbedding(max_length=8)
    layer(np.zeros((1, 8, 4), "float32"))
    with pytest.raises(ValueError, match=r"10 steps.*max_sequence_length=8"):
        layer(np.zeros((1, 10, 4), "float32"))
    with pytest.raises(ValueError, match=r"from position 6.*=8"):
        layer(np.zeros((1, 3, 4), "float32"), start=6)


def test_model_given_too_long_an_input_says_so():
    from kerasseq.models import build_model

    model = build_model(
        "gpt",
        "sequence_classification",
        "tiny",
        vocabulary_size=16,
        num_classes=2,
        max_sequence_length=8,
    )
    with pytest.raises(ValueError, match="max_sequence_length=8"):
        model.predict(
            {
                "token_ids": np.ones((2, 12), "int32"),
                "padding_mask": np.ones((2, 12), "bool"),
            },
            verbose=0,
        )
