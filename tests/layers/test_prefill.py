"""`prefill` for every registered mixer that decodes: a prompt run in one
parallel pass gives `call`'s outputs and leaves the state that stepping
through it token by token leaves, so that `step` continues from it; also
from a given state (a prompt in pieces) and with right padding (`length`),
eagerly and under XLA."""

import keras
import numpy as np
import pytest

from kerasseq.models import MODELS
from kerasseq.models.registry import PRESETS
from kerasseq.models.registry import model_config
from tests.testing import compiled
from tests.testing import time_steps

WIDTH = PRESETS["tiny"]["hidden_dim"]
# a prompt of 12 tokens (or two pieces of 6), then 4 stepped; chunks of 8
# so that the chunked kernels cross a chunk boundary at a length that is
# not a multiple. Two prompt shapes only, each eager JAX op compiling once
# per shape.
HALF, PROMPT, TOTAL, CHUNK = 6, 12, 16, 8
# small windows so that the cache slides within the prompt
OVERRIDES = {"longformer_causal": {"window": 4, "dilation": 2}}


def _decoding_mixers():
    """One registered name per distinct causal mixer (class and
    arguments): `gpt2`'s attention is `gpt`'s, `pythia`'s is rotary."""
    names, seen = [], set()
    for name, spec in MODELS.items():
        if not spec.causal:
            continue
        config = model_config(name, "causal_lm", "tiny", vocabulary_size=8)
        key = (spec.mixer, repr(sorted(config.mixer.items())))
        if key not in seen:
            seen.add(key)
            names.append(name)
    return names


NAMES = _decoding_mixers()
# deltanet_negeig differs from deltanet only in the range of beta. On JAX
# (eager ops compile one by one) the default suite keeps one mixer per
# state kind: a key/value cache, a selective scan, an LSTM; `make
# test-all` runs the rest there.
IN_DEFAULT_SUITE = [
    n
    for n in NAMES
    if n != "deltanet_negeig"
    and (keras.backend.backend() != "jax" or n in ("gpt", "mamba", "lstm"))
]
# the mixers over a scan kernel of kerasseq.ops (compiled loops, chunked
# and parallel forms); under XLA in the default suite: one per kernel
SCANS = {
    "mamba": "selective_scan",
    "deltanet": "delta_rule",
    "lru": "linear_recurrence",
    "qlstm": "linear_recurrence",
    "diag_rnn": "linear_recurrence",
    "linear_rnn": "matrix_recurrence",
    "lstm": "lstm_recurrence",
    "linear_attention": "linear_attention",
    "performer_causal": "linear_attention",
}
# (mamba's and gpt's prefill run compiled in the default suite's
# tests/models/test_prefill_generate.py)
XLA_IN_DEFAULT_SUITE = ("lstm",)


def mixer(name):
    config = model_config(name, "causal_lm", "tiny", vocabulary_size=8)
    args = dict(config.mixer)
    if "chunk_size" in args:
        args["chunk_size"] = CHUNK
    args.update(OVERRIDES.get(name, {}))
    layer = MODELS[name].mixer(**args)
    layer.build((None, None, WIDTH))
    return layer


def _numpy(tree):
    return keras.tree.map_structure(keras.ops.convert_to_numpy, tree)


def assert_same(got, expected, what):
    got, expected = _numpy(got), _numpy(expected)
    keras.tree.assert_same_structure(got, expected)
    assert type(got) is type(expected), what
    for a, b in zip(
        keras.tree.flatten(got), keras.tree.flatten(expected), strict=True
    ):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5, err_msg=what)


def stepped(layer, x):
    """Steps through `x` from the initial state (cache of TOTAL tokens):
    the outputs, and the states after 0, 1, ..., TOTAL tokens."""
    state = layer.get_initial_state(x.shape[0], max_length=TOTAL)
    outputs, states = [], [state]
    for x_t in time_steps(keras.ops.convert_to_tensor(x)):
        y, state = layer.step(x_t, state)
        outputs.append(keras.ops.convert_to_numpy(y))
        states.append(state)
    return np.stack(outputs, 1), states


def inputs(seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(2, TOTAL, WIDTH)).astype("float32")


def padded(x, length):
    """The first `length` steps of `x`, then large noise: a right-padded
    prompt of `x`'s length."""
    noise = 10 * np.random.default_rng(1).normal(size=x.shape)
    real = np.arange(x.shape[1])[:, None] < length
    return np.where(real, x, noise).astype("float32")


@pytest.mark.parametrize("name", IN_DEFAULT_SUITE)
def test_prefill_is_call_and_leaves_the_stepped_state(name):
    check_prefill(name)


def check_prefill(name):
    layer = mixer(name)
    x = inputs()
    expected, states = stepped(layer, x)

    def close(got, want, what):
        np.testing.assert_allclose(
            _numpy(got), want, rtol=1e-5, atol=1e-5, err_msg=what
        )

    prompt = x[:, :PROMPT]
    outputs, state = layer.prefill(prompt, max_length=TOTAL)
    assert_same(outputs, layer(prompt), "prefill's outputs against call's")
    close(outputs, expected[:, :PROMPT], "prefill's outputs against step's")
    assert_same(state, states[PROMPT], "state after the prompt")
    # step continues from the prefilled state as from the stepped one
    for t in range(PROMPT, TOTAL):
        y, state = layer.step(keras.ops.convert_to_tensor(x[:, t]), state)
        close(y, expected[:, t], f"step {t} after prefill")
    assert_same(state, states[TOTAL], "state after stepping on")

    # the prompt in two pieces, the second from the first one's state
    first, state = layer.prefill(x[:, :HALF], max_length=TOTAL)
    assert_same(state, states[HALF], "state after the first piece")
    second, state = layer.prefill(x[:, HALF:PROMPT], state)
    close(first, expected[:, :HALF], "first piece")
    close(second, expected[:, HALF:PROMPT], "second piece")
    assert_same(state, states[PROMPT], "state after two pieces")

    # right padding: the real steps and the state are the unpadded ones
    outputs, state = layer.prefill(
        padded(prompt, HALF), length=HALF, max_length=TOTAL
    )
    close(_numpy(outputs)[:, :HALF], expected[:, :HALF], "padded prompt")
    assert_same(state, states[HALF], "state after a padded prompt")
    # and a padded second piece, from the first one's state: 4 real steps
    # of 6
    _, state = layer.prefill(x[:, :HALF], max_length=TOTAL)
    second = padded(x[:, HALF:PROMPT], 4)
    outputs, state = layer.prefill(second, state, length=4)
    close(
        _numpy(outputs)[:, :4],
        expected[:, HALF : HALF + 4],
        "padded second piece",
    )
    assert_same(state, states[HALF + 4], "state after a padded second piece")


def check_prefill_under_xla(name):
    layer = mixer(name)
    x = inputs(seed=3)
    expected, states = stepped(layer, x)

    def run(x, length):
        return layer.prefill(x, length=length, max_length=TOTAL)

    outputs, state = compiled(run)(
        padded(x[:, :PROMPT], HALF), keras.ops.convert_to_tensor(HALF, "int32")
    )
    close = dict(rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        _numpy(outputs)[:, :HALF], expected[:, :HALF], **close
    )
    assert_same(state, states[HALF], "state after a compiled prefill")


@pytest.mark.parametrize("name", XLA_IN_DEFAULT_SUITE)
def test_prefill_under_xla(name):
    check_prefill_under_xla(name)


def test_every_decoding_mixer_prefills_and_the_others_refuse():
    assert set(SCANS) <= set(NAMES)
    for name in MODELS:
        config = model_config(
            name, "sequence_classification", "tiny", vocabulary_size=8
        )
        layer = MODELS[name].mixer(**config.mixer)
        layer.build((None, None, WIDTH))
        if MODELS[name].causal:
            assert hasattr(layer, "prefill"), name
            continue
        # bidirectional: no step, so no prefill either, with the reason
        with pytest.raises(ValueError, match="decoding is undefined|causal"):
            layer.prefill(np.zeros((1, 4, WIDTH), "float32"))
