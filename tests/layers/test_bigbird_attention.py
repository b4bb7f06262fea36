import keras
import numpy as np
import pytest
from keras import ops

from kerasseq.layers.bigbird_attention import BigBirdAttention
from kerasseq.layers.softmax_attention import SoftmaxAttention
from kerasseq.ops.block_sparse_attention import random_block_plan
from kerasseq.ops.reference import block_sparse_allowed
from kerasseq.ops.reference import global_blocks
from tests.testing import compiled
from tests.testing import float64
from tests.testing import layer_gradients
from tests.testing import layer_weights
from tests.testing import perturb_weights
from tests.testing import rel_rms
from tests.testing import value_and_grad

HIDDEN = 16
# block_size 4, 2 random blocks: full attention up to (3 + g + 4) * 4 tokens
SPARSE_LENGTH = 63


def make_layer(length, rng, num_global_blocks=2, **kwargs):
    layer = BigBirdAttention(
        2,
        block_size=4,
        num_global_blocks=num_global_blocks,
        num_random_blocks=2,
        **kwargs,
    )
    layer.build((None, length, HIDDEN))
    return perturb_weights(layer, rng)


def inputs(rng, length, batch=2):
    """Inputs and a padding mask ending the last sequence 10 tokens early."""
    x = rng.normal(size=(batch, length, HIDDEN)).astype("float32")
    mask = np.ones((batch, length), bool)
    mask[-1, length - 10 :] = False
    return x, mask


def attention_mask(layer, length):
    """The layer's `(H, T, T)` pattern: full below the threshold."""
    blocks = 3 + layer.num_global_blocks + 2 * layer.num_random_blocks
    if length <= blocks * layer.block_size:
        return np.ones((layer.num_heads, length, length), bool)
    return explicit_mask(
        length,
        layer.num_heads,
        layer.block_size,
        layer.num_global_blocks,
        layer.num_random_blocks,
        layer.seed,
    )


def explicit_mask(length, heads, block_size, num_global, num_random, seed=0):
    """`(H, T, T)` bool: the library reference's pattern under the random
    blocks the op draws from `seed`."""
    num_blocks = -(-length // block_size)
    plan = random_block_plan(num_blocks, heads, num_global, num_random, seed)
    return block_sparse_allowed(length, heads, block_size, num_global, plan)


def transformers_eval_pattern(layer, length):
    """transformers' BigBird in eval mode as `(H, T, T)` key counts: the
    window and global blocks once, and block 0 once more for each of the
    `num_random_blocks` random slots of a non-global query block (its
    `rand_attn` is all zeros outside training)."""
    block = layer.block_size
    num_blocks = -(-length // block)
    counts = explicit_mask(
        length, layer.num_heads, block, layer.num_global_blocks, 0
    ).astype(np.int64)
    glob = global_blocks(num_blocks, layer.num_global_blocks)
    rows = ~np.isin(np.arange(length) // block, glob)
    counts[:, rows, :block] += layer.num_random_blocks
    return counts


def reference(layer, x, padding_mask=None, pattern=None):
    """The layer in float64 NumPy: projections, dense softmax attention
    under the explicit mask (or `pattern`, `(H, T, T)` counts of how often
    query t attends key s), output projection."""
    w = layer_weights(layer)
    x = x.astype(np.float64)

    def project(name):
        y = np.einsum("btd,dhk->bthk", x, w[f"{name}_kernel"])
        return y + w[f"{name}_bias"]

    q, k, v = (project(n) for n in ("query", "key", "value"))
    if pattern is None:
        pattern = attention_mask(layer, x.shape[1])
    allowed = pattern[None] > 0
    if padding_mask is not None:
        allowed = allowed & padding_mask[:, None, None, :]
    scores = np.einsum("bthk,bshk->bhts", q, k) / np.sqrt(q.shape[-1])
    scores = np.where(allowed, scores, -np.inf)
    p = pattern[None] * np.exp(scores - scores.max(-1, keepdims=True))
    p = p / p.sum(-1, keepdims=True)
    o = np.einsum("bhts,bshv->bthv", p, v)
    return np.einsum("bthk,hkd->btd", o, w["output_kernel"]) + w["output_bias"]


def keras_reference(mask):
    """The loss of `layer_gradients`, sum(y^2), as a keras.ops function of
    the input and the weights in `trainable_variables` order."""

    def loss(x, qk, qb, kk, kb, vk, vb, ok, ob):
        def project(kernel, bias):
            return ops.einsum("btd,dhk->bthk", x, kernel) + bias

        q, k, v = project(qk, qb), project(kk, kb), project(vk, vb)
        scores = ops.einsum("bthk,bshk->bhts", q, k) / np.sqrt(qk.shape[-1])
        scores = ops.where(mask[None], scores, -1e9)
        o = ops.einsum("bhts,bshv->bthv", ops.softmax(scores, axis=-1), v)
        y = ops.einsum("bthk,hkd->btd", o, ok) + ob
        return ops.sum(ops.square(y))

    return loss


def numpy(x):
    return np.asarray(ops.convert_to_numpy(ops.cast(x, "float32")))


@pytest.mark.parametrize("num_global_blocks", [1, 2, 3])
def test_sparse_path_matches_reference(num_global_blocks):
    rng = np.random.default_rng(0)
    layer = make_layer(SPARSE_LENGTH, rng, num_global_blocks, seed=3)
    assert SPARSE_LENGTH > layer.max_full_attention_length
    x, mask = inputs(rng, SPARSE_LENGTH)
    y = numpy(layer(x, padding_mask=mask))
    expected = reference(layer, x, mask)
    assert rel_rms(y[mask], expected[mask]) < 1e-5
    # the pattern is sparse: full attention gives other outputs
    full = SoftmaxAttention(2, causal=False)
    full.build(x.shape)
    full.set_weights(layer.get_weights())
    assert rel_rms(numpy(full(x, padding_mask=mask))[mask], y[mask]) > 1e-2


@pytest.mark.filterwarnings("ignore:You are using a softmax over axis -1")
@pytest.mark.parametrize("length", [1, 20, 36])
def test_short_inputs_use_full_attention(length):
    rng = np.random.default_rng(1)
    layer = make_layer(length, rng)
    assert length <= layer.max_full_attention_length == 36
    x, mask = inputs(rng, length)
    mask[-1, 0] = True
    full = SoftmaxAttention(2, causal=False)
    full.build(x.shape)
    full.set_weights(layer.get_weights())
    y = numpy(layer(x, padding_mask=mask))
    np.testing.assert_allclose(y, numpy(full(x, padding_mask=mask)), atol=1e-6)
    assert rel_rms(y[mask], reference(layer, x, mask)[mask]) < 1e-5


@pytest.mark.parametrize("length", [20, SPARSE_LENGTH])
def test_padding_leaves_real_outputs_alone(length):
    rng = np.random.default_rng(2)
    layer = make_layer(length, rng)
    x, mask = inputs(rng, length)
    other = x.copy()
    other[~mask] = 100.0 * rng.normal(size=other[~mask].shape)
    y1 = numpy(layer(x, padding_mask=mask))
    y2 = numpy(layer(other, padding_mask=mask))
    np.testing.assert_allclose(y1[mask], y2[mask], atol=1e-5)


@pytest.mark.parametrize("length", [20, SPARSE_LENGTH])
def test_gradients_match_float64_reference(length):
    rng = np.random.default_rng(3)
    layer = make_layer(length, rng, seed=5)
    x, _ = inputs(rng, length)
    grads = layer_gradients(layer, x, jit=True)
    weights = [
        np.asarray(numpy(w), np.float64) for w in layer.trainable_variables
    ]
    with float64():
        _, expected = value_and_grad(
            keras_reference(attention_mask(layer, length)),
            x.astype(np.float64),
            *weights,
            jit=True,
        )
    names = ["inputs"] + [w.path for w in layer.trainable_variables]
    for name, g, g_ref in zip(names, grads, expected, strict=True):
        assert g.shape == g_ref.shape, name
        if name.endswith("key_bias"):
            # shifts each query's scores by a constant: no gradient
            assert np.abs(g_ref).max() < 1e-10
            assert np.abs(g).max() < 1e-5 * np.abs(expected[0]).max()
        else:
            assert rel_rms(g, g_ref) < 1e-5, name


@pytest.mark.parametrize("length", [20, SPARSE_LENGTH])
def test_dropout_on_attention_weights(length):
    rng = np.random.default_rng(4)
    layer = make_layer(length, rng, dropout=0.5)
    x, mask = inputs(rng, length)
    expected = reference(layer, x, mask)
    y = numpy(layer(x, padding_mask=mask, training=False))
    assert rel_rms(y[mask], expected[mask]) < 1e-5
    dropped = numpy(layer(x, padding_mask=mask, training=True))
    assert np.all(np.isfinite(dropped))
    assert rel_rms(dropped[mask], expected[mask]) > 0.1


@pytest.mark.parametrize("length", [20, SPARSE_LENGTH])
def test_compiled_call(length):
    rng = np.random.default_rng(5)
    layer = make_layer(length, rng)
    x, mask = inputs(rng, length)
    y = numpy(compiled(layer)(x, mask))
    assert rel_rms(y[mask], reference(layer, x, mask)[mask]) < 1e-5


@pytest.mark.parametrize("length", [20, SPARSE_LENGTH])
def test_mixed_bfloat16(length):
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    rng = np.random.default_rng(6)
    layer = make_layer(length, rng)
    x, mask = inputs(rng, length)
    y = compiled(layer)(x, mask)
    assert keras.backend.standardize_dtype(y.dtype) == "bfloat16"
    assert keras.backend.standardize_dtype(layer.query_kernel.dtype) == (
        "float32"
    )
    y = numpy(y)
    assert np.all(np.isfinite(y))
    assert rel_rms(y[mask], reference(layer, x, mask)[mask]) < 3e-2


def test_first_block_inference_matches_transformers_eval():
    # BigBird's 2 global blocks (other counts: the op's tests)
    rng = np.random.default_rng(9)
    layer = make_layer(
        SPARSE_LENGTH, rng, seed=3, inference_random_blocks="first_block"
    )
    x, mask = inputs(rng, SPARSE_LENGTH)
    y = numpy(compiled(layer)(x, mask))
    pattern = transformers_eval_pattern(layer, SPARSE_LENGTH)
    expected = reference(layer, x, mask, pattern)
    assert rel_rms(y[mask], expected[mask]) < 1e-5
    # block 0 counted once vs 1 + r times: the counts matter
    once = reference(layer, x, mask, pattern > 0)
    assert rel_rms(once[mask], expected[mask]) > 1e-3
    # the seeded random blocks (training's) give other outputs
    seeded = reference(layer, x, mask)
    assert rel_rms(seeded[mask], expected[mask]) > 1e-2


def test_training_keeps_the_seeded_random_blocks():
    rng = np.random.default_rng(10)
    layer = make_layer(
        SPARSE_LENGTH, rng, seed=3, inference_random_blocks="first_block"
    )
    x, mask = inputs(rng, SPARSE_LENGTH)
    # the draw of training has random blocks other than block 0
    num_blocks = -(-SPARSE_LENGTH // layer.block_size)
    plan = random_block_plan(num_blocks, 2, 2, 2, seed=3)
    assert (plan[:, 1:-1] > 0).any()
    seeded = reference(layer, x, mask)
    pattern = transformers_eval_pattern(layer, SPARSE_LENGTH)
    hf_eval = reference(layer, x, mask, pattern)
    trained = numpy(layer(x, padding_mask=mask, training=True))
    assert rel_rms(trained[mask], seeded[mask]) < 1e-5
    assert rel_rms(trained[mask], hf_eval[mask]) > 1e-2
    y = numpy(layer(x, padding_mask=mask, training=False))
    assert rel_rms(y[mask], hf_eval[mask]) < 1e-5


@pytest.mark.parametrize("inference_random_blocks", ["first_block"])
def test_keras_file_round_trip(tmp_path, inference_random_blocks):
    # the sparse path with transformers' eval blocks through a saved file
    # (the round trip of every mixer: test_harness.py)
    rng = np.random.default_rng(7)
    inputs_ = keras.Input(shape=(SPARSE_LENGTH, HIDDEN))
    mask = keras.Input(shape=(SPARSE_LENGTH,), dtype="bool")
    layer = BigBirdAttention(
        2,
        block_size=4,
        num_random_blocks=2,
        seed=4,
        inference_random_blocks=inference_random_blocks,
    )
    model = keras.Model([inputs_, mask], layer(inputs_, padding_mask=mask))
    perturb_weights(layer, rng)
    x, padding = inputs(rng, SPARSE_LENGTH, batch=3)
    # predict traces the model with an unknown batch size
    expected = model.predict([x, padding], verbose=0)
    path = str(tmp_path / "bigbird.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    assert isinstance(restored.layers[-1], BigBirdAttention)
    assert restored.layers[-1].seed == 4
    assert restored.layers[-1].inference_random_blocks == (
        inference_random_blocks
    )
    np.testing.assert_array_equal(
        restored.predict([x, padding], verbose=0), expected
    )
    pattern = None
    if inference_random_blocks == "first_block":
        pattern = transformers_eval_pattern(layer, SPARSE_LENGTH)
    ref = reference(layer, x, padding, pattern)
    assert rel_rms(expected[padding], ref[padding]) < 1e-5


def test_bad_arguments():
    with pytest.raises(ValueError, match="`block_size`.*got 0"):
        BigBirdAttention(2, block_size=0)
    with pytest.raises(ValueError, match="`num_global_blocks`.*got -1"):
        BigBirdAttention(2, num_global_blocks=-1)
    with pytest.raises(ValueError, match="`num_random_blocks`.*got -3"):
        BigBirdAttention(2, num_random_blocks=-3)
    with pytest.raises(ValueError, match="`seed`.*got 'a'"):
        BigBirdAttention(2, seed="a")
    with pytest.raises(
        ValueError, match="`inference_random_blocks`.*'first_block'.*got 'hf'"
    ):
        BigBirdAttention(2, inference_random_blocks="hf")
    with pytest.raises(ValueError, match="`causal`.*got True.*global blocks"):
        BigBirdAttention(2, causal=True)
    with pytest.raises(ValueError, match="`num_heads`.*got 0"):
        BigBirdAttention(0)
    with pytest.raises(ValueError, match="`dropout`.*got 1.5"):
        BigBirdAttention(2, dropout=1.5)
    layer = make_layer(20, np.random.default_rng(8))
    with pytest.raises(ValueError, match=r"`inputs`.*\(2, 20, 8\)"):
        layer(np.zeros((2, 20, 8), "float32"))
    with pytest.raises(ValueError, match="bidirectional"):
        layer.get_initial_state(2, max_length=20)
    with pytest.raises(ValueError, match="bidirectional"):
        layer.step(np.zeros((2, HIDDEN), "float32"), None)
