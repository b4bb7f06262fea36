"""GPT-NeoX (Pythia) checkpoints: tiny random `GPTNeoXForCausalLM`s of
transformers (tests/fixtures/hf/gpt_neox with parallel blocks,
tests/fixtures/hf/gpt_neox_sequential without; written by
tests/fixtures/make_hf_causal_fixtures.py) give the same logits and greedy
tokens in kerasseq; partial or misshapen files fail naming the tensor."""

import os

import keras
import numpy as np
import pytest
from safetensors.numpy import load_file

from kerasseq.pretrained import gpt_neox
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

FIXTURE = os.path.join(FIXTURES, "gpt_neox")
SEQUENTIAL = os.path.join(FIXTURES, "gpt_neox_sequential")


@pytest.fixture(scope="module")
def expected():
    return expected_outputs(FIXTURE)


def _copy(tmp_path, edit_weights=None, edit_config=None):
    return variant(tmp_path / "checkpoint", FIXTURE, edit_weights, edit_config)


@pytest.mark.parametrize("directory", [FIXTURE, SEQUENTIAL])
def test_logits_match_transformers(directory):
    expected = expected_outputs(directory)
    model = from_hf(directory)
    logits = outputs_of(model, expected["input_ids"])
    assert logits.dtype == np.float32
    np.testing.assert_allclose(logits, expected["logits"], rtol=0, atol=1e-4)


@pytest.mark.parametrize("directory", [FIXTURE, SEQUENTIAL])
def test_greedy_generation_matches_transformers(directory):
    expected = expected_outputs(directory)
    model = from_hf(directory)
    tokens = model.generate(expected["prompt"], max_new_tokens=8)
    np.testing.assert_array_equal(tokens, expected["greedy"])


def test_builds_the_registered_architecture():
    model = from_hf(FIXTURE)
    backbone = model.backbone
    assert backbone.name == "pythia_backbone"
    assert backbone.block_type == "parallel"
    assert backbone.activation == "gelu"
    assert backbone.position_embedding is None
    attention = backbone.blocks[0].mixer
    assert (attention.rotary_fraction, attention.rotary_base) == (0.5, 100.0)
    assert attention._rotary_dim == 4  # two pairs of each head's 8
    assert not model.tie_embeddings
    assert from_hf(SEQUENTIAL).backbone.block_type == "pre_norm"


def test_every_tensor_is_used():
    checkpoint = read_checkpoint(FIXTURE)
    gpt_neox.convert(checkpoint)
    assert checkpoint.used == set(checkpoint.weights)


@pytest.mark.parametrize(
    "name",
    [
        "gpt_neox.layers.1.attention.query_key_value.bias",
        "gpt_neox.layers.0.post_attention_layernorm.weight",
        "embed_out.weight",
    ],
)
def test_missing_tensor_is_named(tmp_path, name):
    assert_missing_tensor_is_named(tmp_path / "checkpoint", FIXTURE, name)


def test_misshapen_tensor_is_named(tmp_path):
    assert_transposed_tensor_is_named(
        tmp_path / "checkpoint",
        FIXTURE,
        "gpt_neox.layers.1.mlp.dense_h_to_4h.weight",
        (128, 32),
    )


def test_unknown_tensor_is_named(tmp_path):
    assert_unplaced_tensor_is_named(
        tmp_path / "checkpoint",
        FIXTURE,
        "gpt_neox.layers.0.attention.rotary_scale",
        np.ones(4, "f4"),
        shown=r"attention\.rotary_scale",
    )


def test_hub_layout_legacy_config_buffers_and_lm_head_name(tmp_path, expected):
    # Pythia on the hub: rotary_pct and rotary_emb_base instead of
    # rope_parameters, mask and frequency buffers beside the weights; and
    # transformers 5's name for the output table
    def buffers(weights):
        mask = np.tril(np.ones((64, 64), "f4"))[None, None]
        for i in range(2):
            prefix = f"gpt_neox.layers.{i}.attention"
            weights[f"{prefix}.bias"] = mask
            weights[f"{prefix}.masked_bias"] = np.array(-1e9, "f4")
            weights[f"{prefix}.rotary_emb.inv_freq"] = np.ones(2, "f4")
        weights["lm_head.weight"] = weights.pop("embed_out.weight")

    def legacy(config):
        rope = config.pop("rope_parameters")
        config["rotary_pct"] = rope["partial_rotary_factor"]
        config["rotary_emb_base"] = rope["rope_theta"]

    directory = _copy(tmp_path, buffers, legacy)
    model = from_hf(directory)
    logits = outputs_of(model, expected["input_ids"])
    np.testing.assert_allclose(logits, expected["logits"], rtol=0, atol=1e-4)


def test_bare_model_without_lm_head(tmp_path):
    # a GPTNeoXModel: no prefix, no output table; its backbone loads into
    # any head but the untied language model
    def bare(weights):
        del weights["embed_out.weight"]
        for name in list(weights):
            weights[name.removeprefix("gpt_neox.")] = weights.pop(name)

    directory = _copy(tmp_path, edit_weights=bare)
    model = from_hf(directory, task="token_classification", num_classes=2)
    assert model.output.shape == (None, None, 2)
    with pytest.raises(CheckpointError, match="no tensor 'embed_out.weight'"):
        from_hf(directory)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda c: c.update(hidden_act="silu"),
         r"hidden_act='silu'.*Supported: \['gelu', 'gelu_new'"),
        (lambda c: c["rope_parameters"].update(rope_type="linear",
                                               factor=2.0),
         "rope_type='linear'.*Supported: 'default'"),
        (lambda c: c["rope_parameters"].update(partial_rotary_factor=0.375),
         "rotates 3 of the 8 dimensions.*even number"),
    ],
)  # fmt: skip
def test_unsupported_configuration_is_refused(tmp_path, change, message):
    directory = _copy(tmp_path, edit_config=change)
    with pytest.raises(CheckpointError, match=message):
        from_hf(directory)


def test_saves_and_reloads_as_keras(tmp_path, expected):
    restored = assert_reloads(from_hf(FIXTURE), tmp_path, expected["input_ids"])
    tokens = restored.generate(expected["prompt"], max_new_tokens=8)
    np.testing.assert_array_equal(tokens, expected["greedy"])


def test_trains_one_step(expected):
    assert_lm_trains_one_step(from_hf(FIXTURE), expected["input_ids"])


def test_sequence_classification_head_gets_the_backbone(expected):
    model = from_hf(FIXTURE, task="sequence_classification", num_classes=3)
    assert outputs_of(model, expected["input_ids"]).shape == (2, 3)
    weights = load_file(os.path.join(FIXTURE, "model.safetensors"))
    # keys of head 2: rows 2 * 24 + 8 to 2 * 24 + 16 of query_key_value
    qkv = weights["gpt_neox.layers.1.attention.query_key_value.weight"]
    attention = model.backbone.blocks[1].mixer
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(attention.key_kernel)[:, 2],
        qkv[56:64].T,
    )
