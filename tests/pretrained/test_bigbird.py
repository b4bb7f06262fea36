"""A tiny random transformers `BigBirdModel`
(tests/fixtures/make_hf_sparse_fixtures.py: block_size 4, one random
block) loads onto kerasseq's `bigbird`. At the fixture's 12 tokens both
use full attention (up to (5 + 2) * 4 = 28 tokens), where the outputs
match; the block-sparse path cannot be compared (transformers' eval mode
puts every random block at block 0), so longer inputs are only run."""

import json
import os

import keras
import numpy as np
import pytest
from safetensors.numpy import save_file

from kerasseq.layers.bigbird_attention import BigBirdAttention
from kerasseq.layers.softmax_attention import SoftmaxAttention
from kerasseq.pretrained import CheckpointError
from kerasseq.pretrained import read_checkpoint
from kerasseq.pretrained.bigbird import convert

FIXTURE = os.path.join(
    os.path.dirname(__file__), "..", "fixtures", "hf", "big_bird"
)
ATOL = 1e-4


def _expected():
    return dict(np.load(os.path.join(FIXTURE, "expected.npz")))


def _hidden(model, ids, mask):
    inputs = {"token_ids": ids, "padding_mask": mask}
    return keras.ops.convert_to_numpy(model(inputs))


def _variant(tmp_path, edit_config):
    checkpoint = read_checkpoint(FIXTURE)
    config = dict(checkpoint.config)
    edit_config(config)
    save_file(dict(checkpoint.weights), str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps(config))
    return read_checkpoint(str(tmp_path))


def _assert_matches(backbone):
    expected = _expected()
    real = expected["attention_mask"]
    assert not real[1].all()
    hidden = _hidden(backbone, expected["input_ids"], real)
    np.testing.assert_allclose(
        hidden[real], expected["last_hidden_state"][real], atol=ATOL, rtol=0
    )


def test_hidden_states_match_transformers():
    backbone = convert(read_checkpoint(FIXTURE))
    mixer = backbone.blocks[0].mixer
    assert isinstance(mixer, BigBirdAttention)
    assert (mixer.block_size, mixer.num_global_blocks) == (4, 2)
    assert mixer.num_random_blocks == 1
    assert mixer.max_full_attention_length == 28
    _assert_matches(backbone)


def test_original_full_loads_as_a_transformer(tmp_path):
    def edit(config):
        config["attention_type"] = "original_full"

    backbone = convert(_variant(tmp_path, edit))
    mixer = backbone.blocks[0].mixer
    assert type(mixer) is SoftmaxAttention
    _assert_matches(backbone)


def test_block_sparse_inputs_run():
    backbone = convert(read_checkpoint(FIXTURE), seed=3)
    ids = np.random.default_rng(0).integers(1, 100, (2, 40))
    mask = np.ones((2, 40), bool)
    mask[1, 30:] = False
    hidden = _hidden(backbone, ids, mask)
    assert hidden.shape == (2, 40, 32) and np.isfinite(hidden).all()


def test_task_model():
    model = convert(
        read_checkpoint(FIXTURE), "sequence_classification", num_classes=2
    )
    assert model.backbone.blocks[0].mixer.block_size == 4


def test_rescaled_embeddings_fail(tmp_path):
    def edit(config):
        config["rescale_embeddings"] = True

    with pytest.raises(CheckpointError, match="rescale_embeddings"):
        convert(_variant(tmp_path, edit))
