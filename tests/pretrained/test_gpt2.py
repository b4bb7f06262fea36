"""GPT-2 checkpoints: a tiny random `GPT2LMHeadModel` of transformers
(tests/fixtures/hf/gpt2, written by
tests/fixtures/make_hf_causal_fixtures.py) gives the same logits and greedy
tokens in kerasseq; partial or misshapen files fail naming the tensor."""

import json
import os

import keras
import numpy as np
import pytest
from safetensors.numpy import load_file
from safetensors.numpy import save_file

from kerasseq.pretrained import gpt2
from kerasseq.pretrained.hf import CheckpointError
from kerasseq.pretrained.hf import from_hf
from kerasseq.pretrained.hf import read_checkpoint

FIXTURE = os.path.join(
    os.path.dirname(os.path.dirname(__file__)), "fixtures", "hf", "gpt2"
)


@pytest.fixture(scope="module")
def expected():
    return dict(np.load(os.path.join(FIXTURE, "expected.npz")))


def _inputs(token_ids):
    token_ids = np.asarray(token_ids, dtype="int32")
    return {
        "token_ids": token_ids,
        "padding_mask": np.ones_like(token_ids, bool),
    }


def _logits(model, token_ids):
    return keras.ops.convert_to_numpy(model(_inputs(token_ids)))


def _copy(tmp_path, change_weights=None, change_config=None):
    """A copy of the fixture with its weights and config.json changed."""
    directory = tmp_path / "checkpoint"
    directory.mkdir()
    weights = load_file(os.path.join(FIXTURE, "model.safetensors"))
    if change_weights is not None:
        weights = change_weights(weights)
    save_file(weights, str(directory / "model.safetensors"))
    with open(os.path.join(FIXTURE, "config.json")) as f:
        config = json.load(f)
    if change_config is not None:
        change_config(config)
    (directory / "config.json").write_text(json.dumps(config))
    return directory


def test_logits_match_transformers(expected):
    model = from_hf(FIXTURE)
    logits = _logits(model, expected["input_ids"])
    assert logits.dtype == np.float32
    np.testing.assert_allclose(logits, expected["logits"], rtol=0, atol=1e-4)


def test_greedy_generation_matches_transformers(expected):
    model = from_hf(FIXTURE)
    tokens = model.generate(expected["prompt"], max_new_tokens=8)
    np.testing.assert_array_equal(tokens, expected["greedy"])


def test_every_tensor_is_used():
    checkpoint = read_checkpoint(FIXTURE)
    gpt2.convert(checkpoint)
    assert checkpoint.used == set(checkpoint.weights)


@pytest.mark.parametrize(
    "name", ["transformer.h.1.mlp.c_fc.bias", "transformer.wpe.weight"]
)
def test_missing_tensor_is_named(tmp_path, name):
    def drop(weights):
        del weights[name]
        return weights

    directory = _copy(tmp_path, change_weights=drop)
    with pytest.raises(CheckpointError, match=f"no tensor '{name}'"):
        from_hf(directory)


def test_misshapen_tensor_is_named(tmp_path):
    name = "transformer.h.0.attn.c_attn.weight"

    def transpose(weights):
        weights[name] = np.ascontiguousarray(weights[name].T)
        return weights

    directory = _copy(tmp_path, change_weights=transpose)
    with pytest.raises(
        CheckpointError, match=rf"'{name}' has shape \(96, 32\).*\(32, 96\)"
    ):
        from_hf(directory)


def test_unknown_tensor_is_named(tmp_path):
    def add(weights):
        weights["transformer.h.0.attn.q_attn.weight"] = np.zeros((32, 32), "f4")
        return weights

    directory = _copy(tmp_path, change_weights=add)
    with pytest.raises(
        CheckpointError,
        match=r"no place in the kerasseq model.*h\.0\.attn\.q_attn\.weight",
    ):
        from_hf(directory)


def test_bare_model_names_buffers_and_tied_head(tmp_path, expected):
    # the layout of the original OpenAI files: no `transformer.` prefix,
    # the attention mask stored as a buffer; and a tied lm_head written out
    def bare(weights):
        weights = {
            name.removeprefix("transformer."): array
            for name, array in weights.items()
        }
        mask = np.tril(np.ones((64, 64), "f4"))[None, None]
        for i in range(2):
            weights[f"h.{i}.attn.bias"] = mask
            weights[f"h.{i}.attn.masked_bias"] = np.array(-1e4, "f4")
        weights["lm_head.weight"] = weights["wte.weight"].copy()
        return weights

    directory = _copy(tmp_path, change_weights=bare)
    checkpoint = read_checkpoint(directory)
    model = gpt2.convert(checkpoint)
    logits = _logits(model, expected["input_ids"])
    np.testing.assert_allclose(logits, expected["logits"], rtol=0, atol=1e-4)
    assert "lm_head.weight" in checkpoint.used


def test_tied_head_that_differs_is_refused(tmp_path):
    def untie(weights):
        weights["lm_head.weight"] = weights["transformer.wte.weight"] + 1
        return weights

    directory = _copy(tmp_path, change_weights=untie)
    with pytest.raises(
        CheckpointError, match="'lm_head.weight' differs.*tie_word_embeddings"
    ):
        from_hf(directory)


def test_untied_head_is_loaded(tmp_path, expected):
    def untie(weights):
        weights["lm_head.weight"] = weights["transformer.wte.weight"] * 2
        return weights

    def config(config):
        config["tie_word_embeddings"] = False

    directory = _copy(tmp_path, untie, config)
    model = from_hf(directory)
    assert not model.tie_embeddings
    tokens = model.backbone.token_embedding.embeddings
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(model.output_embedding.embeddings),
        2 * keras.ops.convert_to_numpy(tokens),
    )


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("activation_function", "swish", "activation_function='swish'.*"
         "Supported: 'gelu_new', 'gelu_pytorch_tanh', 'gelu', 'relu'"),
        ("scale_attn_by_inverse_layer_idx", True,
         "scale_attn_by_inverse_layer_idx=True.*Supported: False"),
        ("scale_attn_weights", False, "scale_attn_weights=False"),
        ("add_cross_attention", True, "add_cross_attention=True"),
        ("n_embd", None, "needs a positive integer 'n_embd', got None"),
    ],
)  # fmt: skip
def test_unsupported_configuration_is_refused(tmp_path, key, value, message):
    def change(config):
        config[key] = value

    directory = _copy(tmp_path, change_config=change)
    with pytest.raises(CheckpointError, match=message):
        from_hf(directory)


def test_sizes_come_from_the_checkpoint_only():
    with pytest.raises(
        CheckpointError, match=r"\['hidden_dim'\] are fixed by the checkpoint"
    ):
        from_hf(FIXTURE, hidden_dim=64)


def test_unknown_task_is_a_checkpoint_error():
    with pytest.raises(CheckpointError, match="Unknown task 'translation'"):
        from_hf(FIXTURE, task="translation")


def test_builds_the_registered_architecture():
    model = from_hf(FIXTURE)
    backbone = model.backbone
    assert backbone.name == "gpt2_backbone"
    assert backbone.activation == "gelu_approximate"
    assert backbone.dropout == 0.1  # resid_pdrop
    assert backbone.max_sequence_length == 64
    assert backbone.blocks[0].mixer.num_heads == 4
    assert model.tie_embeddings


def test_saves_and_reloads_as_keras(tmp_path, expected):
    model = from_hf(FIXTURE)
    path = str(tmp_path / "gpt2.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    np.testing.assert_array_equal(
        _logits(restored, expected["input_ids"]),
        _logits(model, expected["input_ids"]),
    )


def test_trains_one_step(expected):
    model = from_hf(FIXTURE)
    before = [w.copy() for w in model.get_weights()]
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=True,
    )
    token_ids = expected["input_ids"]
    history = model.fit(
        _inputs(token_ids[:, :-1]), token_ids[:, 1:], epochs=1, verbose=0
    )
    assert np.isfinite(history.history["loss"][0])
    after = model.get_weights()
    assert all(
        not np.array_equal(a, b) for a, b in zip(before, after, strict=True)
    )


def test_sequence_classification_head_gets_the_backbone(expected):
    model = from_hf(FIXTURE, task="sequence_classification", num_classes=3)
    outputs = _logits(model, expected["input_ids"])
    assert outputs.shape == (2, 3)
    weights = load_file(os.path.join(FIXTURE, "model.safetensors"))
    # values: the last third of c_attn's output axis, head after head
    values = weights["transformer.h.1.attn.c_attn.weight"][:, 64:]
    attention = model.backbone.blocks[1].mixer
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(attention.value_kernel),
        values.reshape(32, 4, 8),
    )
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(model.backbone.final_norm.gamma),
        weights["transformer.ln_f.weight"],
    )
