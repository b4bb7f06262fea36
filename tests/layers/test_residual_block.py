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


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _layer_norm(x, norm):
    gamma, beta = (_np(w) for w in norm.weights)
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + norm.epsilon) * gamma + beta


def _gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))


def _randomize(block):
    rng = np.random.default_rng(0)
    for weight in block.weights:
        weight.assign(rng.normal(0.5, 0.3, weight.shape).astype("float32"))


def _dense(x, layer, activation=None):
    kernel, bias = (_np(w) for w in layer.weights)
    y = x @ kernel + bias
    return y if activation is None else activation(y)


@pytest.mark.parametrize("block_type", ["parallel", "post_norm"])
def test_parallel_and_post_norm_blocks_match_numpy(block_type):
    # GPT-NeoX: x + attn(ln1 x) + mlp(ln2 x); BERT: ln2(h + mlp(h)) with
    # h = ln1(x + attn(x)); GELU by its tanh approximation (GPT-2's)
    block = ResidualBlock(
        SoftmaxAttention(num_heads=2, causal=False),
        mlp_ratio=2,
        activation="gelu_approximate",
        block_type=block_type,
    )
    x = np.random.default_rng(1).normal(size=(2, 5, 8)).astype("float32")
    block.build(x.shape)
    _randomize(block)
    y = _np(block(x))

    def mlp(h):
        return _dense(_dense(h, block.mlp_in, _gelu_tanh), block.mlp_out)

    if block_type == "parallel":
        attention = _np(block.mixer(_layer_norm(x, block.mixer_norm)))
        expected = x + attention + mlp(_layer_norm(x, block.mlp_norm))
    else:
        h = _layer_norm(x + _np(block.mixer(x)), block.mixer_norm)
        expected = _layer_norm(h + mlp(h), block.mlp_norm)
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4)


def test_rms_norm_block_without_mlp_matches_numpy():
    # Mamba's block: x + mixer(rms_norm(x)), the norm's scale only
    block = ResidualBlock(
        SoftmaxAttention(num_heads=2), mlp_ratio=0, normalization="rms_norm"
    )
    x = np.random.default_rng(2).normal(size=(2, 4, 8)).astype("float32")
    block.build(x.shape)
    _randomize(block)
    (scale,) = [_np(w) for w in block.mixer_norm.weights]
    normed = x / np.sqrt((x**2).mean(-1, keepdims=True) + 1e-5) * scale
    expected = x + _np(block.mixer(normed))
    np.testing.assert_allclose(_np(block(x)), expected, rtol=1e-5, atol=1e-5)
    restored = ResidualBlock.from_config(block.get_config())
    assert restored.normalization == "rms_norm"


@pytest.mark.parametrize("block_type", ["pre_norm", "parallel", "post_norm"])
def test_step_equals_call_for_every_block_type(block_type):
    block = ResidualBlock(
        SoftmaxAttention(num_heads=2), mlp_ratio=2, block_type=block_type
    )
    x = np.random.default_rng(3).normal(size=(2, 6, 8)).astype("float32")
    y = _np(block(x))
    state = block.get_initial_state(2, 6)
    outputs = []
    for t in range(6):
        out, state = block.step(x[:, t], state)
        outputs.append(_np(out))
    np.testing.assert_allclose(np.stack(outputs, 1), y, atol=1e-5)


def test_bad_block_options():
    with pytest.raises(ValueError, match="`block_type`.*got 'sandwich'"):
        ResidualBlock(LSTM(), block_type="sandwich")
    with pytest.raises(ValueError, match="`normalization`.*got 'batch'"):
        ResidualBlock(LSTM(), normalization="batch")
    with pytest.raises(ValueError, match="parallel.*needs an MLP"):
        ResidualBlock(LSTM(), mlp_ratio=0, block_type="parallel")
