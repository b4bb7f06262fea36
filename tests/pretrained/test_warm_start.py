"""Longformer and BigBird warm-started from the BERT and RoBERTa fixtures
(tests/fixtures/hf/bert, roberta): with a window or blocks covering the
whole input they compute what the checkpoint's BERT does; the position
table repeats the checkpoint's rows; Longformer's global projections
start as the local ones; a classifier trains a step and round-trips."""

import os

import keras
import numpy as np
import pytest

from kerasseq.layers.bigbird_attention import BigBirdAttention
from kerasseq.layers.longformer_attention import LongformerAttention
from kerasseq.pretrained import CheckpointError
from kerasseq.pretrained import from_hf
from kerasseq.pretrained.warm_start import warm_start

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "fixtures", "hf")
ATOL = 1e-4
# the fixtures' inputs have 12 tokens
COVERING = {
    # 12 tokens on each side
    "longformer": {"window": 24, "num_global_tokens": 1},
    # up to (3 + 2 + 2) * 4 = 28 tokens BigBird attends everything
    "bigbird": {"block_size": 4, "num_random_blocks": 1},
}


def _fixture(model_type):
    return os.path.join(FIXTURES, model_type)


def _hidden(model, expected):
    inputs = {
        "token_ids": expected["input_ids"],
        "padding_mask": expected["attention_mask"],
    }
    return keras.ops.convert_to_numpy(model(inputs))


@pytest.mark.parametrize("model_type", ("bert", "roberta"))
@pytest.mark.parametrize("name", ("longformer", "bigbird"))
def test_covering_attention_matches_the_checkpoint(model_type, name):
    expected = dict(np.load(os.path.join(_fixture(model_type), "expected.npz")))
    reference = _hidden(from_hf(_fixture(model_type)), expected)
    model = warm_start(
        _fixture(model_type), name, max_sequence_length=200, **COVERING[name]
    )
    mixer = model.blocks[0].mixer
    assert isinstance(
        mixer, LongformerAttention if name == "longformer" else BigBirdAttention
    )
    real = expected["attention_mask"]
    hidden = _hidden(model, expected)
    np.testing.assert_allclose(hidden[real], reference[real], atol=ATOL, rtol=0)
    # and the checkpoint's own outputs (transformers)
    np.testing.assert_allclose(
        hidden[real], expected["last_hidden_state"][real], atol=ATOL, rtol=0
    )


def test_a_narrow_window_changes_the_outputs():
    expected = dict(np.load(os.path.join(_fixture("bert"), "expected.npz")))
    reference = _hidden(from_hf(_fixture("bert")), expected)
    model = warm_start(_fixture("bert"), "longformer", window=2)
    assert np.abs(_hidden(model, expected) - reference).max() > 1e-3


@pytest.mark.parametrize("model_type", ("bert", "roberta"))
def test_position_rows_are_tiled(model_type):
    original = from_hf(_fixture(model_type)).position_embedding.embeddings
    original = keras.ops.convert_to_numpy(original)
    rows = len(original)  # 64 (BERT), 62 (RoBERTa: 64 - pad 1 - 1)
    model = warm_start(_fixture(model_type), "bigbird", max_sequence_length=150)
    table = keras.ops.convert_to_numpy(model.position_embedding.embeddings)
    assert table.shape == (150, original.shape[1])
    for start in range(0, 150, rows):
        part = table[start : start + rows]
        np.testing.assert_array_equal(part, original[: len(part)])


def test_global_projections_start_as_the_local_ones():
    model = warm_start(_fixture("roberta"), "longformer", window=8)
    for block in model.blocks:
        mixer = block.mixer
        for part in ("query", "key", "value"):
            for kind in ("kernel", "bias"):
                local = getattr(mixer, f"{part}_{kind}")
                glob = getattr(mixer, f"{part}_global_{kind}")
                np.testing.assert_array_equal(
                    keras.ops.convert_to_numpy(glob),
                    keras.ops.convert_to_numpy(local),
                )


@pytest.mark.parametrize("name", ("longformer", "bigbird"))
def test_classifier_trains_and_round_trips(name, tmp_path):
    args = {"longformer": {"window": 4}, "bigbird": {"block_size": 2}}[name]
    model = warm_start(
        _fixture("roberta"),
        name,
        task="sequence_classification",
        num_classes=2,
        max_sequence_length=96,
        **args,
    )
    rng = np.random.default_rng(0)
    length = 96  # BigBird: past its (3 + 2 + 2 * 3) * 2 = 22 full ones
    x = {
        "token_ids": rng.integers(3, 100, (2, length)),
        "padding_mask": np.ones((2, length), bool),
    }
    y = np.array([0, 1])
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    history = model.fit(x, y, epochs=1, batch_size=2, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(loaded(x)),
        keras.ops.convert_to_numpy(model(x)),
        atol=1e-5,
    )


def test_refuses_unknown_names_and_checkpoints():
    with pytest.raises(CheckpointError, match="'reformer'"):
        warm_start(_fixture("bert"), "reformer")
    with pytest.raises(CheckpointError, match="'gpt2'"):
        warm_start(_fixture("gpt2"), "longformer")
