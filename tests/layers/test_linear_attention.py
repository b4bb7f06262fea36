import keras
import numpy as np
import pytest

from kerasseq.layers import LinearAttention
from kerasseq.ops import reference
from tests.layers.common import assert_padding_leaves_real_steps_alone
from tests.layers.common import randomized
from tests.testing import assert_step_equals_call
from tests.testing import compiled
from tests.testing import in_float64
from tests.testing import layer_weights


def elu_plus_one(x):
    return np.where(x > 0, x + 1.0, np.exp(x))


def reference_linear_attention(layer, x, causal, mask=None):
    """Multi-head linear attention in float64 from the paper's equations
    (`kerasseq.ops.reference.linear_attention`):
    o_i = sum_j phi(q_i).phi(k_j) v_j / sum_j phi(q_i).phi(k_j), over
    j <= i when causal, over every real j otherwise."""
    w = layer_weights(layer)
    x = x.astype(np.float64)

    def project(name):
        return (
            np.einsum("btd,dhk->bthk", x, w[f"{name}_kernel"])
            + w[f"{name}_bias"]
        )

    q, k, v = (project(n) for n in ("query", "key", "value"))
    q, k = elu_plus_one(q), elu_plus_one(k)
    if mask is not None:  # a padded key adds nothing to the sums
        k = k * mask[..., None, None]
    out, _ = in_float64(reference.linear_attention, q, k, v, causal)
    return (
        np.einsum("bthk,hkd->btd", out, w["output_kernel"]) + w["output_bias"]
    )


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("mode", ["recurrent", "chunk"])
def test_matches_reference_equations(causal, mode):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 11, 8)).astype("float32")
    layer = LinearAttention(2, causal=causal, mode=mode, chunk_size=4)
    layer = randomized(layer, x.shape, rng)
    mask = np.ones((2, 11), bool)
    mask[1, 8:] = False
    y = keras.ops.convert_to_numpy(compiled(layer)(x, mask))
    expected = reference_linear_attention(layer, x, causal, mask)
    np.testing.assert_allclose(y[0], expected[0], rtol=1e-4, atol=1e-5)
    # real tokens of the padded row
    np.testing.assert_allclose(y[1, :8], expected[1, :8], rtol=1e-4, atol=1e-5)


def test_step_equals_call():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 9, 8)).astype("float32")
    layer = randomized(LinearAttention(2), x.shape, rng)
    assert_step_equals_call(layer, x)


def test_padding_leaves_real_tokens_alone():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(1, 6, 8)).astype("float32")
    layer = randomized(LinearAttention(2, causal=False), x.shape, rng)
    noise = rng.normal(size=(1, 3, 8))
    assert_padding_leaves_real_steps_alone(layer, x, noise, "right")


def test_bad_arguments():
    layer = LinearAttention(4, causal=False, feature_map="relu", chunk_size=16)
    with pytest.raises(ValueError, match="`feature_map`.*got 'softmax'"):
        LinearAttention(2, feature_map="softmax")
    with pytest.raises(ValueError, match="`mode`.*got 'fast'"):
        LinearAttention(2, mode="fast")
    with pytest.raises(ValueError, match="`num_heads`.*got 0"):
        LinearAttention(0)
    layer.build((None, None, 8))
    with pytest.raises(ValueError, match="causal=False"):
        layer.get_initial_state(2)
