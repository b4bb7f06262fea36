"""Mamba checkpoints: a tiny random `MambaForCausalLM` of transformers
(tests/fixtures/make_hf_encoder_fixtures.py) loads with its logits and
its greedy continuation; partial, misshapen and unsupported checkpoints
fail naming what is wrong."""

import os

import keras
import numpy as np
import pytest

from kerasseq.layers.mamba import Mamba
from kerasseq.models.causal_lm import CausalLM
from kerasseq.models.sequence_classifier import SequenceClassifier
from kerasseq.pretrained import CheckpointError
from kerasseq.pretrained import from_hf
from kerasseq.pretrained import read_checkpoint
from kerasseq.pretrained.mamba import convert
from tests.pretrained.checkpoints import assert_lm_trains_one_step
from tests.pretrained.checkpoints import assert_reloads
from tests.pretrained.checkpoints import outputs_of
from tests.pretrained.checkpoints import unpadded
from tests.pretrained.checkpoints import variant

FIXTURE = os.path.join(
    os.path.dirname(__file__), "..", "fixtures", "hf", "mamba"
)
ATOL = 1e-4


@pytest.fixture(scope="module")
def expected():
    return dict(np.load(os.path.join(FIXTURE, "expected.npz")))


@pytest.fixture(scope="module")
def model():
    return from_hf(FIXTURE)


def _variant(tmp_path, edit_weights=None, edit_config=None):
    return variant(tmp_path, FIXTURE, edit_weights, edit_config)


def test_logits_match_transformers(model, expected):
    assert isinstance(model, CausalLM) and model.tie_embeddings
    backbone = model.backbone
    assert backbone.name == "mamba_backbone"
    assert backbone.num_layers == 2 and backbone.hidden_dim == 32
    assert backbone.normalization == "rms_norm" and backbone.mlp_ratio == 0
    mixer = backbone.blocks[0].mixer
    assert isinstance(mixer, Mamba)
    assert (mixer.state_size, mixer.expand, mixer.conv_kernel) == (8, 2, 4)
    logits = outputs_of(model, expected["input_ids"])
    np.testing.assert_allclose(logits, expected["logits"], atol=ATOL, rtol=0)


def test_greedy_generation_matches_transformers(model, expected):
    tokens = model.generate(expected["prompt"], max_new_tokens=8)
    np.testing.assert_array_equal(tokens, expected["greedy"])


def test_every_tensor_is_used():
    checkpoint = read_checkpoint(FIXTURE)
    convert(checkpoint)
    assert checkpoint.used == set(checkpoint.weights)
    assert "lm_head.weight" not in checkpoint.weights  # tied, not stored


def test_bare_mamba_model_without_prefix(tmp_path, expected):
    def strip_prefix(weights):
        for name in list(weights):
            weights[name.removeprefix("backbone.")] = weights.pop(name)

    model = from_hf(_variant(tmp_path, strip_prefix))
    logits = outputs_of(model, expected["input_ids"])
    np.testing.assert_allclose(logits, expected["logits"], atol=ATOL, rtol=0)


@pytest.mark.parametrize(
    "name",
    [
        "backbone.embeddings.weight",
        "backbone.layers.1.mixer.A_log",
        "backbone.layers.0.mixer.conv1d.bias",
        "backbone.norm_f.weight",
    ],
)
def test_missing_tensor_is_named(tmp_path, name):
    path = _variant(tmp_path, lambda weights: weights.pop(name))
    with pytest.raises(CheckpointError, match=f"no tensor '{name}'"):
        from_hf(path)


@pytest.mark.parametrize(
    "name, shape",
    [
        ("backbone.layers.0.mixer.conv1d.weight", (64, 1, 3)),
        ("backbone.layers.1.mixer.x_proj.weight", (64, 18)),
        ("backbone.layers.0.norm.weight", (31,)),
    ],
)
def test_misshapen_tensor_is_named(tmp_path, name, shape):
    def reshape(weights):
        weights[name] = np.zeros(shape, "float32")

    with pytest.raises(CheckpointError, match=f"'{name}' has shape"):
        from_hf(_variant(tmp_path, reshape))


def test_tensor_without_a_place_is_named(tmp_path):
    # an in_proj bias, though config.json says use_bias false
    def add_bias(weights):
        weights["backbone.layers.0.mixer.in_proj.bias"] = np.zeros(
            128, "float32"
        )

    with pytest.raises(CheckpointError, match=r"in_proj\.bias"):
        from_hf(_variant(tmp_path, add_bias))


def test_biases_of_use_bias_checkpoints_load(tmp_path, expected):
    # with use_bias, in_proj and out_proj carry biases; zero ones leave
    # the logits as they were
    def add_biases(weights):
        for i in range(2):
            layer = f"backbone.layers.{i}.mixer"
            weights[f"{layer}.in_proj.bias"] = np.zeros(128, "float32")
            weights[f"{layer}.out_proj.bias"] = np.zeros(32, "float32")

    def set_use_bias(config):
        config["use_bias"] = True

    model = from_hf(_variant(tmp_path, add_biases, set_use_bias))
    assert model.backbone.blocks[0].mixer.in_proj.bias is not None
    logits = outputs_of(model, expected["input_ids"])
    np.testing.assert_allclose(logits, expected["logits"], atol=ATOL, rtol=0)


def test_unsupported_activation_is_refused(tmp_path):
    def set_gelu(config):
        config["hidden_act"] = "gelu"

    with pytest.raises(CheckpointError, match="hidden_act='gelu'.*SiLU"):
        from_hf(_variant(tmp_path, edit_config=set_gelu))


def test_stored_lm_head_must_equal_tied_table(tmp_path, expected):
    table = read_checkpoint(FIXTURE).weights["backbone.embeddings.weight"]

    def store_head(weights):
        weights["lm_head.weight"] = table.copy()

    model = from_hf(_variant(tmp_path / "same", store_head))
    logits = outputs_of(model, expected["input_ids"])
    np.testing.assert_allclose(logits, expected["logits"], atol=ATOL, rtol=0)

    def store_other_head(weights):
        weights["lm_head.weight"] = table + 1.0

    with pytest.raises(CheckpointError, match="lm_head.weight differs"):
        from_hf(_variant(tmp_path / "other", store_other_head))


def test_untied_lm_head_is_the_output_table(tmp_path, expected):
    head = np.random.default_rng(0).normal(size=(100, 32)).astype("float32")

    def store_head(weights):
        weights["lm_head.weight"] = head

    def untie(config):
        config["tie_word_embeddings"] = False

    model = from_hf(_variant(tmp_path, store_head, untie))
    assert not model.tie_embeddings
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(model.output_embedding.embeddings), head
    )
    # the logits are the last hidden states times the new table
    hidden = keras.ops.convert_to_numpy(
        model.backbone(unpadded(expected["input_ids"]))
    )
    np.testing.assert_allclose(
        outputs_of(model, expected["input_ids"]), hidden @ head.T, atol=ATOL
    )


def test_classifier_over_the_loaded_backbone(expected):
    classifier = from_hf(FIXTURE, task="sequence_classification", num_classes=3)
    assert isinstance(classifier, SequenceClassifier)
    assert classifier.pooling == "last"
    lm = from_hf(FIXTURE)
    for a, b in zip(
        classifier.backbone.weights, lm.backbone.weights, strict=True
    ):
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b)
        )


def test_config_fixed_arguments_are_refused():
    with pytest.raises(CheckpointError, match=r"\['state_size'\] are fixed"):
        from_hf(FIXTURE, state_size=4)


def test_saves_and_reloads(model, expected, tmp_path):
    assert_reloads(model, tmp_path, expected["input_ids"])


def test_causal_lm_trains_one_step(expected):
    assert_lm_trains_one_step(
        from_hf(FIXTURE), expected["input_ids"], every_weight=False
    )
