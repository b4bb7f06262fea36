import os

import keras
import numpy as np
import pytest

from kerasseq.models import MODELS
from kerasseq.models import CausalLM
from kerasseq.models import SequenceClassifier
from kerasseq.models import TokenClassifier
from kerasseq.models import build_model
from kerasseq.models.generation import cache_length
from kerasseq.ops.dispatch import compile_function
from tests.testing import one_model_per_mixer
from tests.testing import run_model_test

VOCAB = 20


def _inputs(batch=4, seq_len=9):
    ids = np.random.randint(1, VOCAB, (batch, seq_len)).astype("int32")
    mask = np.ones((batch, seq_len), bool)
    mask[-1, 6:] = False
    ids[~mask] = 0
    return {"token_ids": ids, "padding_mask": mask}


def _labels(task, inputs):
    batch, seq_len = inputs["token_ids"].shape
    if task == "sequence_classification":
        return np.random.randint(0, 3, (batch,))
    if task == "token_classification":
        return np.random.randint(0, 3, (batch, seq_len))
    return inputs["token_ids"]


def _primary_task(name):
    return "causal_lm" if MODELS[name].causal else "sequence_classification"


def _cases():
    # every model on its main task; the heads themselves do not depend on
    # the mixer, so every task once with a causal and a bidirectional model
    cases = {(name, _primary_task(name)) for name in one_model_per_mixer()}
    for name in ("gpt", "transformer"):
        cases.add((name, "sequence_classification"))
        cases.add((name, "token_classification"))
    return sorted(cases)


def _build(name, task):
    kwargs = {"vocabulary_size": VOCAB, "max_sequence_length": 16}
    if task != "causal_lm":
        kwargs["num_classes"] = 3
    return build_model(name, task, "tiny", **kwargs)


# through its paces in the default suite: every head once (the heads do
# not depend on the mixer; each mixer trains under XLA in the default suite
# in tests/layers/test_mixer_contract.py and tests/models/
# test_compiled_step.py); every other case in test_heads_every_model.py
# (`large`: a compile per model and task, ~30-150 s each)
PACES_IN_DEFAULT_SUITE = (
    ("gpt", "causal_lm"),
    ("gpt", "token_classification"),
    ("transformer", "sequence_classification"),
)


@pytest.mark.parametrize("name,task", PACES_IN_DEFAULT_SUITE)
def test_model_through_its_paces(name, task):
    check_paces(name, task)


def check_paces(name, task):
    """Fit, evaluate, predict, save and load, under XLA (run_model_test)."""
    inputs = _inputs()
    labels = _labels(task, inputs)
    weights = None
    if task != "sequence_classification":
        weights = inputs["padding_mask"].astype("float32")
    run_model_test(lambda: _build(name, task), inputs, labels, weights)


@pytest.mark.parametrize("name", one_model_per_mixer())
def test_saved_model_gives_identical_outputs(name, tmp_path):
    model = _build(name, _primary_task(name))
    inputs = _inputs()
    expected = keras.ops.convert_to_numpy(model(inputs))
    # every layer Keras tracks is built after one call: with one unbuilt,
    # Keras takes the model as unbuilt and, before each `predict_on_batch`
    # (JAX) or `train_on_batch`, runs it eagerly or traces it again
    assert [x.name for x in model._flatten_layers() if not x.built] == []
    path = os.path.join(tmp_path, "model.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    assert type(restored) is type(model)
    assert type(restored.backbone.mixer) is type(model.backbone.mixer)
    assert [x.name for x in restored._flatten_layers() if not x.built] == []
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(restored(inputs)), expected
    )


# stepping in the default suite: one mixer per kernel family (attention's
# cache, the selective scan, the LSTM, the delta rule, the complex diagonal
# recurrence, linear attention's state); every other causal mixer in
# test_heads_every_model.py (`large`)
STEPPING_IN_DEFAULT_SUITE = (
    "gpt",
    "mamba",
    "lstm",
    "deltanet",
    "lru",
    "linear_attention",
)


def stepping_cases():
    return [n for n in one_model_per_mixer() if MODELS[n].causal]


@pytest.mark.parametrize("name", STEPPING_IN_DEFAULT_SUITE)
def test_stepping_equals_call_and_generate_is_greedy(name):
    check_stepping(name)


def check_stepping(name):
    """generate's tokens are the teacher-forced argmax, and the backbone's
    step reproduces its call."""
    model = _build(name, "causal_lm")
    prompt = np.random.randint(1, VOCAB, (2, 4)).astype("int32")
    generated = model.generate(prompt, max_new_tokens=6)
    assert generated.shape == (2, 10)
    np.testing.assert_array_equal(generated[:, :4], prompt)
    # teacher-forced logits on the generated text pick every next token
    logits = keras.ops.convert_to_numpy(
        model({"token_ids": generated, "padding_mask": np.ones((2, 10), bool)})
    )
    np.testing.assert_array_equal(logits[:, 3:-1].argmax(-1), generated[:, 4:])
    # and the backbone's step reproduces its call
    backbone = model.backbone
    states = backbone.get_initial_state(2, max_length=10)
    hidden = []
    for t in range(10):
        h, states = backbone.step(generated[:, t], t, states)
        hidden.append(keras.ops.convert_to_numpy(h))
    full = backbone(
        {"token_ids": generated, "padding_mask": np.ones((2, 10), bool)}
    )
    np.testing.assert_allclose(
        np.stack(hidden, 1), keras.ops.convert_to_numpy(full), atol=1e-5
    )


def test_sampling_is_seeded():
    model = _build("lstm", "causal_lm")
    prompt = np.ones((2, 3), "int32")
    a = model.generate(prompt, 5, temperature=1.0, seed=3)
    b = model.generate(prompt, 5, temperature=1.0, seed=3)
    np.testing.assert_array_equal(a, b)


def test_cache_sizes_come_in_buckets():
    assert [cache_length(t) for t in (1, 58, 64, 65, 1000)] == [
        64,
        64,
        64,
        128,
        1024,
    ]
    # a position table shorter than the bucket bounds the cache
    assert cache_length(58, limit=60) == 60
    assert cache_length(70, limit=60) == 128


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="XLA's compile-time constants are TensorFlow's (JAX traces)",
)
@pytest.mark.parametrize("name", ["gpt", "pythia"])
def test_one_compiled_decoding_step_serves_every_position(name):
    # the position of the token must be an input of the compiled step, not a
    # constant of it: XLA compiled the step anew for every position before
    # (GPT-2 generated 50 tokens in 97 s, then 0.3 s once compiled)
    model = build_model(
        name, "causal_lm", "tiny", vocabulary_size=VOCAB, max_sequence_length=16
    )
    step = compile_function(model._step)
    states = model.backbone.get_initial_state(1, max_length=16)
    token = keras.ops.ones((1,), "int32")
    programs = [
        step.experimental_get_compiler_ir(
            token, keras.ops.convert_to_tensor(t, "int32"), states
        )(stage="hlo")
        for t in (0, 5)
    ]
    assert programs[0] == programs[1]


def test_generate_bad_input():
    model = _build("gpt", "causal_lm")
    with pytest.raises(ValueError, match="max_sequence_length=16"):
        model.generate(np.ones((1, 10), "int32"), max_new_tokens=10)
    with pytest.raises(ValueError, match="`max_new_tokens`.*got 0"):
        model.generate(np.ones((1, 2), "int32"), max_new_tokens=0)
    with pytest.raises(ValueError, match="`temperature`"):
        model.generate(np.ones((1, 2), "int32"), 2, temperature=-1.0)


@pytest.mark.parametrize(
    "name", ["gpt", *(n for n in one_model_per_mixer() if not MODELS[n].causal)]
)
def test_padding_does_not_change_classification(name):
    model = _build(name, "sequence_classification")
    inputs = _inputs(batch=1, seq_len=6)
    short = keras.ops.convert_to_numpy(model(inputs))
    padded = {
        "token_ids": np.pad(inputs["token_ids"], ((0, 0), (0, 5))),
        "padding_mask": np.pad(inputs["padding_mask"], ((0, 0), (0, 5))),
    }
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(model(padded)), short, atol=1e-5
    )


def test_continuous_features_backbone():
    model = build_model(
        "lstm", "sequence_classification", "tiny", feature_dim=3, num_classes=2
    )
    x = {
        "features": np.random.normal(size=(2, 7, 3)).astype("float32"),
        "padding_mask": np.ones((2, 7), bool),
    }
    assert model(x).shape == (2, 2)
    with pytest.raises(
        ValueError, match="CausalLM needs a backbone over token"
    ):
        CausalLM(model.backbone)


def test_heads_reject_bad_arguments():
    backbone = _build("gpt", "token_classification").backbone
    with pytest.raises(ValueError, match="`num_classes`.*got 0"):
        TokenClassifier(backbone, num_classes=0)
    with pytest.raises(ValueError, match="`pooling`.*got 'median'"):
        SequenceClassifier(backbone, num_classes=2, pooling="median")
    with pytest.raises(ValueError, match="SequenceBackbone, got Dense"):
        TokenClassifier(keras.layers.Dense(2), num_classes=2)


def test_causal_lm_refuses_a_mixer_that_reads_later_steps():
    from kerasseq.layers import SoftmaxAttention
    from kerasseq.models import RecurrentGPT2
    from kerasseq.models import SequenceBackbone

    def backbone(causal):
        mixer = SoftmaxAttention(num_heads=2, causal=causal)
        return SequenceBackbone(
            mixer,
            num_layers=2,
            hidden_dim=8,
            vocabulary_size=VOCAB,
            max_sequence_length=16,
        )

    CausalLM(backbone(causal=True))
    heads = (CausalLM, lambda b: RecurrentGPT2(b, segment_length=4))
    for head in heads:
        with pytest.raises(
            ValueError, match=r"block 0's SoftmaxAttention reads later steps"
        ):
            head(backbone(causal=False))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_mixer_reports_the_causality_the_registry_gives(name):
    model = build_model(
        name,
        "causal_lm" if MODELS[name].causal else "sequence_classification",
        "tiny",
        vocabulary_size=VOCAB,
        **({} if MODELS[name].causal else {"num_classes": 2}),
    )
    mixers = [block.mixer for block in model.backbone.blocks]
    assert [m.causal for m in mixers] == [MODELS[name].causal] * len(mixers)
