"""Tiny random transformers `BigBirdModel`s
(tests/fixtures/make_hf_sparse_fixtures.py) load onto kerasseq's
`bigbird`. `hf/big_bird` (block_size 4, one random block) at 12 tokens:
both use full attention (up to (5 + 2) * 4 = 28 tokens). `hf/big_bird_sparse`
(block_size 4, two random blocks) at 44 and 41 tokens: both use block-sparse
attention, and the converted layers' `inference_random_blocks="first_block"`
attends what transformers' eval mode does (block 0 in every random slot)."""

import functools
import os

import keras
import numpy as np
import pytest

from kerasseq.layers.bigbird_attention import BigBirdAttention
from kerasseq.layers.softmax_attention import SoftmaxAttention
from kerasseq.pretrained import CheckpointError
from kerasseq.pretrained import read_checkpoint
from kerasseq.pretrained.bigbird import convert
from kerasseq.pretrained.bigbird import model_arguments
from tests.pretrained.checkpoints import variant
from tests.testing import compiled

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "fixtures", "hf")
FIXTURE = os.path.join(FIXTURES, "big_bird")
SPARSE_FIXTURE = os.path.join(FIXTURES, "big_bird_sparse")
ATOL = 1e-4
SPARSE_ATOL = 1e-5


def _expected():
    return dict(np.load(os.path.join(FIXTURE, "expected.npz")))


def _hidden(model, ids, mask):
    inputs = {"token_ids": ids, "padding_mask": mask}
    return keras.ops.convert_to_numpy(model(inputs))


def _variant(tmp_path, edit_config):
    return read_checkpoint(variant(tmp_path, FIXTURE, edit_config=edit_config))


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


def _sparse_case(prefix):
    expected = dict(np.load(os.path.join(SPARSE_FIXTURE, "expected.npz")))
    ids, real, hidden = (
        expected[prefix + name]
        for name in ("input_ids", "attention_mask", "last_hidden_state")
    )
    # one row without padding, one right-padded
    assert real[0].all() and not real[1].all()
    return ids, real, hidden


def _check_sparse_case(prefix, jit):
    backbone = convert(read_checkpoint(SPARSE_FIXTURE))
    ids, real, expected = _sparse_case(prefix)
    mixers = [block.mixer for block in backbone.blocks]
    assert all(m.inference_random_blocks == "first_block" for m in mixers)
    assert ids.shape[1] > mixers[0].max_full_attention_length == 36

    def run(ids, mask, seeded=False):
        # kerasseq's own seeded random blocks at inference, for contrast
        for mixer in mixers:
            mixer.inference_random_blocks = (
                "seeded" if seeded else "first_block"
            )
        return backbone({"token_ids": ids, "padding_mask": mask})

    hidden = keras.ops.convert_to_numpy(jit(run)(ids, real))
    np.testing.assert_allclose(
        hidden[real], expected[real], atol=SPARSE_ATOL, rtol=0
    )
    seeded = _quick(functools.partial(run, seeded=True))(ids, real)
    seeded = keras.ops.convert_to_numpy(seeded)
    assert np.abs(seeded[real] - expected[real]).max() > 1e-2


def _quick(fn):
    # eager on TensorFlow; on JAX, whose eager ops compile one by one, jit
    return fn if keras.backend.backend() == "tensorflow" else compiled(fn)


@pytest.mark.parametrize(
    "prefix, jit",
    [
        # 44 tokens: 11 whole blocks
        ("", _quick),
        # 41 tokens, padded inside to 44; tf.function(jit_compile=True) or
        # jax.jit
        ("ragged_", compiled),
    ],
    ids=["whole_blocks", "ragged_compiled"],
)
def test_block_sparse_lengths_match_transformers_eval(prefix, jit):
    _check_sparse_case(prefix, jit)


def test_model_arguments_choose_transformers_eval_blocks():
    arguments = model_arguments(read_checkpoint(SPARSE_FIXTURE), None)
    assert arguments["inference_random_blocks"] == "first_block"
    assert arguments["num_random_blocks"] == 2


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
