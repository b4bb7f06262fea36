"""A tiny random transformers `LongformerModel`
(tests/fixtures/make_hf_sparse_fixtures.py: attention_window 4 on both
layers, the first token global) loads onto kerasseq's `longformer` with
its last hidden states at the real tokens of right-padded inputs."""

import os

import keras
import numpy as np
import pytest

from kerasseq.layers.longformer_attention import LongformerAttention
from kerasseq.pretrained import CheckpointError
from kerasseq.pretrained import read_checkpoint
from kerasseq.pretrained.longformer import convert
from tests.pretrained.checkpoints import variant

FIXTURE = os.path.join(
    os.path.dirname(__file__), "..", "fixtures", "hf", "longformer"
)
ATOL = 1e-4


def _expected():
    return dict(np.load(os.path.join(FIXTURE, "expected.npz")))


def _hidden(model, expected):
    inputs = {
        "token_ids": expected["input_ids"],
        "padding_mask": expected["attention_mask"],
    }
    return keras.ops.convert_to_numpy(model(inputs))


def _variant(tmp_path, edit_weights=None, edit_config=None):
    return read_checkpoint(
        variant(tmp_path, FIXTURE, edit_weights, edit_config)
    )


def test_hidden_states_match_transformers():
    expected = _expected()
    real = expected["attention_mask"]
    assert not real[1].all()
    # kerasseq's one global slot is the first token
    assert (expected["global_attention_mask"][:, 0]).all()
    assert expected["global_attention_mask"].sum() == 2
    backbone = convert(read_checkpoint(FIXTURE))
    mixer = backbone.blocks[0].mixer
    assert isinstance(mixer, LongformerAttention)
    # attention_window 4: 2 tokens on each side, kerasseq's window too
    assert mixer.window == 4 and mixer.num_global_tokens == 1
    hidden = _hidden(backbone, expected)
    np.testing.assert_allclose(
        hidden[real], expected["last_hidden_state"][real], atol=ATOL, rtol=0
    )


def test_global_projections_matter(tmp_path):
    # the fixture's global and local projections differ, so swapping them
    # in changes the outputs: the parity above checks their mapping
    def local_as_global(weights):
        for name in list(weights):
            if "_global." in name:
                weights[name] = weights[name.replace("_global.", ".")]

    expected = _expected()
    backbone = convert(_variant(tmp_path, local_as_global))
    real = expected["attention_mask"]
    diff = np.abs(
        _hidden(backbone, expected)[real] - expected["last_hidden_state"][real]
    )
    assert diff.max() > 1e-3


def test_task_model_and_no_global_tokens():
    model = convert(
        read_checkpoint(FIXTURE), "sequence_classification", num_classes=3
    )
    assert model.backbone.blocks[0].mixer.num_global_tokens == 1
    backbone = convert(read_checkpoint(FIXTURE), num_global_tokens=0)
    assert not hasattr(backbone.blocks[0].mixer, "query_global_kernel")
    expected = _expected()
    assert _hidden(backbone, expected).shape == (2, 16, 32)


def test_windows_that_differ_between_layers_fail(tmp_path):
    def edit(config):
        config["attention_window"] = [4, 8]

    with pytest.raises(CheckpointError, match="differs between layers"):
        convert(_variant(tmp_path, edit_config=edit))


def test_missing_global_projection_fails(tmp_path):
    def edit(weights):
        del weights["encoder.layer.1.attention.self.key_global.bias"]

    with pytest.raises(CheckpointError, match="key_global.bias"):
        convert(_variant(tmp_path, edit_weights=edit))
