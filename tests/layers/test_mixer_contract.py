"""The contract every registered token mixer keeps, checked once for all:
clear errors for inputs and states of the wrong shape."""

import keras
import numpy as np
import pytest

from kerasseq.models import MODELS
from kerasseq.models.registry import PRESETS
from kerasseq.models.registry import model_config
from tests.testing import layer_gradients

NAMES = sorted(MODELS)


def _mixer(name):
    task = "causal_lm" if MODELS[name].causal else "sequence_classification"
    config = model_config(name, task, "tiny", vocabulary_size=8)
    mixer = MODELS[name].mixer(**config["mixer"])
    mixer.build((None, None, PRESETS["tiny"]["hidden_dim"]))
    return mixer


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
