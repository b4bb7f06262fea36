import keras
import numpy as np
import pytest

from kerasseq.layers import LSTM
from kerasseq.layers import ResidualBlock
from kerasseq.layers import SoftmaxAttention


def test_block_is_prenorm_residual():
    block = ResidualBlock(SoftmaxAttention(num_heads=2), mlp_ratio=2)
    x = np.random.normal(size=(2, 5, 8)).astype("float32")
    y = keras.ops.convert_to_numpy(block(x))
    h = x + keras.ops.convert_to_numpy(block.mixer(block.mixer_norm(x)))
    mlp = block.mlp_out(block.mlp_in(block.mlp_norm(h)))
    np.testing.assert_allclose(
        y, h + keras.ops.convert_to_numpy(mlp), atol=1e-5
    )


def test_no_mlp_and_serialization():
    block = ResidualBlock(LSTM(), mlp_ratio=0)
    block.build((None, None, 6))
    assert block.mlp_in is None
    restored = ResidualBlock.from_config(block.get_config())
    assert isinstance(restored.mixer, LSTM)
    assert restored.get_config() == block.get_config()


def test_bad_arguments():
    with pytest.raises(ValueError, match="`mlp_ratio`.*got -1"):
        ResidualBlock(LSTM(), mlp_ratio=-1)
    with pytest.raises(ValueError, match="`mixer`.*got 'lstm'"):
        ResidualBlock("lstm")
