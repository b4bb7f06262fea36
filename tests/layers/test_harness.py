"""The checks every registered token mixer goes through, as keras-hub's
layer test helper runs them: config round trip, JSON round trip, `.keras`
round trip with equal outputs, and every weight's dtype under each
mixed-precision policy. Tiny shapes: a few seconds for all mixers."""

import inspect
import json

import keras
import numpy as np
import pytest

from kerasseq.layers.attention_base import BaseAttention
from kerasseq.models import MODELS
from kerasseq.models.registry import PRESETS
from kerasseq.models.registry import model_config

WIDTH = PRESETS["tiny"]["hidden_dim"]
POLICIES = ("float32", "mixed_float16", "mixed_bfloat16")


def mixer_config(name):
    """The mixer arguments of the registered model `name` at the tiny
    preset."""
    task = "causal_lm" if MODELS[name].causal else "sequence_classification"
    return model_config(name, task, "tiny", vocabulary_size=8).mixer


def registered_mixer(name, **kwargs):
    """The mixer of the registered model `name`, built for `WIDTH`."""
    mixer = MODELS[name].mixer(**mixer_config(name), **kwargs)
    mixer.build((None, None, WIDTH))
    return mixer


def _distinct_mixers():
    # models whose mixers have the same class and arguments (gpt, gpt2,
    # distilgpt2, ...) are one case here
    seen, names = set(), []
    for name, spec in MODELS.items():
        key = (spec.mixer.__name__, json.dumps(mixer_config(name), sort_keys=1))
        if key not in seen:
            seen.add(key)
            names.append(name)
    return names


MIXERS = _distinct_mixers()


def _inputs(batch=2, steps=6):
    rng = np.random.default_rng(0)
    return rng.normal(size=(batch, steps, WIDTH)).astype("float32")


def _numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x), "float32")


@pytest.mark.parametrize("name", MIXERS)
def test_config_and_json_round_trip(name):
    mixer = registered_mixer(name)
    config = mixer.get_config()
    # every named argument is saved, the class's and those it passes on to
    # its bases (an attention's `head_dim`, ...)
    for klass in type(mixer).__mro__:
        if klass is keras.layers.Layer:
            break
        if "__init__" in vars(klass):
            arguments = inspect.signature(vars(klass)["__init__"]).parameters
            named = set(arguments) - {"self", "args", "kwargs"}
            assert named <= set(config), (klass.__name__, named - set(config))
    assert type(mixer).from_config(config).get_config() == config
    # through JSON, by the registered name, as a saved model stores it
    text = json.dumps(keras.saving.serialize_keras_object(mixer))
    restored = keras.saving.deserialize_keras_object(json.loads(text))
    assert type(restored) is type(mixer)
    assert restored.get_config() == config


@pytest.mark.parametrize("name", MIXERS)
def test_keras_file_round_trip(name, tmp_path):
    x = _inputs()
    inputs = keras.Input((x.shape[1], WIDTH))
    model = keras.Model(
        inputs, MODELS[name].mixer(**mixer_config(name))(inputs)
    )
    rng = np.random.default_rng(1)
    for w in model.weights:
        if keras.backend.is_float_dtype(w.dtype):
            w.assign(w + 0.1 * rng.normal(size=w.shape).astype("float32"))
    path = str(tmp_path / f"{name}.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    mixer, loaded = model.layers[-1], restored.layers[-1]
    assert type(loaded) is type(mixer)
    assert [w.path for w in loaded.weights] == [w.path for w in mixer.weights]
    np.testing.assert_array_equal(_numpy(restored(x)), _numpy(model(x)))


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("name", MIXERS)
def test_weight_and_output_dtypes_under_each_policy(name, policy):
    policy = keras.DTypePolicy(policy)
    mixer = registered_mixer(name, dtype=policy)
    outputs = mixer(_inputs())
    assert keras.backend.standardize_dtype(outputs.dtype) == (
        policy.compute_dtype
    )
    assert np.all(np.isfinite(_numpy(outputs)))
    for weight in mixer.weights:
        if keras.backend.is_float_dtype(weight.dtype):
            assert weight.dtype == policy.variable_dtype, weight.path
    for layer in mixer._flatten_layers():
        assert layer.variable_dtype == policy.variable_dtype, layer.name
        assert layer.compute_dtype == policy.compute_dtype, layer.name
    if MODELS[name].causal:
        # step runs outside `__call__`: its inputs come in the compute dtype
        x_t = keras.ops.cast(_inputs()[:, 0], policy.compute_dtype)
        y, _ = mixer.step(x_t, mixer.get_initial_state(2, max_length=4))
        assert keras.backend.standardize_dtype(y.dtype) == (
            policy.compute_dtype
        )
        assert np.all(np.isfinite(_numpy(y)))


@pytest.mark.parametrize(
    "name", [n for n in MIXERS if issubclass(MODELS[n].mixer, BaseAttention)]
)
def test_attention_configs_saved_before_the_base_still_load(name):
    # configs written when every attention subclassed SoftmaxAttention
    # carry its rotary defaults
    config = registered_mixer(name).get_config()
    old = {"rotary_fraction": 0.0, "rotary_base": 10000.0, **config}
    restored = MODELS[name].mixer.from_config(old)
    assert restored.get_config() == config
