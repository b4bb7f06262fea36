import keras
import numpy as np
import pytest

from kerasseq.models import COMPARED_MODELS
from kerasseq.models import MODELS
from kerasseq.models import SpanExtractor
from kerasseq.models import build_model
from kerasseq.models.span_extractor import PADDING_LOGIT
from tests.models.model_checks import assert_reloads
from tests.models.model_checks import fit_until_fitted
from tests.testing import layer_weights
from tests.testing import one_model_per_mixer
from tests.testing import perturb_weights
from tests.testing import run_model_test

TASK = "span_extraction"
VOCAB = 20
SEQ_LEN = 16


def _build(name, **kwargs):
    kwargs = {
        "vocabulary_size": VOCAB,
        "max_sequence_length": SEQ_LEN,
        **kwargs,
    }
    return build_model(name, TASK, "tiny", **kwargs)


def _inputs(rng, lengths=(9, 5, 1), seq_len=9):
    # sequences of different lengths, each padded on the right
    mask = np.arange(seq_len) < np.asarray(lengths)[:, None]
    ids = rng.integers(1, VOCAB, mask.shape).astype("int32")
    ids[~mask] = 0
    return {"token_ids": ids, "padding_mask": mask}


def _labels(rng, lengths=(9, 5, 1)):
    # [start, end] with start <= end inside each sequence
    spans = []
    for length in lengths:
        start, end = sorted(rng.integers(0, length, 2))
        spans.append([start, end])
    return np.array(spans, "int32")


def _numpy(x):
    return keras.ops.convert_to_numpy(x)


@pytest.mark.parametrize("name", ["gpt", "transformer"])
def test_logits_match_numpy_reference(name):
    model = _build(name)
    rng = np.random.default_rng(0)
    # the bias starts at zero: perturb it so that a dropped bias shows
    perturb_weights(model.output_dense, rng)
    inputs = _inputs(rng)
    hidden = np.asarray(_numpy(model.backbone(inputs)), np.float64)
    dense = layer_weights(model.output_dense)
    expected = (hidden @ dense["kernel"] + dense["bias"]).transpose(0, 2, 1)
    mask = np.broadcast_to(inputs["padding_mask"][:, None], expected.shape)
    expected = np.where(mask, expected, PADDING_LOGIT)
    outputs = model(inputs)
    assert keras.backend.standardize_dtype(outputs.dtype) == "float32"
    outputs = _numpy(outputs)
    assert outputs.shape == (3, 2, 9)
    np.testing.assert_allclose(outputs, expected, atol=1e-5)
    # padded positions hold exactly the large negative logit, and take no
    # probability
    np.testing.assert_array_equal(outputs[~mask], np.float32(PADDING_LOGIT))
    probabilities = _numpy(keras.ops.softmax(outputs, axis=-1))
    np.testing.assert_array_equal(probabilities[~mask], 0.0)
    np.testing.assert_allclose(probabilities.sum(-1), 1.0, atol=1e-6)


# the bidirectional models, whose real positions could see the padding
# unless the mask is honoured, and a causal attention, RNN and SSM model
@pytest.mark.parametrize(
    "name",
    ["gpt", "lstm", "mamba"]
    + [n for n in one_model_per_mixer() if not MODELS[n].causal],
)
def test_padding_on_the_right_does_not_change_real_logits(name):
    model = _build(name)
    inputs = _inputs(np.random.default_rng(1))
    expected = _numpy(model(inputs))
    real = np.broadcast_to(inputs["padding_mask"][:, None], expected.shape)
    padded = {
        key: np.pad(value, ((0, 0), (0, 7))) for key, value in inputs.items()
    }
    outputs = _numpy(model(padded))
    assert outputs.shape == (3, 2, 16)
    np.testing.assert_allclose(
        outputs[:, :, :9][real], expected[real], atol=1e-5, err_msg=name
    )
    np.testing.assert_array_equal(outputs[:, :, 9:], np.float32(PADDING_LOGIT))


def test_model_through_its_paces():
    # the head does not depend on the mixer: one model is enough here
    rng = np.random.default_rng(2)
    inputs = _inputs(rng)
    labels = _labels(rng)
    run_model_test(lambda: _build("gpt", head={"dropout": 0.1}), inputs, labels)


def test_fit_lowers_the_loss():
    rng = np.random.default_rng(3)
    inputs = _inputs(rng)
    labels = _labels(rng)
    model = _build("transformer", num_layers=1)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=True,
    )
    history = model.fit(inputs, labels, batch_size=3, epochs=5, verbose=0)
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses)), losses
    assert losses[-1] < 0.5 * losses[0], losses


def test_saved_model_gives_identical_outputs(tmp_path):
    model = _build("lstm", head={"dropout": 0.1})
    restored = assert_reloads(
        model, _inputs(np.random.default_rng(4)), tmp_path
    )
    assert restored.dropout == 0.1


OPEN, CLOSE, FIRST_WORD = 1, 2, 3


def _marked_spans(rng, n, vocab, seq_len=SEQ_LEN):
    # random words with one span of 1 to 4 words between an OPEN and a
    # CLOSE marker; the answer is the span's first and last word
    lengths = rng.integers(8, seq_len + 1, n)
    mask = np.arange(seq_len) < lengths[:, None]
    ids = rng.integers(FIRST_WORD, vocab, (n, seq_len)).astype("int32")
    ids[~mask] = 0
    span = rng.integers(1, 5, n)
    # the markers at start - 1 and end + 1 fit inside the real tokens
    start = rng.integers(1, lengths - span)
    end = start + span - 1
    rows = np.arange(n)
    ids[rows, start - 1] = OPEN
    ids[rows, end + 1] = CLOSE
    inputs = {"token_ids": ids, "padding_mask": mask}
    return inputs, np.stack([start, end], axis=1).astype("int32")


def test_learns_marked_spans():
    keras.utils.set_random_seed(42)
    rng = np.random.default_rng(5)
    vocab = 10
    x, y = _marked_spans(rng, 1024, vocab)
    x_test, y_test = _marked_spans(rng, 256, vocab)
    ids = x["token_ids"]
    rows = np.arange(len(y))
    assert np.all(ids[rows, y[:, 0] - 1] == OPEN)
    assert np.all(ids[rows, y[:, 1] + 1] == CLOSE)
    assert np.all((ids == OPEN).sum(1) == 1)
    assert np.all((ids == CLOSE).sum(1) == 1)
    model = _build("transformer", vocabulary_size=vocab)
    # 4 epochs for the seeds tried
    fit_until_fitted(
        model,
        x,
        y,
        accuracy=0.99,
        max_epochs=12,
        metric=keras.metrics.SparseCategoricalAccuracy(name="accuracy"),
    )
    predicted = _numpy(model.predict(x_test, batch_size=256, verbose=0))
    exact = np.all(predicted.argmax(-1) == y_test, axis=1).mean()
    # chance: a start and an end among 8 to 16 positions, below 0.02
    assert exact > 0.9, exact


@pytest.mark.parametrize("name", COMPARED_MODELS)
def test_build_model_for_every_model(name):
    # symbolic calls here; eager ones for a model of each kind above
    model = _build(name)
    assert isinstance(model, SpanExtractor)
    assert model.output_dense.units == 2
    inputs = {
        "token_ids": keras.KerasTensor((2, SEQ_LEN), dtype="int32"),
        "padding_mask": keras.KerasTensor((2, SEQ_LEN), dtype="bool"),
    }
    spec = model.compute_output_spec(inputs)
    assert tuple(spec.shape) == (2, 2, SEQ_LEN)
    assert spec.dtype == "float32"


def test_overrides_reach_the_head():
    model = _build("mamba", head={"dropout": 0.25})
    assert model.dropout == 0.25
    assert model.output_dropout.rate == 0.25
    assert model.get_config()["dropout"] == 0.25


def test_rejects_bad_arguments():
    backbone = _build("gpt").backbone
    with pytest.raises(ValueError, match=r"`dropout`.*\[0, 1\), got 1.5"):
        SpanExtractor(backbone, dropout=1.5)
    with pytest.raises(ValueError, match="SequenceBackbone, got Dense"):
        SpanExtractor(keras.layers.Dense(2))
    with pytest.raises(
        ValueError, match="SpanExtractor needs a backbone over token ids"
    ):
        build_model("lstm", TASK, "tiny", feature_dim=3)
    with pytest.raises(
        ValueError, match=r"Unknown argument\(s\) \['num_classes'\]"
    ):
        _build("gpt", num_classes=2)
