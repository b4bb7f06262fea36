"""GPT-2 checkpoints: a tiny random `GPT2LMHeadModel` of transformers
(tests/fixtures/hf/gpt2, written by
tests/fixtures/make_hf_causal_fixtures.py) gives the same logits and greedy
tokens in kerasseq; partial or misshapen files fail naming the tensor."""

import os

import keras
import numpy as np
import pytest
from safetensors.numpy import load_file

from kerasseq.pretrained import gpt2
from kerasseq.pretrained.hf import CheckpointError
from kerasseq.pretrained.hf import from_hf
from kerasseq.pretrained.hf import read_checkpoint
from tests.pretrained.checkpoints import FIXTURES
from tests.pretrained.checkpoints import assert_lm_trains_one_step
from tests.pretrained.checkpoints import assert_missing_tensor_is_named
from tests.pretrained.checkpoints import assert_reloads
from tests.pretrained.checkpoints import assert_transposed_tensor_is_named
from tests.pretrained.checkpoints import assert_unplaced_tensor_is_named
from tests.pretrained.checkpoints import expected_outputs
from tests.pretrained.checkpoints import outputs_of
from tests.pretrained.checkpoints import variant

FIXTURE = os.path.join(FIXTURES, "gpt2")


@pytest.fixture(scope="module")
def expected():
    return expected_outputs(FIXTURE)


def _copy(tmp_path, edit_weights=None, edit_config=None):
    return variant(tmp_path / "checkpoint", FIXTURE, edit_weights, edit_config)


def test_logits_match_transformers(expected):
    model = from_hf(FIXTURE)
    logits = outputs_of(model, expected["input_ids"])
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
    assert_missing_tensor_is_named(tmp_path / "checkpoint", FIXTURE, name)


def test_misshapen_tensor_is_named(tmp_path):
    # a Conv1D weight: (in, out), where nn.Linear would store (out, in)
    assert_transposed_tensor_is_named(
        tmp_path / "checkpoint",
        FIXTURE,
        "transformer.h.0.attn.c_attn.weight",
        (32, 96),
    )


def test_unknown_tensor_is_named(tmp_path):
    assert_unplaced_tensor_is_named(
        tmp_path / "checkpoint",
        FIXTURE,
        "transformer.h.0.attn.q_attn.weight",
        np.zeros((32, 32), "f4"),
        shown=r"h\.0\.attn\.q_attn\.weight",
    )


def test_bare_model_names_buffers_and_tied_head(tmp_path, expected):
    # the layout of the original OpenAI files: no `transformer.` prefix,
    # the attention mask stored as a buffer; and a tied lm_head written out
    def bare(weights):
        for name in list(weights):
            weights[name.removeprefix("transformer.")] = weights.pop(name)
        mask = np.tril(np.ones((64, 64), "f4"))[None, None]
        for i in range(2):
            weights[f"h.{i}.attn.bias"] = mask
            weights[f"h.{i}.attn.masked_bias"] = np.array(-1e4, "f4")
        weights["lm_head.weight"] = weights["wte.weight"].copy()

    directory = _copy(tmp_path, edit_weights=bare)
    checkpoint = read_checkpoint(directory)
    model = gpt2.convert(checkpoint)
    logits = outputs_of(model, expected["input_ids"])
    np.testing.assert_allclose(logits, expected["logits"], rtol=0, atol=1e-4)
    assert "lm_head.weight" in checkpoint.used


def test_tied_head_that_differs_is_refused(tmp_path):
    def untie(weights):
        weights["lm_head.weight"] = weights["transformer.wte.weight"] + 1

    directory = _copy(tmp_path, edit_weights=untie)
    with pytest.raises(
        CheckpointError, match="'lm_head.weight' differs.*tie_word_embeddings"
    ):
        from_hf(directory)


def test_untied_head_is_loaded(tmp_path, expected):
    def untie(weights):
        weights["lm_head.weight"] = weights["transformer.wte.weight"] * 2

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

    directory = _copy(tmp_path, edit_config=change)
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
    assert_reloads(from_hf(FIXTURE), tmp_path, expected["input_ids"])


def test_trains_one_step(expected):
    assert_lm_trains_one_step(from_hf(FIXTURE), expected["input_ids"])


def test_sequence_classification_head_gets_the_backbone(expected):
    model = from_hf(FIXTURE, task="sequence_classification", num_classes=3)
    outputs = outputs_of(model, expected["input_ids"])
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
