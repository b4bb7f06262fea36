import os

import keras
import numpy as np
import pytest

from kerasseq.layers import Mamba
from kerasseq.ops import reference
from tests.layers.common import assert_padding_leaves_real_steps_alone
from tests.layers.common import randomized
from tests.testing import assert_step_equals_call
from tests.testing import compiled
from tests.testing import in_float64
from tests.testing import layer_weights
from tests.testing import step_through


def softplus(x):
    return np.logaddexp(0.0, x)


@pytest.mark.parametrize("mode", ["recurrent", "chunk"])
def test_matches_reference_equations(mode):
    rng = np.random.default_rng(0)
    layer = Mamba(state_size=4, mode=mode, chunk_size=4)
    x = rng.normal(size=(2, 11, 8)).astype("float32")
    randomized(layer, x.shape, rng)
    y = keras.ops.convert_to_numpy(compiled(layer)(x))
    expected = in_float64(reference.mamba_block, layer_weights(layer), x)
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-5)


def test_weights_have_the_reference_names_and_shapes():
    layer = Mamba(state_size=16, expand=2, conv_kernel=4)
    layer.build((None, None, 64))
    shapes = {name: w.shape for name, w in layer_weights(layer).items()}
    # I = 128, R = ceil(64 / 16) = 4
    assert shapes == {
        "in_proj/kernel": (64, 256),
        "conv1d_kernel": (4, 128),
        "conv1d_bias": (128,),
        "x_proj/kernel": (128, 4 + 32),
        "dt_proj/kernel": (4, 128),
        "dt_proj/bias": (128,),
        "A_log": (128, 16),
        "D": (128,),
        "out_proj/kernel": (128, 64),
    }


def test_initialisation_follows_the_paper():
    keras.utils.set_random_seed(0)
    layer = Mamba(state_size=8, dt_min=0.001, dt_max=0.1)
    layer.build((None, None, 256))
    w = layer_weights(layer)
    np.testing.assert_allclose(
        -np.exp(w["A_log"]), -np.tile(np.arange(1, 9), (512, 1)), rtol=1e-6
    )
    np.testing.assert_array_equal(w["D"], 1.0)
    dt = softplus(w["dt_proj/bias"])
    assert dt.min() >= 0.001 * (1 - 1e-4) and dt.max() <= 0.1 * (1 + 1e-4)
    # log-uniform: the median sits near the geometric mean 0.01
    assert 0.006 < np.median(dt) < 0.016
    bound = 16**-0.5  # R = 16
    assert np.abs(w["dt_proj/kernel"]).max() <= bound
    # projections do not start identical
    assert not np.allclose(
        w["in_proj/kernel"][:, :8], w["x_proj/kernel"][:256, :8]
    )


def test_step_equals_call():
    rng = np.random.default_rng(1)
    layer = Mamba(state_size=4)
    x = rng.normal(size=(3, 9, 8)).astype("float32")
    randomized(layer, x.shape, rng)
    state = assert_step_equals_call(layer, x)
    assert state["ssm"].shape == (3, 16, 4)
    assert state["conv"].shape == (3, 3, 16)


def test_left_padding_leaves_real_steps_alone():
    rng = np.random.default_rng(2)
    layer = Mamba(state_size=4)
    x = rng.normal(size=(1, 5, 8)).astype("float32")
    randomized(layer, x.shape, rng)
    noise = rng.normal(size=(1, 3, 8))
    assert_padding_leaves_real_steps_alone(layer, x, noise, "left")


def test_bad_arguments():
    layer = Mamba(state_size=8, expand=3, dt_rank=5, mode="recurrent")
    with pytest.raises(ValueError, match="`state_size`.*got 0"):
        Mamba(state_size=0)
    with pytest.raises(ValueError, match="`dt_rank`.*got 'big'"):
        Mamba(dt_rank="big")
    with pytest.raises(ValueError, match="dt_min=0.5 and dt_max=0.1"):
        Mamba(dt_min=0.5, dt_max=0.1)
    with pytest.raises(ValueError, match="`mode`.*got 'fast'"):
        Mamba(mode="fast")
    layer.build((None, None, 8))
    with pytest.raises(ValueError, match=r"`inputs`.*8\).*\(2, 5, 6\)"):
        layer(np.zeros((2, 5, 6), "float32"))
    state = layer.get_initial_state(2)
    state["ssm"] = np.zeros((2, 24, 7), "float32")
    with pytest.raises(ValueError, match=r"state\['ssm'\].*\(2, 24, 8\)"):
        layer.step(np.zeros((2, 8), "float32"), state)


def test_matches_the_transformers_mamba_mixer():
    # tests/fixtures/make_mamba_golden.py wrote this from transformers'
    # MambaMixer (random weights, float64); the weights map one to one
    path = os.path.join(os.path.dirname(__file__), "..", "fixtures")
    golden = np.load(os.path.join(path, "mamba_mixer_golden.npz"))
    hidden, state_size, expand, conv_kernel, rank = golden["config"]
    layer = Mamba(
        state_size=int(state_size),
        expand=int(expand),
        conv_kernel=int(conv_kernel),
        dt_rank=int(rank),
        use_bias=True,
    )
    layer.build((None, None, int(hidden)))

    def torch_weight(name):
        return golden[f"weight/{name}"]

    converted = {
        "in_proj/kernel": torch_weight("in_proj.weight").T,
        "in_proj/bias": torch_weight("in_proj.bias"),
        "conv1d_kernel": torch_weight("conv1d.weight")[:, 0, :].T,
        "conv1d_bias": torch_weight("conv1d.bias"),
        "x_proj/kernel": torch_weight("x_proj.weight").T,
        "dt_proj/kernel": torch_weight("dt_proj.weight").T,
        "dt_proj/bias": torch_weight("dt_proj.bias"),
        "A_log": torch_weight("A_log"),
        "D": torch_weight("D"),
        "out_proj/kernel": torch_weight("out_proj.weight").T,
        "out_proj/bias": torch_weight("out_proj.bias"),
    }
    assert set(converted) == set(layer_weights(layer))
    for w in layer.weights:
        w.assign(converted[w.path.split("/", 1)[1]].astype("float32"))
    x = golden["input"].astype("float32")
    y = keras.ops.convert_to_numpy(compiled(layer)(x))
    np.testing.assert_allclose(y, golden["output"], rtol=1e-5, atol=1e-5)
    # and stepping token by token, as generation does
    stepped, _ = step_through(layer, x)
    np.testing.assert_allclose(stepped, golden["output"], atol=1e-5)
