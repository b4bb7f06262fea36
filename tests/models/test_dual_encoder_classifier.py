import keras
import numpy as np
import pytest

from kerasseq.models import COMPARED_MODELS
from kerasseq.models import MODELS
from kerasseq.models import DualEncoderClassifier
from kerasseq.models import build_model
from kerasseq.models import count_parameters
from tests.models.model_checks import assert_reloads
from tests.models.model_checks import fit_until_fitted
from tests.testing import layer_weights
from tests.testing import perturb_weights
from tests.testing import run_model_test

TASK = "dual_encoder_classification"
VOCAB = 20


def _build(name, **kwargs):
    kwargs = {
        "vocabulary_size": VOCAB,
        "num_classes": 3,
        "max_sequence_length": 16,
        **kwargs,
    }
    return build_model(name, TASK, "tiny", **kwargs)


def _document(rng, lengths, seq_len, vocab=VOCAB):
    mask = np.arange(seq_len) < np.asarray(lengths)[:, None]
    ids = rng.integers(1, vocab, mask.shape).astype("int32")
    ids[~mask] = 0
    return ids, mask


def _inputs(rng, lengths_1=(9, 4, 1), lengths_2=(6, 6, 3)):
    # documents of different lengths, each padded on the right
    ids_1, mask_1 = _document(rng, lengths_1, 9)
    ids_2, mask_2 = _document(rng, lengths_2, 6)
    return {
        "token_ids_1": ids_1,
        "padding_mask_1": mask_1,
        "token_ids_2": ids_2,
        "padding_mask_2": mask_2,
    }


def _numpy(x):
    return keras.ops.convert_to_numpy(x)


def _pool(hidden, mask, pooling):
    pooled = []
    for h, m in zip(hidden, mask, strict=True):
        real = h[m]
        pooled.append(real.mean(0) if pooling == "mean" else real[-1])
    return np.stack(pooled)


@pytest.mark.parametrize(
    "name,pooling", [("transformer", "mean"), ("gpt", "last")]
)
def test_logits_match_numpy_reference(name, pooling):
    model = _build(name)
    assert model.pooling == pooling
    rng = np.random.default_rng(0)
    # biases start at zero: perturb them so that a dropped bias shows
    perturb_weights(model.intermediate_dense, rng)
    perturb_weights(model.output_dense, rng)
    inputs = _inputs(rng)
    pooled = []
    for i in (1, 2):
        hidden = model.backbone(
            {
                "token_ids": inputs[f"token_ids_{i}"],
                "padding_mask": inputs[f"padding_mask_{i}"],
            }
        )
        pooled.append(
            _pool(_numpy(hidden), inputs[f"padding_mask_{i}"], pooling)
        )
    u, v = pooled
    features = np.concatenate([u, v, u * v, u - v], axis=-1)
    dense = layer_weights(model.intermediate_dense)
    logits = layer_weights(model.output_dense)
    hidden = np.maximum(features @ dense["kernel"] + dense["bias"], 0.0)
    expected = hidden @ logits["kernel"] + logits["bias"]
    np.testing.assert_allclose(_numpy(model(inputs)), expected, atol=1e-5)


@pytest.mark.parametrize(
    "name", ["gpt", "lstm", "mamba", "lru", "transformer", "linformer"]
)
def test_padding_either_document_does_not_change_logits(name):
    model = _build(name)
    inputs = _inputs(np.random.default_rng(1))
    expected = _numpy(model(inputs))
    for pad_1, pad_2 in [(4, 0), (0, 5)]:
        padded = dict(inputs)
        for i, pad in ((1, pad_1), (2, pad_2)):
            for key in (f"token_ids_{i}", f"padding_mask_{i}"):
                padded[key] = np.pad(inputs[key], ((0, 0), (0, pad)))
        np.testing.assert_allclose(
            _numpy(model(padded)), expected, atol=1e-5, err_msg=(pad_1, pad_2)
        )


def test_one_backbone_serves_both_documents():
    model = _build("gpt", intermediate_dim=24)
    backbone = model.backbone
    d = backbone.hidden_dim
    backbone_ids = {id(w) for w in backbone.weights}
    head = [w for w in model.weights if id(w) not in backbone_ids]
    # one copy of the backbone; the head is two dense layers
    assert len(model.weights) == len(backbone.weights) + 4
    shapes = [tuple(w.shape) for w in head]
    assert shapes == [(4 * d, 24), (24,), (24, 3), (3,)]
    head_size = 4 * d * 24 + 24 + 24 * 3 + 3
    counts = count_parameters(model)
    assert counts["total"] == backbone.count_params() + head_size
    assert counts["embedding"] == count_parameters(backbone)["embedding"]
    # the same document in both places: u == v, so u - v == 0 and the rows
    # of the ReLU layer's kernel for u - v cannot matter
    rng = np.random.default_rng(2)
    ids, mask = _document(rng, (7, 3), 7)
    same = {
        "token_ids_1": ids,
        "padding_mask_1": mask,
        "token_ids_2": ids,
        "padding_mask_2": mask,
    }
    before = _numpy(model(same))
    kernel = _numpy(model.intermediate_dense.kernel)
    kernel[3 * d :] += rng.normal(size=(d, 24))
    model.intermediate_dense.kernel.assign(kernel)
    np.testing.assert_allclose(_numpy(model(same)), before, atol=1e-5)


def test_model_through_its_paces():
    # the head does not depend on the mixer: one model is enough here
    inputs = _inputs(np.random.default_rng(3))
    labels = np.array([0, 2, 1])
    run_model_test(lambda: _build("gpt", head={"dropout": 0.1}), inputs, labels)


def test_saved_model_gives_identical_outputs(tmp_path):
    model = _build("lstm", intermediate_dim=24)
    assert_reloads(model, _inputs(np.random.default_rng(4)), tmp_path)


def _matching_data(rng, n, vocab=6):
    # label 1 when the two documents start with the same token, which
    # neither document tells alone; half the pairs do
    ids_1, mask_1 = _document(rng, rng.integers(3, 9, n), 8, vocab)
    ids_2, mask_2 = _document(rng, rng.integers(3, 7, n), 6, vocab)
    labels = (rng.random(n) < 0.5).astype("int32")
    shift = rng.integers(1, vocab - 1, n)
    other = (ids_1[:, 0] - 1 + shift) % (vocab - 1) + 1
    ids_2[:, 0] = np.where(labels == 1, ids_1[:, 0], other)
    inputs = {
        "token_ids_1": ids_1,
        "padding_mask_1": mask_1,
        "token_ids_2": ids_2,
        "padding_mask_2": mask_2,
    }
    return inputs, labels


def test_learns_whether_documents_start_alike():
    rng = np.random.default_rng(5)
    x, y = _matching_data(rng, 512)
    x_test, y_test = _matching_data(rng, 256)
    starts_alike = x["token_ids_1"][:, 0] == x["token_ids_2"][:, 0]
    np.testing.assert_array_equal(y, starts_alike)
    assert 0.4 < y.mean() < 0.6
    model = _build(
        "transformer",
        vocabulary_size=6,
        num_classes=2,
        hidden_dim=32,
        num_layers=1,
        max_sequence_length=8,
    )
    # 6 to 8 epochs for most seeds, 15 for the slowest seen
    fit_until_fitted(model, x, y, accuracy=0.98, max_epochs=30)
    _, accuracy = model.evaluate(x_test, y_test, batch_size=256, verbose=0)
    assert accuracy > 0.9, accuracy


def test_build_model_for_every_model():
    # symbolic calls here; eager ones for a model of each kind above
    inputs = {
        key: keras.KerasTensor(value.shape, dtype=str(value.dtype))
        for key, value in _inputs(np.random.default_rng(6)).items()
    }
    for name in COMPARED_MODELS:
        model = _build(name)
        assert model.pooling == ("last" if MODELS[name].causal else "mean")
        assert model.intermediate_dim == model.backbone.hidden_dim
        spec = model.compute_output_spec(inputs)
        assert tuple(spec.shape) == (3, 3), name
        assert spec.dtype == "float32", name


def test_overrides_reach_the_head():
    model = _build(
        "mamba", pooling="max", intermediate_dim=40, head={"dropout": 0.25}
    )
    assert model.pooling == "max"
    assert model.intermediate_dim == 40
    assert model.dropout == 0.25
    assert model.output_dropout.rate == 0.25
    assert model.intermediate_dense.units == 40


def test_continuous_features_backbone():
    model = build_model("lru", TASK, "tiny", feature_dim=3, num_classes=2)
    assert sorted(model.input) == [
        "features_1",
        "features_2",
        "padding_mask_1",
        "padding_mask_2",
    ]
    x = {
        "features_1": np.random.normal(size=(2, 7, 3)).astype("float32"),
        "padding_mask_1": np.ones((2, 7), bool),
        "features_2": np.random.normal(size=(2, 4, 3)).astype("float32"),
        "padding_mask_2": np.ones((2, 4), bool),
    }
    assert model(x).shape == (2, 2)


def test_rejects_bad_arguments():
    backbone = _build("gpt").backbone
    with pytest.raises(ValueError, match="`num_classes`.*got 0"):
        DualEncoderClassifier(backbone, num_classes=0)
    with pytest.raises(ValueError, match="`pooling`.*'mean'.*got 'median'"):
        DualEncoderClassifier(backbone, num_classes=2, pooling="median")
    with pytest.raises(ValueError, match="`intermediate_dim`.*got -8"):
        DualEncoderClassifier(backbone, num_classes=2, intermediate_dim=-8)
    with pytest.raises(ValueError, match="`intermediate_dim`.*got 8.5"):
        DualEncoderClassifier(backbone, num_classes=2, intermediate_dim=8.5)
    with pytest.raises(ValueError, match=r"`dropout`.*\[0, 1\), got 1.5"):
        DualEncoderClassifier(backbone, num_classes=2, dropout=1.5)
    with pytest.raises(ValueError, match="SequenceBackbone, got Dense"):
        DualEncoderClassifier(keras.layers.Dense(2), num_classes=2)
    with pytest.raises(
        ValueError, match=r"Unknown argument\(s\) \['mlp_dim'\]"
    ):
        _build("gpt", mlp_dim=32)
