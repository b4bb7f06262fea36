"""What the converter tests share: the fixtures' folder, a fixture copied
with its weights or config.json edited, the checks that a copy with a
tensor missing, transposed or added fails naming it, and a model's outputs
on unpadded tokens."""

import json
import os
import re

import keras
import numpy as np
import pytest
from safetensors.numpy import save_file

from kerasseq.pretrained.hf import CheckpointError
from kerasseq.pretrained.hf import from_hf
from kerasseq.pretrained.hf import read_checkpoint

# tiny random checkpoints of transformers, one folder per model_type
# (written by tests/fixtures/make_hf_*_fixtures.py)
FIXTURES = os.path.join(
    os.path.dirname(os.path.dirname(__file__)), "fixtures", "hf"
)


def expected_outputs(fixture):
    """The outputs of transformers saved beside a fixture (expected.npz)."""
    return dict(np.load(os.path.join(fixture, "expected.npz")))


def variant(directory, fixture, edit_weights=None, edit_config=None):
    """A copy of the checkpoint folder `fixture` written to `directory`
    (made if missing), after `edit_weights(weights)` and
    `edit_config(config)` change the dict of tensors and the config in
    place; returns `directory`."""
    checkpoint = read_checkpoint(fixture)
    weights, config = dict(checkpoint.weights), dict(checkpoint.config)
    if edit_weights:
        edit_weights(weights)
    if edit_config:
        edit_config(config)
    os.makedirs(directory, exist_ok=True)
    save_file(weights, os.path.join(directory, "model.safetensors"))
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(config, f)
    return directory


def assert_refused(directory, fixture, edit_weights, match):
    """`from_hf` refuses the copy of `fixture` whose tensors `edit_weights`
    changed (see `variant`) with a CheckpointError matching `match`."""
    with pytest.raises(CheckpointError, match=match):
        from_hf(variant(directory, fixture, edit_weights))


def assert_missing_tensor_is_named(directory, fixture, name):
    """A copy of `fixture` without the tensor `name` fails naming it."""

    def drop(weights):
        del weights[name]

    assert_refused(directory, fixture, drop, f"no tensor '{name}'")


def assert_transposed_tensor_is_named(directory, fixture, name, shape):
    """A copy of `fixture` with its tensor `name` (a matrix of `shape`)
    transposed fails naming it, the shape it has and the shape needed."""

    def transpose(weights):
        weights[name] = np.ascontiguousarray(weights[name].T)

    has, needs = (re.escape(str(s)) for s in (shape[::-1], shape))
    assert_refused(
        directory, fixture, transpose, f"'{name}' has shape {has}.*{needs}"
    )


def assert_unplaced_tensor_is_named(directory, fixture, name, value, shown):
    """A copy of `fixture` with a tensor `name` added (`value`) that no
    weight of the model takes fails naming it; `shown` is the regular
    expression of the name as the message gives it."""

    def add(weights):
        weights[name] = value

    assert_refused(
        directory, fixture, add, f"no place in the kerasseq model.*{shown}"
    )


def unpadded(token_ids):
    """A model's inputs for `token_ids` `(batch_size, seq_len)` without
    padding."""
    token_ids = np.asarray(token_ids, dtype="int32")
    return {
        "token_ids": token_ids,
        "padding_mask": np.ones_like(token_ids, bool),
    }


def outputs_of(model, token_ids):
    """A model's outputs (logits) on unpadded `token_ids`, as NumPy."""
    return keras.ops.convert_to_numpy(model(unpadded(token_ids)))


def assert_reloads(model, directory, token_ids):
    """Saves `model` to a .keras file in `directory` and loads it back: the
    copy gives the same outputs on `token_ids`. Returns the copy."""
    path = os.path.join(directory, "model.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    np.testing.assert_array_equal(
        outputs_of(restored, token_ids), outputs_of(model, token_ids)
    )
    return restored


def assert_lm_trains_one_step(model, token_ids, every_weight=True):
    """One epoch of next-token prediction on `token_ids` (Adam at 1e-3,
    XLA): the loss is finite and every weight (or, with
    `every_weight=False`, some weight) has changed."""
    before = [w.copy() for w in model.get_weights()]
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=True,
    )
    history = model.fit(
        unpadded(token_ids[:, :-1]),
        token_ids[:, 1:],
        batch_size=len(token_ids),
        epochs=1,
        verbose=0,
    )
    assert np.isfinite(history.history["loss"][0])
    pairs = list(zip(before, model.get_weights(), strict=True))
    if every_weight:
        assert all(not np.array_equal(a, b) for a, b in pairs)
    else:
        assert any(not np.allclose(a, b) for a, b in pairs)
