"""Checks and float64 pieces shared by the layer tests."""

import keras
import numpy as np
from keras import ops

from tests.testing import compiled
from tests.testing import float64
from tests.testing import layer_gradients
from tests.testing import layer_weights
from tests.testing import perturb_weights
from tests.testing import value_and_grad


def randomized(layer, shape, rng):
    """`layer` built for inputs of `shape`, every weight perturbed with
    `rng` (`perturb_weights`)."""
    layer.build(shape)
    return perturb_weights(layer, rng)


def padded_inputs(length, hidden):
    """Two Gaussian float32 sequences `(2, length, hidden)` (seeded by
    `length`) and a padding mask that pads the second after its first
    `length // 2 + 1` steps."""
    rng = np.random.default_rng(length)
    x = rng.normal(size=(2, length, hidden)).astype("float32")
    mask = np.ones((2, length), bool)
    mask[1, length // 2 + 1 :] = False
    return x, mask


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def gelu_tanh(x):
    """GELU, tanh approximation (Keras's `approximate=True`), in NumPy."""
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))


def glu_output(w, y):
    """The gated output of the LRU-style layers, in NumPy:
    glu_out(gelu(y)) * sigmoid(glu_gate(gelu(y))), with the layer's
    `glu_out` and `glu_gate` Dense weights in `w` (`layer_weights`)."""
    g = gelu_tanh(y)
    out = g @ w["glu_out/kernel"] + w["glu_out/bias"]
    gate = g @ w["glu_gate/kernel"] + w["glu_gate/bias"]
    return out * sigmoid(gate)


def attention_projections(x, w, names=("query", "key", "value")):
    """`x @ W + b` per head for each of `names`, with keras.ops: the
    `{name}_kernel` (D, H, K) and `{name}_bias` (H, K) of `w`."""
    return [
        ops.einsum("btd,dhk->bthk", x, w[f"{name}_kernel"]) + w[f"{name}_bias"]
        for name in names
    ]


def output_projection(o, w):
    """The heads `o` (B, T, H, K) mixed back to (B, T, D) with keras.ops."""
    return ops.einsum("bthk,hkd->btd", o, w["output_kernel"]) + w["output_bias"]


def assert_gradients_match_reference(layer, x, reference, rtol):
    """The gradients of `sum(layer(x)^2)` in `x` and every trainable weight
    equal autodiff through `reference(x, w)` (a keras.ops function of the
    input and the weights by name) in float64, to `rtol` times each
    gradient's largest entry."""
    x = x.astype("float32")
    grads = layer_gradients(layer, x, jit=True)
    names = [v.path.split("/", 1)[1] for v in layer.trainable_variables]
    # non-trainable weights (e.g. random features) are held fixed
    fixed = layer_weights(layer)

    def loss(x, *weights):
        w = {**fixed, **dict(zip(names, weights, strict=True))}
        return ops.sum(ops.square(reference(x, w)))

    with float64():
        args = [x.astype(np.float64)] + [fixed[n] for n in names]
        _, expected = value_and_grad(loss, *args)
    for name, g, e in zip(["inputs", *names], grads, expected, strict=True):
        scale = np.abs(e).max()
        np.testing.assert_allclose(g, e, atol=rtol * scale, err_msg=name)


def assert_compiled_call_equals_eager(layer, x, atol=1e-5):
    """The XLA-compiled call gives the eager call's outputs."""
    np.testing.assert_allclose(
        ops.convert_to_numpy(compiled(layer)(x)),
        ops.convert_to_numpy(layer(x)),
        atol=atol,
    )


def assert_padding_leaves_real_steps_alone(
    layer, x, noise, side, rtol=0.0, atol=1e-5
):
    """`x` padded with `noise` steps on the `"left"` or `"right"` side, the
    padding masked out, gives `x`'s outputs on its real steps."""
    pad = noise.shape[1]
    real = np.ones(x.shape[:2], bool)
    padding = np.zeros(noise.shape[:2], bool)
    if side == "left":
        padded = np.concatenate([noise, x], 1)
        mask = np.concatenate([padding, real], 1)
        steps = slice(pad, None)
    else:
        padded = np.concatenate([x, noise], 1)
        mask = np.concatenate([real, padding], 1)
        steps = slice(None, x.shape[1])
    y = ops.convert_to_numpy(layer(padded.astype("float32"), mask))
    alone = ops.convert_to_numpy(layer(x))
    np.testing.assert_allclose(y[:, steps], alone, rtol=rtol, atol=atol)


def assert_modes_give_the_same_gradients(cls, x, atol, rtol=1e-4, jit=False):
    """`layer_gradients` of `cls(mode=mode, chunk_size=4)`, built for `x`
    from the same seeded initial weights, agree between `"recurrent"` and
    `"chunk"` mode and are not all zero."""
    grads = {}
    for mode in ("recurrent", "chunk"):
        keras.utils.set_random_seed(0)
        layer = cls(mode=mode, chunk_size=4)
        layer.build(x.shape)
        grads[mode] = layer_gradients(layer, x, jit=jit)
    for a, b in zip(grads["recurrent"], grads["chunk"], strict=True):
        assert np.abs(a).sum() > 0
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)
