"""BERT and RoBERTa checkpoints: tiny random encoders of transformers
(tests/fixtures/make_hf_encoder_fixtures.py; `bert/` a `BertModel`,
`roberta/` a `RobertaForSequenceClassification`) load with their last
hidden states at the real tokens of right-padded inputs; partial,
misshapen and unsupported checkpoints fail naming what is wrong."""

import os

import keras
import numpy as np
import pytest

from kerasseq.layers.softmax_attention import SoftmaxAttention
from kerasseq.models.sequence_backbone import SequenceBackbone
from kerasseq.models.sequence_classifier import SequenceClassifier
from kerasseq.pretrained import CheckpointError
from kerasseq.pretrained import from_hf
from kerasseq.pretrained import read_checkpoint
from kerasseq.pretrained.bert import convert
from tests.pretrained.checkpoints import variant

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "fixtures", "hf")
MODEL_TYPES = ("bert", "roberta")
ATOL = 1e-4


def _fixture(model_type):
    return os.path.join(FIXTURES, model_type)


def _expected(model_type):
    return dict(np.load(os.path.join(_fixture(model_type), "expected.npz")))


def _hidden(model, expected):
    inputs = {
        "token_ids": expected["input_ids"],
        "padding_mask": expected["attention_mask"],
    }
    return keras.ops.convert_to_numpy(model(inputs))


def _assert_matches(backbone, expected):
    """The last hidden states at real tokens (right padding)."""
    real = expected["attention_mask"]
    hidden = _hidden(backbone, expected)
    np.testing.assert_allclose(
        hidden[real], expected["last_hidden_state"][real], atol=ATOL, rtol=0
    )


def _variant(tmp_path, model_type, edit_weights=None, edit_config=None):
    return variant(tmp_path, _fixture(model_type), edit_weights, edit_config)


def _renamed(rename):
    def edit(weights):
        for name in list(weights):
            weights[rename(name)] = weights.pop(name)

    return edit


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_hidden_states_match_transformers(model_type):
    expected = _expected(model_type)
    # the fixtures' second rows are right-padded
    assert not expected["attention_mask"][1].all()
    backbone = from_hf(_fixture(model_type))
    assert isinstance(backbone, SequenceBackbone)
    assert backbone.name == "transformer_backbone"
    assert backbone.block_type == "post_norm"
    assert backbone.use_embedding_norm and not backbone.use_final_norm
    mixer = backbone.blocks[0].mixer
    assert isinstance(mixer, SoftmaxAttention) and not mixer.causal
    _assert_matches(backbone, expected)


def test_roberta_positions_start_after_the_padding_row():
    # 64 rows, of which RoBERTa reserves 0 and pad_token_id = 1
    assert from_hf(_fixture("bert")).max_sequence_length == 64
    assert from_hf(_fixture("roberta")).max_sequence_length == 62


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_every_tensor_is_used(model_type):
    checkpoint = read_checkpoint(_fixture(model_type))
    convert(checkpoint)
    assert checkpoint.used == set(checkpoint.weights)


def test_task_checkpoint_prefix_and_heads_are_read(tmp_path):
    # BertModel's tensors as BertForSequenceClassification stores them:
    # under `bert.`, beside a classifier; and the position_ids buffer of
    # early exports
    def as_classifier(weights):
        _renamed(lambda name: "bert." + name)(weights)
        weights["classifier.weight"] = np.ones((2, 32), "float32")
        weights["classifier.bias"] = np.ones(2, "float32")
        weights["bert.embeddings.position_ids"] = np.arange(64)[None]

    path = _variant(tmp_path, "bert", as_classifier)
    _assert_matches(from_hf(path), _expected("bert"))


def test_bare_roberta_model_without_prefix(tmp_path):
    def as_bare_model(weights):
        for name in list(weights):
            if name.startswith("classifier."):
                weights.pop(name)
        _renamed(lambda name: name.removeprefix("roberta."))(weights)

    path = _variant(tmp_path, "roberta", as_bare_model)
    _assert_matches(from_hf(path), _expected("roberta"))


def test_legacy_gamma_and_beta_names(tmp_path):
    def legacy(name):
        name = name.replace("LayerNorm.weight", "LayerNorm.gamma")
        return name.replace("LayerNorm.bias", "LayerNorm.beta")

    path = _variant(tmp_path, "bert", _renamed(legacy))
    _assert_matches(from_hf(path), _expected("bert"))


@pytest.mark.parametrize(
    "model_type, name",
    [
        ("bert", "embeddings.token_type_embeddings.weight"),
        ("bert", "encoder.layer.1.attention.self.key.bias"),
        ("bert", "encoder.layer.0.output.LayerNorm.weight"),
        ("roberta", "roberta.embeddings.position_embeddings.weight"),
        ("roberta", "roberta.encoder.layer.1.intermediate.dense.weight"),
    ],
)
def test_missing_tensor_is_named(tmp_path, model_type, name):
    path = _variant(tmp_path, model_type, lambda weights: weights.pop(name))
    with pytest.raises(CheckpointError, match=f"no tensor '{name}'"):
        from_hf(path)


@pytest.mark.parametrize(
    "model_type, name, shape",
    [
        ("bert", "encoder.layer.0.attention.self.query.weight", (32, 16)),
        ("bert", "encoder.layer.1.attention.output.dense.bias", (16,)),
        ("roberta", "roberta.embeddings.position_embeddings.weight", (63, 32)),
        ("roberta", "roberta.encoder.layer.0.output.dense.weight", (64, 32)),
        # any number of types, but the model's width
        ("bert", "embeddings.token_type_embeddings.weight", (2, 16)),
    ],
)
def test_misshapen_tensor_is_named(tmp_path, model_type, name, shape):
    def reshape(weights):
        weights[name] = np.zeros(shape, "float32")

    with pytest.raises(CheckpointError, match=f"'{name}' has shape"):
        from_hf(_variant(tmp_path, model_type, reshape))


def test_tensor_without_a_place_is_named(tmp_path):
    def add_layer_tensor(weights):
        weights["encoder.layer.2.output.dense.bias"] = np.zeros(32, "f4")

    with pytest.raises(CheckpointError, match=r"layer\.2\.output"):
        from_hf(_variant(tmp_path, "bert", add_layer_tensor))


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("position_embedding_type", "relative_key", "absolute position"),
        ("is_decoder", True, "is_decoder is true"),
        ("hidden_act", "mish", "hidden_act='mish' has no kerasseq"),
    ],
)
def test_unsupported_settings_are_refused(tmp_path, key, value, message):
    def edit(config):
        config[key] = value

    path = _variant(tmp_path, "bert", edit_config=edit)
    with pytest.raises(CheckpointError, match=message):
        from_hf(path)


def test_head_arguments_need_a_task():
    with pytest.raises(CheckpointError, match="need a task"):
        from_hf(_fixture("bert"), num_classes=2)
    with pytest.raises(CheckpointError, match=r"\['num_heads'\] are fixed"):
        from_hf(_fixture("bert"), task="sequence_classification", num_heads=2)


def test_sequence_classifier_over_the_loaded_encoder():
    expected = _expected("roberta")
    # num_classes from config.json's id2label; pooling on <s>
    classifier = from_hf(_fixture("roberta"), task="sequence_classification")
    assert isinstance(classifier, SequenceClassifier)
    assert (classifier.num_classes, classifier.pooling) == (3, "first")
    _assert_matches(classifier.backbone, expected)
    logits = _hidden(classifier, expected)
    assert logits.shape == (2, 3) and np.all(np.isfinite(logits))


@pytest.mark.parametrize("task", [None, "sequence_classification"])
def test_saves_and_reloads(tmp_path, task):
    expected = _expected("bert")
    kwargs = {"num_classes": 2} if task else {}
    model = from_hf(_fixture("bert"), task=task, **kwargs)
    path = str(tmp_path / "bert.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    np.testing.assert_array_equal(
        _hidden(restored, expected), _hidden(model, expected)
    )


def test_sequence_classifier_trains_one_step():
    expected = _expected("bert")
    model = from_hf(
        _fixture("bert"), task="sequence_classification", num_classes=2
    )
    before = [w.copy() for w in model.get_weights()]
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=True,
    )
    inputs = {
        "token_ids": expected["input_ids"],
        "padding_mask": expected["attention_mask"],
    }
    history = model.fit(
        inputs, np.array([0, 1]), batch_size=2, epochs=1, verbose=0
    )
    assert np.isfinite(history.history["loss"][0])
    after = model.get_weights()
    assert any(
        not np.allclose(a, b) for a, b in zip(before, after, strict=True)
    )


def test_a_warm_start_names_a_position_table_of_another_width(tmp_path):
    # tiled positions may have any number of rows, but the model's width
    from kerasseq.pretrained.warm_start import warm_start

    name = "embeddings.position_embeddings.weight"

    def narrow(weights):
        weights[name] = np.zeros((64, 16), "float32")

    with pytest.raises(
        CheckpointError, match=rf"'{name}' has shape \(64, 16\).*\('any', 32\)"
    ):
        warm_start(_variant(tmp_path, "bert", narrow), "longformer")
