"""The contract every registered token mixer keeps, checked once for all:
clear errors for inputs and states of the wrong shape."""

import keras
import numpy as np
import pytest

from kerasseq.models import MODELS
from kerasseq.models.registry import PRESETS
from tests.layers.test_harness import registered_mixer as _mixer
from tests.testing import layer_gradients

NAMES = sorted(MODELS)


@pytest.mark.parametrize("name", NAMES)
def test_wrong_input_width_or_rank_names_the_input(name):
    mixer = _mixer(name)
    width = PRESETS["tiny"]["hidden_dim"]
    for shape in [(2, 5, width + 2), (2, width)]:
        with pytest.raises(ValueError, match=r"`inputs`.*" + str(shape)[1:-1]):
            mixer(np.zeros(shape, "float32"))


@pytest.mark.parametrize("name", [n for n in NAMES if MODELS[n].causal])
def test_step_rejects_a_state_of_the_wrong_shape(name):
    mixer = _mixer(name)
    width = PRESETS["tiny"]["hidden_dim"]
    state = mixer.get_initial_state(2, max_length=4)

    # every array in the state one size too large in its last dimension
    def grow(s):
        if len(s.shape) == 0:
            return s
        dtype = keras.backend.standardize_dtype(s.dtype)
        return np.zeros((*s.shape[:-1], s.shape[-1] + 1), dtype)

    bad = keras.tree.map_structure(grow, state)
    with pytest.raises(ValueError, match=r"`state.*expected.*got"):
        mixer.step(np.zeros((2, width), "float32"), bad)


@pytest.mark.parametrize("name", NAMES)
def test_padding_mask_of_the_wrong_shape_names_the_mask(name):
    mixer = _mixer(name)
    width = PRESETS["tiny"]["hidden_dim"]
    x = np.zeros((2, 5, width), "float32")
    for shape in [(2, 6), (3, 5), (2, 5, 1)]:
        with pytest.raises(ValueError, match=r"`padding_mask`.*" + str(shape)):
            mixer(x, padding_mask=np.ones(shape, bool))


RECOMPUTING = [
    n for n in NAMES if "recompute_attention" in _mixer(n).get_config()
]


@pytest.mark.parametrize("name", RECOMPUTING)
def test_recomputed_attention_gives_the_same_gradients(name):
    # recompute_attention trades memory for time and changes no number
    config = _mixer(name).get_config()
    if "block_size" in config:
        config["block_size"] = 4  # sparse from 3 + 2 + 2 * 3 = 11 blocks
    x = np.random.default_rng(0).normal(size=(2, 50, 64)).astype("float32")
    grads, weights = [], None
    for recompute in (True, False):
        mixer = MODELS[name].mixer.from_config(
            {**config, "recompute_attention": recompute}
        )
        mixer.build(x.shape)
        if weights is None:
            weights = mixer.get_weights()
        mixer.set_weights(weights)
        grads.append(layer_gradients(mixer, x, jit=True))
    # the same computation, fused differently by XLA: float32 round-off
    for a, b in zip(*grads, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5 * np.abs(b).max())


# === Keras masks ===

# row 0 real throughout; row 1 padded on both sides, so that a causal
# mixer (left padding) and a bidirectional one (right padding) both see
# the padding reach its real steps if the mask were ignored
IDS = np.array([[3, 5, 2, 7, 1, 4], [0, 0, 6, 2, 0, 0]], "int32")
REAL = IDS != 0


def _values(x):
    return keras.ops.convert_to_numpy(x)


@pytest.mark.parametrize("name", NAMES)
def test_keras_mask_is_the_padding_mask(name):
    mixer = _mixer(name)
    width = PRESETS["tiny"]["hidden_dim"]
    embedding = keras.layers.Embedding(10, width, mask_zero=True)
    x = embedding(IDS)  # carries Keras's mask
    plain = keras.ops.convert_to_tensor(_values(x))  # no mask
    implicit = _values(mixer(x))
    explicit = _values(mixer(plain, padding_mask=REAL))
    np.testing.assert_allclose(implicit, explicit, atol=1e-6)
    # the control: unmasked, the padding reaches row 1's real steps
    ignored = _values(mixer(plain))
    assert not np.allclose(ignored[1][REAL[1]], explicit[1][REAL[1]])


# the fit below for one mixer of each kind; every other registered mixer's
# in test_mixer_masks_every_model.py (`large`: a compile per mixer)
FIT_IN_DEFAULT_SUITE = ("gpt", "transformer", "mamba", "lstm")


@pytest.mark.parametrize("name", FIT_IN_DEFAULT_SUITE)
def test_masks_reach_the_mixer_in_sequential_and_functional_fit(name):
    check_masks_under_fit(name)


def check_masks_under_fit(name):
    """Keras's implicit mask (Sequential) and masks passed by hand
    (functional) give the same outputs before and after `fit`."""
    width = PRESETS["tiny"]["hidden_dim"]
    mixer = _mixer(name)
    embedding = keras.layers.Embedding(10, width, mask_zero=True)
    pooling = keras.layers.GlobalAveragePooling1D()
    head = keras.layers.Dense(2)
    # implicit: the mask goes from the embedding through the mixer to the
    # pooling by itself
    sequential = keras.Sequential(
        [keras.Input((6,), dtype="int32"), embedding, mixer, pooling, head]
    )
    # explicit: the same layers, every mask passed by hand
    ids = keras.Input((6,), dtype="int32")
    real = keras.ops.not_equal(ids, 0)
    hidden = mixer(embedding(ids), padding_mask=real)
    functional = keras.Model(ids, head(pooling(hidden, mask=real)))
    labels = np.array([0, 1])
    for _ in range(2):
        np.testing.assert_allclose(
            _values(sequential.predict(IDS, verbose=0)),
            _values(functional.predict(IDS, verbose=0)),
            atol=1e-5,
        )
        sequential.compile(
            optimizer=keras.optimizers.SGD(0.5),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            jit_compile=True,
        )
        sequential.fit(IDS, labels, epochs=1, batch_size=2, verbose=0)


@pytest.mark.parametrize("name", NAMES)
def test_what_masked_steps_hold_never_reaches_real_ones(name):
    mixer = _mixer(name)
    width = PRESETS["tiny"]["hidden_dim"]
    x = np.random.default_rng(0).normal(size=(2, 6, width)).astype("float32")
    clean = np.where(REAL[..., None], x, 0.0).astype("float32")
    dirty = x.copy()
    dirty[~REAL] = np.nan
    dirty[1, 0, 0] = np.inf
    expected = _values(mixer(clean, padding_mask=REAL))
    got = _values(mixer(dirty, padding_mask=REAL))
    assert np.all(np.isfinite(got[REAL]))
    np.testing.assert_allclose(got[REAL], expected[REAL], atol=1e-6)


def test_token_ids_are_refused_with_what_the_layer_takes():
    mixer = _mixer("lru")
    inputs = {"token_ids": IDS, "padding_mask": REAL}
    with pytest.raises(ValueError, match=r"LRU takes one float tensor.*dict"):
        mixer(inputs)
